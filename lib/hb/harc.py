"""Heartbeat's rc.d event hooks: the pure parts.

Heartbeat hands some cluster messages to harc, which runs CONFDIR/rc.d/<type>
<type> with every field of the message as HA_<field> (hb_resource.c notify_world).
Which messages: a `status` only when a node's status changes (HA_OSTATUS is the
old one; a node judged dead gets a made-up `t=status st=dead` message), an
`ip-request` not from us, and every message type Heartbeat has no handler of its
own for (ip-request-resp, hb_takeover, anything a script sends); these are queued
and their HA_OSTATUS is this node's own status.  starting,
resource, ask_resources, shutdone and the NS_ messages never reach rc.d.

Heartbeat's own rc.d scripts (status -> mach_down, ip-request -> ResourceManager
givegroup, ip-request-resp -> takegroup, hb_takeover -> hb_standby, ask_resources)
redo what hb's own protocol handling does; hb runs none of them (see `shipped`):
an admin's own script, whatever its name, runs.  Heartbeat's message FIFO (FIFO,
HA_FIFO to scripts) is read by hb-beat (hafifo.py).  Which messages and their
environment are pure; `Hooks` runs the scripts (one at a time, off hb-watch's
loop, with a timeout).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import subprocess
import threading
import time
from typing import Iterable

from hb import agents, hbapi, settings

log = logging.getLogger("hb")

RC_DIR = "rc.d"
FIFO = "/var/lib/heartbeat/fifo"
# Message types Heartbeat handles itself (heartbeat.c, hb_resource.c callbacks):
# never handed to rc.d.  `status` goes only on a change of the node's status.
INTERNAL = frozenset({"starting", "resource", "ask_resources", "shutdone",
                      "query-cstatus", "respond-cstatus", "reqnodes", "repnodes",
                      "addnode", "delnode", "setweight", "setsite", "ping"})
# What Heartbeat's own rc.d scripts call: hb does that itself, so such a script is
# not run (it would act twice, through a ResourceManager that is not hb's).
SHIPPED_MARKS = (b"ResourceManager", b"mach_down", b"/hb_standby")
# Heartbeat's values (strings in its binary: HA_D "/", HA_D "/" "/shellfuncs").
DATEFMT = "%Y/%m/%d_%T\t"
OCF_ROOT = "/usr/lib/ocf"
HA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BINARY_FIELDS = frozenset({"srcuuid", "destuuid"})   # binary in Heartbeat: not in env
HOOK_TIMEOUT = 60.0    # s an rc.d hook may run before its process group is killed
HOOK_QUEUE = 256       # rc.d hooks waiting at most


def base_env(cfg: settings.Config) -> dict[str, str]:
    """What Heartbeat puts in its own environment at start, inherited by every
    script it runs (rc.d hooks and resource agents): HA_DIR, HA_FUNCS, HA_DATEFMT,
    HA_LOGFILE/HA_DEBUGLOG/HA_LOGFACILITY when configured, HA_debug when > 0,
    HA_LOGD (hb has no logging daemon: no), OCF_ROOT, HA_NICEFAILBACK with
    auto_failback on/off, every ha.cf parameter as Heartbeat records it (its
    value, else its default: HA_keepalive, HA_baud, HA_udpport...; the table
    cl_status hbparameter answers from), and ha.cf's `env NAME=value` as HA_NAME."""
    d = cfg.confdir.rstrip("/") + "/"
    env: dict[str, str] = {}
    try:
        with open(os.path.join(cfg.confdir, "ha.cf"), encoding="utf-8",
                  errors="surrogateescape") as f:
            params = hbapi.parameters(f.read())
        env.update(("HA_" + k, v) for k, v in params.items()
                   if k != "hbversion" and HA_NAME.fullmatch(k) and "\0" not in v)
        if "compression" in params:     # Heartbeat also exports its compression method
            env["HA_COMPRESSION"] = params["compression"]
    except OSError:
        pass
    env.update({"HA_DIR": d, "HA_FUNCS": d + "/shellfuncs", "HA_DATEFMT": DATEFMT,
                "HA_LOGD": "no", "OCF_ROOT": OCF_ROOT})
    for v, key in ((cfg.logfile, "HA_LOGFILE"), (cfg.debugfile, "HA_DEBUGLOG"),
                   (cfg.logfacility, "HA_LOGFACILITY")):
        if v:
            env[key] = v
    if cfg.debug:
        env["HA_debug"] = str(cfg.debug)
    if cfg.auto_failback in ("on", "off"):
        env["HA_NICEFAILBACK"] = "yes"
    for k, v in cfg.env.items():
        env["HA_" + k] = v
    return env


SHELLFUNCS = {"HA_BIN": "/usr/libexec/heartbeat", "HA_DOCDIR": "/usr/share/doc/heartbeat",
              "HA_FIFO": FIFO, "OCF_AGENTS": "/usr/lib/ocf/resource.d/heartbeat/"}


def agent_env(cfg: settings.Config) -> dict[str, str]:
    """Resource agents' environment under Heartbeat (ResourceManager sources
    shellfuncs): base_env with HA_DIR and HA_FUNCS as shellfuncs spells them, and
    the variables shellfuncs sets (HA_BIN, HA_FIFO, HA_RCDIR...), fixed here rather
    than sourced at each call (the takeover path)."""
    env = base_env(cfg)
    d = cfg.confdir.rstrip("/")
    env.update(SHELLFUNCS)
    env.update({"HA_DIR": d, "HA_FUNCS": d + "/shellfuncs", "HA_RCDIR": d + "//rc.d",
                "HA_RESOURCEDIR": d + "//resource.d"})
    return env


def message_env(fields: dict[str, str], me: str, ostatus: str | None) -> dict[str, str]:
    """The per-event part: HA_<field> for every string field of the message
    (hb-beat's own _via/_rt/_self/_dup are not message fields; its _auth is the
    message's auth), HA_CURHOST, HA_OSTATUS."""
    env = {}
    for k, v in fields.items():
        if k == "_auth":
            k = "auth"
        if k.startswith("_") or k in BINARY_FIELDS or not HA_NAME.fullmatch(k) or "\0" in v:
            continue
        env["HA_" + k] = v
    env["HA_CURHOST"] = me
    if ostatus is not None:
        env["HA_OSTATUS"] = ostatus
    return env


def shipped(path: str) -> bool:
    """A script that calls Heartbeat's resource machinery (its own rc.d scripts)."""
    try:
        with open(path, "rb") as f:
            text = f.read(65536)
    except OSError:
        return False
    return any(m in text for m in SHIPPED_MARKS)


def scan(confdir: str) -> tuple[dict[str, str], list[str]]:
    """The hooks of CONFDIR/rc.d, read once at start (and on SIGHUP), as Heartbeat
    does: {type: path} of executable files, and the skipped ones' reasons."""
    hooks: dict[str, str] = {}
    skipped: list[str] = []
    d = os.path.join(confdir, RC_DIR)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return hooks, skipped
    for name in names:
        path = os.path.join(d, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        if shipped(path):
            skipped.append("%s: Heartbeat's own script (calls its resource manager): "
                           "hb does this itself, not run" % path)
        elif not os.access(path, os.X_OK):
            skipped.append("%s: not executable, not run" % path)
        else:
            hooks[name] = path
    return hooks, skipped


class Hooks:
    """rc.d event hooks: run one at a time, in the order queued, by one
    worker thread, each with a timeout after which its process group is killed;
    its output goes to the log at debug level.  queue() never blocks: past
    HOOK_QUEUE waiting hooks, a new one is dropped with an error."""

    def __init__(self, env: dict[str, str], timeout: float = HOOK_TIMEOUT) -> None:
        self.env = dict(os.environ, **env)
        self.timeout = timeout
        self.q: collections.deque = collections.deque()
        self.cv = threading.Condition()
        self.ran = 0                      # hooks finished
        self.pending = 0                  # queued or running
        self.thread: threading.Thread | None = None
        self.closed = False

    def queue(self, path: str, typ: str, env: dict[str, str]) -> bool:
        with self.cv:
            if len(self.q) >= HOOK_QUEUE:
                log.error("rc.d: %d hooks waiting: %s %s dropped", len(self.q), path, typ)
                return False
            self.q.append((path, typ, env))
            self.pending += 1
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, daemon=True, name="rc.d")
                self.thread.start()
            self.cv.notify()
        return True

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.q and not self.closed:
                    self.cv.wait()
                if self.closed:
                    return
                path, typ, env = self.q.popleft()
            try:
                self.run_one(path, typ, env)
            except Exception as e:          # a bug: never a dead worker
                log.error("rc.d: %s %s: %s: %s", path, typ, type(e).__name__, e)
            with self.cv:
                self.ran += 1
                self.pending -= 1
                self.cv.notify_all()

    def run_one(self, path: str, typ: str, env: dict[str, str]) -> int | None:
        log.info("rc.d: running %s %s", path, typ)
        t0 = time.monotonic()
        env = dict(self.env, **env)
        argv = [path, typ]
        funcs = env.get("HA_FUNCS", "")
        if funcs and os.path.isfile(funcs):    # as Heartbeat's harc: shellfuncs' variables
            argv = ["/bin/sh", "-c", '. "$HA_FUNCS" >/dev/null 2>&1; exec "$0" "$@"', *argv]
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=env, cwd="/")
        except OSError as e:
            log.error("rc.d: cannot run %s: %s", path, e.strerror)
            return None
        assert p.stdout is not None
        fd = os.dup(p.stdout.fileno())
        p.stdout.close()
        out, rc = agents.collect(p, fd, self.timeout)
        for line in out.decode("utf-8", "replace").splitlines()[:200]:
            log.debug("rc.d: %s: %s", typ, line.rstrip())
        if rc is None:
            log.error("rc.d: %s %s: timed out after %g s: killed", path, typ, self.timeout)
        elif rc != 0:
            log.warning("rc.d: %s %s: exit %d in %.3f s", path, typ, rc, time.monotonic() - t0)
        else:
            log.debug("rc.d: %s %s: exit 0 in %.3f s", path, typ, time.monotonic() - t0)
        return rc

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or running (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
        return True

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.pending -= len(self.q)
            self.q.clear()
            self.cv.notify_all()


class Events:
    """Which messages go to rc.d: status changes per node, the rest by type."""

    def __init__(self, me: str, hooks: Iterable[str]) -> None:
        self.me = me
        self.hooks = set(hooks)
        self.status: dict[str, str] = {}      # node -> last status (Heartbeat's `init`)

    def message(self, f: dict[str, str]) -> tuple[str, dict[str, str], str | None] | None:
        """(type, fields, HA_OSTATUS) when Heartbeat would run rc.d/<type>, else None.
        Status is tracked for every node whatever the hooks."""
        t = f.get("t", "")
        src = f.get("src", "").lower()
        if f.get("_dup") or not t:
            return None
        typ = t.lower()
        if typ == "status":
            st = f.get("st", "")
            if not st or not src:
                return None
            old = self.status.get(src, "init")
            if st == old:
                return None
            self.status[src] = st
            return ("status", f, old) if "status" in self.hooks else None
        if typ in INTERNAL or typ.startswith("ns_") or typ.startswith("hbapi"):
            return None
        if typ == "ip-request" and src == self.me:
            return None
        if typ not in self.hooks:
            return None
        return typ, f, self.status.get(self.me, "init")   # queued: our own status

    def dead(self, node: str, now: float | None = None, ping: bool = False
             ) -> tuple[str, dict[str, str], str | None] | None:
        """A node judged dead here: Heartbeat's made-up status message
        (t=status seq=1 ts=<hex time> src=NODE st=dead [info=ping])."""
        old = self.status.get(node, "init")
        if old == "dead":
            return None
        self.status[node] = "dead"
        f = {"t": "status", "seq": "1", "ts": "%x" % int(time.time() if now is None else now),
             "src": node, "st": "dead"}
        if ping:
            f["info"] = "ping"
        return ("status", f, old) if "status" in self.hooks else None
