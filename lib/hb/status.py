"""RUNDIR/status: one record per line, every field escaped; its reader and its typed view.

A record is a kind, positional words, then key=value words, separated by single
spaces; `last` and `why` end with free text.  Every word and value is
percent-encoded (esc): a space, '%', '=', a control or any non-ASCII character
becomes %XX of its UTF-8 bytes, so that no value — a peer's `st`, its interface
names, an agent's message — can end a record or forge another.  The free text
keeps its spaces (esc_text).  The reader (parse) splits on '\\n' and ' ' only and
undoes the encoding.

Pure (access.py reads it and sets its permissions): render() writes it from plain
data (Owner.status_view gathers it); hb-switch, cl_status and hb-watch --check read
with parse(), ask the parsed status who we are, our peer, whether it is stale
(is_stale) and which groups we held (held_before); verdict() is hb-watch --check's
Nagios line.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from hb import exits

STALE = 10.0            # s: twice runfiles.STATUS_EVERY, or at once when the writer is gone
HISTORY = 8             # transitions kept per group: the `why` records
TRANSIENT = ("starting", "stopping", "probing")

_NOT_CAUSES = re.compile(r"link |ping node |group \d+: (starting|stopping) here$|.* (is )?"
                         r"(running|stopped|partly running) here$")
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7f)) - {"%", "="}


def esc(s: object, keep: str = "") -> str:
    """Percent-encode what could split or end a record (space, '%', '=', controls,
    non-ASCII); characters in keep pass (esc_text keeps spaces)."""
    s = str(s)
    if all(c in _SAFE or c in keep for c in s):
        return s
    return "".join(c if c in _SAFE or c in keep else
                   "".join("%%%02X" % b for b in c.encode("utf-8", "surrogatepass"))
                   for c in s)


def esc_text(s: object) -> str:
    return esc(s, keep=" ")


def unesc(s: str) -> str:
    """Undo esc; a '%' not followed by two hex digits stays as it is."""
    if "%" not in s:
        return s
    out, i, n = bytearray(), 0, len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 2 < n and _hex2(s[i + 1:i + 3]):
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out += c.encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "replace")


def _hex2(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def record(kind: str, /, *pos: object, text: str | None = None, **kv: object) -> str:
    """One line: kind, escaped positional words (an empty one written '-'), key=value
    (None values left out), then the free text."""
    words = [kind] + [esc(p) or "-" for p in pos]
    words += ["%s=%s" % (k, esc(v)) for k, v in kv.items() if v is not None]
    if text is not None:
        words.append(esc_text(text))
    return " ".join(words)


# ------------------------------------------------------------------ writing

Reach = tuple  # (score: int | None, nolink: str): how well a node reaches its ping nodes


@dataclass
class NodeView:
    name: str
    status: str                       # init | up | dead
    since: float                      # monotonic
    late: float                       # worst lateness this hour, s
    gen: int | None
    kind: str                         # self | hb | heartbeat | unknown
    lates: int                        # beats later than warntime this hour
    st: str
    cfd: str | None = None            # same | differs (not for this node)
    reach: Reach | None = None        # the peer's, when known
    stable: bool | None = None        # not for this node
    dt: float | None = None           # its deadtime, s (not for this node)


@dataclass
class GroupView:
    index: int
    here: bool                        # held here (or may still run here)
    there: bool                       # the live peer advertises it
    state: str                        # groups.STATES
    dirty: bool                       # a stop failed: it may still run here
    pref: str
    since: float                      # monotonic
    fails: int
    restarts: int | None
    key: str
    extra: dict = field(default_factory=dict)


@dataclass
class View:
    """What RUNDIR/status says, in plain values; times are monotonic."""
    pid: int
    me: str
    peer: str
    st: str
    rsc_hold: str
    maint_until: float | None         # in maintenance until then
    reach: Reach | None               # ours, when reach is shown at all
    stable: bool
    nodes: list[NodeView]
    links: list[tuple[str, str, str, float]]      # node, medium, status, since
    pings: list[tuple[str, str, float]]           # name, up | dead, since
    groups: list[GroupView]
    history: Iterable[tuple[int, float, str, str, str]]   # History.items()
    last: tuple[float, str]


class Epoch:
    """Monotonic times as epoch seconds for RUNDIR/status.  One offset is kept while
    the wall clock keeps pace (re-sampled at each write, the offset carried the
    write's own delay, so a `since` read one second more now and then); a step of
    the clock of more than `step` seconds is followed."""

    def __init__(self, step: float = 1.0) -> None:
        self.step = step
        self.off: float | None = None

    def wall(self, now: float, off: float) -> float:
        """The epoch time at monotonic `now`; off: time.time() - time.monotonic(),
        sampled together just now."""
        if self.off is None or abs(off - self.off) > self.step:
            self.off = off
        return now + self.off


def render(v: View, now: float, wall: float) -> str:
    """RUNDIR/status's text: wall is the epoch time at monotonic `now`."""
    def ep(t: float) -> int:
        return int(wall - (now - t))

    def reach(r: Reach | None) -> dict:
        return {} if r is None else {"reach": "?" if r[0] is None else r[0],
                                     "nolink": r[1] or None}

    lines = [record("updated", int(wall), pid=v.pid, node=v.me)]
    lines.append(record("self", v.me, st=v.st, rsc_hold=v.rsc_hold,
                        maintenance="on" if v.maint_until is not None else "off",
                        until=ep(v.maint_until) if v.maint_until is not None else None,
                        **reach(v.reach), stable=int(v.stable)))
    for n in v.nodes:
        kv: dict = {"since": ep(n.since), "late": "%.3g" % n.late,
                    "gen": "%x" % n.gen if n.gen is not None else "0",
                    "kind": n.kind if n.kind != "unknown" else "hb",
                    "lates": n.lates, "st": n.st}
        if n.cfd is not None:
            kv["cfd"] = n.cfd
        kv.update(reach(n.reach))
        if n.stable is not None:
            kv["stable"] = int(n.stable)
        if n.dt is not None:
            kv["dt"] = "%d" % round(n.dt * 1000)      # its dead timer, ms
        lines.append(record("node", n.name, n.status, **kv))
    for node, medium, st, since in v.links:
        lines.append(record("link", node, medium, st, since=ep(since)))
    for name, st, since in v.pings:
        lines.append(record("ping", name, st, since=ep(since)))
    for g in v.groups:
        holder = "both" if g.here and g.there else v.me if g.here else \
            v.peer if g.there else "none"
        state = g.state if g.state != "probing" else "starting"
        if g.dirty:
            state = "stuck"           # a stop failed: it may still run here
        if not g.here and g.there:
            state = "running"
        lines.append(record("group", g.index, holder, state, pref=g.pref, since=ep(g.since),
                            fails=g.fails, restarts=g.restarts, key=g.key, **g.extra))
    for i, t, old, new, why in v.history:
        lines.append(record("why", i, ep(t), old, new, text=why))
    lines.append(record("last", ep(v.last[0]), text=v.last[1]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ reading

FIXED = {"updated": ["time"], "self": ["name"], "node": ["name", "status"],
         "link": ["node", "medium", "status"], "ping": ["name", "status"],
         "group": ["index", "holder", "state"], "why": ["group", "time", "from", "to"],
         "last": ["time"]}
LISTS = ("node", "link", "ping", "group", "why")
TEXT = {"last", "why"}


def parse(text: str) -> dict:
    """status text -> {'updated': {...}, 'self': {...}, 'node': [...], 'link': [...],
    'ping': [...], 'group': [...], 'why': [...], 'last': {'time': float|None, 'text': str}}.

    Values are strings (unescaped) but last.time; unknown kinds and short lines are
    skipped, never raised on."""
    st: dict = {k: [] if k in LISTS else {} for k in FIXED}
    for line in text.split("\n"):
        words = [w for w in line.split(" ") if w]
        if not words or words[0] not in FIXED:
            continue
        kind, names = words[0], FIXED[words[0]]
        if kind in TEXT:
            head = line.split(" ", len(names) + 1)[1:]
            rec: dict = dict(zip(names, (unesc(w) for w in head[:len(names)])))
            rec["text"] = unesc(head[len(names)]) if len(head) > len(names) else ""
            if kind == "last":
                st["last"] = {"time": to_float(rec.get("time")), "text": rec["text"]}
            elif len(rec) == len(names) + 1:
                st["why"].append(rec)
            continue
        if len(words) <= len(names) or any("=" in w for w in words[1:1 + len(names)]):
            continue                  # positional words never hold '=' (escaped)
        rec = {n: unesc(w) for n, w in zip(names, words[1:])}
        for w in words[1 + len(names):]:
            k, sep, v = w.partition("=")
            if sep and k not in rec:
                rec[unesc(k)] = unesc(v)
        if kind in LISTS:
            st[kind].append(rec)
        else:
            st[kind] = rec
    return st


def to_float(s: str | None) -> float | None:
    try:
        return float(s) if s is not None else None
    except ValueError:
        return None


def _int(s: object) -> int | None:
    try:
        return int(str(s))
    except ValueError:
        return None


# ------------------------------------------------------------------ history

class History:
    """The last HISTORY transitions of each group: (monotonic time, from, to, reason).

    Leaving a transient state (starting, stopping, probing) for a settled one keeps
    the reason it was entered with: a group is running because of what started it."""

    def __init__(self, keep: int = HISTORY) -> None:
        self.keep = keep
        self.by_group: dict[int, collections.deque] = {}
        self.cause = ""

    def heard(self, text: str) -> None:
        """A notable event (Owner's `last`): the cause of the transitions that follow,
        unless it is a link's or a ping node's news, or a group's own progress."""
        if not _NOT_CAUSES.match(text):
            self.cause = text

    def note(self, group: int, now: float, old: str, new: str, reason: str = "") -> None:
        q = self.by_group.setdefault(group, collections.deque(maxlen=self.keep))
        reason = self.cause or reason
        if old in TRANSIENT and new != "failed" and q and q[-1][2] == old:
            reason = q[-1][3]
        q.append((now, old, new, reason))

    def items(self) -> Iterable[tuple[int, float, str, str, str]]:
        for i in sorted(self.by_group):
            for t, old, new, why in self.by_group[i]:
                yield i, t, old, new, why


# ------------------------------------------------------------------ the parsed status

Alive = Callable[[int], bool]     # runfiles.pid_alive: a process with this pid exists


def age(st: dict, now: float) -> float | None:
    t = to_float(st["updated"].get("time"))
    return None if t is None else max(0.0, now - t)


def is_stale(st: dict, now: float, alive: Alive | None = None) -> bool:
    """Not rewritten for STALE seconds, or the hb-watch that wrote it is gone."""
    a = age(st, now)
    if a is None or a > STALE:
        return True
    pid = st["updated"].get("pid", "")
    return alive is not None and pid.isdigit() and not alive(int(pid))


def me(st: dict) -> str:
    return st["self"].get("name") or st["updated"].get("node", "")


def peer(st: dict) -> dict | None:
    """The other node's record (two-node clusters: the first that is not us)."""
    for n in st["node"]:
        if n.get("name") != me(st) and n.get("kind") != "self":
            return n
    return None


def maintenance(st: dict) -> tuple[bool, float | None]:
    """(on, until) from the self record: maintenance=off, maintenance=until=EPOCH or until=."""
    v = st["self"].get("maintenance", "off")
    until = to_float(st["self"].get("until") or (v[6:] if v.startswith("until=") else None))
    return (v != "off" or until is not None), until


def held_before(text: str, node: str) -> list[int]:
    """The groups an hb-watch of NODE held, from the status it left (text)."""
    st = parse(text)
    if st["updated"].get("node") != node:
        return []
    return [int(g["index"]) for g in st["group"] if g["index"].isdigit()
            and g["holder"] in (node, "both") and g["state"] != "stopped"]


# ------------------------------------------------------------------ hb-watch --check

def verdict(text: str | None, path: str, now: float, max_age: float,
            warn_age: float | None = None, alive: Alive | None = None) -> tuple[int, str]:
    """hb-watch --check on the text of PATH: (Nagios code, one line: 'HB OK - ...' and
    perfdata).  alive(pid) tells whether the hb-watch that wrote it still runs."""
    st = parse(text or "")
    if not text or not st["updated"]:
        return exits.NAGIOS_UNKNOWN, "HB UNKNOWN - no status in %s: is hb-watch running?" % path
    warn_age = max_age if warn_age is None else warn_age
    crit: list[str] = []
    warn: list[str] = []
    t = to_float(st["updated"].get("time"))
    if t is None:
        return exits.NAGIOS_UNKNOWN, "HB UNKNOWN - unreadable status in %s" % path
    age_ = max(0.0, now - t)
    node = st["updated"].get("node", "?")
    pid = st["updated"].get("pid", "?")
    if alive is not None and pid.isdigit() and not alive(int(pid)):
        crit.append("hb-watch (pid %s) is not running: its status is %d s old" % (pid, age_))
    elif age_ > warn_age:
        (crit if age_ > max_age else warn).append("status is %d s old (pid %s)" % (age_, pid))
    starting = st["self"].get("st") == "up"
    if st["self"].get("maintenance", "off") != "off":
        warn.append("maintenance mode")
    late = _nodes_check(st, crit, warn)
    if any(n.get("status") == "init" and n.get("kind") != "self" for n in st["node"]):
        starting = True
    links = len(st["link"])
    links_up = sum(ln["status"] == "up" for ln in st["link"])
    warn += ["link %s %s dead" % (ln["node"], ln["medium"]) for ln in st["link"]
             if ln["status"] == "dead"]
    warn += ["ping node %s dead" % p["name"] for p in st["ping"] if p["status"] == "dead"]
    held, mine = _groups_check(st, node, starting, crit, warn)
    crit += _reach_check(st, node, mine)
    perf = "age=%ds;%g;%g;0 late=%.3fs;;;0 links_up=%d;;;0;%d" % (
        age_, warn_age, max_age, late, links_up, links)
    if crit:
        return exits.NAGIOS_CRITICAL, "HB CRITICAL - %s | %s" % ("; ".join(crit + warn), perf)
    if warn:
        return exits.NAGIOS_WARNING, "HB WARNING - %s | %s" % ("; ".join(warn), perf)
    summary = "%s: groups %s" % (node, ", ".join(held) or "none held")
    return exits.NAGIOS_OK, "HB OK - %s | %s" % (summary, perf)


def _nodes_check(st: dict, crit: list[str], warn: list[str]) -> float:
    """The node records' complaints; returns the worst lateness of the peers."""
    late = 0.0
    for n in st["node"]:
        name, state = n["name"], n["status"]
        if n.get("kind") == "self":
            if state == "dead":
                crit.append("no local heartbeat: hb-beat is not running")
            continue
        late = max(late, to_float(n.get("late", "0")) or 0.0)
        if state == "dead":
            crit.append("node %s dead" % name)
        elif state == "init":
            warn.append("node %s not heard yet" % name)
        if n.get("lates", "0") not in ("0", ""):
            warn.append("node %s late %s times in the last hour (worst %s s)"
                        % (name, n["lates"], n.get("late", "?")))
        if n.get("cfd") == "differs":
            warn.append("configuration differs from %s" % name)
    return late


def _groups_check(st: dict, node: str, starting: bool, crit: list[str],
                  warn: list[str]) -> tuple[list[str], list[str]]:
    """The group records' complaints: (what is held where, the groups held here)."""
    held, mine = [], []
    for g in st["group"]:
        num, holder, state = g["index"], g["holder"], g["state"]
        if holder in (node, "both"):
            mine.append(num)
        if g.get("restarts", "0") not in ("0", ""):
            warn.append("group %s restarted %s times in the last hour" % (num, g["restarts"]))
        if state == "stuck":
            crit.append("group %s may still run on %s: its stop failed" % (num, holder))
        elif holder == "both":
            crit.append("group %s held by both nodes" % num)
        elif holder == "none":
            (warn if starting else crit).append("group %s held by nobody (%s)" % (num, state))
        elif state in ("starting", "stopping"):
            warn.append("group %s %s on %s" % (num, state, holder))
        else:
            held.append("%s on %s" % (num, holder))
    return held, mine


def _reach_check(st: dict, node: str, mine: list[str]) -> list[str]:
    """CRITICAL: this node holds groups without connectivity while the peer has it."""
    here = _int(st["self"].get("reach", ""))
    for n in st["node"]:
        there = _int(n.get("reach", ""))
        if (mine and here is not None and there is not None and here <= 0 and there > here
                and n.get("kind") != "self" and n["status"] == "up"):
            nolink = st["self"].get("nolink")
            return ["%s holds groups %s with %s while %s reaches %s" % (
                node, ",".join(mine), "no carrier on " + nolink if nolink else
                "no ping node", n["name"], "%d ping node(s)" % there)]
    return []
