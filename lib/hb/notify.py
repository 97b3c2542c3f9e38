"""systemd's service notification (sd_notify) for hb-supervise, standard library only.

The protocol: one datagram of newline-separated VAR=VALUE assignments to the
AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract name written with a
leading '@').  hb-supervise sends

    READY=1            once RUNDIR/status shows this node has decided what it holds
                       (its own state `active` and no group starting or stopping)
    STATUS=...         a one-line summary, whenever it changes
    WATCHDOG=1         every tick while hb-beat and hb-watch both run and hb-watch's
                       status is fresh (rewritten within FRESH seconds)
    EXTEND_TIMEOUT_USEC=...  while not yet ready but making progress (initdead may be
                       longer than TimeoutStartSec)
    STOPPING=1         when it starts handing over and stopping

Without $NOTIFY_SOCKET (run by hand, by sysvinit) nothing is sent.  judge() is the
pure part: status text and a clock in, what to say out.
"""

from __future__ import annotations

import os
import socket
import time

from hb import status

FRESH = 15.0              # hb-watch rewrites RUNDIR/status at least every 5 s
EXTEND = 20.0             # seconds more to start, granted per tick while progressing
IN_FLUX = ("starting", "stopping", "probing")


def address(env: dict | None = None) -> str | bytes | None:
    """$NOTIFY_SOCKET as a socket address ('@name' is the abstract b'\\0name'), or None."""
    name = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None           # vsock and other forms: not for a router's hb


def send(state: str, env: dict | None = None) -> bool:
    """Send one notification; False when there is nowhere to send it or it failed."""
    addr = address(env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
        return True
    except OSError:
        return False


def watchdog_interval(env: dict | None = None, pid: int | None = None) -> float | None:
    """$WATCHDOG_USEC in seconds when it is meant for this process, else None."""
    e = os.environ if env is None else env
    try:
        usec = int(e.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    wpid = e.get("WATCHDOG_PID")
    if wpid and wpid != str(os.getpid() if pid is None else pid):
        return None
    return usec / 1e6 if usec > 0 else None


def judge(text: str, wall: float) -> tuple[bool, bool, str]:
    """RUNDIR/status text at epoch wall -> (decided, fresh, one-line summary)."""
    rec = status.parse(text)
    updated = status.to_float(rec["updated"].get("time"))
    me, st = rec["updated"].get("node", "?"), rec["self"].get("st", "?")
    nodes = ["%s %s" % (n["name"], n["status"]) for n in rec["node"] if n.get("kind") != "self"]
    groups = [(g["index"], g["holder"], g["state"]) for g in rec["group"]]
    if updated is None:
        return False, False, "waiting for hb-watch's first status"
    fresh = abs(wall - updated) <= FRESH
    flux = [g for g in groups if g[2] in IN_FLUX]
    decided = st == "active" and not flux
    here = [g[0] for g in groups if g[1] in (me, "both") and g[2] not in IN_FLUX]
    there = [g[0] for g in groups if g[1] not in (me, "both", "none")]
    parts = ["%s %s" % (me, st if st != "up" else "starting (initdead)")]
    parts.append("holds " + (",".join(here) if here else "nothing"))
    if there:
        parts.append("peer holds " + ",".join(there))
    if flux:
        parts.append("in flux " + ",".join("%s %s" % (g[0], g[2]) for g in flux))
    parts += nodes
    if not fresh:
        parts.append("status %d s old" % (wall - updated))
    return decided, fresh, "; ".join(parts)


class Notifier:
    """hb-supervise's side: tick() after each wake-up, wait() bounds its sleep."""

    def __init__(self, status_path: str, env: dict | None = None) -> None:
        self.path = status_path
        self.env = dict(os.environ if env is None else env)
        self.on = address(self.env) is not None
        self.watchdog = watchdog_interval(self.env) if self.on else None
        self.ready = False
        self.status = ""

    def wait(self) -> float:
        """The longest sleep between ticks: a third of the watchdog period, 1 s at most."""
        if not self.on:
            return 3600.0
        return min(1.0, self.watchdog / 3) if self.watchdog else 1.0

    def tick(self, alive: bool, wall: float | None = None) -> None:
        """alive: hb-beat and hb-watch both running."""
        if not self.on:
            return
        try:
            with open(self.path, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        decided, fresh, summary = judge(text, time.time() if wall is None else wall)
        if not alive:
            summary = "a daemon is being restarted; " + summary
        msgs = []
        if summary != self.status:
            msgs.append("STATUS=" + summary)
            self.status = summary
        if decided and fresh and alive and not self.ready:
            msgs.append("READY=1")
            self.ready = True
        elif not self.ready and fresh and alive:
            msgs.append("EXTEND_TIMEOUT_USEC=%d" % (EXTEND * 1e6))
        if alive and fresh and self.watchdog:
            msgs.append("WATCHDOG=1")
        if msgs:
            send("\n".join(msgs), self.env)

    def stopping(self) -> None:
        if self.on:
            send("STOPPING=1\nSTATUS=stopping: handing the groups over", self.env)
