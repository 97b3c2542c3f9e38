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
HA_FIFO to scripts) is read by hb-beat (hafifo.py).
"""

from __future__ import annotations

import os
import re
import time
from typing import Iterable

from hb import clstatus, config

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


def base_env(cfg: config.Config) -> dict[str, str]:
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
            params = clstatus.parameters(f.read())
        env.update(("HA_" + k, v) for k, v in params.items()
                   if k != "hbversion" and HA_NAME.fullmatch(k) and "\0" not in v)
        if "compression" in params:     # Heartbeat also exports its compression method
            env["HA_COMPRESSION"] = params["compression"]
    except OSError:
        pass
    env.update({"HA_DIR": d, "HA_FUNCS": d + "/shellfuncs", "HA_DATEFMT": DATEFMT,
                "HA_LOGD": "no", "OCF_ROOT": OCF_ROOT})
    for name, key in (("logfile", "HA_LOGFILE"), ("debugfile", "HA_DEBUGLOG"),
                      ("logfacility", "HA_LOGFACILITY")):
        v = getattr(cfg, name, None)
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


def agent_env(cfg: config.Config) -> dict[str, str]:
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
