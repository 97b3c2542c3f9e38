"""hb-beat between two namespaces: every medium alone and together, exactly once;
forged, replayed, unknown-node and garbage packets dropped and counted; a lost
packet recovered by NS_rexmit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

from hb import runfiles, wire

KEY = "s3cr3tKey"
A_IP, B_IP = "198.18.0.1", "198.18.0.2"


class Node:
    """One hb-beat with its own CONFDIR, RUNDIR and STATEDIR inside a namespace."""

    def __init__(self, lab, host, name: str, media: list[str], keepalive: str = "100ms",
                 authkeys: str = "auth 1\n1 sha1 %s\n" % KEY,
                 nodes: tuple[str, ...] = ("alpha", "beta")) -> None:
        self.lab, self.host, self.name = lab, host, name
        base = os.path.join(lab.tmp, name)
        self.conf, self.run, self.state = (os.path.join(base, d) for d in ("c", "r", "s"))
        for d in (self.conf, self.run, self.state):
            os.makedirs(d, exist_ok=True)
        hacf = ["keepalive %s" % keepalive, "deadtime 1", "warntime 500ms", "initdead 2",
                "udpport 694", "realtime off", "auto_failback on"]
        hacf += media + ["node %s" % n for n in nodes]
        with open(os.path.join(self.conf, "ha.cf"), "w") as f:
            f.write("\n".join(hacf) + "\n")
        open(os.path.join(self.conf, "haresources"), "w").close()
        ak = os.path.join(self.conf, "authkeys")
        with open(ak, "w") as f:
            f.write(authkeys)
        os.chmod(ak, 0o600)
        self.lines: list[dict] = []
        self.cond = threading.Condition()
        self.p: subprocess.Popen | None = None
        self.errfile = os.path.join(base, "stderr")

    def start(self, *extra: str) -> "Node":
        argv = ["hb-beat", "-c", self.conf, "-r", self.run, "-s", self.state,
                "--node", self.name, *extra]
        self.err = open(self.errfile, "w")
        self.p = self.host.popen(argv, stdout=subprocess.PIPE, stderr=self.err)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        return self

    def _read(self) -> None:
        assert self.p and self.p.stdout
        for raw in self.p.stdout:
            d = wire.parse_line(raw.decode("utf-8", "surrogateescape"))
            with self.cond:
                self.lines.append(d)
                self.cond.notify_all()

    def wait(self, pred, timeout: float = 5.0, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [d for d in self.lines if pred(d)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    with open(self.errfile) as f:
                        err = f.read()
                    raise AssertionError("%s: timed out; last lines %r; stderr %s"
                                         % (self.name, self.lines[-5:], err))
                self.cond.wait(left)

    def heard(self, src: str, **kw) -> list[dict]:
        with self.cond:
            return [d for d in self.lines if d.get("src") == src and d.get("_via") != "local"
                    and all(d.get(k) == v for k, v in kw.items())]

    def send(self, line: str) -> None:
        runfiles.fifo_send(os.path.join(self.run, "beat.fifo"), line)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.p
        self.lab.stop(self.p, sig)
        self.t.join(5)
        self.err.close()
        with open(self.errfile) as f:
            return self.p.returncode, f.read()


def counters(stderr: str) -> dict[str, int]:
    lines = [ln for ln in stderr.splitlines() if "counters:" in ln]
    assert lines, stderr
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


def pair(lab, media_a: list[str], media_b: list[str] | None = None, **kw):
    a = lab.host("a", A_IP + "/24")
    b = lab.host("b", B_IP + "/24")
    na = Node(lab, a, "alpha", media_a, **kw)
    nb = Node(lab, b, "beta", media_b if media_b is not None else media_a, **kw)
    return a, b, na, nb


def test_bcast_status_and_fifo(lab):
    a, b, na, nb = pair(lab, ["bcast eth0"])
    na.start()
    nb.start()
    nb.wait(lambda d: d.get("src") == "alpha" and d.get("t") == "status", count=3)
    na.wait(lambda d: d.get("src") == "beta" and d.get("t") == "status", count=3)
    mine = na.wait(lambda d: d.get("_via") == "local")[0]
    assert mine["_self"] == "1" and mine["st"] == "up" and mine["t"] == "status"
    na.send("t=resource rsc_hold=local info=hello%20world")
    got = nb.wait(lambda d: d.get("t") == "resource")[0]
    assert got["src"] == "alpha" and got["info"] == "hello world" and got["_via"] == "eth0"
    rc, err = na.stop()
    assert rc == 0, err
    nb.stop()
