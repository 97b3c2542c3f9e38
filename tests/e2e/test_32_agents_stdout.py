"""A service whose daemon keeps the start script's stdout (`daemon &`, as many init
scripts do) on a real pair: the start completes in well under a second, the group
runs, and `hb-switch standby` moves it over and back, the VIP (sampled every 100 ms
with `ip -n NS addr`) never on both nodes."""

from __future__ import annotations

import os
import re
import signal
import time

from lab.pair import VIP, Pair
from lab.probe import Holders

DAEMON = """#!/bin/sh
# a service started the way many init scripts do: its daemon keeps our stdout
pidf={dir}/daemon.$HA_CURHOST.pid
case "$1" in
start)  sleep 120 & echo $! > $pidf; echo "daemon started"; exit 0 ;;
stop)   [ -s $pidf ] && kill $(cat $pidf); rm -f $pidf; exit 0 ;;
status) if [ -s $pidf ] && kill -0 $(cat $pidf) 2>/dev/null; then echo running
        else echo stopped; fi ;;
esac
exit 0
"""


def daemon_pid(pair: Pair, name: str) -> int | None:
    try:
        with open(os.path.join(pair.lab.tmp, "daemon.%s.pid" % name)) as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def test_a_daemon_that_keeps_stdout_starts_at_once_and_switches_over_and_back(lab):
    pair = Pair(lab, haresources="julius %s/24/eth0 daemon\n" % VIP, deadtime="1",
                warntime="500ms", initdead="2")
    for node in pair.nodes.values():
        path = os.path.join(node.conf, "resource.d", "daemon")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(DAEMON.format(dir=pair.lab.tmp))
        os.chmod(path, 0o755)
    julius, caesar = pair["julius"], pair["caesar"]
    holders = Holders({n: x.host.ns for n, x in pair.nodes.items()}, VIP)
    try:
        pair.start()
        holders.start()
        pair.wait(lambda: julius.holds() == ["1"], timeout=20, what="group 1 on julius")
        took = [float(x) for x in re.findall(r"daemon start: exit 0 in ([0-9.]+) s",
                                             julius.log())]
        assert len(took) == 1 and took[0] < 1.0, (took, julius.logtail())
        first = daemon_pid(pair, "julius")
        assert first and os.path.exists("/proc/%d" % first)
        pair.wait(lambda: caesar.node("julius").get("status") == "up",
                  what="caesar sees julius")
        for node, to, other in ((julius, caesar, julius), (caesar, julius, caesar)):
            t0 = time.monotonic()
            pair.wait(lambda: holders.seen({node.name}, t0 + 1.0), timeout=10,
                      what="a second of samples of the VIP on %s" % node.name)
            r = node.switch("standby", "--wait", "10")
            assert r.returncode == 0, (r.stdout, r.stderr, pair["julius"].logtail())
            pair.wait(lambda: to.holds() == ["1"] and other.holds() == [], timeout=10,
                      what="group 1 on %s" % to.name)
            assert daemon_pid(pair, to.name) and daemon_pid(pair, other.name) is None
            assert not other.has_vip() and to.has_vip()
        t0 = time.monotonic()
        pair.wait(lambda: holders.seen({"julius"}, t0 + 1.0), timeout=10,
                  what="a second of samples of the VIP back on julius")
        for name in ("julius", "caesar"):
            assert not re.search(r"group 1 .*(failed|giving up)|timed out",
                                 pair[name].log()), pair[name].logtail()
        samples = holders.stop()
        assert len(samples) > 20
        assert [s for s in samples if len(s[1]) > 1] == []
        assert {"julius"} in [set(s[1]) for s in samples]
        assert {"caesar"} in [set(s[1]) for s in samples]
    finally:
        holders.stop()
        for name in ("julius", "caesar"):
            pid = daemon_pid(pair, name)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
