"""hb-supervise itself crashing or being replaced, on a real pair in namespaces: its
daemons outlive it, a new hb-supervise adopts them, and SIGUSR2 replaces hb-beat and
hb-watch in place; the VIP (sampled every 100 ms with `ip -n NS addr`) never moves
and is never on both nodes, and the peer never calls the node dead."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from lab.pair import VIP, Pair
from lab.probe import Holders
from lab.wait import steady

TIMING = {"keepalive": "100ms", "warntime": "500ms", "deadtime": "1", "initdead": "2"}


def daemons(node) -> dict[str, int]:
    """hb-beat and hb-watch of a node by their pid files (they need not be children)."""
    out = {}
    for name in ("hb-beat", "hb-watch"):
        try:
            with open(os.path.join(node.run, name + ".pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if os.path.exists("/proc/%d" % pid):
            out[name] = pid
    return out


def peer_saw_death(node, name: str) -> list[str]:
    with open(node.logfile) as f:
        return [ln for ln in f if re.search(r"\b%s\b.*\bdead\b" % name, ln, re.I)
                and not re.search(r"\blink\b", ln)]


def running(pair: Pair) -> tuple[Holders, dict]:
    julius, caesar = pair["julius"], pair["caesar"]
    pair.start()
    pair.wait(lambda: julius.holds() == ["1"], timeout=20, what="group 1 on julius")
    pair.wait(lambda: caesar.node("julius").get("status") == "up"
              and julius.node("caesar").get("status") == "up", what="both up")
    holders = Holders({n: x.host.ns for n, x in pair.nodes.items()}, VIP)
    holders.start()
    pair.wait(lambda: len(holders.samples) >= 5, what="the first samples")
    return holders, caesar.node("julius")


def cleanup(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("pidfiles", ["kept", "lost"])
def test_kill9_of_hb_supervise_and_a_restart_2s_later_moves_nothing(lab, pidfiles):
    pair = Pair(lab, **TIMING)
    julius, caesar = pair["julius"], pair["caesar"]
    holders, seen = running(pair)
    old = daemons(julius)
    assert set(old) == {"hb-beat", "hb-watch"}
    left = list(old.values())
    try:
        t0 = time.monotonic()
        os.kill(julius.proc.pid, signal.SIGKILL)
        julius.proc.wait(5)
        steady(lambda: daemons(julius) == old, 2.0,    # systemd's RestartSec=2
               "the daemons outlive hb-supervise, untouched")
        if pidfiles == "lost":                # found by their command lines instead
            for name in old:
                os.unlink(os.path.join(julius.run, name + ".pid"))
        julius.start()
        pair.wait(lambda: len(re.findall(r"is running: watching it \(started by an earlier",
                                         julius.log())) == 2,
                  timeout=10, what="the new hb-supervise to adopt both daemons")
        pair.wait(lambda: holders.since(time.monotonic() - 3.0) and
                  time.monotonic() - t0 > 5.0, timeout=20, what="three deadtimes more")
        assert daemons(julius) == old, julius.logtail()
        samples = holders.since(t0 - 0.5)
        assert len(samples) > 30
        assert set(samples) == {frozenset({"julius"})}, samples
        assert peer_saw_death(caesar, "julius") == []
        now = caesar.node("julius")
        assert now.get("status") == "up" and now.get("since") == seen.get("since"), (seen, now)
        assert julius.holds() == ["1"] and caesar.holds() == []
        # the adopted daemons are supervised: one killed is respawned, nothing moves
        os.kill(old["hb-watch"], signal.SIGKILL)
        pair.wait(lambda: daemons(julius).get("hb-watch") not in (None, old["hb-watch"]),
                  timeout=5, what="hb-watch respawned")
        assert "hb-watch ended; restarting" in julius.log()
        left += list(daemons(julius).values())
        t1 = time.monotonic()
        pair.wait(lambda: time.monotonic() - t1 > 2.0 and julius.holds() == ["1"],
                  timeout=10, what="two deadtimes with the new hb-watch")
        # and the node still works: a standby moves the VIP
        r = julius.switch("standby", "--wait", "10")
        assert r.returncode == 0, (r.stdout, r.stderr, julius.logtail())
        pair.wait(lambda: caesar.holds() == ["1"] and julius.holds() == [], timeout=10,
                  what="group 1 on caesar")
        t2 = time.monotonic()
        pair.wait(lambda: {"caesar"} in [set(h) for h in holders.since(t2)], timeout=5,
                  what="a sample of the VIP on caesar")
        samples = holders.stop()
        assert [s for s in samples if len(s[1]) > 1] == []
        assert peer_saw_death(caesar, "julius") == []
        assert julius.stop() == 0
        assert daemons(julius) == {}
    finally:
        holders.stop()
        cleanup(left)


def test_sigusr2_replaces_hb_beat_and_hb_watch_in_place_and_moves_nothing(lab):
    pair = Pair(lab, **TIMING)
    julius, caesar = pair["julius"], pair["caesar"]
    holders, seen = running(pair)
    old = daemons(julius)
    sup = julius.proc.pid
    try:
        t0 = time.monotonic()
        os.kill(sup, signal.SIGUSR2)
        pair.wait(lambda: len(daemons(julius)) == 2 and not set(daemons(julius).values())
                  & set(old.values()), timeout=20, what="new hb-beat and hb-watch")
        new = daemons(julius)
        pair.wait(lambda: time.monotonic() - t0 > 4.0, timeout=10, what="three deadtimes")
        assert julius.proc.poll() is None                     # the same process, re-executed
        assert julius.children() == new                       # its own children
        assert all(not os.path.exists("/proc/%d" % p) for p in old.values())
        text = julius.log()
        assert "SIGUSR2: re-executing" in text and "re-executed on julius" in text
        assert "SIGUSR2: replacing hb-beat, then hb-watch" in text
        samples = holders.since(t0 - 0.5)
        assert len(samples) > 25
        assert set(samples) == {frozenset({"julius"})}, samples
        assert peer_saw_death(caesar, "julius") == []
        now = caesar.node("julius")
        assert now.get("status") == "up" and now.get("since") == seen.get("since"), (seen, now)
        assert julius.holds() == ["1"] and caesar.holds() == []
        r = julius.switch("standby", "--wait", "10")           # the new pair works
        assert r.returncode == 0, (r.stdout, r.stderr, julius.logtail())
        pair.wait(lambda: caesar.holds() == ["1"] and not julius.has_vip(), timeout=10,
                  what="group 1 on caesar")
        samples = holders.stop()
        assert [s for s in samples if len(s[1]) > 1] == []
        assert julius.stop() == 0
    finally:
        holders.stop()
        cleanup(old.values())


def test_sigusr2_with_a_configuration_the_new_code_refuses_changes_nothing(lab):
    pair = Pair(lab, **TIMING)
    julius = pair["julius"].start()
    for daemon in ("hb-beat", "hb-watch"):      # both have read ha.cf before it is edited
        pair.wait(lambda: os.path.exists(julius.logfile) and re.search(
            r"%s\[\d+\]: INFO: starting" % daemon, julius.log()), timeout=10,
                  what="%s to start" % daemon)
    old = daemons(julius)
    hacf = os.path.join(julius.conf, "ha.cf")
    with open(hacf) as f:
        good = f.read()
    with open(hacf, "a") as f:
        f.write("undport 694\n")
    os.kill(julius.proc.pid, signal.SIGUSR2)
    pair.wait(lambda: "SIGUSR2: not re-executing" in julius.log(), timeout=20,
              what="the refusal")
    assert re.search(r"SIGUSR2: not re-executing: the installed hb-supervise refuses the "
                     r"configuration: .*ha\.cf:\d+: .*undport", julius.log())
    steady(lambda: daemons(julius) == old and julius.children() == old
           and julius.proc.poll() is None, 0.5, "nothing re-executed")
    with open(hacf, "w") as f:
        f.write(good)
    os.kill(julius.proc.pid, signal.SIGUSR2)
    pair.wait(lambda: len(daemons(julius)) == 2 and not set(daemons(julius).values())
              & set(old.values()), timeout=20, what="new hb-beat and hb-watch")
    assert julius.stop() == 0
