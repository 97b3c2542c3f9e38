"""Resource agents: lookup, calling convention, and running a group off the loop.

Lookup as DESIGN.md says: CONFDIR/resource.d/NAME, then the built-ins (IPaddr,
IPaddr2 -> hb.address.run_agent; MailTo -> hb.mail.run_agent), then
/etc/init.d/NAME.  A forked agent is called `PATH arg... ACTION` with a timeout;
its `status` is judged from its output as Heartbeat does (reference §2.2), every
other action by its exit status.  It is waited on until it exits, not until its
output reaches EOF: a daemon it started in the background may keep that output
open for ever (DRAIN reads it from then on).  A timeout kills its process group.
Built-ins run in-process.  Each group action runs in its own worker thread;
results come back to the caller's loop through a pipe (Runner.fileno/collect).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import select
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from hb import exits
from hb.settings import Group, Resource

log = logging.getLogger("hb")

INITD = "/etc/init.d"
BUILTINS = {"IPaddr": "address", "IPaddr2": "address", "MailTo": "mail"}
TIMEOUT = 60.0
OUTPUT_LIMIT = 65536   # bytes of an agent's output kept (and logged from)
_NOT_RUNNING = re.compile(r"[Nn][Oo][Tt] *[Rr]unning")
_RUNNING = re.compile(r"[Rr]unning|OK")


def judge_status(text: str) -> bool:
    """Heartbeat's rule: 'not running' -> no; 'running' or 'OK' -> yes; else no."""
    if _NOT_RUNNING.search(text):
        return False
    return bool(_RUNNING.search(text))


class Token:
    """Cancellation of a built-in call: set under lock once its caller gave up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = False


class Drain:
    """Reads and discards what the daemons a script left behind write to the stdout
    they inherited, until they close it: they neither block on a full pipe nor die
    of SIGPIPE, and no buffer grows.  One thread for all of them, started on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sel: selectors.DefaultSelector | None = None
        self.rfd = self.wfd = -1

    def add(self, fd: int) -> None:
        with self.lock:
            if self.sel is None:
                self.sel = selectors.DefaultSelector()
                self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self.sel.register(self.rfd, selectors.EVENT_READ)
                threading.Thread(target=self._run, daemon=True, name="agent-drain").start()
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ)
        try:
            os.write(self.wfd, b"x")          # the thread selects on the new set
        except BlockingIOError:
            pass

    def count(self) -> int:
        with self.lock:
            return len(self.sel.get_map()) - 1 if self.sel is not None else 0

    def _run(self) -> None:
        assert self.sel is not None
        while True:
            for key, _ in self.sel.select():
                fd = key.fd
                try:
                    while os.read(fd, 65536):
                        pass
                except BlockingIOError:
                    continue                  # still open: read again when it writes
                except OSError:
                    pass
                with self.lock:               # EOF: every writer has gone
                    self.sel.unregister(fd)
                os.close(fd)


DRAIN = Drain()


def collect(p: subprocess.Popen, fd: int, timeout: float,
            limit: int = OUTPUT_LIMIT) -> tuple[bytes, int | None]:
    """Wait for p's exit (not for EOF on its output), reading fd meanwhile.

    Returns (its first `limit` bytes of output, exit status), or status None when
    it ran past timeout: then its whole process group is killed.  The output is
    what was written by the time it exited; a child that keeps the pipe (a daemon
    started with `&`) is left to DRAIN, which owns fd from then on."""
    out = bytearray()
    os.set_blocking(fd, False)
    try:
        pidfd: int | None = os.pidfd_open(p.pid)
    except (AttributeError, OSError):
        pidfd = None                         # old kernel: poll the exit every 50 ms
    deadline = time.monotonic() + timeout
    eof = False
    rc: int | None = None

    def read() -> None:
        nonlocal eof
        try:
            for _ in range(16):               # at most 1 MiB a call: a writer that never
                chunk = os.read(fd, 65536)    # pauses (`yes &`) cannot hold us here
                if not chunk:
                    eof = True
                    return
                if len(out) < limit:
                    out.extend(chunk[:limit - len(out)])
        except BlockingIOError:
            pass
    try:
        while True:
            rc = p.poll()
            if rc is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            fds = [] if eof else [fd]
            if pidfd is not None:
                fds.append(pidfd)
            r, _, _ = select.select(fds, [], [], left if pidfd is not None
                                    else min(left, 0.05))
            if fd in r:
                read()
        if rc is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(5.0)                   # not for ever: a process stuck in the kernel
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) survives SIGKILL", p.args[0], p.pid)
        if not eof:
            read()                            # what it wrote before it exited
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if eof:
        os.close(fd)
    else:
        DRAIN.add(fd)
    return bytes(out), rc


@dataclass
class Agent:
    """How to call one resource: a program to fork, or a built-in function."""
    name: str
    path: str | None = None          # forked
    module: str | None = None        # built-in: hb.<module>.run_agent

    @property
    def builtin(self) -> bool:
        return self.module is not None


def lookup(name: str, confdir: str, initd: str = INITD) -> Agent | None:
    p = os.path.join(confdir, "resource.d", name)
    if os.path.isfile(p) and os.access(p, os.X_OK):
        return Agent(name, path=p)
    if name in BUILTINS:
        return Agent(name, module=BUILTINS[name])
    p = os.path.join(initd, name)
    if os.path.isfile(p) and os.access(p, os.X_OK):
        return Agent(name, path=p)
    return None


def preload(groups: list[Group], confdir: str, pings: list[str] | None = None) -> list[str]:
    """Import the built-ins the groups use, once, at start; returns problems.
    pings: the ping nodes' addresses, for the neighbour check after a takeover."""
    problems = []
    for m in sorted({a.module for g in groups for r in g.resources
                     for a in [lookup(r.name, confdir)] if a and a.module}):
        try:
            _import(m)
        except Exception as e:       # a broken optional module must not stop hb-watch
            problems.append("built-in agent module hb.%s: %s" % (m, e))
            continue
        if m == "address":           # takeover = one netlink call + one ARP: pay the rest now
            from hb import address
            texts = []
            for g in groups:
                for r in g.resources:
                    ag = lookup(r.name, confdir)
                    if r.args and ag and ag.module == "address":
                        texts.append(r.args[0])
            problems += ["cannot prepare %s" % p for p in address.warm(texts, pings)]
    return problems


def _import(module: str) -> None:
    """Import a built-in's module.  Here, not at the top: hb-supervise (through
    precheck) and an hb-watch whose groups hold no address or mail need neither."""
    if module == "address":
        from hb import address  # noqa: F401
    elif module == "mail":
        from hb import mail  # noqa: F401
    else:
        raise ImportError("no built-in module hb.%s" % module)


def address_start(text: str, agent: str = "IPaddr2") -> tuple[int, str]:
    """Start an address without the duplicate-address probe: hb-watch starts a group
    only once no live peer advertises it, and a peer whose daemons died while its
    kernel still holds the address must not keep it unmanaged (the split-brain rule
    settles it when that peer's hb-watch comes back).  Announced as the agent
    named does; the neighbours are then checked in the background."""
    from hb import address, addrspec    # imported by _import already: no cost
    try:
        spec = addrspec.parse(text, agent)
        spec.dad = False
        return exits.OK, address.start(spec, "thread", confirm=True)
    except Exception as e:
        return exits.FAIL, "start %s: %s" % (text, e)


class Caller:
    """Calls one resource action and says (rc, output); blocking, for worker threads."""

    def __init__(self, confdir: str, node: str, rundir: str, statedir: str,
                 timeout: float = TIMEOUT, initd: str = INITD,
                 env: dict[str, str] | None = None) -> None:
        self.confdir, self.node, self.rundir, self.statedir = confdir, node, rundir, statedir
        self.timeout = timeout
        self.initd = initd
        self.env = dict(os.environ, HA_CURHOST=node, HA_DIR=confdir)
        self.env.update(env or {})
        self._stuck: dict[tuple, threading.Thread] = {}     # built-in calls past timeout
        self._stuck_lock = threading.Lock()
        self.local = threading.local()      # .extra: this thread's calls' added variables

    def describe(self, r: Resource, action: str) -> str:
        return " ".join([r.name, *r.args, action]).rstrip()

    def call(self, r: Resource, action: str) -> tuple[int, str]:
        a = lookup(r.name, self.confdir, self.initd)
        if a is None:
            return exits.LSB_UNKNOWN if action == "status" else exits.FAIL, \
                "cannot locate resource script %s" % r.name
        if a.builtin:
            return self._builtin(a, r, action)
        return self._fork(a, r, action)

    def _builtin(self, a: Agent, r: Resource, action: str) -> tuple[int, str]:
        """Run a built-in in a thread of its own, waited on for the timeout.

        A call that timed out is cancelled: if it has not acted yet it never will
        (the token is checked before acting), and a start that completes late is
        undone at once (its resource stopped), so that a group given up stays given
        up.  While such a call is still stuck, the same resource is not called again
        (a hung netlink or mail call costs one thread, not one per monitor interval)."""
        try:
            _import(a.module)
        except Exception as e:
            return exits.FAIL, "built-in %s unavailable: %s" % (a.name, e)
        key = (a.module, tuple(r.args))
        with self._stuck_lock:
            old = self._stuck.get(key)
            if old is not None and old.is_alive():
                return exits.FAIL, "an earlier call of %s has not returned yet" % a.name
            self._stuck.pop(key, None)
        token = Token()
        box: list = []

        def act(what: str) -> tuple[int, str]:
            if a.module == "mail":
                from hb import mail     # imported by _import already: no cost
                return mail.run_agent(list(r.args), what, self.node, self.rundir,
                                      self.statedir, confdir=self.confdir)
            from hb import address      # imported by _import already: no cost
            if what == "start" and len(r.args) == 1:
                return address_start(r.args[0], r.name)
            return address.run_agent(list(r.args), what, r.name)

        def work() -> None:
            try:
                if token.cancelled:           # timed out before it began: never act
                    return
                res = act(action)
            except Exception as e:
                res = (exits.FAIL, "%s: %s" % (type(e).__name__, e))
            with token.lock:
                if not token.cancelled:
                    box.append(res)
                    return
            if action == "start" and res[0] == exits.OK:
                log.error("%s start completed after its timeout: stopping it again",
                          self.describe(r, ""))
                try:
                    act("stop")
                except Exception as e:
                    log.error("%s stop: %s: %s", self.describe(r, ""), type(e).__name__, e)
        t = threading.Thread(target=work, daemon=True, name="agent-" + a.name)
        t.start()
        t.join(self.timeout)
        with token.lock:
            if not box:
                token.cancelled = True
        if token.cancelled:
            with self._stuck_lock:
                self._stuck[key] = t
            return exits.FAIL, "timed out after %g s" % self.timeout
        rc, text = box[0]
        return rc, text or ""

    def _fork(self, a: Agent, r: Resource, action: str) -> tuple[int, str]:
        argv = [a.path, *r.args, action]
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=self.call_env(action), cwd="/")
        except OSError as e:
            return exits.FAIL, "cannot run %s: %s" % (a.path, e.strerror)
        assert p.stdout is not None
        fd = os.dup(p.stdout.fileno())
        p.stdout.close()
        out, rc = collect(p, fd, self.timeout)
        text = out.decode("utf-8", "replace")
        if rc is None:
            return exits.FAIL, (text.rstrip("\n") + "\n" if text else "") + \
                "timed out after %g s" % self.timeout
        if action == "status":        # Heartbeat judges status by its text
            return (exits.OK if judge_status(text) else exits.LSB_NOT_RUNNING), text
        return rc, text

    def call_env(self, action: str = "status") -> dict[str, str]:
        """The agent's environment; this thread's added variables (HA_DONTASK) only
        for status probes, as Heartbeat's req_resource probes with it and its
        ResourceManager takegroup starts without it."""
        extra = getattr(self.local, "extra", None)
        return dict(self.env, **extra) if extra and action == "status" else self.env

    def running(self, r: Resource) -> bool:
        rc, _ = self.logged(r, "status")
        return rc == 0

    def logged(self, r: Resource, action: str) -> tuple[int, str]:
        what = self.describe(r, action)
        log.info("running %s", what)
        t0 = time.monotonic()
        rc, text = self.call(r, action)
        for line in text.strip().splitlines()[:20]:
            log.info("%s: %s", what, line.rstrip())
        lvl = logging.INFO if rc == 0 or action == "status" else logging.ERROR
        log.log(lvl, "%s: exit %d in %.3f s", what, rc, time.monotonic() - t0)
        return rc, text

    def group(self, g: Group, action: str) -> int:
        """One group action: 0 success; for status 0 all running, 3 none, 1 some."""
        rs = g.resources
        if action == "start":
            started: list[Resource] = []
            for r in rs:
                a = lookup(r.name, self.confdir, self.initd)
                if a is not None and not a.builtin and self.running(r):
                    started.append(r)
                    continue
                rc, _ = self.logged(r, "start")
                if rc != 0:
                    log.error("group %d: giving up: %s failed to start", g.index,
                              self.describe(r, ""))
                    for s in reversed(started):
                        self.logged(s, "stop")
                    return exits.FAIL
                started.append(r)
            return exits.OK
        if action == "stop":
            bad = 0
            for r in reversed(rs):
                rc, _ = self.logged(r, "stop")
                bad = bad or rc
            return exits.FAIL if bad else exits.OK
        if action in ("status", "monitor"):
            up = [self.running(r) for r in rs]
            return exits.OK if all(up) else exits.LSB_NOT_RUNNING if not any(up) else exits.FAIL
        return exits.OCF_ERR_UNIMPLEMENTED


class Mailbox:
    """Results posted by worker threads, woken for through a pipe the loop selects on."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.done: collections.deque = collections.deque()

    def fileno(self) -> int:
        return self.rfd

    def post(self, item: tuple) -> None:
        self.done.append(item)
        try:
            os.write(self.wfd, b"x")
        except OSError:          # a full pipe has woken the loop already
            pass

    def take(self) -> list:
        try:
            while os.read(self.rfd, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while self.done:
            out.append(self.done.popleft())
        return out

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.wfd)


class Runner:
    """Runs group actions in worker threads; the loop selects on fileno() and collects."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.box = Mailbox()
        self.busy: dict[int, threading.Thread] = {}

    def fileno(self) -> int:
        return self.box.rfd

    def run(self, g: Group, action: str, env: dict[str, str] | None = None) -> None:
        """Run a group action in a thread; env: variables added for its scripts
        (HA_DONTASK)."""
        def work() -> None:
            self.caller.local.extra = env
            try:
                rc = self.caller.group(g, action)
            except Exception as e:
                log.error("group %d %s: %s: %s", g.index, action, type(e).__name__, e)
                rc = exits.FAIL
            self.box.post((g.index, action, rc))
        t = threading.Thread(target=work, daemon=True, name="group-%d" % g.index)
        self.busy[g.index] = t
        t.start()

    def collect(self) -> list[tuple[int, str, int]]:
        out = self.box.take()
        for i, _, _ in out:
            self.busy.pop(i, None)
        return out

    def wait(self, timeout: float) -> list[tuple[int, str, int]]:
        """Block until a result arrives or timeout passes (for tests and shutdown)."""
        select.select([self.box.rfd], [], [], timeout)
        return self.collect()

    def close(self) -> None:
        self.box.close()
