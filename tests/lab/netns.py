"""Test networks: uniquely named namespaces, veth pairs, a bridge, serial ptys.

Everything made here is recorded and removed by Lab.close(), which the `lab`
fixture calls even when a test fails or the run is ended by SIGTERM or SIGHUP.
Addresses come from 198.18.0.0/15 only.  Processes are ended by PID, and only
those started through this module.
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
from typing import Iterable, Sequence

_counter = itertools.count()


def _unwind_on_termination() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so that a run
    ended that way (a CI job cancelled, a terminal closed, `kill PID`) closes its
    labs on the way out instead of leaving their namespaces behind.  Only where
    they are still at their default: a program's own handlers stay."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, signal.default_int_handler)


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
        _unwind_on_termination()
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
        """Every process of the lab ended, then its namespaces deleted, its files
        removed.  A process that survives, or a namespace that cannot be deleted,
        is an error (raised after the rest is cleaned up)."""
        errors: list[str] = []
        for p in reversed(self.procs):
            try:
                self.stop(p, signal.SIGTERM, timeout=3)
            except (OSError, subprocess.SubprocessError) as e:
                errors.append("pid %d: %s" % (p.pid, e))
        for ns in reversed(self.namespaces):
            errors += _delete(ns)
        r = subprocess.run(["rm", "-rf", self.tmp], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append("rm -rf %s: %s" % (self.tmp, r.stderr.strip()))
        self.procs, self.namespaces = [], []
        if errors:
            raise RuntimeError("lab %s cleanup: %s" % (self.id, "; ".join(errors)))

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _delete(ns: str) -> list[str]:
    """Kill every process of namespace ns, delete it, kill what forked meanwhile
    (Heartbeat's "shutdown restart" forks and calls setsid): an open descriptor on
    it keeps its inode ours until then, so nothing outside it is matched.  Returns
    what could not be done."""
    try:
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        net = netid(ns)
    except OSError as e:
        return ["%s: %s" % (ns, e)]
    try:
        alive = kill_all([net])
        if alive:
            return ["%s: processes %s survive SIGKILL" % (ns, alive)]
        r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if r.returncode != 0:
            return ["ip netns del %s: %s" % (ns, r.stderr.strip())]
        alive = kill_all([net])
        return ["%s: processes %s survive its deletion" % (ns, alive)] if alive else []
    finally:
        os.close(fd)


def netid(ns: str) -> str:
    """The link text /proc/PID/ns/net shows for a process in named namespace ns."""
    return "net:[%d]" % os.stat("/run/netns/" + ns).st_ino


def procs_in(net: Iterable[str], mnt: Iterable[str] | None = None) -> list[int]:
    """Live processes (zombies left out) whose network namespace is in `net` and,
    given `mnt`, whose mount namespace is in it (readlink /proc/PID/ns/{net,mnt}).
    A namespace's inode is reused once it is gone: pass only namespaces held open
    (by name or descriptor), so that no process of anyone else's can match."""
    net = set(net)
    mnts = set(mnt) if mnt is not None else None
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            hit = os.readlink("/proc/%s/ns/net" % d) in net and (
                mnts is None or os.readlink("/proc/%s/ns/mnt" % d) in mnts)
        except OSError:
            continue
        if hit and not _zombie(int(d)):
            out.append(int(d))
    return out


def kill_all(net: Iterable[str], mnt: Iterable[str] | None = None,
             timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of procs_in(net, mnt) until none is left (new ones
    forked meanwhile included); returns those still alive after timeout."""
    net = set(net)
    mnt = set(mnt) if mnt is not None else None
    deadline = time.monotonic() + timeout
    while True:
        alive = procs_in(net, mnt)
        if not alive or time.monotonic() > deadline:
            return alive
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def inside(ns: str) -> list[int]:
    """The PIDs of every live process whose network namespace is ns (daemons that
    re-exec'd themselves or called setsid included: `ip netns del` kills none)."""
    try:
        return procs_in([netid(ns)])
    except OSError:
        return []


def kill_inside(ns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in ns until none is left; returns those still alive
    after timeout (zombies do not count)."""
    try:
        return kill_all([netid(ns)], None, timeout)
    except OSError:
        return []


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
    return names, [p for n in names for p in inside(n)]


def describe(pid: int) -> str:
    """PID, parent, namespaces and command line of a process, for a report."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open("/proc/%d/stat" % pid) as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
        return "%d (parent %s, %s, %s): %s" % (
            pid, ppid, os.readlink("/proc/%d/ns/net" % pid),
            os.readlink("/proc/%d/ns/mnt" % pid), argv[:200])
    except (OSError, IndexError):
        return "%d (gone)" % pid


def session_leftovers() -> tuple[list[str], list[int]]:
    """What this process's labs left: namespaces still there (Lab ids start with
    hb<pid>) and the processes in them.  A lab's close() kills what its deleted
    namespaces held while it still held them; it fails otherwise."""
    import re
    mine = re.compile(r"hb%d[^0-9]" % (os.getpid() % 100000))
    names = [n for n in leftovers("hb")[0] if mine.match(n)]
    return names, [p for n in names for p in inside(n)]


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


def udp_ports(pid: int) -> set[int]:
    """The local UDP ports bound in the network namespace of process pid (IPv4 and
    IPv6): to wait until a listener started in a lab host is ready."""
    out = set()
    for name in ("udp", "udp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f)
                out |= {int(line.split()[1].rsplit(":", 1)[1], 16) for line in f}
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    return out
