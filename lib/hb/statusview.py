"""RUNDIR/status for people and programs: hb-switch status (text, shell, json,
prometheus), hb-switch why, and hb-switch cl_status's answers.

Each takes the parsed status (status.parse; None when there is no status file)
and the time, and returns (exit code, text); a status whose writer is gone or
that has not been rewritten for status.STALE seconds is stale, and says so.
"""

from __future__ import annotations

import time

from hb import exits, runfiles, status
from hb.exits import CL_FAIL, CL_OK, CL_PARAMETER_ERROR, CL_UNKNOWN_ERROR

FORMATS = ("text", "shell", "json", "prometheus")


def clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def _since(rec: dict) -> str:
    return clock(status.to_float(rec.get("since")))


def show(st: dict | None, fmt: str, now: float) -> tuple[int, str]:
    if fmt == "json":
        import json                   # lazy: only --format=json pays for it
        doc = typed(st, now)
        return (exits.OK if doc["running"] else exits.FAIL), \
            json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if fmt == "prometheus":
        doc = typed(st, now)
        return (exits.OK if doc["running"] else exits.FAIL), prometheus(doc)
    if st is None:
        return exits.FAIL, {"shell": "HB_STATUS=missing\n"}.get(
            fmt, "fail: no status file: hb-watch is not running\n")
    a = status.age(st, now)
    stale = status.is_stale(st, now, runfiles.pid_alive)
    rc = exits.FAIL if stale else exits.OK
    if fmt == "shell":
        return rc, _shell(st, a, stale)
    u, s = st["updated"], st["self"]
    out = []
    if stale:
        out.append("stale: status of %s written %s s ago by pid %s: hb-watch is hung or "
                   "stopped; what follows is old"
                   % (status.me(st), "%.0f" % a if a else "?", u.get("pid", "?")))
    else:
        out.append("ok: hb-watch on %s, pid %s, status %.1f s old" % (
            status.me(st), u.get("pid", "?"), a))
    on, until = status.maintenance(st)
    out.append("self   %-12s %-7s holds %-7s maintenance %s" % (
        status.me(st), s.get("st", "?"), s.get("rsc_hold", "?"),
        "on until %s" % clock(until) if on else "off"))
    for n in st["node"]:
        if n.get("name") == status.me(st):
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
    a = status.age(st, now)
    stale = status.is_stale(st, now, runfiles.pid_alive)
    doc.update(stale=stale, running=not stale, node=status.me(st) or None, pid=_num(u.get("pid")),
               updated=_num(u.get("time")), age=None if a is None else round(a, 3))
    if stale:
        doc["reason"] = "no status written for %.0f s: hb-watch is hung or stopped" % (a or 0) \
            if a is not None and a > status.STALE \
            else "hb-watch (pid %s) is gone" % u.get("pid", "?")
    on, until = status.maintenance(st)
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
            out.append("  %s  %-8s -> %-8s %s" % (clock(status.to_float(w.get("time"))),
                                                  w.get("from"), w.get("to"), w.get("text")))
        if not recs:
            out.append("  no transition since hb-watch started")
    if status.is_stale(st, time.time(), runfiles.pid_alive):
        out.append("(status is stale: hb-watch is not running; this is its last word)")
    return exits.OK, "\n".join(out) + "\n"


def _shell(st: dict, a: float | None, stale: bool) -> str:
    def name(s: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in s.upper())

    def q(v: object) -> str:
        return "'" + str(v).replace("'", "'\\''") + "'"

    on, until = status.maintenance(st)
    kv = [("HB_STATUS", "stale" if stale else "ok"),
          ("HB_AGE", "%.1f" % a if a is not None else ""),
          ("HB_PID", st["updated"].get("pid", "")), ("HB_NODE", status.me(st)),
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
    running = st is not None and st["updated"] != {} and \
        not status.is_stale(st, now, runfiles.pid_alive)
    if args["hbstatus"]:
        if running:
            return CL_OK, "Heartbeat is running on this machine.\n", ""
        return CL_FAIL, "Heartbeat is stopped on this machine.\n", ""
    if not running or st is None:
        return CL_FAIL, "", "cl_status: Cannot signon with heartbeat\n"
    nodes = list(st["node"])
    if not any(n.get("name") == status.me(st) for n in nodes):
        nodes.insert(0, {"name": status.me(st), "status": "up", "kind": "self"})
    if args["listnodes"]:
        normal, pings = [n["name"] for n in nodes], [p["name"] for p in st["ping"]]
        out = pings if args["-p"] else normal if args["-n"] else normal + pings
        return CL_OK, "".join(x + "\n" for x in out), ""
    if args["rscstatus"]:
        from hb import hbapi            # lazy: hb-switch status does without it
        return CL_OK, hbapi.Cluster(st, "").resources() + "\n", ""
    node = args["NODE"].lower()
    if args["nodestatus"]:
        for p in st["ping"]:
            if p["name"] == node:
                s = "ping" if p.get("status") == "up" else "dead"
                return (CL_OK if s == "ping" else CL_FAIL), s + "\n", ""
        for n in nodes:
            if n["name"] == node:
                s = n.get("st") or n.get("status", "dead")
                if n["name"] == status.me(st):
                    s = st["self"].get("st", s)
                ok = s in ("active", "up", "ping")
                return (CL_OK if ok else CL_FAIL), s + "\n", ""
        return CL_PARAMETER_ERROR, "", "Error. May be due to incorrect node name\n"
    links = {ln.get("medium"): ln.get("status") for ln in st["link"] if ln["node"] == node}
    if node == status.me(st) and not links:
        links = {ln.get("medium"): "up" for ln in st["link"]}
    if not links and node not in (n["name"] for n in nodes):
        return CL_UNKNOWN_ERROR, "", "cl_status: Cannot start heartbeat link interface walk.\n"
    if args["listhblinks"]:
        return CL_OK, "".join("\t%s\n" % m for m in links), ""
    s = links.get(args["LINK"])
    if s is None:
        return CL_UNKNOWN_ERROR, "", "cl_status: Cannot get heartbeat link status\n"
    return (CL_OK if s == "up" else CL_FAIL), s + "\n", ""
