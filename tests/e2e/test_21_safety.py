"""A group never runs on two nodes: a real hb pair (tests/lab/pair.py), checked every 100 ms.

- `alpha 198.18.0.100/24/eth0 stuckres`, where stuckres's stop always fails (it records
  where it "runs" in a file of its node): through SIGTERM to hb-supervise and through
  `hb-switch standby`, under `stop_failure hold` and `stop_failure reboot COMMAND`, where
  COMMAND is a substitute that does what a reboot does to hb (it records the call, drops
  the node's VIP and stuckres's file, kills the node's hb processes), never a reboot.
- hb-beat of the active node stopped (SIGSTOP) for 3 x deadtime, then continued; and
  hb-beat killed again each time hb-supervise respawns it.

Keepalive 100 ms, deadtime 1 s (a loaded machine); each stuck-stop scenario is watched
for 30 s (the stop is tried ten times a second apart, so the decision comes at ~11 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from lab.pair import VIP, HbPair
from lab.wait import steady

KEEPALIVE, DEADTIME = "100ms", "1"
WATCH_S = 30.0

STUCKRES = """#!/bin/sh
# a resource whose stop always fails; it records where it runs
f=%(dir)s/stuckres.running
case "$1" in
  start) touch "$f"; echo started ;;
  stop) echo "stop: device is busy" ; exit 1 ;;
  status) if [ -e "$f" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"""

FAKE_REBOOT = """#!/bin/sh
# stop_failure reboot's substitute: what a reboot does to hb on this node, no reboot
d=%(dir)s
echo "$(date +%%s.%%N) $*" >> "$d/reboots"
sup=$(awk '{print $4}' /proc/$PPID/stat)
kids=$(cat /proc/$sup/task/*/children 2>/dev/null)
kill -STOP $sup $kids 2>/dev/null
rm -f "$d/stuckres.running"
ip addr del %(vip)s/24 dev eth0 2>/dev/null
kill -KILL $sup $kids 2>/dev/null
exit 0
"""


class Checker(threading.Thread):
    """Every 100 ms: which nodes have the VIP, and where stuckres runs."""

    def __init__(self, pair: HbPair) -> None:
        super().__init__(daemon=True)
        self.pair = pair
        self.samples: list[tuple[float, list[str], list[str]]] = []
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while not self.halt.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                nodes = list(self.pair.nodes.values())
                vip = [n.name for n in nodes if n.has_vip()]
                if len(vip) > 1:
                    # read one after another, an address moving from the first node read
                    # to a later one looks held by both: read again in the reverse order,
                    # a true double is seen both times
                    again = {n.name for n in nodes[::-1] if n.has_vip()}
                    vip = [v for v in vip if v in again]
            except (subprocess.SubprocessError, OSError) as e:     # `ip` itself failed
                self.errors.append(repr(e))
                continue
            res = [n.name for n in self.pair.nodes.values()
                   if os.path.exists(os.path.join(n.dir, "stuckres.running"))]
            self.samples.append((t, vip, res))
            self.halt.wait(max(0.0, 0.1 - (time.monotonic() - t)))

    def stop(self) -> list[tuple[float, list[str], list[str]]]:
        self.halt.set()
        self.join(5)
        return self.samples

    def doubles(self) -> list:
        return [s for s in self.samples if len(s[1]) > 1 or len(s[2]) > 1]


def stuck_pair(lab, policy: str) -> HbPair:
    pair = HbPair(lab, keepalive=KEEPALIVE, deadtime=DEADTIME, initdead="2",
                  haresources="alpha %s/24/eth0 MailTo::admins@example.org::stuckgroup "
                  "stuckres\n" % VIP)
    for n in pair.nodes.values():
        rd = os.path.join(n.conf, "resource.d")
        os.makedirs(rd, exist_ok=True)
        path = os.path.join(rd, "stuckres")
        with open(path, "w") as f:
            f.write(STUCKRES % {"dir": n.dir})
        os.chmod(path, 0o755)
        line = "stop_failure hold\n"
        if policy == "reboot":
            fake = os.path.join(n.dir, "fake-reboot")
            with open(fake, "w") as f:
                f.write(FAKE_REBOOT % {"dir": n.dir, "vip": VIP})
            os.chmod(fake, 0o755)
            line = "stop_failure reboot %s now\n" % fake
        with open(os.path.join(n.conf, "ha.cf"), "a") as f:
            f.write(line)
    return pair


def runs(n) -> bool:
    return os.path.exists(os.path.join(n.dir, "stuckres.running"))


def start_stuck(lab, policy: str) -> tuple[HbPair, Checker]:
    pair = stuck_pair(lab, policy)
    alpha, beta = pair["alpha"], pair["beta"]
    alpha.start()
    pair.wait(lambda: alpha.has_vip() and runs(alpha), 20, "alpha to run the group")
    beta.start()
    pair.wait_up()
    checker = Checker(pair)
    checker.start()
    return pair, checker


def finish(pair: HbPair, checker: Checker, t0: float) -> list:
    while time.monotonic() < t0 + WATCH_S:
        time.sleep(0.2)
    samples = checker.stop()
    assert len(samples) > WATCH_S * 5, "the checker fell behind: %d samples, errors %s" % (
        len(samples), checker.errors[:3])
    both = checker.doubles()
    assert both == [], "on both nodes: %s\n%s" % (both[:5], pair.logtail(60))
    return samples


def assert_held_by_alpha(pair: HbPair) -> None:
    """hold: stuckres still "runs" on alpha, never on beta; beta knows why."""
    alpha, beta = pair["alpha"], pair["beta"]
    assert runs(alpha) and not runs(beta), pair.logtail()
    assert "resource stop failure: it may still run here; held here" in alpha.log()
    assert "says it may still run there (a stop failed)" in beta.log(), pair.logtail()
    assert not os.path.exists(os.path.join(alpha.dir, "reboots"))
    spool = os.path.join(alpha.state, "spool")      # the alert, through the group's MailTo
    mails = [open(os.path.join(spool, f), errors="replace").read()
             for f in os.listdir(spool) if not f.startswith(".")]
    assert any("Subject: stuckgroup could not be stopped: held on alpha" in m
               and "resource stop failure" in m for m in mails), mails


def assert_rebooted_and_taken(pair: HbPair) -> None:
    """reboot: alpha "rebooted" (its substitute ran once), beta runs the group."""
    alpha, beta = pair["alpha"], pair["beta"]
    with open(os.path.join(alpha.dir, "reboots")) as f:
        assert len(f.read().splitlines()) == 1
    assert "rebooting this node (stop_failure reboot)" in alpha.log()
    pair.wait(lambda: beta.has_vip() and runs(beta), 10, "beta to take the group")
    assert not alpha.has_vip() and not runs(alpha)


@pytest.mark.parametrize("policy", ["hold", "reboot"])
def test_stuck_stop_through_sigterm_never_runs_twice(lab, policy):
    pair, checker = start_stuck(lab, policy)
    alpha = pair["alpha"]
    t0 = time.monotonic()
    alpha.proc.send_signal(signal.SIGTERM)           # systemctl stop hb
    try:
        finish(pair, checker, t0)
    finally:
        checker.halt.set()
    if policy == "hold":
        assert alpha.proc.wait(30) == 0, pair.logtail()
        assert "not handed over" in alpha.log(), alpha.logtail()
        assert_held_by_alpha(pair)
        st = {g["index"]: g for g in pair["beta"].status()["group"]}
        assert st["1"].get("holder") != "beta", st
    else:
        assert_rebooted_and_taken(pair)


@pytest.mark.parametrize("policy", ["hold", "reboot"])
def test_stuck_stop_through_standby_never_runs_twice(lab, policy):
    pair, checker = start_stuck(lab, policy)
    alpha = pair["alpha"]
    t0 = time.monotonic()
    try:
        for _ in range(20):               # refused while the peer is still settling
            r = subprocess.run(["hb-switch", "standby", "-r", alpha.run, "--no-wait"],
                               capture_output=True, text=True, timeout=30)
            try:
                pair.wait(lambda: "asking beta to take all groups" in alpha.log(), 1.0)
                break
            except AssertionError:
                continue
        assert "asking beta to take all groups" in alpha.log(), (r, alpha.logtail())
        finish(pair, checker, t0)
    finally:
        checker.halt.set()
    if policy == "hold":
        assert_held_by_alpha(pair)
        assert alpha.running(), pair.logtail()
        mine = {g["index"]: g for g in alpha.status()["group"]}
        assert mine["1"].get("holder") == "alpha", mine
        r = alpha.switch("standby", "--wait", "20")        # and says why it stays:
        assert r.returncode == 1 and (                       # hb-watch, or hb-switch
            "group 1 may still run here (a stop failed)" in r.stdout
            or "group 1 stuck on alpha" in r.stdout), r
    else:
        assert_rebooted_and_taken(pair)


def started_pair(lab) -> tuple[HbPair, Checker]:
    pair = HbPair(lab, keepalive=KEEPALIVE, deadtime=DEADTIME, initdead="2")
    alpha = pair["alpha"]
    alpha.start()
    pair.wait(alpha.has_vip, 20, "alpha to take the VIP")
    pair["beta"].start()
    pair.wait_up()
    time.sleep(1.0)
    checker = Checker(pair)
    checker.start()
    return pair, checker


def test_hb_beat_stopped_for_three_deadtimes_never_doubles(lab):
    pair, checker = started_pair(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    beat = alpha.wait_children()["hb-beat"]
    os.kill(beat, signal.SIGSTOP)
    try:
        pair.wait(beta.has_vip, 10, "beta to take the VIP")
        time.sleep(3.0 - 1.0)                  # 3 x deadtime in all
    finally:
        os.kill(beat, signal.SIGCONT)
    pair.wait_up(timeout=10)
    time.sleep(3.0)
    samples = checker.stop()
    assert checker.doubles() == [], "VIP on both: %s\n%s" % (checker.doubles()[:5],
                                                             pair.logtail(60))
    assert [s for s in samples[-5:] if s[1] != ["beta"]] == [], samples[-5:]
    assert "releasing groups 1" in alpha.log(), alpha.logtail()


def test_hb_beat_crash_loop_never_doubles(lab):
    pair, checker = started_pair(lab)
    alpha = pair["alpha"]
    t_end = time.monotonic() + 12
    killed: list[int] = []
    try:
        while time.monotonic() < t_end and len(killed) < 30:
            pid = alpha.children().get("hb-beat")
            if pid and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)
    finally:
        time.sleep(0.1)
    pair.wait_up(timeout=15)
    time.sleep(3.0)
    checker.stop()
    assert len(killed) >= 5, killed
    assert checker.doubles() == [], "VIP on both: %s\n%s" % (checker.doubles()[:5],
                                                             pair.logtail(60))
    holders = [n.name for n in pair.nodes.values() if n.has_vip()]
    assert len(holders) == 1, (holders, pair.logtail())


def test_a_full_run_directory_is_logged_and_retried_never_fatal(lab):
    """alpha's RUNDIR is a 512 KiB tmpfs, filled up: hb-watch keeps running, logs the
    failed writes (status: retried; state: overwritten in place, so that the heartbeats
    tell the truth), carries out the standby it was asked for, and writes its status
    again once there is room; the VIP is never on both nodes."""
    pair = HbPair(lab, keepalive=KEEPALIVE, deadtime=DEADTIME, initdead="2")
    alpha, beta = pair["alpha"], pair["beta"]
    os.makedirs(alpha.run, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", alpha.run],
                   check=True)
    checker = None
    try:
        alpha.start()
        pair.wait(alpha.has_vip, 20, "alpha to take the VIP")
        beta.start()
        pair.wait_up()
        watch = alpha.wait_children()["hb-watch"]
        filler = os.path.join(alpha.run, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:                                    # fill it up, 4 KiB at a time
            for _ in range(1024):
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        checker = Checker(pair)
        checker.start()
        for _ in range(20):
            subprocess.run(["hb-switch", "standby", "-r", alpha.run, "--no-wait"],
                           capture_output=True, text=True, timeout=30)
            try:
                pair.wait(lambda: "asking beta to take all groups" in alpha.log(), 1.0)
                break
            except AssertionError:
                continue
        pair.wait(lambda: "cannot write" in alpha.log(), 10, "a failed write logged")
        pair.wait(lambda: beta.has_vip() and not alpha.has_vip(), 15, "the VIP on beta")
        assert alpha.children().get("hb-watch") == watch, alpha.logtail()
        steady(lambda: beta.has_vip() and not alpha.has_vip(), 2.0,
               lambda: "nothing moves back meanwhile\n" + pair.logtail())
        assert "split brain" not in beta.log()     # the state file told the truth
        os.unlink(filler)
        pair.wait(lambda: alpha.holds() == [] and beta.holds() == ["1"], 15,
                  "both status files to agree")
        time.sleep(2.0)
        checker.stop()
        assert checker.doubles() == [], (checker.doubles()[:5], pair.logtail(60))
        assert beta.has_vip() and not alpha.has_vip()
        assert alpha.children().get("hb-watch") == watch
    finally:
        if checker is not None:
            checker.halt.set()
        for n in pair.nodes.values():
            if n.running():
                n.kill()
        subprocess.run(["umount", "-l", alpha.run], check=False)
