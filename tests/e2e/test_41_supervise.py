"""hb-supervise running a real pair in namespaces: an orderly stop hands the VIP over
at once; a daemon killed with -9 is respawned, and hb-supervise killed with -9 leaves its
daemons running, without moving anything; a second
instance is refused; SIGHUP with a broken configuration keeps the running one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from lab import probe

from lab.pair import VIP, Pair
from lab.wait import steady


def started(lab, **kw) -> tuple[Pair, probe.Prober]:
    pair = Pair(lab, **kw)                      # with a responder for VIP on each node
    pair.start()
    prober = probe.Prober(pair.client, VIP, duration=60)
    prober.wait_served("julius", timeout=15)
    pair.wait(lambda: pair["caesar"].node("julius").get("status") == "up"
              and pair["julius"].node("caesar").get("status") == "up", what="both up")
    return pair, prober


SLOW = {"warntime": "1", "deadtime": "3", "initdead": "6"}     # hand-over, not deadtime


def test_sigterm_hands_the_vip_to_the_peer_within_a_second(lab):
    pair, prober = started(lab, **SLOW)
    julius = pair["julius"]
    t0 = time.monotonic()
    rc = julius.stop()
    served = prober.wait_served("caesar", timeout=5, since=t0)
    probes = prober.stop()
    assert rc == 0, julius.logtail()
    assert served - t0 < 1.0, (served - t0, pair["caesar"].logtail())
    assert probe.multi(probes, "holders") == []
    gap = probe.outage_after(probes, t0)
    assert gap is None or gap.ms < 1000
    left = os.listdir(julius.run)
    assert "beat.fifo" not in left and "watch.fifo" not in left
    assert not julius.has_vip()
    assert pair["caesar"].holds() == ["1"]


def test_kill9_of_hb_supervise_moves_nothing_and_its_daemons_run_on(lab):
    pair, prober = started(lab, **SLOW)
    julius, caesar = pair["julius"], pair["caesar"]
    kids = julius.children()
    try:
        t0 = time.monotonic()
        os.kill(julius.proc.pid, signal.SIGKILL)
        julius.proc.wait(5)
        time.sleep(4.5)              # past deadtime (3 s): the peer would have taken over
        probes = probe.window(prober.stop(), t0)
        assert all(os.path.exists("/proc/%d" % p) for p in kids.values()), julius.logtail()
        assert [p for p in probes if p.who != "julius"] == [], probe.servers(probes)
        assert probe.multi(probes, "holders") == []
        assert julius.has_vip() and julius.holds() == ["1"] and caesar.holds() == []
        assert caesar.node("julius").get("status") == "up"
    finally:
        for pid in kids.values():    # no supervisor is left to stop them
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        pair.wait(lambda: not any(os.path.exists("/proc/%d" % p) for p in kids.values()),
                  timeout=70, what="hb-beat and hb-watch to stop")


@pytest.mark.parametrize("daemon", ["hb-watch", "hb-beat"])
def test_kill9_of_a_daemon_is_respawned_and_nothing_moves(lab, daemon):
    pair, prober = started(lab)
    julius, caesar = pair["julius"], pair["caesar"]
    seen = caesar.node("julius")
    time.sleep(1.1)                  # past the one-second throttle of the first start
    old = julius.children()
    t0 = time.monotonic()
    os.kill(old[daemon], signal.SIGKILL)
    new = julius.wait_children(timeout=5, old={daemon: old[daemon]})
    respawned = time.monotonic() - t0
    assert new[daemon] != old[daemon]
    time.sleep(1.5)                  # three deadtimes for the peer to judge
    probes = probe.window(prober.stop(), t0 - 0.2)
    assert respawned < 0.5, respawned
    assert [p for p in probes if p.who not in ("julius", None)] == [], probe.servers(probes)
    assert [p for p in probes if set(p.holders) - {"julius"}] == []
    assert sum(p.who == "julius" for p in probes) >= 0.9 * len(probes), probe.servers(probes)
    now = caesar.node("julius")
    assert now.get("status") == "up" and now.get("since") == seen.get("since"), (seen, now)
    with open(caesar.logfile) as f:
        dead = [ln for ln in f if re.search(r"\bjulius\b.*\bdead\b", ln, re.I)
                and not re.search(r"\blink\b", ln)]
    assert dead == []
    assert julius.holds() == ["1"] and caesar.holds() == []
    with open(julius.logfile) as f:
        assert "%s killed by signal 9; restarting" % daemon in f.read()


def test_second_instance_refused_and_sighup_keeps_a_good_config(lab):
    pair = Pair(lab)
    julius = pair["julius"].start()
    kids = julius.wait_children()
    for daemon in ("hb-beat", "hb-watch"):      # both have read ha.cf before it is edited
        pair.wait(lambda: re.search(r"%s\[\d+\]: INFO: starting" % daemon,
                                    julius.log()), timeout=10,
                  what="%s to start" % daemon)
    r = julius.host.run(julius.argv(), check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("hb-supervise: fatal: unable to lock ")
    assert r.stderr.rstrip().endswith("another hb-supervise is running")
    hacf = os.path.join(julius.conf, "ha.cf")
    with open(hacf) as f:
        good = f.read()
    with open(hacf, "a") as f:
        f.write("undport 694\n")
    os.kill(julius.proc.pid, signal.SIGHUP)
    pair.wait(lambda: "keeping the running configuration" in julius.log(),
              timeout=5, what="refusal of the broken config")
    assert re.search(r"ha\.cf:\d+: .*undport", julius.log())
    with open(hacf, "w") as f:
        f.write(good.replace("warntime 300ms", "warntime 250ms"))
    os.kill(julius.proc.pid, signal.SIGHUP)
    pair.wait(lambda: "configuration re-read" in julius.log(), timeout=5)
    steady(lambda: julius.children() == kids, 0.3, julius.logtail)
    assert julius.stop() == 0
    assert julius.children() == {}


def test_daemon_detaches_and_writes_its_pid(lab):
    pair = Pair(lab)
    julius = pair["julius"]
    r = julius.host.run(julius.argv("--daemon"), check=False, timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    pidfile = os.path.join(julius.run, "hb-supervise.pid")
    pid = 0
    try:
        pair.wait(lambda: os.path.exists(pidfile), timeout=5, what="the pid file")
        with open(pidfile) as f:
            pid = int(f.read())
        kids = julius.wait_children(pid=pid)
        os.kill(pid, signal.SIGUSR2)                # re-executed in place: not detached again
        new = julius.wait_children(pid=pid, old=kids, timeout=20)
        assert set(new.values()).isdisjoint(kids.values())
        with open(pidfile) as f:
            assert int(f.read()) == pid
        os.kill(pid, signal.SIGTERM)
        pair.wait(lambda: not os.path.exists("/proc/%d" % pid), timeout=10, what="its exit")
        assert not os.path.exists(pidfile)
    finally:
        if pid and os.path.exists("/proc/%d" % pid):
            os.kill(pid, signal.SIGKILL)


def test_respawn_lines_run_as_their_user_and_ipfail_is_left_to_hb_watch(lab):
    d = tempfile.mkdtemp(prefix="hbrespawn.")
    try:
        os.chmod(d, 0o777)
        for name, tail in (("loop", "exec sleep 30"), ("once", "exit 100"),
                           ("ipfail", "exec sleep 30")):
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write('#!/bin/sh\necho "$(id -un) $$" >> %s.out\n%s\n' % (path, tail))
            os.chmod(path, 0o755)
        pair = Pair(lab, extra="respawn nobody %s/loop\nrespawn nobody %s/once\n"
                    "respawn root %s/ipfail\n" % (d, d, d))
        julius = pair["julius"].start()

        def lines(name):
            try:
                with open(os.path.join(d, name + ".out")) as f:
                    return [ln.split() for ln in f]
            except FileNotFoundError:
                return []
        pair.wait(lambda: lines("loop"), timeout=10, what="the respawn program")
        (user, pid), = lines("loop")
        assert user == "nobody"
        os.kill(int(pid), signal.SIGKILL)
        pair.wait(lambda: len(lines("loop")) == 2, timeout=5, what="its respawn")
        pair.wait(lambda: lines("once"), timeout=5, what="`once` started")
        once = lines("once")
        steady(lambda: lines("once") == once, 1.5, "`once` not respawned")
        assert once == [["nobody", once[0][1]]]
        assert lines("ipfail") == []
        last = int(lines("loop")[1][1])
        assert julius.stop() == 0
        assert not os.path.exists("/proc/%d" % last) or \
            open("/proc/%d/stat" % last).read().split()[2] == "Z"
    finally:
        shutil.rmtree(d)


def test_daemons_are_forked_share_pages_and_hold_nothing_of_hb_supervise(lab):
    """hb-beat and hb-watch are forked from hb-supervise's interpreter: each shows its
    own name and `-r RUNDIR` (ps, pgrep -f), shares pages with hb-supervise, and holds
    none of its descriptors (the lock, the kept beat.fifo)."""
    pair, prober = started(lab)
    prober.stop()
    julius = pair["julius"]
    sup = julius.proc.pid
    kids = julius.children()
    assert set(kids) == {"hb-beat", "hb-watch"}, julius.logtail()
    lock = os.path.realpath(os.path.join(julius.run, "hb-supervise.lock"))
    for name, pid in kids.items():
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == name
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        assert os.path.basename(argv[1]) == name, argv          # python3, the program
        assert argv[2:4] == ["-r", julius.run], argv
        with open("/proc/%d/smaps_rollup" % pid) as f:
            shared = int(re.search(r"^Shared_Dirty:\s+(\d+)", f.read(), re.M).group(1))
        assert shared > 1000, (name, shared)              # kB still shared with the parent
        fds = {}
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                fds[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                pass
        assert lock not in fds.values(), fds
        # no pidfd of hb-supervise's (hb-beat holds one of hb-watch, its state's writer)
        for fd, t in fds.items():
            if t.startswith("pidfd") or t == "anon_inode:[pidfd]":
                with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                    of = re.search(r"^Pid:\s+(-?\d+)", f.read(), re.M)
                assert name == "hb-beat" and of and int(of.group(1)) == kids["hb-watch"], \
                    (name, fd, fds)
        assert julius.children(pid) == {}                 # and no stray child of its own
    assert os.path.exists("/proc/%d" % sup)
