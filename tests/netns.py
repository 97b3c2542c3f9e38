"""Test networks: uniquely named namespaces, veth pairs, a bridge, serial ptys.

Everything made here is recorded and removed by Lab.close(), which the `lab`
fixture calls even when a test fails.  Addresses come from 198.18.0.0/15 only.
Processes are ended by PID, and only those started through this module.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from typing import Sequence

_counter = itertools.count()


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


class Host:
    """A network namespace: run commands in it, start processes in it."""

    def __init__(self, lab: "Lab", name: str, ns: str) -> None:
        self.lab = lab
        self.name = name
        self.ns = ns
        self.ifaces: dict[str, str] = {}     # iface -> address/prefix

    def argv(self, cmd: Sequence[str] | str) -> list[str]:
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, cmd: Sequence[str] | str, check: bool = True,
            timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(cmd), check=check, text=True,
                              capture_output=True, timeout=timeout, **kw)

    def popen(self, cmd: Sequence[str] | str, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(self.argv(cmd), **kw)
        self.lab.procs.append(p)
        return p

    def addrs(self, iface: str = "eth0") -> str:
        return self.run(["ip", "-o", "addr", "show", "dev", iface]).stdout

    def has_addr(self, addr: str, iface: str | None = None) -> bool:
        cmd = ["ip", "-o", "addr", "show"] + (["dev", iface] if iface else [])
        out = self.run(cmd).stdout
        return any((" %s/" % addr) in line for line in out.splitlines())

    def link_down(self, iface: str = "eth0") -> None:
        self.run(["ip", "link", "set", iface, "down"])

    def link_up(self, iface: str = "eth0") -> None:
        self.run(["ip", "link", "set", iface, "up"])


class Lab:
    """A set of namespaces joined by one bridge (inside its own namespace)."""

    def __init__(self, tag: str = "t") -> None:
        self.id = "hb%d%s%d" % (os.getpid() % 100000, tag[:4], next(_counter))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.tmp = tempfile.mkdtemp(prefix=self.id + ".")
        self.hosts: dict[str, Host] = {}
        try:                    # a set-up that fails half-way leaves nothing behind
            self.sw = self._ns("sw")
            sh("ip", "netns", "exec", self.sw, "ip", "link", "add", "br0", "type", "bridge",
               "forward_delay", "0")
            sh("ip", "netns", "exec", self.sw, "ip", "link", "set", "br0", "up")
            sh("ip", "netns", "exec", self.sw, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        self._port = itertools.count()
        self.bridges = {"br0": 0}

    def _ns(self, suffix: str) -> str:
        ns = "%s-%s" % (self.id, suffix)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        return ns

    def bridge(self, name: str) -> str:
        """Another bridge in the switch namespace (e.g. a second medium)."""
        if name not in self.bridges:
            sh("ip", "netns", "exec", self.sw, "ip", "link", "add", name, "type", "bridge",
               "forward_delay", "0")
            sh("ip", "netns", "exec", self.sw, "ip", "link", "set", name, "up")
            self.bridges[name] = 0
        return name

    def host(self, name: str, addr: str | None = None, iface: str = "eth0",
             bridge: str = "br0") -> Host:
        """A namespace plugged into bridge with addr (e.g. '198.18.0.1/24') on iface."""
        if name not in self.hosts:
            self.hosts[name] = Host(self, name, self._ns(name))
        h = self.hosts[name]
        self.plug(h, iface, addr, bridge)
        return h

    def plug(self, h: Host, iface: str, addr: str | None, bridge: str = "br0") -> None:
        self.bridge(bridge)
        port = "p%d" % next(self._port)
        sh("ip", "link", "add", iface, "netns", h.ns, "type", "veth",
           "peer", "name", port, "netns", self.sw)
        sh("ip", "netns", "exec", self.sw, "ip", "link", "set", port, "master", bridge, "up")
        if addr:
            h.run(["ip", "addr", "add", addr, "dev", iface, "nodad"]
                  if ":" in addr else ["ip", "addr", "add", addr, "dev", iface])
            h.ifaces[iface] = addr
        h.run(["ip", "link", "set", iface, "up"])
        # the switch side port name, so tests can cut the cable from the switch
        h.ifaces.setdefault("port:" + iface, port)

    def cut(self, h: Host, iface: str = "eth0") -> None:
        """Pull the cable: the switch port goes down, the host sees carrier loss."""
        sh("ip", "netns", "exec", self.sw, "ip", "link", "set", h.ifaces["port:" + iface],
           "down")

    def mend(self, h: Host, iface: str = "eth0") -> None:
        sh("ip", "netns", "exec", self.sw, "ip", "link", "set", h.ifaces["port:" + iface], "up")

    def serial_pair(self) -> tuple[str, str]:
        """Two linked ptys (socat); returns their paths."""
        n = next(self._port)
        a = os.path.join(self.tmp, "ttyA%d" % n)
        b = os.path.join(self.tmp, "ttyB%d" % n)
        p = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=%s" % a, "pty,raw,echo=0,link=%s" % b],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 5
        while not (os.path.exists(a) and os.path.exists(b)):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("socat did not make the pty pair")
            time.sleep(0.01)
        return a, b

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
        """End a process this lab started (its whole session), by PID."""
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p, signal.SIGTERM, timeout=3)
            except Exception:
                pass
        for ns in reversed(self.namespaces):
            kill_inside(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", self.tmp])

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def inside(ns: str) -> list[int]:
    """The PIDs of every process whose network namespace is ns (daemons that
    re-exec'd themselves or called setsid included: `ip netns del` kills none)."""
    try:
        st = os.stat("/run/netns/" + ns)
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = os.stat("/proc/%s/ns/net" % d)
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                out.append(int(d))
    return out


def kill_inside(ns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in ns until none is left; returns those still alive
    after timeout (zombies whose parent is outside do not count)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in inside(ns) if not _zombie(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def leftovers(prefix: str) -> tuple[list[str], list[int]]:
    """Namespaces named prefix* still present, and processes alive in them."""
    try:
        names = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except FileNotFoundError:
        names = []
    return names, [p for n in names for p in inside(n) if not _zombie(p)]


class Holders(threading.Thread):
    """Which namespaces' kernels hold an address, sampled every 100 ms with
    `ip -n NS addr` (nodes: {name: namespace})."""

    def __init__(self, nodes: dict[str, str], addr: str, limit: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.nodes, self.addr, self.limit = nodes, addr, limit
        self.samples: list[tuple[float, frozenset]] = []
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        while not self.done.is_set() and time.monotonic() < end:
            t = time.monotonic()
            held = set()
            for name, ns in self.nodes.items():
                out = subprocess.run(["ip", "-n", ns, "-o", "addr", "show"],
                                     capture_output=True, text=True, timeout=5).stdout
                if " %s/" % self.addr in out:
                    held.add(name)
            self.samples.append((t, frozenset(held)))
            self.done.wait(max(0.0, t + 0.1 - time.monotonic()))

    def seen(self, names: set, since: float) -> bool:
        return any(t >= since and set(h) == names for t, h in self.samples)

    def since(self, t0: float) -> list[frozenset]:
        return [h for t, h in self.samples if t >= t0]

    def stop(self) -> list[tuple[float, frozenset]]:
        self.done.set()
        self.join(10)
        return self.samples


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def cat(*paths: str) -> str:
    """The text of the files one after the other; a missing file reads as empty."""
    out = ""
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                out += f.read()
        except FileNotFoundError:
            pass
    return out
