"""hb-switch: move resource groups by hand, and show who holds what.

Usage:
  hb-switch standby [all|local|foreign|failback] [-r RUNDIR] [--wait S | --no-wait] [--force]
  hb-switch takeover [all|local|foreign|failback] [-r RUNDIR] [--wait S | --no-wait]
  hb-switch maintenance on [--for DURATION] [-r RUNDIR] [--wait S | --no-wait]
  hb-switch maintenance off [-r RUNDIR] [--wait S | --no-wait]
  hb-switch status [--format=FMT] [-r RUNDIR]
  hb-switch why [GROUP] [-r RUNDIR]
  hb-switch cl_status (hbstatus|rscstatus) [-r RUNDIR]
  hb-switch cl_status listnodes [-p | -n] [-r RUNDIR]
  hb-switch cl_status nodestatus NODE [-r RUNDIR]
  hb-switch cl_status listhblinks NODE [-r RUNDIR]
  hb-switch cl_status hblinkstatus NODE LINK [-r RUNDIR]
  hb-switch -h | --help | -V | --version

Options:
  -r RUNDIR       run directory of hb-watch [default: /var/run/hb]
  --wait S        wait at most S seconds for the result [default: 30]
  --no-wait       send the request and return at once
  --force         standby even though the peer is dead (then nothing runs the groups)
  --for DURATION  maintenance ends after DURATION (e.g. 600, 90s, 30m, 2h, 1d) [default: 1h]
  --format=FMT    status as text, shell (KEY=VALUE lines), json or prometheus
                  [default: text]
  -p              listnodes: ping nodes only
  -n              listnodes: normal nodes only
  -h --help       show this help
  -V, --version   print the program's name and hb's version
"""

from __future__ import annotations

import os
import sys
import time

from hb import access, cli, exits, runfiles, status
from hb.exits import CL_FAIL, CL_OK, CL_PARAMETER_ERROR, CL_UNKNOWN_ERROR

STALE = 2 * runfiles.STATUS_EVERY     # s; or at once when its writer is gone
POLL = 0.01
RETRY = 1.0                          # s between requests refused 'in flux'
STANDBY_REPLY = 10.0                 # s hb-watch waits for the peer's answer (Heartbeat's)


def parse_status(text: str) -> dict:
    """RUNDIR/status -> {'updated': {...}, 'self': {...}, 'node': [...], ..., 'why': [...],
    'last': {...}} (status.parse)."""
    return status.parse(text)


def _float(s: str | None) -> float | None:
    try:
        return float(s) if s is not None else None
    except ValueError:
        return None


def age(st: dict, now: float) -> float | None:
    t = _float(st["updated"].get("time"))
    return None if t is None else max(0.0, now - t)


def is_stale(st: dict, now: float) -> bool:
    """Not rewritten for STALE seconds, or the hb-watch that wrote it is gone."""
    a = age(st, now)
    if a is None or a > STALE:
        return True
    pid = st["updated"].get("pid", "")
    return pid.isdigit() and not runfiles.pid_alive(int(pid))


def me(st: dict) -> str:
    return st["self"].get("name") or st["updated"].get("node", "")


def peer(st: dict) -> dict | None:
    """The other node's record (two-node clusters: the first that is not us)."""
    for n in st["node"]:
        if n.get("name") != me(st) and n.get("kind") != "self":
            return n
    return None


def chosen(st: dict, which: str) -> list[dict]:
    """The groups 'all', 'local' (we prefer them) or 'foreign' (the peer prefers them) names."""
    mine = me(st)
    return [g for g in st["group"] if which == "all"
            or (which == "local") == (g.get("pref") == mine)]


def outcome(st: dict, verb: str, which: str, since: float,
            before: dict | None = None) -> tuple[str, str] | None:
    """('ok'|'fail', text) once the request is done or refused, None while pending.

    since: when the request was sent (status times are whole seconds); before: the
    `last` record then, so that an older refusal is not taken for the answer."""
    mine, p, groups = me(st), peer(st), chosen(st, which)
    last, since = st["last"], int(since)
    if last.get("time") is not None and last["time"] >= since and last != (before or {}) \
            and any(w in last["text"].lower() for w in ("refus", "ignor", "cancel")):
        if "no reply" in last["text"].lower():     # Heartbeat's 10 s: nothing moved
            return "fail", "%s: cancelled: %s did not answer within %g s (%s)" % (
                verb, (p or {}).get("name", "the peer"), STANDBY_REPLY, last["text"])
        return "fail", "%s: refused by hb-watch: %s" % (verb, last["text"])
    for g in groups:
        if g.get("state") == "failed" and (_float(g.get("since")) or since) >= since:
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


def maintenance(st: dict) -> tuple[bool, float | None]:
    """(on, until) from the self record: maintenance=off, maintenance=until=EPOCH or until=."""
    v = st["self"].get("maintenance", "off")
    until = _float(st["self"].get("until") or (v[6:] if v.startswith("until=") else None))
    return (v != "off" or until is not None), until


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


def clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def _since(rec: dict) -> str:
    return clock(_float(rec.get("since")))


def _read(rundir: str) -> dict | None:
    """The parsed status, None when there is none; access.Unreadable without permission."""
    text = access.read(os.path.join(rundir, runfiles.STATUS))
    return parse_status(text) if text is not None else None


def flux(st: dict | None) -> str | None:
    """The 'in flux' refusal the status's last record holds, if that is what it says."""
    text = (st or {}).get("last", {}).get("text", "")
    return text if "refused" in text and "in flux" in text else None


def _wait_arg(args: dict) -> float:
    if args["--no-wait"]:
        return 0.0
    try:
        w = float(args["--wait"])
    except ValueError:
        w = -1.0
    if not 0 <= w < 1e6:
        raise ValueError("--wait wants seconds (0 to 999999), not %r" % args["--wait"])
    return w


def request(args: dict) -> int:
    rundir = args["-r"]
    verb = "standby" if args["standby"] else "takeover" if args["takeover"] else "maintenance"
    which = "local" if args["local"] else "foreign" if args["foreign"] else \
        "failback" if args["failback"] else "all"
    line, secs = "%s %s" % (verb, which), 0.0
    which = failback(verb, which)
    try:
        wait = _wait_arg(args)
        if args["maintenance"]:
            try:
                secs = duration(args["--for"]) if args["on"] else 0.0
            except ValueError:
                raise ValueError("--for wants a duration such as 600, 90s, 30m, 2h or 1d, "
                                 "not %r" % args["--for"]) from None
            line = "maintenance on %d" % round(secs) if args["on"] else "maintenance off"
    except ValueError as e:
        print("hb-switch: %s (try 'hb-switch --help')" % e, file=sys.stderr)
        return exits.USAGE
    try:
        st = _read(rundir)
    except access.Unreadable as e:
        print("hb-switch: %s" % e, file=sys.stderr)
        return exits.UNKNOWN
    p = peer(st) if st is not None else None
    if verb == "standby" and st is not None and not args["--force"] \
            and any(g.get("holder") in (me(st), "both") for g in chosen(st, which)) \
            and (p is None or p.get("status") != "up"):
        print("fail: standby refused: peer %s is %s, nothing would run the groups "
              "(--force stops them anyway)" % (p["name"] if p else "(none)",
                                               p.get("status") if p else "unknown"))
        return exits.SWITCH_REFUSED
    if verb != "maintenance" and st is not None and maintenance(st)[0]:
        print("fail: %s refused: maintenance mode is on until %s (hb-switch maintenance off)"
              % (verb, clock(maintenance(st)[1])))
        return exits.SWITCH_REFUSED
    t0, last0 = time.time(), st["last"] if st is not None else {}
    err = _send(rundir, line)
    if err:
        print("fail: %s: %s" % (verb, err))
        return exits.SWITCH_REFUSED
    if not wait:
        print("ok: %s requested" % line)
        return exits.SWITCH_DONE
    path = os.path.join(rundir, runfiles.STATUS)
    sig: tuple | None = None
    sent, before, retry_at, said = t0, last0, None, False
    while True:
        now = time.time()
        try:
            s = os.stat(path)
            new = (s.st_ino, s.st_mtime_ns)
        except FileNotFoundError:
            new = None
        if new != sig:
            sig, st = new, _read(rundir)
            res = None if st is None else _maint_outcome(st, secs, t0) \
                if verb == "maintenance" else outcome(st, verb, which, sent, before)
            why = flux(st) if res is not None and res[0] == "fail" else None
            if why and now + RETRY < t0 + wait:
                if not said:        # a transition is under way: ask again once it is over
                    print("hb-switch: %s: %s: waiting (at most %g s)" % (verb, why, wait),
                          file=sys.stderr)
                    said = True
                before, retry_at = st["last"], now + RETRY
            elif res is not None:
                print("%s: %s (%.2f s)" % (res[0], res[1], time.time() - t0))
                return exits.SWITCH_DONE if res[0] == "ok" else exits.SWITCH_REFUSED
        if retry_at is not None and now >= retry_at:
            retry_at = None
            if flux(st):            # still the refusal (not yet accepted meanwhile)
                err = _send(rundir, line)
                if err:
                    print("fail: %s: %s" % (verb, err))
                    return exits.SWITCH_REFUSED
                sent = now
                retry_at = now + RETRY    # an identical refusal within the second is not new
        if now - t0 >= wait:
            break
        time.sleep(POLL)
    what = ", ".join("group %s %s on %s" % (g["index"], g.get("state"), g.get("holder"))
                     for g in chosen(st, which)) if st is not None and verb != "maintenance" \
        else ""
    a = age(st, time.time()) if st is not None else None
    stale = "; status is stale (last written %.0f s ago)" % (a or 0) \
        if st is not None and is_stale(st, time.time()) else ""
    print("timeout: %s%s after %g s%s" % (line, ": " + what if what else "", wait, stale))
    return exits.SWITCH_TIMEOUT


def _send(rundir: str, line: str) -> str | None:
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


def _maint_outcome(st: dict, secs: float, t0: float) -> tuple[str, str] | None:
    on, until = maintenance(st)
    if not secs:
        return ("ok", "maintenance off") if not on else None
    if on and (until is None or until >= t0 + secs - 2):
        return "ok", "maintenance on until %s" % clock(until)
    return None


FORMATS = ("text", "shell", "json", "prometheus")


def show(st: dict | None, fmt: str, now: float) -> tuple[int, str]:
    if fmt == "json":
        import json
        doc = typed(st, now)
        return (exits.OK if doc["running"] else exits.FAIL), \
            json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if fmt == "prometheus":
        doc = typed(st, now)
        return (exits.OK if doc["running"] else exits.FAIL), prometheus(doc)
    if st is None:
        return exits.FAIL, {"shell": "HB_STATUS=missing\n"}.get(
            fmt, "fail: no status file: hb-watch is not running\n")
    a = age(st, now)
    stale = is_stale(st, now)
    rc = exits.FAIL if stale else exits.OK
    if fmt == "shell":
        return rc, _shell(st, a, stale)
    u, s = st["updated"], st["self"]
    out = []
    if stale:
        out.append("stale: status of %s written %s s ago by pid %s: hb-watch is hung or "
                   "stopped; what follows is old"
                   % (me(st), "%.0f" % a if a else "?", u.get("pid", "?")))
    else:
        out.append("ok: hb-watch on %s, pid %s, status %.1f s old" % (
            me(st), u.get("pid", "?"), a))
    on, until = maintenance(st)
    out.append("self   %-12s %-7s holds %-7s maintenance %s" % (
        me(st), s.get("st", "?"), s.get("rsc_hold", "?"),
        "on until %s" % clock(until) if on else "off"))
    for n in st["node"]:
        if n.get("name") == me(st):
            continue
        out.append("node   %-12s %-7s since %s  late %ss  %s" % (
            n["name"], n.get("status"), _since(n), n.get("late", "0"), n.get("kind", "")))
    out += ["link   %-12s %-7s %-7s since %s" % (
        ln["node"], ln.get("medium"), ln.get("status"), _since(ln)) for ln in st["link"]]
    out += ["ping   %-12s %-7s since %s" % (p["name"], p.get("status"), _since(p))
            for p in st["ping"]]
    out += ["group  %-3s %-8s on %-12s prefers %s, since %s, fails %s%s: %s" % (
        g["index"], g.get("state"), g.get("holder"), g.get("pref", "?"), _since(g),
        g.get("fails", "0"), ", neighbours %s" % g["nbr"] if g.get("nbr") else "",
        g.get("key", "")) for g in st["group"]]
    if st["last"]:
        out.append("last   %s %s" % (clock(st["last"]["time"]), st["last"]["text"]))
    return rc, "\n".join(out) + "\n"


def neighbours(nbr: str | None) -> dict | None:
    """A group's `nbr=` as JSON: {"result": "ok"|"fail"|"none"|"pending", "ms": int
    (ok: the slowest answer), "address": str (fail: the first unanswered)}."""
    if not nbr:
        return None
    result, _, rest = nbr.partition(":")
    doc: dict = {"result": result, "ms": None, "address": None}
    if result == "ok":
        doc["ms"] = _num(rest[:-2] if rest.endswith("ms") else rest)
    elif result == "fail":
        doc["address"] = rest or None
    return doc


def _num(v: object, kind: type = int) -> int | float | None:
    try:
        x = kind(str(v))
    except ValueError:
        return None
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _flag(v: object) -> bool | None:
    return None if v is None else v == "1"


def typed(st: dict | None, now: float) -> dict:
    """The status as JSON-ready types (the schema in hb-switch(8)); when hb is stopped,
    running is false, reason says why, and the rest is the last status there was."""
    doc: dict = {"running": False, "stale": st is not None, "reason": None, "node": None,
                 "pid": None, "updated": None, "age": None, "self": None, "nodes": [],
                 "links": [], "pings": [], "groups": [], "history": [], "last": None}
    if st is None:
        doc["reason"] = "no status file: hb-watch is not running"
        return doc
    u, s = st["updated"], st["self"]
    a = age(st, now)
    stale = is_stale(st, now)
    doc.update(stale=stale, running=not stale, node=me(st) or None, pid=_num(u.get("pid")),
               updated=_num(u.get("time")), age=None if a is None else round(a, 3))
    if stale:
        doc["reason"] = "no status written for %.0f s: hb-watch is hung or stopped" % (a or 0) \
            if a is not None and a > STALE else "hb-watch (pid %s) is gone" % u.get("pid", "?")
    on, until = maintenance(st)
    if s:
        doc["self"] = {"name": s.get("name"), "st": s.get("st"), "rsc_hold": s.get("rsc_hold"),
                       "maintenance": on, "maintenance_until": int(until) if until else None,
                       "reach": _num(s.get("reach")), "nolink": s.get("nolink"),
                       "stable": _flag(s.get("stable"))}
    doc["nodes"] = [{"name": n.get("name"), "status": n.get("status"), "st": n.get("st"),
                     "kind": n.get("kind"), "since": _num(n.get("since")),
                     "late": _num(n.get("late"), float), "lates": _num(n.get("lates", "0")),
                     "gen": n.get("gen"), "cfd": n.get("cfd"), "reach": _num(n.get("reach")),
                     "nolink": n.get("nolink"), "stable": _flag(n.get("stable"))}
                    for n in st["node"]]
    doc["links"] = [{"node": ln.get("node"), "medium": ln.get("medium"),
                     "status": ln.get("status"), "since": _num(ln.get("since"))}
                    for ln in st["link"]]
    doc["pings"] = [{"name": p.get("name"), "status": p.get("status"),
                     "since": _num(p.get("since"))} for p in st["ping"]]
    doc["groups"] = [{"index": _num(g.get("index")), "holder": g.get("holder"),
                      "state": g.get("state"), "pref": g.get("pref"),
                      "since": _num(g.get("since")), "fails": _num(g.get("fails", "0")),
                      "restarts": _num(g.get("restarts")), "key": g.get("key"),
                      "neighbours": neighbours(g.get("nbr"))}
                     for g in st["group"]]
    doc["history"] = [{"group": _num(w.get("group")), "time": _num(w.get("time")),
                       "from": w.get("from"), "to": w.get("to"), "reason": w.get("text")}
                      for w in st["why"]]
    if st["last"]:
        t = st["last"].get("time")
        doc["last"] = {"time": None if t is None else int(t), "text": st["last"]["text"]}
    return doc


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(doc: dict) -> str:
    """The text exposition format (version 0.0.4) of typed(), for node_exporter's
    textfile collector: one HELP and TYPE per metric family, no timestamps."""
    out: list[str] = []
    node = doc["node"] or ""

    def family(name: str, help_: str, samples: list[tuple[dict, float | int | None]]) -> None:
        out.append("# HELP %s %s" % (name, help_))
        out.append("# TYPE %s gauge" % name)
        for labels, value in samples:
            if value is None:
                continue
            lab = ",".join('%s="%s"' % (k, _label(v)) for k, v in
                           [("node", node)] + list(labels.items()))
            out.append("%s{%s} %s" % (name, lab, _value(value)))

    family("hb_up", "1 when hb-watch runs and its status is current", [({}, int(doc["running"]))])
    family("hb_status_age_seconds", "seconds since hb-watch last wrote its status",
           [({}, doc["age"])])
    s = doc["self"] or {}
    family("hb_maintenance", "1 in maintenance mode", [({}, int(bool(s.get("maintenance"))))])
    family("hb_reach", "ping nodes this node reaches (absent without ping nodes)",
           [({}, s.get("reach"))])
    peers = [n for n in doc["nodes"] if n["kind"] != "self"]
    family("hb_peer_up", "1 while the peer's heartbeats arrive",
           [({"peer": n["name"]}, int(n["status"] == "up")) for n in peers])
    family("hb_peer_late_seconds", "the peer's worst heartbeat lateness lately",
           [({"peer": n["name"]}, n["late"]) for n in peers])
    family("hb_peer_late_heartbeats", "the peer's heartbeats later than warntime in the "
           "last hour", [({"peer": n["name"]}, n["lates"]) for n in peers])
    family("hb_link_up", "1 while heartbeats arrive on this medium",
           [({"peer": ln["node"], "medium": ln["medium"]}, int(ln["status"] == "up"))
            for ln in doc["links"]])
    family("hb_ping_up", "1 while the ping node answers",
           [({"ping": p["name"]}, int(p["status"] == "up")) for p in doc["pings"]])
    family("hb_group_held", "1 when this node holds the group (running, starting, stopping)",
           [({"group": str(g["index"]), "key": g["key"]}, int(g["holder"] in (node, "both")))
            for g in doc["groups"]])
    family("hb_group_info", "1 for each group's holder and state",
           [({"group": str(g["index"]), "holder": g["holder"], "state": g["state"],
              "pref": g["pref"]}, 1) for g in doc["groups"]])
    family("hb_group_fails", "failed starts or stops of the group here",
           [({"group": str(g["index"])}, g["fails"]) for g in doc["groups"]])
    family("hb_group_since_timestamp_seconds", "when the group entered its state (epoch)",
           [({"group": str(g["index"])}, g["since"]) for g in doc["groups"]])
    return "\n".join(out) + "\n"


def _value(v: float | int) -> str:
    return "%d" % v if isinstance(v, int) and not isinstance(v, bool) else repr(float(v))


def why(st: dict | None, group: str | None) -> tuple[int, str]:
    """hb-switch why: the last transitions of each group, oldest first, with reasons."""
    if st is None:
        return exits.FAIL, "fail: no status file: hb-watch is not running\n"
    out = []
    groups = [g for g in st["group"] if group in (None, g.get("index"))]
    if group is not None and not groups:
        return exits.FAIL, "fail: no group %s (groups: %s)\n" % (
            group, " ".join(g.get("index", "?") for g in st["group"]) or "none")
    for g in groups:
        out.append("group %s (%s): %s on %s since %s" % (
            g["index"], g.get("key", ""), g.get("state"), g.get("holder"), _since(g)))
        recs = [w for w in st["why"] if w.get("group") == g["index"]]
        for w in recs:
            out.append("  %s  %-8s -> %-8s %s" % (clock(_float(w.get("time"))), w.get("from"),
                                                  w.get("to"), w.get("text")))
        if not recs:
            out.append("  no transition since hb-watch started")
    if is_stale(st, time.time()):
        out.append("(status is stale: hb-watch is not running; this is its last word)")
    return exits.OK, "\n".join(out) + "\n"


def _shell(st: dict, a: float | None, stale: bool) -> str:
    def name(s: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in s.upper())

    def q(v: object) -> str:
        return "'" + str(v).replace("'", "'\\''") + "'"

    on, until = maintenance(st)
    kv = [("HB_STATUS", "stale" if stale else "ok"),
          ("HB_AGE", "%.1f" % a if a is not None else ""),
          ("HB_PID", st["updated"].get("pid", "")), ("HB_NODE", me(st)),
          ("HB_ST", st["self"].get("st", "")), ("HB_RSC_HOLD", st["self"].get("rsc_hold", "")),
          ("HB_MAINTENANCE", "on" if on else "off"),
          ("HB_MAINTENANCE_UNTIL", "%d" % until if until else ""),
          ("HB_NODES", " ".join(n["name"] for n in st["node"])),
          ("HB_GROUPS", " ".join(g["index"] for g in st["group"]))]
    for n in st["node"]:
        kv += [("HB_NODE_%s" % name(n["name"]), n.get("status", "")),
               ("HB_NODE_%s_SINCE" % name(n["name"]), n.get("since", ""))]
    for ln in st["link"]:
        kv.append(("HB_LINK_%s_%s" % (name(ln["node"]), name(ln.get("medium", ""))),
                   ln.get("status", "")))
    for p in st["ping"]:
        kv.append(("HB_PING_%s" % name(p["name"]), p.get("status", "")))
    for g in st["group"]:
        for k in ("holder", "state", "pref", "since", "fails", "key", "nbr"):
            kv.append(("HB_GROUP_%s_%s" % (g["index"], k.upper()), g.get(k, "")))
    if st["last"]:
        kv += [("HB_LAST_TIME", "%.10g" % (st["last"]["time"] or 0)),
               ("HB_LAST", st["last"]["text"])]
    return "".join("%s=%s\n" % (k, q(v)) for k, v in kv)


def cl_status(args: dict, st: dict | None, now: float) -> tuple[int, str, str]:
    """Heartbeat's cl_status answers: (exit code, stdout, stderr)."""
    running = st is not None and st["updated"] != {} and not is_stale(st, now)
    if args["hbstatus"]:
        if running:
            return CL_OK, "Heartbeat is running on this machine.\n", ""
        return CL_FAIL, "Heartbeat is stopped on this machine.\n", ""
    if not running or st is None:
        return CL_FAIL, "", "cl_status: Cannot signon with heartbeat\n"
    nodes = list(st["node"])
    if not any(n.get("name") == me(st) for n in nodes):
        nodes.insert(0, {"name": me(st), "status": "up", "kind": "self"})
    if args["listnodes"]:
        normal, pings = [n["name"] for n in nodes], [p["name"] for p in st["ping"]]
        out = pings if args["-p"] else normal if args["-n"] else normal + pings
        return CL_OK, "".join(x + "\n" for x in out), ""
    if args["rscstatus"]:
        from hb.clstatus import Cluster
        return CL_OK, Cluster(st, "").resources() + "\n", ""
    node = args["NODE"].lower()
    if args["nodestatus"]:
        for p in st["ping"]:
            if p["name"] == node:
                s = "ping" if p.get("status") == "up" else "dead"
                return (CL_OK if s == "ping" else CL_FAIL), s + "\n", ""
        for n in nodes:
            if n["name"] == node:
                s = n.get("st") or n.get("status", "dead")
                if n["name"] == me(st):
                    s = st["self"].get("st", s)
                ok = s in ("active", "up", "ping")
                return (CL_OK if ok else CL_FAIL), s + "\n", ""
        return CL_PARAMETER_ERROR, "", "Error. May be due to incorrect node name\n"
    links = {ln.get("medium"): ln.get("status") for ln in st["link"] if ln["node"] == node}
    if node == me(st) and not links:
        links = {ln.get("medium"): "up" for ln in st["link"]}
    if not links and node not in (n["name"] for n in nodes):
        return CL_UNKNOWN_ERROR, "", "cl_status: Cannot start heartbeat link interface walk.\n"
    if args["listhblinks"]:
        return CL_OK, "".join("\t%s\n" % m for m in links), ""
    s = links.get(args["LINK"])
    if s is None:
        return CL_UNKNOWN_ERROR, "", "cl_status: Cannot get heartbeat link status\n"
    return (CL_OK if s == "up" else CL_FAIL), s + "\n", ""


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    if args["status"] and args["--format"] not in FORMATS:
        print("hb-switch: --format is one of %s, not %r (try 'hb-switch --help')"
              % (", ".join(FORMATS), args["--format"]), file=sys.stderr)
        return exits.USAGE
    if not (args["status"] or args["cl_status"] or args["why"]):
        return request(args)
    try:
        st = _read(args["-r"])
    except access.Unreadable as e:
        print("hb-switch: %s" % e, file=sys.stderr)
        return exits.UNKNOWN
    if args["status"]:
        rc, out = show(st, args["--format"], time.time())
        sys.stdout.write(out)
        return rc
    if args["why"]:
        rc, out = why(st, args["GROUP"])
        sys.stdout.write(out)
        return rc
    rc, out, err = cl_status(args, st, time.time())
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc
