"""A real Debian Heartbeat 3.0.6 node inside a lab host, hb-supervise beside it, a tap.

Reference heartbeat-3.md §0.4: each node runs in the network namespace of its
lab host plus its own mount and UTS namespaces (`unshare --mount --uts`), with
a private /etc/ha.d (a copy of the package's, plus the test's three files),
/var/lib/heartbeat and a tmpfs on /run.  The daemon runs in the foreground and
logs to a plain file in the lab's directory, which the tests read.  Helper
commands (hb_standby, hb_takeover, cl_status) run inside the node's namespaces
through nsenter.  Processes are ended by PID: those in the node's own mount
namespace and its lab host's network namespace (so a master that re-executes
itself, forks and calls setsid is still found), so nothing outside the test is
touched.

Heartbeat only ever sees the interfaces of its lab host, so it cannot send a
packet outside the lab.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from typing import Sequence

import pytest

from .netns import Host, Lab, kill_all, netid, procs_in
from .node import Node

DAEMON = "/usr/libexec/heartbeat/heartbeat"
SHARE = "/usr/share/heartbeat"
AUTHKEYS = "auth 1\n1 sha1 s3cr3tKey\n"


def installed() -> bool:
    return os.access(DAEMON, os.X_OK)


def need_heartbeat() -> None:
    if not installed():
        pytest.skip("Debian's heartbeat package is not installed (make deps)")


def host(lab: Lab, name: str, addr: str, iface: str = "eth0", bridge: str = "br0") -> Host:
    """lab.host() whose IPv4 address has a broadcast address (`brd +`).

    Heartbeat's bcast medium sends to the interface's broadcast address; without
    one (plain `ip addr add A/N`) it sends to 0.0.0.0 and only hears itself."""
    h = lab.host(name, None, iface, bridge)
    h.run(["ip", "addr", "add", addr, "brd", "+", "dev", iface])
    h.ifaces[iface] = addr
    return h


# Each node's /var/log is a directory of its own (a bind mount in its own mount
# namespace), so both kinds of node read one and the same ha.cf.
LOGLINES = "logfile /var/log/ha-log\ndebugfile /var/log/ha-debug\nuse_logd no\n"


def hacf(nodes: Sequence[str], media: Sequence[str] = ("bcast eth0",),
         keepalive: str = "200ms", warntime: str = "600ms", deadtime: str = "1",
         initdead: str = "2", auto_failback: str = "on", extra: str = "") -> str:
    """An ha.cf, the same for both kinds of node (logging to /var/log/ha-log)."""
    lines = LOGLINES.splitlines()
    lines += ["keepalive %s" % keepalive, "warntime %s" % warntime,
              "deadtime %s" % deadtime, "initdead %s" % initdead, "udpport 694"]
    lines += list(media)
    lines += ["auto_failback %s" % auto_failback, "node %s" % " ".join(nodes)]
    return "\n".join(lines) + "\n" + extra


_SETUP = r"""
set -e
hostname "$HB_NAME"
mount --bind "$HB_DIR/ha.d" /etc/ha.d
mount --bind "$HB_DIR/lib" /var/lib/heartbeat
mount --bind "$HB_DIR/log" /var/log
mount -t tmpfs -o mode=0755 hbrun /run
mkdir -p /run/heartbeat/ccm /run/heartbeat/dopd /run/heartbeat/rsctmp \
         /run/resource-agents /run/lock /run/crm
chmod 1777 /run/lock
chown -R hacluster:haclient /run/heartbeat /run/crm
exec "$@"
"""


class HeartbeatNode:
    """One Heartbeat 3.0.6 daemon, node NAME, in lab host `host`."""

    def __init__(self, lab: Lab, host: Host, name: str, cf: str, haresources: str,
                 authkeys: str = AUTHKEYS, resource_scripts: dict[str, str] | None = None
                 ) -> None:
        self.lab = lab
        self.host = host
        self.name = name.lower()
        self.dir = os.path.join(lab.tmp, "heartbeat-" + self.name)
        self.logfile = os.path.join(self.dir, "log", "ha-log")
        self.debugfile = os.path.join(self.dir, "log", "ha-debug")
        self.proc: subprocess.Popen | None = None
        self.mntns: str | None = None
        self._make_dirs(cf, haresources, authkeys, resource_scripts or {})

    def _make_dirs(self, cf: str, haresources: str, authkeys: str,
                   scripts: dict[str, str]) -> None:
        etc = os.path.join(self.dir, "ha.d")
        if not os.path.isdir(etc):
            shutil.copytree("/etc/ha.d", etc, symlinks=True)
        lib = os.path.join(self.dir, "lib")
        os.makedirs(os.path.join(self.dir, "log"), mode=0o755, exist_ok=True)
        for d in ("", "cores", "cores/root", "cores/hacluster"):
            os.makedirs(os.path.join(lib, d), exist_ok=True)
            shutil.chown(os.path.join(lib, d), "hacluster", "haclient")
        os.chmod(self.dir, 0o755)
        self.configure(cf, haresources, authkeys)
        for name, text in scripts.items():
            path = os.path.join(etc, "resource.d", name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)

    def configure(self, cf: str, haresources: str, authkeys: str = AUTHKEYS) -> None:
        """Write ha.cf (with LOGLINES unless it says where to log), haresources,
        authkeys."""
        etc = os.path.join(self.dir, "ha.d")
        with open(os.path.join(etc, "ha.cf"), "w") as f:
            f.write(cf if re.search(r"^\s*logfile\b", cf, re.M) else LOGLINES + cf)
        with open(os.path.join(etc, "haresources"), "w") as f:
            f.write(haresources)
        path = os.path.join(etc, "authkeys")
        with open(path, "w") as f:
            f.write(authkeys)
        os.chmod(path, 0o600)

    # -- running ---------------------------------------------------------

    def start(self) -> "HeartbeatNode":
        assert not self.running(), "heartbeat %s already running" % self.name
        env = dict(os.environ, HB_NAME=self.name, HB_DIR=self.dir)
        argv = ["unshare", "--mount", "--uts", "--propagation", "private",
                "sh", "-c", _SETUP, "hb-setup", DAEMON, "-f"]
        self.stdio = open(os.path.join(self.dir, "stdio"), "ab")
        self.proc = self.host.popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    stdout=self.stdio, stderr=subprocess.STDOUT)
        own = os.readlink("/proc/self/ns/mnt")
        self.mntns = None                     # each start has a mount namespace of its own
        deadline = time.monotonic() + 30      # a loaded machine starts slowly
        while True:
            try:
                ns = os.readlink("/proc/%d/ns/mnt" % self.proc.pid)
                cmd = open("/proc/%d/cmdline" % self.proc.pid, "rb").read()
            except OSError:
                ns, cmd = own, b""
            if ns != own:                 # `ip netns exec`'s, then unshare's: the
                self.mntns = ns           # last is the daemon's
            if ns != own and b"sh\0-c" not in cmd and b"unshare" not in cmd:
                break
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError("heartbeat %s exited at once: %s"
                                   % (self.name, self.stdio_text()))
            if time.monotonic() > deadline:
                raise AssertionError("heartbeat %s: not started after 30 s: %s"
                                     % (self.name, self.stdio_text()))
            time.sleep(0.01)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        """The master control process (the daemon started in the foreground)."""
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """Every live process in this node's mount namespace (heartbeat, its children,
        and a master that re-executed itself after a "shutdown restart")."""
        return procs_in(*self._ns()) if self.mntns else []

    def _ns(self) -> tuple[list[str], list[str]]:
        """The node's network namespace (its lab host's, held by its name: its inode
        is ours) and mount namespace: a process in both is the node's."""
        try:
            return [netid(self.host.ns)], [self.mntns or ""]
        except OSError:                   # the lab is gone, and every process in it
            return [], []

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """kill -9 of every Heartbeat process of the node (a crash)."""
        self.signal_all(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)
        self._reap()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the master control process: Heartbeat's orderly shutdown."""
        if not self.running():
            self._reap()
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_all(signal.SIGKILL)
        self.proc.wait(5)
        self._reap()

    def _reap(self) -> None:
        """Every process of the node's mount namespace killed; one that survives is
        an error."""
        alive = kill_all(*self._ns()) if self.mntns else []
        if alive:
            raise RuntimeError("heartbeat %s: processes %s survive SIGKILL"
                               % (self.name, alive))

    def close(self) -> None:
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait(5)
            self._reap()
        finally:
            if getattr(self, "stdio", None):
                self.stdio.close()

    # -- inside the node -------------------------------------------------

    def nsenter(self, argv: Sequence[str], check: bool = False,
                timeout: float = 20) -> subprocess.CompletedProcess:
        """Run argv in the node's network, mount and UTS namespaces."""
        assert self.running(), "heartbeat %s is not running" % self.name
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-u", "-n", *argv],
                              check=check, text=True, capture_output=True, timeout=timeout)

    def hb_standby(self, what: str = "all") -> subprocess.CompletedProcess:
        return self.nsenter([SHARE + "/hb_standby", what], check=True)

    def hb_takeover(self, what: str = "all") -> subprocess.CompletedProcess:
        return self.nsenter([SHARE + "/hb_takeover", what], check=True)

    def cl_status(self, *args: str) -> subprocess.CompletedProcess:
        return self.nsenter(["/usr/bin/cl_status", *args])

    # -- the log ---------------------------------------------------------

    def log(self, since: int = 0) -> str:
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def debuglog(self) -> str:
        try:
            with open(self.debugfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """A position in the log, for `since=`."""
        try:
            return os.path.getsize(self.logfile)
        except FileNotFoundError:
            return 0

    def stdio_text(self) -> str:
        try:
            with open(os.path.join(self.dir, "stdio"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10, since: int = 0) -> re.Match:
        """Wait until the log (from `since`) matches the regex; fail with the log."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(since))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("heartbeat %s: no /%s/ in %.1fs; log:\n%s\n%s"
                                     % (self.name, pattern, timeout, self.log(since)[-6000:],
                                        self.stdio_text()[-2000:]))
            time.sleep(0.05)

    def wait_active(self, timeout: float = 15) -> None:
        """Until the node has settled its resources (comm up and acquisition done)."""
        self.wait_log(r"(Local|remote) [Rr]esource (acquisition|transition) completed|"
                      r"Initial resource acquisition complete", timeout)


class HbNode(Node):
    """hb-supervise for node NAME in lab host `host`, with its own CONF/RUN/STATE dirs,
    in a mount namespace of its own where /var/log is the node's log directory (so it
    reads the same ha.cf as a Heartbeat node: LOGLINES)."""

    def __init__(self, lab: Lab, host: Host, name: str, cf: str, haresources: str,
                 authkeys: str = AUTHKEYS) -> None:
        super().__init__(lab, host, name, os.path.join(lab.tmp, "hb-" + name),
                         mount_log=True)
        self.configure(cf, haresources, authkeys)

    def configure(self, cf: str, haresources: str, authkeys: str = AUTHKEYS) -> None:
        super().configure(cf if re.search(r"^\s*logfile\b", cf, re.M) else LOGLINES + cf,
                          haresources, authkeys)


class WireTap:
    """`hb-beat --listen` on a third host: every verified cluster message, for diagnosis.

    It listens as node `as_node` with that node's configuration (a copy of CONFDIR),
    so messages of that node come out marked _self=1.  It sends nothing."""

    def __init__(self, lab: Lab, host: Host, confdir: str, as_node: str) -> None:
        self.dir = os.path.join(lab.tmp, "tap-" + host.name)
        shutil.copytree(confdir, os.path.join(self.dir, "ha.d"), dirs_exist_ok=True)
        cf = os.path.join(self.dir, "ha.d", "ha.cf")
        with open(cf) as f:
            lines = [ln for ln in f if not re.match(r"\s*(logfile|debugfile)\b", ln)]
        with open(cf, "w") as f:
            f.writelines(lines)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        self.out = os.path.join(self.dir, "messages")
        self._f = open(self.out, "w")
        self.proc = host.popen(["hb-beat", "--listen", "-c", os.path.join(self.dir, "ha.d"),
                                "-s", os.path.join(self.dir, "state"), "--node", as_node],
                               stdout=self._f, stderr=subprocess.DEVNULL)

    def messages(self, skip_status: bool = True) -> list[str]:
        """The messages so far as lines, `t=status` ones left out unless asked."""
        from hb import lines
        out = []
        with open(self.out, errors="replace") as f:
            for line in f:
                d = lines.parse_line(line)
                if skip_status and d.get("t") == "status":
                    continue
                keep = {k: v for k, v in d.items()
                        if k not in ("srcuuid", "ld", "ttl", "hg", "ts", "_self", "_via")}
                out.append(" ".join("%s=%s" % kv for kv in keep.items()))
        return out


def close_all(nodes: Sequence["HeartbeatNode | Node"]) -> None:
    """Close every node; then raise the first error any of them raised."""
    errors = []
    for n in nodes:
        try:
            n.close()
        except Exception as e:           # reported below, after all are closed
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def heartbeat(lab):
    """Factory: heartbeat(host, name, cf, haresources) -> HeartbeatNode (not started).

    Every node is killed, by PID, before the lab is removed."""
    need_heartbeat()
    nodes: list[HeartbeatNode] = []

    def make(host: Host, name: str, cf: str, haresources: str, **kw) -> HeartbeatNode:
        n = HeartbeatNode(lab, host, name, cf, haresources, **kw)
        nodes.append(n)
        return n

    yield make
    close_all(nodes)


@pytest.fixture
def hbnode(lab):
    """Factory: hbnode(host, name, cf, haresources) -> HbNode (not started)."""
    nodes: list[HbNode] = []

    def make(host: Host, name: str, cf: str, haresources: str, **kw) -> HbNode:
        n = HbNode(lab, host, name, cf, haresources, **kw)
        nodes.append(n)
        return n

    yield make
    close_all(nodes)
