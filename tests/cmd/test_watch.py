"""hb-watch as hb-supervise runs it, with a test playing hb-beat: message lines on its
stdin, beat.fifo read back, requests on watch.fifo, resource.d scripts as agents,
signals; and `hb-watch --check` on status files, with its four exit codes."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from hb import runfiles
from lab.wait import steady

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin", "hb-watch")

HACF = """\
logfile {log}
keepalive 100ms
warntime {warntime}
deadtime 500ms
initdead {initdead}
bcast lo
auto_failback {af}
node julius caesar
{extra}"""

AGENT = """#!/bin/sh
echo "$*" >> {dir}/calls
case "$2" in
  status) [ -e {dir}/$1.up ] && echo running || echo stopped ;;
  start) touch {dir}/$1.up; echo "started $1" ;;
  stop) rm -f {dir}/$1.up ;;
esac
"""


class Node:
    """hb-watch for julius, with this test as its hb-beat and as caesar."""

    def __init__(self, tmp, af="off", initdead="500ms", warntime="300ms", extra="",
                 haresources="julius Rsc::g1\ncaesar Rsc::g2\n") -> None:
        self.tmp = tmp
        self.conf, self.run, self.state = (str(tmp / d) for d in ("conf", "run", "state"))
        for d in (self.conf, self.run, self.state, self.conf + "/resource.d"):
            os.makedirs(d, exist_ok=True)
        self.log = str(tmp / "log")
        self.hacf = dict(log=self.log, af=af, initdead=initdead, warntime=warntime,
                         extra=extra)
        self.write_hacf()
        with open(self.conf + "/haresources", "w") as f:
            f.write(haresources)
        with open(self.conf + "/authkeys", "w") as f:
            f.write("auth 1\n1 sha1 test\n")
        os.chmod(self.conf + "/authkeys", 0o600)
        agent = self.conf + "/resource.d/Rsc"
        with open(agent, "w") as f:
            f.write(AGENT.format(dir=tmp))
        os.chmod(agent, 0o755)
        runfiles.make_fifo(self.path("beat.fifo"))
        self.beat = os.open(self.path("beat.fifo"), os.O_RDONLY | os.O_NONBLOCK)
        self.sent: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.peer = False
        self.seq = 0
        self.stop_beats = threading.Event()
        self.lock = threading.Lock()

    def write_hacf(self, **kw) -> None:
        self.hacf.update(kw)
        with open(self.conf + "/ha.cf", "w") as f:
            f.write(HACF.format(**self.hacf))

    def path(self, name: str) -> str:
        return os.path.join(self.run, name)

    def start(self) -> "Node":
        self.proc = subprocess.Popen(
            [BIN, "-c", self.conf, "-r", self.run, "-s", self.state, "--node", "julius"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.beats = threading.Thread(target=self.beating, daemon=True)
        self.beats.start()
        return self

    def line(self, text: str) -> None:
        with self.lock:
            try:
                self.proc.stdin.write(text + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

    def peer_says(self, text: str) -> None:
        self.seq += 1
        self.line("%s src=caesar seq=%x hg=5 _via=lo _rt=1" % (text, self.seq))

    def beating(self) -> None:
        """hb-beat's part: our own heartbeat every keepalive, and caesar's when alive."""
        while not self.stop_beats.wait(0.1):
            st = runfiles.read_kv(self.path("state"))
            self.line("t=status st=%s dt=1f4 %s src=julius seq=1 hg=1 _via=local _self=1 _rt=1"
                      % (st.get("st", "up"), " ".join("%s=%s" % kv for kv in st.items()
                                                      if kv[0] != "st")))
            if self.peer:
                self.peer_says(self.peer_status())

    def peer_status(self) -> str:
        return "t=status st=active dt=1f4 rsc_hold=%s grps=%s isstable=%s hbv=1" % self.peer

    def fifo_lines(self) -> list[str]:
        try:
            data = os.read(self.beat, 65536).decode()
        except BlockingIOError:
            data = ""
        self.sent += [ln for ln in data.splitlines() if ln]
        return self.sent

    def wait(self, pred, timeout: float = 5, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                err = ""
                if self.proc and self.proc.poll() is not None:
                    err = self.proc.stderr.read()
                raise AssertionError("timed out: %s\n%s%s" % (what, self.logtext(), err))
            time.sleep(0.02)

    def wait_sent(self, pattern: str, timeout: float = 5) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [ln for ln in self.fifo_lines() if re.search(pattern, ln)]
            return bool(found)
        self.wait(seen, timeout, "a message like %r on beat.fifo, got %r" % (pattern, self.sent))
        return found[0]

    def calls(self) -> list[str]:
        try:
            with open(self.tmp / "calls") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def status(self) -> str:
        return runfiles.read_text(self.path("status")) or ""

    def group(self, n: int) -> list[str]:
        m = re.search(r"^group %d (.*)$" % n, self.status(), re.M)
        return m.group(1).split()[:2] if m else []

    def logtext(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def check(self, *extra: str) -> tuple[int, str]:
        r = subprocess.run([BIN, "--check", "-r", self.run, *extra], capture_output=True,
                           text=True, timeout=10)
        return r.returncode, r.stdout

    def close(self) -> int | None:
        self.stop_beats.set()
        rc = None
        if self.proc:
            if self.proc.poll() is None:
                self.proc.kill()
            rc = self.proc.wait(5)
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        os.close(self.beat)
        return rc


@pytest.fixture
def node(tmp_path):
    made: list[Node] = []

    def make(**kw) -> Node:
        made.append(Node(tmp_path, **kw))
        return made[-1]
    yield make
    for n in made:
        n.close()


def test_alone_takes_everything_after_initdead_and_writes_its_files(node):
    n = node().start()
    n.wait(lambda: n.group(1) == ["julius", "running"] and n.group(2) == ["julius", "running"],
           what="both groups running")
    assert sorted(n.calls()) == ["g1 start", "g1 status", "g2 start", "g2 status"]
    st = runfiles.read_kv(n.path("state"))
    assert st["st"] == "active" and st["rsc_hold"] == "all" and st["grps"] == "1,2"
    assert st["hbv"] == "1" and re.fullmatch(r"[0-9a-f]+", st["cfd"])
    lines = n.status().splitlines()
    assert re.fullmatch(r"updated \d+ pid=%d node=julius" % n.proc.pid, lines[0])
    assert lines[1] == "self julius st=active rsc_hold=all maintenance=off stable=1"
    assert re.fullmatch(r"node caesar dead since=\d+ late=0 gen=0 kind=hb lates=0 st=dead "
                        r"stable=0 dt=\d+",
                        lines[3])
    assert lines[4].startswith("link caesar lo dead since=")
    assert re.fullmatch(r"group 2 julius running pref=caesar since=\d+ fails=0 key=Rsc::g2",
                        lines[6])
    assert any(re.fullmatch(r"why 2 \d+ starting running (taking groups 1,2: caesar is dead|"
                            r"communication up: taking all groups \(no live peer\))",
                            ln) for ln in lines), lines
    assert lines[-1].startswith("last ")
    n.wait_sent(r"^t=stonith node=caesar result=n_stnth$")
    log = n.logtext()
    assert "node caesar: dead (not heard within initdead 0.5 s)" in log
    assert "running Rsc g1 start" in log and "Rsc g1 start: started g1" in log
    code, line = n.check()
    assert (code, line.split(" | ")[0]) == (
        2, "HB CRITICAL - node caesar dead; link caesar lo dead")


def test_with_a_live_peer_standby_handshake_and_check_ok(node):
    n = node(initdead="3")
    n.peer = ("local", "2", "1")                     # caesar holds its own group
    n.start()
    n.wait(lambda: n.group(1) == ["julius", "running"] and n.group(2) == ["caesar", "running"],
           what="each its own")
    assert n.calls() == ["g1 status", "g1 start"]
    n.wait(lambda: n.check()[0] == 0, what="check OK")
    code, line = n.check()
    assert (code, line.split(" | ")[0]) == (0, "HB OK - julius: groups 1 on julius, 2 on caesar")
    runfiles.fifo_send(n.path("watch.fifo"), "standby all")
    n.wait_sent(r"^t=ask_resources rsc_hold=all info=me$")
    n.peer = ("local", "2", "0")                # a taker is in flux until it is done
    n.peer_says("t=ask_resources rsc_hold=all info=other")
    n.wait_sent(r"^t=ask_resources rsc_hold=all info=done$")
    assert n.calls()[-1] == "g1 stop"
    assert any(re.match(r"t=resource rsc_hold=none rtype=full isstable=0 info=standby", ln)
               for ln in n.sent)
    n.peer = ("all", "1,2", "0")
    n.wait(lambda: n.group(1) == ["caesar", "running"], what="caesar holds 1")
    n.peer = ("all", "1,2", "1")
    n.peer_says("t=ask_resources rsc_hold=all info=done")
    n.wait(lambda: n.check()[0] == 0, what="settled")
    assert "request: standby all" in n.logtext()


def test_sigterm_releases_and_says_shutdone(node):
    n = node(initdead="3")
    n.peer = ("none", "none", "1")
    n.start()
    n.wait(lambda: n.group(1) == ["julius", "running"], what="group 1")
    n.proc.send_signal(signal.SIGTERM)
    assert n.proc.wait(5) == 0
    assert n.calls()[-1] == "g1 stop"
    lines = n.fifo_lines()
    assert "t=resource rsc_hold=none rtype=full isstable=0 info=shutdown grps=1" in lines
    assert lines[-1] == "t=shutdone st=dead"
    st = runfiles.read_kv(n.path("state"))
    assert st["st"] == "dead" and st["grps"] == "none"
    assert "shut down: all groups released" in n.logtext()


def test_stdin_eof_releases_everything_then_exits(node):
    """No heartbeat of ours can go out again: the peer will take over a deadtime
    after the last one, so every group is stopped here first."""
    n = node().start()
    n.wait(lambda: n.group(1) == ["julius", "running"], what="group 1")
    n.stop_beats.set()
    with n.lock:
        n.proc.stdin.close()
    assert n.proc.wait(5) == 0
    assert "g1 stop" in n.calls()
    assert not os.path.exists(n.tmp / "g1.up")
    assert "stdin closed: no heartbeat of ours will be sent" in n.logtext()


def test_respawn_keeps_what_runs(node):
    n = node(initdead="3")
    n.peer = ("local", "2", "1")
    n.start()
    n.wait(lambda: n.group(1) == ["julius", "running"], what="group 1")
    n.proc.kill()
    n.proc.wait(5)
    n.stop_beats.set()
    n.beats.join()
    before = len(n.calls())
    n.stop_beats.clear()
    n.start()
    n.wait(lambda: "group 1: still running here: kept" in n.logtext(), what="recovery")
    steady(lambda: n.calls()[before:] == ["g1 status"], 0.5, lambda: n.calls()[before:])
    assert n.group(1) == ["julius", "running"]


def test_watchdog_is_fed_by_our_own_heartbeat(node, tmp_path):
    wd = str(tmp_path / "watchdog")
    os.mkfifo(wd)
    fd = os.open(wd, os.O_RDONLY | os.O_NONBLOCK)
    try:
        n = node(extra="watchdog %s\n" % wd).start()
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < deadline:
            try:
                got += os.read(fd, 100)
            except BlockingIOError:
                time.sleep(0.05)
        assert got[:5] == b"\0" * 5
        n.proc.send_signal(signal.SIGTERM)
        assert n.proc.wait(5) == 0             # what it wrote is in the fifo now
        try:
            rest = os.read(fd, 1000)
        except OSError as e:
            assert e.errno == errno.EAGAIN
            rest = b""
        assert rest.endswith(b"V")              # disarmed on an orderly stop
    finally:
        os.close(fd)


def test_sighup_applies_timings_and_moves_nothing(node):
    n = node(initdead="3")
    n.peer = ("local", "2", "1")
    n.start()
    n.wait(lambda: n.group(1) == ["julius", "running"], what="group 1")
    calls = n.calls()
    n.write_hacf(warntime="400ms")
    n.proc.send_signal(signal.SIGHUP)
    n.wait(lambda: "configuration re-read" in n.logtext(), what="re-read")
    steady(lambda: n.calls() == calls and n.proc.poll() is None, 0.3, n.logtext)
    n.write_hacf(extra="bogus 1\n")
    n.proc.send_signal(signal.SIGHUP)
    n.wait(lambda: "SIGHUP: keeping the running configuration" in n.logtext(), what="refusal")
    assert n.proc.poll() is None


def test_config_error_is_one_line_and_exit_6(node):
    n = node(extra="bogus 1\n")
    r = subprocess.run([BIN, "-c", n.conf, "-r", n.run, "--node", "julius"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 6 and r.stdout == ""
    assert re.fullmatch(r"\S+/ha\.cf:9: .*bogus.*\n", r.stderr), r.stderr


def test_maintenance_request_shows_in_status(node):
    n = node().start()
    n.wait(lambda: n.group(1) == ["julius", "running"], what="group 1")
    runfiles.fifo_send(n.path("watch.fifo"), "maintenance on 60")
    n.wait(lambda: "maintenance=on until=" in n.status(), what="maintenance in status")
    code, line = n.check()
    assert code == 2 and "maintenance mode" in line        # and caesar is dead
    runfiles.fifo_send(n.path("watch.fifo"), "maintenance off")
    n.wait(lambda: "maintenance=off" in n.status(), what="maintenance off")


STATUS = """\
updated {now} pid=1 node=julius
self julius st=active rsc_hold=local maintenance={maint}
node julius up since=1 late=0 gen=0 kind=self lates=0
node caesar {peer} since=1 late=0.01 gen=5 kind=hb lates={lates} cfd=same
link caesar eth0 up since=1
link caesar ttyS0 {link} since=1
group 1 {holder} {state} pref=julius since=1 fails=0 key=198.18.0.100
last 1 started
"""


@pytest.mark.parametrize("kw,code,text", [
    ({}, 0, "OK: julius: groups 1 on julius"),
    ({"link": "dead"}, 1, "WARNING: link caesar ttyS0 dead"),
    ({"lates": "3"}, 1, "WARNING: node caesar late 3 times in the last hour (worst 0.01 s)"),
    ({"state": "starting"}, 1, "WARNING: group 1 starting on julius"),
    ({"maint": "until=2000000000"}, 1, "WARNING: maintenance mode"),
    ({"peer": "dead"}, 2, "CRITICAL: node caesar dead"),
    ({"holder": "none", "state": "stopped"}, 2, "CRITICAL: group 1 held by nobody (stopped)"),
    ({"holder": "both"}, 2, "CRITICAL: group 1 held by both nodes"),
    ({"age": 15}, 1, r"WARNING: status is 1[56] s old \(pid 1\)"),
    ({"age": 40}, 2, r"CRITICAL: status is 4[01] s old \(pid 1\)"),
])
def test_check_codes(tmp_path, kw, code, text):
    f = dict(now=int(time.time()) - kw.get("age", 0), maint="off", peer="up", lates="0",
             link="up", holder="julius", state="running")
    f.update(kw)
    runfiles.write_atomic(str(tmp_path / "status"), STATUS.format(**f))
    r = subprocess.run([BIN, "--check", "-r", str(tmp_path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == code
    want = re.sub(r"^(OK|WARNING|CRITICAL|UNKNOWN): ", r"HB \1 - ", text)
    line, perf = r.stdout.rstrip("\n").split(" | ")
    assert line == want or re.fullmatch(want, line), r.stdout
    assert re.fullmatch(r"age=\d+s;10;30;0 late=[\d.]+s;;;0 links_up=\d;;;0;\d", perf), perf


def test_check_unknown(tmp_path):
    r = subprocess.run([BIN, "--check", "-r", str(tmp_path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 3
    assert r.stdout == "HB UNKNOWN - no status in %s/status: is hb-watch running?\n" % tmp_path
