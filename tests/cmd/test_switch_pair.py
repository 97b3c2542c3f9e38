"""hb-switch on a real pair right after its start: standby is asked while the peer is
still starting its own group (a slow agent, 3 s), so hb-watch refuses it "other side
is in flux"; hb-switch waits that out within --wait (saying so) instead of refusing,
and the group moves."""

from __future__ import annotations

import os
import time

from lab.pair import VIP, HbPair

SLOW = """#!/bin/sh
# a service that takes 3 s to start
mark=%s/slow.up
case "$1" in
  start) sleep 3; touch $mark ;;
  stop) rm -f $mark ;;
  status) [ -e $mark ] && echo running || echo stopped ;;
esac
exit 0
"""


def test_standby_right_after_start_waits_out_in_flux(lab):
    pair = HbPair(lab, keepalive="200ms", deadtime="2", initdead="4",
                  haresources="alpha %s/24/eth0\nbeta Slow\n" % VIP)
    alpha, beta = pair["alpha"], pair["beta"]
    for n in (alpha, beta):
        os.makedirs(os.path.join(n.conf, "resource.d"), exist_ok=True)
        path = os.path.join(n.conf, "resource.d", "Slow")
        with open(path, "w") as f:
            f.write(SLOW % n.dir)
        os.chmod(path, 0o755)
    pair.start()
    pair.wait(lambda: alpha.holds() == ["1"], timeout=30, what="alpha holds group 1")
    assert beta.status()["group"][1]["state"] in ("starting", "stopped"), beta.status()
    t0 = time.monotonic()
    r = alpha.switch("standby", "local", "--wait", "30")
    took = time.monotonic() - t0
    assert r.returncode == 0, (r.stdout, r.stderr, pair.logtail())
    assert r.stdout.startswith("ok: standby: group 1 now on beta ("), r.stdout
    assert "standby request refused: other side is in flux" in alpha.log(), \
        alpha.logtail()
    assert r.stderr == "hb-switch: standby: standby request refused: other side is in " \
        "flux: waiting (at most 30 s)\n", r.stderr
    assert 1 < took < 30
    pair.wait(lambda: beta.holds() == ["1", "2"] and alpha.holds() == [], timeout=10,
              what="both agree")
