"""hb-beat as a user runs it: --help, errors, --send-once into --listen across two
namespaces, the generation file, RUNDIR/state in the heartbeat, a closed stdout
(its library part, station.Beat, with a fake clock: tests/unit/test_station.py)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import threading
import time

import pytest

from hb import lines, wire
from lab.wait import steady, until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin", "hb-beat")
KEY = "s3cr3tKey"


def confdir(base: str, name: str, media: str, key: str = KEY, extra: str = "") -> dict:
    d = {k: os.path.join(base, name, k) for k in ("c", "r", "s")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)
    with open(os.path.join(d["c"], "ha.cf"), "w") as f:
        f.write("keepalive 100ms\ndeadtime 2\nwarntime 1\ninitdead 4\nrealtime off\n"
                "%s\n%snode alpha\nnode beta\n" % (media, extra))
    open(os.path.join(d["c"], "haresources"), "w").close()
    ak = os.path.join(d["c"], "authkeys")
    with open(ak, "w") as f:
        f.write("auth 2\n2 md5 %s\n" % key)
    os.chmod(ak, 0o600)
    d["argv"] = ["-c", d["c"], "-r", d["r"], "-s", d["s"], "--node", name]
    return d


def readline(p: subprocess.Popen, timeout: float = 10.0):
    """One line of p's stdout; AssertionError when none comes within timeout (the
    reader thread ends when the lab kills p)."""
    got: list = []
    t = threading.Thread(target=lambda: got.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not got:
        raise AssertionError("no line from %s in %g s" % (p.args, timeout))
    return got[0]


def udp_bound(host, port: int = 694, drained: bool = False, timeout: float = 10.0) -> None:
    """Wait until a UDP socket of host is bound to port (drained: and holds no
    datagram unread)."""
    deadline = time.monotonic() + timeout
    while True:
        out = host.run(["ss", "-Hlun", "sport = :%d" % port]).stdout.split()
        if out and (not drained or out[1] == "0"):
            return
        if time.monotonic() > deadline:
            raise AssertionError("port %d: %r after %g s" % (port, out, timeout))
        time.sleep(0.02)


def udp_in(host) -> int:
    """Datagrams host's UDP has taken in (Udp InDatagrams of its namespace)."""
    rows = [ln.split() for ln in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
            if ln.startswith("Udp:")]
    return int(rows[1][rows[0].index("InDatagrams")])


def test_help_is_the_usage():
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    with open(os.path.join(ROOT, "lib", "hb", "beat.py")) as f:     # read, not imported
        doc = ast.get_docstring(ast.parse(f.read()))
    assert doc is not None and r.stdout.strip() == doc.strip()
    assert "--listen" in r.stdout and "--send-once" in r.stdout


def test_bad_usage_and_bad_config(tmp_path):
    r = subprocess.run([BIN, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    d = confdir(str(tmp_path), "alpha", "bcast eth0", extra="keepalive soon\n")
    r = subprocess.run([BIN, *d["argv"]], capture_output=True, text=True)
    assert r.returncode == 6 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(os.path.join(d["c"], "ha.cf") + ":")


def test_unwritable_statedir_is_fatal(tmp_path):
    d = confdir(str(tmp_path), "alpha", "bcast lo")
    open(os.path.join(str(tmp_path), "file"), "w").close()
    argv = d["argv"][:4] + ["-s", os.path.join(str(tmp_path), "file", "x"), "--node", "alpha"]
    r = subprocess.run([BIN, *argv, "--send-once"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith("hb-beat: fatal: unable to write ")


def test_send_once_heard_by_listen(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    db = confdir(lab.tmp, "beta", "bcast eth0")
    with open(os.path.join(da["r"], "state"), "w") as f:
        f.write("st=active\nrsc_hold=local\nhbv=1\ncfd=abc123\npings=2\n")
    listen = b.popen([BIN, *db["argv"], "--listen"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    udp_bound(b)
    for _ in range(2):
        r = a.run([BIN, *da["argv"], "--send-once"])
        assert r.returncode == 0 and r.stdout == "", r.stderr
    gen = open(os.path.join(da["s"], "generation")).read()
    assert len(gen) == 16 and gen.endswith("\n") and gen[0] == " "
    line1 = readline(listen)
    line2 = readline(listen)
    lab.stop(listen)
    assert listen.returncode == 0
    m1, m2 = lines.parse_line(line1), lines.parse_line(line2)
    assert list(m1)[:11] == ["t", "st", "dt", "rsc_hold", "hbv", "cfd", "pings", "src", "seq",
                             "hg", "ts"]
    assert list(m1)[11:] == ["ld", "ttl", "_via", "_rt"]
    assert (m1["t"], m1["st"], m1["dt"], m1["rsc_hold"], m1["src"], m1["seq"], m1["ttl"]) \
        == ("status", "active", "7d0", "local", "alpha", "1", "3")
    assert "protocol" not in m1 and "auth" not in m1 and m1["_via"] == "eth0"
    assert int(m2["hg"], 16) == int(m1["hg"], 16) + 1 == int(gen)
    assert not os.path.exists(os.path.join(db["s"], "generation"))


def test_listen_drops_wrong_key(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0", key="other")
    db = confdir(lab.tmp, "beta", "bcast eth0")
    listen = b.popen([BIN, *db["argv"], "--listen"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    udp_bound(b)
    assert a.run([BIN, *da["argv"], "--send-once"]).returncode == 0
    # then one with the right key: once it is printed, the first was dealt with
    good = confdir(os.path.join(lab.tmp, "good"), "alpha", "bcast eth0")
    assert a.run([BIN, *good["argv"], "--send-once"]).returncode == 0
    assert lines.parse_line(readline(listen))["src"] == "alpha"
    lab.stop(listen)
    out, err = listen.communicate(timeout=10)
    assert out == ""
    assert "auth=1" in err and "accepted=1" in err


def test_closed_stdout_ends_cleanly(lab):
    a = lab.host("a", "198.18.0.1/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    t = time.monotonic()
    run = [*da["argv"], "--fifo", "none"]
    r = a.run("%s %s | head -n 3" % (BIN, " ".join(run)), timeout=10)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3
    assert time.monotonic() - t < 5
    p = a.popen([BIN, *run], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    readline(p)
    p.stdout.close()                     # reader gone while hb-beat waits
    assert p.wait(3) == 0


def test_sigterm_and_realtime(lab):
    a = lab.host("a", "198.18.0.1/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0", extra="realtime on\n")
    p = a.popen([BIN, *da["argv"], "--fifo", "none"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    offer = lines.parse_line(readline(p))     # RUNDIR/heard offered to hb-watch first
    assert lines.heard_slots(offer)[:2] == [("alpha", "local"), ("alpha", "eth0")], offer
    assert offer["file"] == os.path.join(da["r"], "heard") and os.path.isfile(offer["file"])
    first = lines.parse_line(readline(p))
    assert first["_via"] == "local" and first["_self"] == "1" and first["st"] == "init"
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=5)
    assert p.returncode == 0
    assert len([ln for ln in err.splitlines() if "realtime" in ln]) <= 1
    assert os.path.exists(os.path.join(da["r"], "beat.fifo"))


def chrt(pid: int) -> tuple[str, int]:
    """(policy, priority) of a running process, as chrt -p reports them."""
    out = subprocess.run(["chrt", "-p", str(pid)], capture_output=True, text=True,
                         check=True).stdout
    policy = out.split("policy:")[1].split()[0]
    return policy, int(out.split("priority:")[1].split()[0])


@pytest.mark.parametrize("extra, want", [
    ("realtime on\nrtprio 7\n", ("SCHED_RR", 7)),
    ("realtime on\n", ("SCHED_RR", 1)),
    ("rtprio 7\n", ("SCHED_OTHER", 0)),
])
def test_rtprio_is_the_sched_rr_priority(lab, extra, want):
    a = lab.host("a", "198.18.0.1/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0", extra=extra)
    p = a.popen([BIN, *da["argv"], "--fifo", "none"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    readline(p)                     # running: it has sent its first heartbeat
    assert chrt(p.pid) == want
    if want[0] == "SCHED_RR":               # SIGHUP applies a new rtprio
        hacf = os.path.join(da["c"], "ha.cf")
        text = open(hacf).read().replace("rtprio 7\n", "")
        with open(hacf, "w") as f:
            f.write(text + "rtprio 42\n")
        os.kill(p.pid, signal.SIGHUP)
        deadline = time.monotonic() + 3
        while chrt(p.pid) != ("SCHED_RR", 42) and time.monotonic() < deadline:
            readline(p)
        assert chrt(p.pid) == ("SCHED_RR", 42)
    lab.stop(p)
    assert p.returncode == 0
    assert "realtime refused" not in p.communicate(timeout=10)[1]


def test_sighup_rereads_config_and_sigusr1_logs_counters(lab):
    a = lab.host("a", "198.18.0.1/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    err = os.path.join(lab.tmp, "err")
    with open(err, "w") as ef:
        p = a.popen([BIN, *da["argv"], "--fifo", "none"],
                    stdout=subprocess.PIPE, stderr=ef, text=True)
    assert p.stdout is not None

    def interval(n: int = 6) -> float:
        ts = []
        while len(ts) < n:
            d = lines.parse_line(readline(p))
            if d.get("_via") == "local":
                ts.append(float(d["_rt"]))
        return (ts[-1] - ts[0]) / (n - 1)

    assert abs(interval() - 0.1) < 0.03
    hacf = os.path.join(da["c"], "ha.cf")
    text = open(hacf).read()
    with open(hacf, "w") as f:
        f.write(text.replace("keepalive 100ms", "keepalive 20ms"))
    os.kill(p.pid, signal.SIGHUP)
    interval(10)
    assert abs(interval(20) - 0.02) < 0.01
    with open(hacf, "w") as f:
        f.write(text.replace("keepalive 100ms", "keepalive never"))
    os.kill(p.pid, signal.SIGHUP)
    os.kill(p.pid, signal.SIGUSR1)
    assert abs(interval(20) - 0.02) < 0.01
    lab.stop(p)
    assert p.returncode == 0
    log = open(err).read()
    assert "SIGHUP: configuration reloaded" in log
    assert "SIGHUP: configuration not reloaded: %s:" % hacf in log
    assert len([ln for ln in log.splitlines() if "counters:" in ln]) == 2   # USR1, exit


SEND = ("import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for h in sys.argv[2:]:\n"
        "    s.sendto(bytes.fromhex(h), (sys.argv[1], 694))\n")


def beta_status(seq: int, gen: int = 7) -> bytes:
    return wire.render_classic(
        [("t", 0, "status"), ("st", 0, "up"), ("src", 0, "beta"), ("seq", 0, "%x" % seq),
         ("hg", 0, "%x" % gen), ("ts", 0, "6b060ac0"), ("ttl", 0, "3")], 2, "md5", KEY.encode())


def test_highwater_survives_restart_and_a_write_failure(lab):
    """STATEDIR/highwater: beta's messages accepted before a restart of hb-beat are
    replays after it; beta's next message and a new generation are accepted at
    once; a file that cannot be written is logged once and hb-beat goes on."""
    import sys
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    da = confdir(lab.tmp, "alpha", "ucast eth0 198.18.0.2")
    err = os.path.join(lab.tmp, "err")

    def start():
        with open(err, "a") as ef:
            return a.popen([BIN, *da["argv"], "--stats", "0"], stdout=subprocess.PIPE,
                           stderr=ef, text=True)

    def send(*pkts: bytes) -> None:
        b.run([sys.executable, "-c", SEND, "198.18.0.1", *(p.hex() for p in pkts)])

    def heard(p, want: int, timeout: float = 5.0) -> list[str]:
        """beta's seqs printed until `want` of them (fails after the deadline)."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            d = lines.parse_line(readline(p, max(0.01, deadline - time.monotonic())))
            if d.get("src") == "beta":
                got.append(d.get("seq", "") + "/" + d.get("hg", ""))
        return got

    p = start()
    udp_bound(a)
    send(*(beta_status(s) for s in range(1, 6)))
    assert heard(p, 5) == ["%x/7" % s for s in range(1, 6)]
    lab.stop(p)
    hw = os.path.join(da["s"], "highwater")
    assert [ln for ln in open(hw).read().splitlines()[1:] if ln.strip()] == ["beta 7 5 6b060ac0"]
    p = start()
    udp_bound(a)
    send(*(beta_status(s) for s in range(1, 6)))           # captured before: replays
    send(beta_status(9))                                    # beta went on meanwhile
    assert heard(p, 1) == ["9/7"]
    send(beta_status(2, gen=8))                             # beta restarted
    assert heard(p, 1) == ["2/8"]
    os.rename(hw, hw + ".old")
    os.mkdir(hw)                                            # rename(2) onto it fails
    send(beta_status(3, gen=8), beta_status(4, gen=8))
    assert heard(p, 2) == ["3/8", "4/8"]

    def unable() -> int:
        return open(err).read().count("unable to write %s" % hw)
    until(lambda: unable() == 1, 10, "the failed write logged")
    steady(lambda: unable() == 1, 2.5, "logged once, over a few tries to write it")
    send(beta_status(5, gen=8))
    assert heard(p, 1) == ["5/8"]
    assert p.poll() is None
    lab.stop(p)
    assert p.returncode == 0
    log = open(err).read()
    assert len([ln for ln in log.splitlines() if "unable to write %s" % hw in ln]) == 1, log
    assert "high-water marks of beta 7:5 restored" in log
    last = [ln for ln in log.splitlines() if "counters:" in ln][-1]
    assert " replay=5 " in last, last
    assert not [f for f in os.listdir(da["s"]) if "tmp" in f]
