"""A pair of hb nodes and a client in namespaces, for failover scenarios and the bench.

alpha (198.18.0.1) and beta (198.18.0.2) share the lab bridge on eth0, which
carries the VIP (198.18.0.100) and, as configured, a UDP medium; the client
(198.18.0.10) probes the VIP from the same bridge.  Media (any of):
  ucast    ucast eth0 (both addresses listed, as on a real pair's shared ha.cf)
  bcast    bcast eth0
  eth1     ucast eth1 on a second bridge, 198.18.1.0/24
  serial   a socat pty pair (the same link name on both nodes)
Each node runs hb-supervise with its own CONFDIR, RUNDIR and STATEDIR in the
lab's directory and a responder (tests/probe.py) that answers for the VIP with
the node's name.  Processes are signalled by PID only: hb-supervise and its
descendants, or every process of the node's network namespace (power loss).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Sequence

import probe
from netns import Host, Lab, cat

VIP = "198.18.0.100"
NAMES = ("alpha", "beta")
ADDR = {"alpha": ("198.18.0.1", "198.18.1.1"), "beta": ("198.18.0.2", "198.18.1.2")}
CLIENT = "198.18.0.10/24"
AUTHKEYS = "auth 1\n1 sha1 pair-secret\n"


def descendants(pid: int) -> list[int]:
    """pid and every process below it (by /proc children lists)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


class Node:
    """One hb node: its files, its hb-supervise, its links."""

    def __init__(self, pair: "HbPair", name: str, tty: str | None) -> None:
        self.pair, self.name, self.lab = pair, name, pair.lab
        self.host: Host = self.lab.host(name, None)
        self.host.run(["ip", "addr", "add", ADDR[name][0] + "/24", "brd", "+", "dev", "eth0"])
        self.host.ifaces["eth0"] = ADDR[name][0] + "/24"
        if "eth1" in pair.media:
            self.lab.plug(self.host, "eth1", ADDR[name][1] + "/24", bridge="br1")
        self.dir = os.path.join(self.lab.tmp, name)
        self.conf, self.run, self.state = (os.path.join(self.dir, d)
                                           for d in ("ha.d", "run", "state"))
        for d in (self.conf, self.state):
            os.makedirs(d, exist_ok=True)
        self.tty = os.path.join(self.dir, "ttyS0")
        if tty:
            os.symlink(tty, self.tty)
        self.log = os.path.join(self.dir, "ha-log")
        self.err = os.path.join(self.dir, "stderr")
        self.proc: subprocess.Popen | None = None
        self.responder: subprocess.Popen | None = None

    def write_config(self, cf: str, haresources: str, authkeys: str = AUTHKEYS) -> None:
        with open(os.path.join(self.conf, "ha.cf"), "w") as f:
            f.write("logfile %s\n" % self.log + cf.replace("@TTY@", self.tty))
        with open(os.path.join(self.conf, "haresources"), "w") as f:
            f.write(haresources)
        path = os.path.join(self.conf, "authkeys")
        with open(path, "w") as f:
            f.write(authkeys)
        os.chmod(path, 0o600)

    # -- processes -----------------------------------------------------------

    def respond(self) -> None:
        self.responder = probe.responder(self.host, VIP, self.name)

    def start(self) -> "Node":
        assert not self.running(), "%s already running" % self.name
        with open(self.err, "a") as err:
            self.proc = self.host.popen(
                ["hb-supervise", "-c", self.conf, "-r", self.run, "-s", self.state,
                 "--node", self.name, "--fifo", os.path.join(self.state, "fifo")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """hb-supervise and every process below it."""
        return descendants(self.proc.pid) if self.running() else []

    def children(self) -> dict[str, int]:
        """{'hb-beat': pid, 'hb-watch': pid, ...} below hb-supervise."""
        out = {}
        for pid in self.pids()[1:]:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            for a in argv[:2]:
                base = os.path.basename(a.decode(errors="replace"))
                if base.startswith("hb-"):
                    out[base] = pid
                    break
        return out

    def wait_daemons(self, timeout: float = 10) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            kids = self.children()
            if {"hb-beat", "hb-watch"} <= set(kids):
                return kids
            if time.monotonic() > deadline:
                raise AssertionError("%s: daemons not running: %r\n%s"
                                     % (self.name, kids, self.logtail()))
            time.sleep(0.01)

    def signal_all(self, sig: int) -> list[int]:
        """sig to hb-supervise and all its descendants (supervisor first)."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def kill9(self) -> None:
        """kill -9 of every hb process of the node (stopped first, so none reacts)."""
        pids = self.signal_all(signal.SIGSTOP)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(5)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM to hb-supervise (systemctl stop); its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def power_loss(self) -> float:
        """Every process of the namespace frozen, every cable pulled, then every
        process killed (none can react in between); returns the time."""
        t = time.monotonic()
        out = subprocess.run(["ip", "netns", "pids", self.host.ns], text=True,
                             capture_output=True).stdout
        pids = [int(p) for p in out.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        for iface in self.pair.ifaces():
            self.lab.cut(self.host, iface)
        self.pair.serial_stop()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return t

    def reboot(self) -> None:
        """After power_loss: no VIP, cables back, responder running, hb not yet started."""
        if self.proc is not None:
            self.proc.wait(5)
            self.proc = None
        self.host.run(["ip", "addr", "del", VIP + "/24", "dev", "eth0"], check=False)
        for iface in self.pair.ifaces():
            self.lab.mend(self.host, iface)
        self.pair.serial_start()
        self.respond()

    # -- links ------------------------------------------------------------------

    def cut(self, medium: str) -> None:
        """Pull the cable of one medium: eth0, eth1 or serial."""
        if medium == "serial":
            self.pair.serial_stop()
        else:
            self.lab.cut(self.host, medium)

    def mend(self, medium: str) -> None:
        if medium == "serial":
            self.pair.serial_start()
        else:
            self.lab.mend(self.host, medium)

    # -- what it says -------------------------------------------------------------

    def switch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["hb-switch", *args, "-r", self.run], capture_output=True,
                              text=True, timeout=timeout)

    def status(self) -> dict:
        from hb import status
        try:
            with open(os.path.join(self.run, "status")) as f:
                return status.parse(f.read())
        except (FileNotFoundError, ImportError):
            return {"node": [], "group": [], "self": {}}

    def holds(self) -> list[str]:
        return [g["index"] for g in self.status()["group"]
                if g.get("holder") == self.name and g.get("state") == "running"]

    def peer_status(self) -> str | None:
        peer = self.pair.peer(self.name).name
        return next((n.get("status") for n in self.status()["node"]
                     if n.get("name") == peer), None)

    def has_vip(self) -> bool:
        return self.host.has_addr(VIP)

    def logtext(self) -> str:
        return cat(self.log, self.err)

    def logtail(self, n: int = 40) -> str:
        lines = self.logtext().splitlines()[-n:]
        return "\n".join("%s| %s" % (self.name, ln) for ln in lines)


class HbPair:
    """alpha and beta running hb, a client, responders; see the module docstring."""

    def __init__(self, lab: Lab, media: Sequence[str] = ("ucast",), keepalive: str = "100ms",
                 deadtime: str = "500ms", warntime: str | None = None, initdead: str = "1",
                 auto_failback: str = "off", realtime: str = "on", extra: str = "",
                 haresources: str | None = None) -> None:
        self.lab, self.media = lab, list(media)
        self.names = list(NAMES)
        self.socat: subprocess.Popen | None = None
        ttys: tuple[str | None, str | None] = (None, None)
        if "serial" in self.media:
            ttys = self._serial_pair()
        self.nodes = {n: Node(self, n, t) for n, t in zip(self.names, ttys)}
        self.client = lab.host("client", CLIENT)
        cf = hacf(self.names, self.media, keepalive, deadtime, warntime, initdead,
                  auto_failback, realtime, extra)
        res = haresources or "%s %s/24/eth0\n" % (self.names[0], VIP)
        for n in self.nodes.values():
            n.write_config(cf, res)
            n.respond()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def peer(self, name: str) -> Node:
        return self.nodes[self.names[1] if name == self.names[0] else self.names[0]]

    def ifaces(self) -> list[str]:
        return ["eth0"] + (["eth1"] if "eth1" in self.media else [])

    def _serial_pair(self) -> tuple[str, str]:
        a, b = self.lab.serial_pair()
        self.socat = self.lab.procs[-1]
        return a, b

    def serial_stop(self) -> None:
        """The serial cable pulled: socat stopped (its ptys stay, nothing flows)."""
        if self.socat is not None and self.socat.poll() is None:
            os.kill(self.socat.pid, signal.SIGSTOP)

    def serial_start(self) -> None:
        if self.socat is not None and self.socat.poll() is None:
            os.kill(self.socat.pid, signal.SIGCONT)

    def start(self, *names: str, gap: float = 0.0) -> "HbPair":
        for n in names or self.names:
            self.nodes[n].start()
            time.sleep(gap)
        return self

    def prober(self, duration: float = 120, **kw) -> probe.Prober:
        return probe.Prober(self.client, VIP, duration=duration, **kw)

    def wait(self, pred: Callable[[], object], timeout: float = 15, what: str = "") -> float:
        """Until pred() is true; returns time.monotonic() then."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %gs waiting for %s\n%s" % (
                    timeout, what or pred, self.logtail()))
            time.sleep(0.02)
        return time.monotonic()

    def wait_up(self, timeout: float = 15) -> float:
        """Until each node says the other is up."""
        return self.wait(lambda: all(n.peer_status() == "up" for n in self.nodes.values()),
                         timeout, "both nodes to see each other up")

    def logtail(self, n: int = 40) -> str:
        return "\n".join(x.logtail(n) for x in self.nodes.values())


def hacf(names: Sequence[str], media: Sequence[str], keepalive: str = "100ms",
         deadtime: str = "500ms", warntime: str | None = None, initdead: str = "1",
         auto_failback: str = "off", realtime: str = "on", extra: str = "") -> str:
    lines = ["keepalive %s" % keepalive, "deadtime %s" % deadtime]
    if warntime:
        lines.append("warntime %s" % warntime)
    lines += ["initdead %s" % initdead, "udpport 694"]
    for m in media:
        if m == "ucast":
            lines += ["ucast eth0 %s" % ADDR[n][0] for n in names]
        elif m == "bcast":
            lines.append("bcast eth0")
        elif m == "eth1":
            lines += ["ucast eth1 %s" % ADDR[n][1] for n in names]
        elif m == "serial":
            lines += ["baud 115200", "serial @TTY@"]
        else:
            raise ValueError("unknown medium %r" % m)
    lines += ["auto_failback %s" % auto_failback, "realtime %s" % realtime,
              "node %s" % " ".join(names)]
    return "\n".join(lines) + "\n" + extra
