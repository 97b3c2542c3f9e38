"""hb-switch's protocol with hb-watch: one request line to RUNDIR/watch.fifo
(`standby all`, `takeover local`, `maintenance on 3600`...), and its outcome read
from RUNDIR/status as hb-watch rewrites it (outcome, maint_outcome, flux).
hb-switch, hb_standby and hb_takeover send with send().
"""

from __future__ import annotations

import os

from hb import runfiles, status
from hb.statusview import clock

STANDBY_REPLY = 10.0                 # s hb-watch waits for the peer's answer (Heartbeat's)


def chosen(st: dict, which: str) -> list[dict]:
    """The groups 'all', 'local' (we prefer them) or 'foreign' (the peer prefers them) names."""
    mine = status.me(st)
    return [g for g in st["group"] if which == "all"
            or (which == "local") == (g.get("pref") == mine)]


def outcome(st: dict, verb: str, which: str, since: float,
            before: dict | None = None) -> tuple[str, str] | None:
    """('ok'|'fail', text) once the request is done or refused, None while pending.

    since: when the request was sent (status times are whole seconds); before: the
    `last` record then, so that an older refusal is not taken for the answer."""
    mine, p, groups = status.me(st), status.peer(st), chosen(st, which)
    last, since = st["last"], int(since)
    if last.get("time") is not None and last["time"] >= since and last != (before or {}) \
            and any(w in last["text"].lower() for w in ("refus", "ignor", "cancel")):
        if "no reply" in last["text"].lower():     # Heartbeat's 10 s: nothing moved
            return "fail", "%s: cancelled: %s did not answer within %g s (%s)" % (
                verb, (p or {}).get("name", "the peer"), STANDBY_REPLY, last["text"])
        return "fail", "%s: refused by hb-watch: %s" % (verb, last["text"])
    for g in groups:
        if g.get("state") == "failed" and (status.to_float(g.get("since")) or since) >= since:
            return "fail", "%s: group %s failed on %s" % (verb, g["index"], g["holder"])

    def settled(g: dict) -> bool:
        h, s = g.get("holder"), g.get("state")
        if verb == "takeover":
            return h == mine and s == "running"
        if p is not None and p.get("status") == "up":
            return h == p["name"] and s == "running"
        return h not in (mine, "both") and s not in ("starting", "stopping")

    stuck = [g for g in groups if g.get("state") == "stuck"]
    if not all(settled(g) for g in groups if g not in stuck):
        return None
    if stuck:
        return "fail", ("%s: group%s %s stuck on %s: a stop failed there and it may still "
                        "run, so it does not move; stop it by hand (hb-watch tries its stop "
                        "again every minute) or reboot that node" % (
                            verb, "s" if len(stuck) > 1 else "",
                            ",".join(g["index"] for g in stuck),
                            ",".join(sorted({g.get("holder", "?") for g in stuck}))))
    if not groups:
        return "ok", "%s %s: no groups to move" % (verb, which)
    what = "group%s %s" % ("s" if len(groups) > 1 else "", ",".join(g["index"] for g in groups))
    where = {g["holder"] for g in groups}
    if where == {"none"}:
        return "ok", "%s: %s stopped; nothing runs them" % (verb, what)
    return "ok", "%s: %s now on %s" % (verb, what, ",".join(sorted(where)))


def failback(verb: str, which: str) -> str:
    """Heartbeat's `failback`, as the groups it moves: hb_standby failback is
    foreign (give the peer its own groups back); hb_takeover failback makes the
    peer run hb_standby without an argument, i.e. all.  hb-watch gets the word
    itself (it sends Heartbeat's hb_takeover rsc_hold=failback)."""
    if which != "failback":
        return which
    return "foreign" if verb == "standby" else "all"


def duration(text: str) -> float:
    """'3600', '90s', '30m', '2h', '1d', '1h30m' -> seconds; ValueError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, num = 0.0, ""
    for c in text.strip().lower():
        if c.isdigit() or c == ".":
            num += c
        elif c in units and num:
            total, num = total + float(num) * units[c], ""
        else:
            raise ValueError("bad duration %r" % text)
    if num:
        total += float(num)
    if total <= 0:
        raise ValueError("bad duration %r" % text)
    return total


def flux(st: dict | None) -> str | None:
    """The 'in flux' refusal the status's last record holds, if that is what it says."""
    text = (st or {}).get("last", {}).get("text", "")
    return text if "refused" in text and "in flux" in text else None


def send(rundir: str, line: str) -> str | None:
    """Write the request to watch.fifo; what went wrong, or None."""
    try:
        runfiles.fifo_send(os.path.join(rundir, runfiles.WATCH_FIFO), line)
    except runfiles.NotRunning:
        return "hb-watch is not running"
    except PermissionError:
        return "unable to write to watch.fifo: permission denied (run as root)"
    except OSError as e:
        return "unable to write to watch.fifo: %s" % e.strerror
    return None


def maint_outcome(st: dict, secs: float, t0: float) -> tuple[str, str] | None:
    on, until = status.maintenance(st)
    if not secs:
        return ("ok", "maintenance off") if not on else None
    if on and (until is None or until >= t0 + secs - 2):
        return "ok", "maintenance on until %s" % clock(until)
    return None
