"""One hb node in a lab host: its CONFDIR, RUNDIR and STATEDIR, its hb-supervise.

The node's files live in DIR (the lab's directory/NAME unless given): ha.d/ (ha.cf,
haresources, authkeys), run/, state/ (with Heartbeat's fifo), log/ha-log and the
supervisor's stderr.  With mount_log=True hb-supervise runs in a mount namespace of
its own where /var/log is DIR/log, so an ha.cf that says `logfile /var/log/ha-log`
(the one a Heartbeat node of the same test reads) logs there too.  Processes are
signalled by PID only: hb-supervise and the processes below it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from typing import TYPE_CHECKING, Callable

from hb import status as hbstatus

from . import wait
from .netns import Host, Lab, cat

if TYPE_CHECKING:
    from .pair import HbPair

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


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Node:
    """hb-supervise for node NAME in lab host `host` (see the module docstring)."""

    def __init__(self, lab: Lab, host: Host, name: str, dir: str | None = None,
                 tty: str | None = None, mount_log: bool = False,
                 pair: "HbPair | None" = None) -> None:
        self.lab, self.host, self.name, self.pair = lab, host, name, pair
        self.mount_log = mount_log
        self.dir = dir or os.path.join(lab.tmp, name)
        self.conf, self.run, self.state = (os.path.join(self.dir, d)
                                           for d in ("ha.d", "run", "state"))
        for d in (self.conf, self.state, os.path.join(self.dir, "log")):
            os.makedirs(d, exist_ok=True)
        self.tty = os.path.join(self.dir, "ttyS0")     # the same link name on every node
        if tty:
            os.symlink(tty, self.tty)
        self.logfile = os.path.join(self.dir, "log", "ha-log")
        self.errfile = os.path.join(self.dir, "stderr")
        self.proc: subprocess.Popen | None = None
        self.responder: subprocess.Popen | None = None

    def configure(self, cf: str, haresources: str, authkeys: str = AUTHKEYS) -> None:
        """ha.cf (with `logfile LOGFILE` first unless it says where to log; @TTY@ is
        the node's serial link), haresources, authkeys."""
        cf = cf.replace("@TTY@", self.tty)
        if not re.search(r"^\s*logfile\b", cf, re.M):
            cf = "logfile %s\n" % self.logfile + cf
        with open(os.path.join(self.conf, "ha.cf"), "w") as f:
            f.write(cf)
        with open(os.path.join(self.conf, "haresources"), "w") as f:
            f.write(haresources)
        path = os.path.join(self.conf, "authkeys")
        with open(path, "w") as f:
            f.write(authkeys)
        os.chmod(path, 0o600)

    # -- processes -----------------------------------------------------------

    def argv(self, *extra: str) -> list[str]:
        """hb-supervise's command line for this node."""
        return ["hb-supervise", "-c", self.conf, "-r", self.run, "-s", self.state,
                "--node", self.name, "--fifo", os.path.join(self.state, "fifo"), *extra]

    def respond(self, vip: str) -> None:
        """The probe responder for vip, answering with the node's name."""
        from . import probe
        self.responder = probe.responder(self.host, vip, self.name)

    def start(self) -> "Node":
        assert not self.running(), "%s already running" % self.name
        argv = self.argv()
        if self.mount_log:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$0" /var/log && exec "$@"',
                    os.path.join(self.dir, "log"), *argv]
        with open(self.errfile, "a") as err:
            self.proc = self.host.popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=err, stderr=subprocess.STDOUT)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """hb-supervise and every process below it."""
        return descendants(self.proc.pid) if self.running() and self.proc else []

    def children(self, pid: int | None = None) -> dict[str, int]:
        """hb-supervise's children (of pid if given) by program name:
        {'hb-beat': pid, 'hb-watch': pid, ...}."""
        if pid is None:
            if self.proc is None:
                return {}
            pid = self.proc.pid
        out = {}
        for kid in descendants(pid)[1:]:
            try:
                with open("/proc/%d/stat" % kid) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != pid:
                        continue
                with open("/proc/%d/cmdline" % kid, "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            for a in argv[:2]:
                base = os.path.basename(a.decode(errors="replace"))
                if base.startswith("hb-"):
                    out[base] = kid
                    break
        return out

    def wait_children(self, timeout: float = 10, old: dict[str, int] | None = None,
                      pid: int | None = None) -> dict[str, int]:
        """Until hb-beat and hb-watch run (and, given old, none has its old pid)."""
        found: dict[str, int] = {}

        def ready() -> bool:
            found.clear()
            found.update(self.children(pid))
            return {"hb-beat", "hb-watch"} <= set(found) and not any(
                found.get(k) == v for k, v in (old or {}).items())
        wait.until(ready, timeout, lambda: "%s: daemons not running: %r\n%s"
                   % (self.name, found, self.logtail()), step=0.01)
        return dict(found)

    def signal_all(self, sig: int) -> list[int]:
        """sig to hb-supervise and all its descendants (supervisor first)."""
        pids = self.pids()
        _signal(pids, sig)
        return pids

    def kill(self) -> None:
        """kill -9 of hb-supervise and every process below it together (a crash):
        all are stopped first, so none can act on the others' death."""
        pids = self.signal_all(signal.SIGSTOP)
        _signal(pids, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to hb-supervise (systemctl stop): its exit status.  One that does
        not stop within timeout is killed and the test fails."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("hb-supervise %s did not stop in %gs" % (self.name, timeout))

    def close(self) -> None:
        if self.running():
            self.kill()

    def power_loss(self) -> float:
        """Every process of the namespace frozen, every cable pulled, then every
        process killed (none can react in between); returns the time."""
        import time
        t = time.monotonic()
        from .netns import inside
        pids = inside(self.host.ns)
        _signal(pids, signal.SIGSTOP)
        assert self.pair is not None
        for iface in self.pair.ifaces():
            self.lab.cut(self.host, iface)
        self.pair.serial_stop()
        _signal(pids, signal.SIGKILL)
        return t

    def reboot(self) -> None:
        """After power_loss: no VIP, cables back, responder running, hb not yet started."""
        assert self.pair is not None
        if self.proc is not None:
            self.proc.wait(5)
            self.proc = None
        self.host.run(["ip", "addr", "del", self.pair.vip + "/24", "dev", "eth0"],
                      check=False)
        for iface in self.pair.ifaces():
            self.lab.mend(self.host, iface)
        self.pair.serial_start()
        self.respond(self.pair.vip)

    # -- links ------------------------------------------------------------------

    def cut(self, medium: str) -> None:
        """Pull the cable of one medium: eth0, eth1 or serial."""
        if medium == "serial":
            assert self.pair is not None
            self.pair.serial_stop()
        else:
            self.lab.cut(self.host, medium)

    def mend(self, medium: str) -> None:
        if medium == "serial":
            assert self.pair is not None
            self.pair.serial_start()
        else:
            self.lab.mend(self.host, medium)

    # -- what it says -------------------------------------------------------------

    def switch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """hb-switch ARGS -r RUNDIR (as the admin would run it on the node)."""
        return subprocess.run(["hb-switch", *args, "-r", self.run], capture_output=True,
                              text=True, timeout=timeout)

    def status_text(self) -> str:
        """RUNDIR/status as hb-watch last wrote it ('' before it did)."""
        return cat(os.path.join(self.run, "status"))

    def status(self) -> dict:
        """RUNDIR/status parsed (hb.status.parse): empty before it is written."""
        return hbstatus.parse(self.status_text())

    def holds(self) -> list[str]:
        """Indices of the groups this node's hb-watch says it runs."""
        return [g["index"] for g in self.status()["group"]
                if g.get("holder") == self.name and g.get("state") == "running"]

    def node(self, name: str) -> dict:
        """What the status file says of node `name` ({} if nothing)."""
        return next((n for n in self.status()["node"] if n.get("name") == name), {})

    def peer_status(self) -> str | None:
        assert self.pair is not None
        return self.node(self.pair.peer(self.name).name).get("status")

    def has_vip(self, vip: str | None = None) -> bool:
        return self.host.has_addr(vip or (self.pair.vip if self.pair else ""))

    def log(self) -> str:
        """The node's ha-log, then hb-supervise's stderr."""
        return cat(self.logfile, self.errfile)

    def logtail(self, n: int = 40) -> str:
        lines = self.log().splitlines()[-n:]
        return "\n".join("%s| %s" % (self.name, ln) for ln in lines)

    def wait_log(self, pattern: str, timeout: float = 10) -> re.Match:
        """Until the log matches the regex; fails with the log and the status file."""
        rx = re.compile(pattern)
        found: list[re.Match] = []

        def match() -> bool:
            m = rx.search(self.log())
            return bool(m and not found.append(m))
        wait.until(match, timeout, lambda: "hb %s: /%s/; log:\n%s\nstatus:\n%s" % (
            self.name, pattern, self.log()[-6000:], self.status_text()), step=0.05)
        return found[0]

    def wait(self, pred: Callable[[], object], timeout: float = 15, what: str = "") -> float:
        """Until pred() is true; returns time.monotonic() then (fails with the log)."""
        return wait.until(pred, timeout, lambda: "%s\n%s" % (what or pred, self.logtail()))
