"""The order of group starts and stops on a real hb node (resource_order, ha.cf).

Two groups of resource.d scripts that write a timestamp when each start/stop
begins and ends: with the default (Heartbeat's order) group 2 starts after group
1's start ended and stops before group 1's stop begins, and within a group the
resources start left to right and stop right to left; with `resource_order
parallel` both groups start (and stop) together.  alpha runs alone: at initdead it
takes both groups; SIGTERM releases them.
"""

from __future__ import annotations

import os

import pytest

from lab.pair import HbPair

REC = """#!/bin/sh
# Rec NAME ACTION: records when each action begins and ends
d=%(dir)s
n=$1
now() { date +%%s.%%N; }
case $2 in
start) echo "$(now) $n start" >> $d/log; sleep 0.6; touch $d/$n.up
       echo "$(now) $n started" >> $d/log ;;
stop)  echo "$(now) $n stop" >> $d/log; sleep 0.4; rm -f $d/$n.up
       echo "$(now) $n stopped" >> $d/log ;;
status) if [ -e $d/$n.up ]; then echo "running"; else echo "stopped"; exit 3; fi ;;
esac
exit 0
"""

HARESOURCES = "alpha Rec::a1 Rec::a2\nalpha Rec::b1\n"


def events(path: str) -> dict[tuple[str, str], float]:
    out = {}
    with open(path) as f:
        for line in f:
            t, name, what = line.split()
            out[(name, what)] = float(t)
    return out


@pytest.mark.parametrize("order", [None, "parallel"])
def test_groups_start_and_stop_in_order(lab, order):
    extra = "resource_order %s\n" % order if order else ""
    pair = HbPair(lab, keepalive="100ms", deadtime="1", initdead="2", extra=extra,
                  haresources=HARESOURCES)
    node = pair["alpha"]
    rec = os.path.join(lab.tmp, "rec")
    os.makedirs(rec)
    os.makedirs(os.path.join(node.conf, "resource.d"))
    script = os.path.join(node.conf, "resource.d", "Rec")
    with open(script, "w") as f:
        f.write(REC % {"dir": rec})
    os.chmod(script, 0o755)
    log = os.path.join(rec, "log")
    node.start()
    pair.wait(lambda: os.path.exists(log) and len(events(log)) == 6, 20, "three starts")
    try:
        assert node.stop() == 0
    except Exception:
        raise AssertionError(node.logtail(25)) from None
    ev = events(log)
    assert len(ev) == 12, ev
    # within a group: left to right, right to left, one at a time
    assert ev[("a1", "started")] <= ev[("a2", "start")]
    assert ev[("a2", "stopped")] <= ev[("a1", "stop")]
    if order is None:       # Heartbeat's: group 2 after group 1, stopped before it
        assert ev[("a2", "started")] <= ev[("b1", "start")], ev
        assert ev[("b1", "start")] - ev[("a2", "started")] < 1.0, ev
        assert ev[("b1", "stopped")] <= ev[("a2", "stop")] <= ev[("a1", "stop")], ev
    else:                   # parallel: both groups at once
        assert abs(ev[("b1", "start")] - ev[("a1", "start")]) < 0.5, ev
        assert ev[("b1", "start")] < ev[("a1", "started")], ev
        assert ev[("b1", "stop")] < ev[("a2", "stopped")], ev
    text = node.log()
    assert "group 1: starting here" in text and "group 2: starting here" in text
