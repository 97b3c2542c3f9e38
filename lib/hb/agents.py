"""Resource agents: lookup, calling convention, and running a group off the loop.

Lookup as DESIGN.md says: CONFDIR/resource.d/NAME, then the built-ins (IPaddr,
IPaddr2 -> hb.address.run_agent; MailTo -> hb.mail.run_agent), then
/etc/init.d/NAME.  A forked agent is called `PATH arg... ACTION` with a timeout;
its `status` is judged from its output as Heartbeat does (reference §2.2).
Built-ins run in-process.  Each group action runs in its own worker thread;
results come back to the caller's loop through a pipe (Runner.fileno/collect).
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import re
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from hb import exits
from hb.config import Group, Resource

log = logging.getLogger("hb")

INITD = "/etc/init.d"
BUILTINS = {"IPaddr": "address", "IPaddr2": "address", "MailTo": "mail"}
TIMEOUT = 60.0
_NOT_RUNNING = re.compile(r"[Nn][Oo][Tt] *[Rr]unning")
_RUNNING = re.compile(r"[Rr]unning|OK")


def judge_status(text: str) -> bool:
    """Heartbeat's rule: 'not running' -> no; 'running' or 'OK' -> yes; else no."""
    if _NOT_RUNNING.search(text):
        return False
    return bool(_RUNNING.search(text))


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
            mod = importlib.import_module("hb." + m)
        except Exception as e:       # a broken optional module must not stop hb-watch
            problems.append("built-in agent module hb.%s: %s" % (m, e))
            continue
        if m == "address":           # takeover = one netlink call + one ARP: pay the rest now
            texts = []
            for g in groups:
                for r in g.resources:
                    ag = lookup(r.name, confdir)
                    if r.args and ag and ag.module == "address":
                        texts.append(r.args[0])
            problems += ["cannot prepare %s" % p for p in mod.warm(texts, pings)]
    return problems


def address_start(address, text: str, agent: str = "IPaddr2") -> tuple[int, str]:
    """Start an address without the duplicate-address probe: hb-watch starts a group
    only once no live peer advertises it, and a peer whose daemons died while its
    kernel still holds the address must not keep it unmanaged (the split-brain rule
    settles it when that peer's hb-watch comes back).  Announced as the agent
    named does; the neighbours are then checked in the background."""
    try:
        spec = address.parse_spec(text, agent)
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
        self.env = dict(os.environ, HA_CURHOST=node, HA_DIR=confdir, **(env or {}))

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
        try:
            mod = importlib.import_module("hb." + a.module)
        except Exception as e:
            return exits.FAIL, "built-in %s unavailable: %s" % (a.name, e)
        box: list = []

        def work() -> None:
            try:
                if a.module == "mail":
                    box.append(mod.run_agent(list(r.args), action, self.node, self.rundir,
                                             self.statedir, confdir=self.confdir))
                elif action == "start" and len(r.args) == 1:
                    box.append(address_start(mod, r.args[0], r.name))
                else:
                    box.append(mod.run_agent(list(r.args), action, r.name))
            except Exception as e:
                box.append((exits.FAIL, "%s: %s" % (type(e).__name__, e)))
        t = threading.Thread(target=work, daemon=True, name="agent-" + a.name)
        t.start()
        t.join(self.timeout)
        if not box:
            return exits.FAIL, "timed out after %g s" % self.timeout
        rc, text = box[0]
        return rc, text or ""

    def _fork(self, a: Agent, r: Resource, action: str) -> tuple[int, str]:
        argv = [a.path, *r.args, action]
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=self.env, cwd="/")
        except OSError as e:
            return exits.FAIL, "cannot run %s: %s" % (a.path, e.strerror)
        try:
            out, _ = p.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            return exits.FAIL, "timed out after %g s" % self.timeout
        text = out.decode("utf-8", "replace")
        if action == "status":        # Heartbeat judges status by its text
            return (exits.OK if judge_status(text) else exits.LSB_NOT_RUNNING), text
        return p.returncode, text

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

    def run(self, g: Group, action: str) -> None:
        def work() -> None:
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
