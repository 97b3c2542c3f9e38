"""A pair of hb nodes, julius and caesar, in network namespaces with a client.

Used by demo/run and by the namespace tests of hb-supervise and hb-switch.
Each node has its own CONFDIR, RUNDIR and STATEDIR under the lab's directory,
a leg on the lab's bridge (198.18.0.1 and .2; the client is .10) and one end of
a socat serial pair; both media carry the heartbeats.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin")
for _p in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ["PYTHONPATH"] = os.path.join(ROOT, "lib") + (
    ":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ["PATH"] = BIN + ":" + os.environ.get("PATH", "/usr/bin:/bin")

from hb import runfiles, status  # noqa: E402

ADDRS = {"julius": "198.18.0.1/24", "caesar": "198.18.0.2/24"}
CLIENT = "198.18.0.10/24"
VIP = "198.18.0.100"
HARESOURCES = "julius %s/24/eth0\n" % VIP

HACF = """\
# {name}: written by demo/cluster.py
logfile {log}
keepalive {keepalive}
warntime {warntime}
deadtime {deadtime}
initdead {initdead}
udpport 694
baud 115200
serial {tty}
bcast eth0
auto_failback off
realtime {realtime}
node julius caesar
{extra}"""


class Node:
    """One hb node: its files, its hb-supervise, and what hb-watch says of it."""

    def __init__(self, pair: "Pair", name: str, tty: str) -> None:
        self.pair, self.name = pair, name
        self.host = pair.lab.host(name, ADDRS[name])
        self.dir = os.path.join(pair.lab.tmp, name)
        self.conf, self.run, self.state = (os.path.join(self.dir, d)
                                           for d in ("ha.d", "run", "state"))
        os.makedirs(self.conf, exist_ok=True)
        self.tty = os.path.join(self.dir, "ttyS0")     # same link name on both nodes
        os.symlink(tty, self.tty)
        self.log = os.path.join(self.dir, "ha-log")
        self.err = os.path.join(self.dir, "stderr")
        self.proc: subprocess.Popen | None = None

    def write_config(self, haresources: str, **timing: str) -> None:
        with open(os.path.join(self.conf, "ha.cf"), "w") as f:
            f.write(HACF.format(name=self.name, log=self.log, tty=self.tty, **timing))
        with open(os.path.join(self.conf, "haresources"), "w") as f:
            f.write(haresources)
        ak = os.path.join(self.conf, "authkeys")
        with open(ak, "w") as f:
            f.write("auth 1\n1 sha1 demo-%s\n" % self.pair.lab.id)
        os.chmod(ak, 0o600)

    def argv(self, *extra: str) -> list[str]:
        return [os.path.join(BIN, "hb-supervise"), "-c", self.conf, "-r", self.run,
                "-s", self.state, "--node", self.name,
                "--fifo", os.path.join(self.state, "fifo"), *extra]

    def start(self) -> "Node":
        with open(self.err, "a") as err:
            self.proc = self.host.popen(self.argv(), stdout=subprocess.DEVNULL, stderr=err)
        return self

    def children(self, pid: int | None = None) -> dict[str, int]:
        """hb-supervise's children by program name: {'hb-beat': pid, 'hb-watch': pid}."""
        pid = pid or (self.proc.pid if self.proc else None)
        if pid is None:
            return {}
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                pids = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return {}
        out = {}
        for pid in pids:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except FileNotFoundError:
                continue
            for a in argv[:2]:
                base = os.path.basename(a.decode())
                if base.startswith("hb-"):
                    out[base] = pid
                    break
        return out

    def wait_children(self, timeout: float = 10, old: dict[str, int] | None = None,
                      pid: int | None = None) -> dict:
        """Until both daemons run (and, given old, neither has its old pid)."""
        deadline = time.monotonic() + timeout
        while True:
            kids = self.children(pid)
            if {"hb-beat", "hb-watch"} <= set(kids) and not any(
                    kids[k] == v for k, v in (old or {}).items() if k in kids):
                return kids
            if time.monotonic() > deadline:
                raise AssertionError("%s: daemons not running: %r\n%s"
                                     % (self.name, kids, self.logtail()))
            time.sleep(0.01)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM to hb-supervise (an orderly stop); its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def crash(self) -> None:
        """kill -9 of hb-supervise, hb-beat and hb-watch, as if the box froze.

        The supervisor is stopped first so that it cannot respawn anything."""
        assert self.proc is not None
        kids = self.children()
        os.kill(self.proc.pid, signal.SIGSTOP)
        for pid in kids.values():
            os.kill(pid, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None

    def switch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(BIN, "hb-switch"), "-r", self.run, *args],
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict | None:
        text = runfiles.read_text(os.path.join(self.run, runfiles.STATUS))
        return status.parse(text) if text is not None else None

    def holds(self) -> list[str]:
        """Indices of the groups this node's hb-watch says it runs."""
        st = self.status() or {"group": []}
        return [g["index"] for g in st["group"]
                if g.get("holder") == self.name and g.get("state") == "running"]

    def node(self, name: str) -> dict:
        st = self.status() or {"node": []}
        return next((n for n in st["node"] if n.get("name") == name), {})

    def has_vip(self, vip: str = VIP) -> bool:
        return self.host.has_addr(vip)

    def logtail(self, n: int = 30) -> str:
        out = []
        for path in (self.log, self.err):
            try:
                with open(path, errors="replace") as f:
                    out += ["%s: %s" % (os.path.basename(path), ln.rstrip())
                            for ln in f.readlines()[-n:]]
            except FileNotFoundError:
                pass
        return "\n".join(out)


class Pair:
    """julius and caesar, with a client on the same bridge."""

    def __init__(self, lab, haresources: str = HARESOURCES, keepalive: str = "100ms",
                 warntime: str = "300ms", deadtime: str = "500ms", initdead: str = "1",
                 realtime: str = "on", extra: str = "") -> None:
        self.lab = lab
        a, b = lab.serial_pair()
        self.nodes = {"julius": Node(self, "julius", a), "caesar": Node(self, "caesar", b)}
        for n in self.nodes.values():
            n.write_config(haresources, keepalive=keepalive, warntime=warntime,
                           deadtime=deadtime, initdead=initdead, realtime=realtime,
                           extra=extra)
        self.client = lab.host("client", CLIENT)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self) -> "Pair":
        for n in self.nodes.values():
            n.start()
        return self

    def wait(self, pred, timeout: float = 15, what: str = "") -> float:
        """Until pred() is true; returns time.monotonic() then."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s\n%s" % (
                    what or pred, "\n".join(n.logtail() for n in self.nodes.values())))
            time.sleep(0.02)
        return time.monotonic()
