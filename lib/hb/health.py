"""Connectivity and resource health.  Pure: no I/O, times given by the caller.

Reach: ping nodes and ping groups (replies come from hb-beat as `t=ping` lines)
and the carrier of the interfaces that carry the groups' addresses (netlink
link events).  A ping node is dead after `deadping` without a reply and counts
as up again only once it has answered for `deadping` (two lost replies in a
row allowed, not three); a carrier loss counts at
once, its return after `deadping`.  So a change must last `deadping` before it
counts, and a lost reply or two changes nothing.  score() is what this node
reaches: -1 while a group's interface has no carrier, else the number of ping
nodes up, None while a ping node has not been judged yet.

Decision (Heartbeat's ipfail, built in): while this node holds groups and
reaches less than its live peer for a keepalive and GIVEUP_MARGIN (ipfail's
delayed giveup, covering the lag of the peer's count when both lose the same
ping node: both ping every keepalive, so their verdicts differ by less than one;
CARRIER_GRACE when this node has lost carrier, which both sides learn at once
and tell each other in a `t=reach` message), it hands its groups to the peer.
Equal counts move nothing; the peer's groups come back only under the
auto_failback rule, once this node reaches as much as the peer (may_fail_back).

Monitor (`monitor INTERVAL`, an hb extension): each group held and running
here is checked every interval, with a timeout; a check that fails (stopped,
timed out, could not run) restarts the group in place, and the third failure
within 10 intervals moves it to the peer.  An address removed under hb is a
failure at once.  Restarts are kept for an hour (hb-watch --check).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hb.settings import PingNode

INIT, UP, DEAD = "init", "up", "dead"
GIVEUP_KEEPALIVES = 1.0      # both ping every keepalive: verdicts differ by < 1 keepalive,
GIVEUP_MARGIN = 0.02         # s (a quarter keepalive at most): and t=reach's transit
FRESH_KEEPALIVES = 2         # pfresh counts ping nodes heard within deadping - 2 keepalives
CARRIER_GRACE = 0.03         # s (at most a keepalive): a carrier loss is known at once
BACK_GAP_KEEPALIVES = 3      # a dead ping node's run of replies survives 2 lost replies
MAX_FAILS = 3                # monitor failures within WINDOW_INTERVALS move a group
WINDOW_INTERVALS = 10
HOUR = 3600.0
OK, RESTART, MOVE = "ok", "restart", "move"


@dataclass
class PingState:
    name: str
    addrs: list[str]
    status: str = INIT
    since: float = 0.0
    last: float | None = None          # last reply
    back: float | None = None          # first reply of the current run while dead
    stale: bool = False                # up, but silent for Reach.fresh_for


@dataclass
class Change:
    """A counted change: a ping node or an interface going up or dead."""
    kind: str                          # 'ping' | 'link'
    name: str
    status: str                        # 'up' | 'dead'
    text: str


def describe(score: int | None, nolink: str = "") -> str:
    if score is None:
        return "not judged yet"
    if score < 0:
        return "no carrier on %s" % (nolink or "a group's interface")
    return "%d ping node%s" % (score, "" if score == 1 else "s")


class Reach:
    """What this node reaches: ping nodes and the carrier of the groups' interfaces."""

    def __init__(self, pings: list[PingNode], deadping: float, initdead: float,
                 keepalive: float, now: float, ifaces: list[str] | tuple = ()) -> None:
        self.start = now
        self.pings: dict[str, PingState] = {}
        self.byaddr: dict[str, list[str]] = {}
        self.carrier: dict[str, bool] = {}
        self.lost_at: dict[str, float] = {}
        self.back_at: dict[str, float] = {}
        self.reconfigure(pings, deadping, initdead, keepalive, now, ifaces)

    def reconfigure(self, pings: list[PingNode], deadping: float, initdead: float,
                    keepalive: float, now: float, ifaces: list[str] | tuple = ()) -> None:
        self.deadping, self.initdead, self.keepalive = deadping, initdead, keepalive
        self.gap = min(deadping, (BACK_GAP_KEEPALIVES + 0.5) * keepalive)
        fresh = deadping - FRESH_KEEPALIVES * keepalive
        self.fresh_for = fresh if fresh >= 2 * keepalive else None
        old = self.pings
        self.pings = {p.name: old.get(p.name) or PingState(p.name, list(p.addrs), since=now)
                      for p in pings}
        self.byaddr = {}
        for p in pings:
            self.pings[p.name].addrs = list(p.addrs)
            for a in p.addrs:
                self.byaddr.setdefault(a, []).append(p.name)
        self.ifaces = list(dict.fromkeys(ifaces))
        self.lost_at = {i: t for i, t in self.lost_at.items() if i in self.ifaces}
        self.back_at = {i: t for i, t in self.back_at.items() if i in self.ifaces}

    # ---------------------------------------------------------------- events

    def reply(self, name: str, addr: str, now: float) -> list[Change]:
        """A `t=ping src=NAME addr=ADDR` line; unknown names are looked up by address."""
        names = [name] if name in self.pings else self.byaddr.get(addr or name, [])
        out: list[Change] = []
        for n in names:
            p = self.pings[n]
            if p.status == DEAD:
                if p.back is None or p.last is None or now - p.last > self.gap:
                    p.back = now
                p.last = now
                self._back(p, now, out)
                continue
            p.last = now
            if p.status == INIT:
                self._set(p, UP, now, out, "ping node %s up" % n)
            elif p.stale:
                p.stale = False
                out.append(Change("fresh", n, UP, ""))
        return out

    def link(self, iface: str, up: bool, now: float) -> list[Change]:
        """Carrier of an interface changed (netlink); only the groups' interfaces count."""
        out: list[Change] = []
        if iface not in self.ifaces:
            return out
        self.carrier[iface] = up
        if not up:
            self.back_at.pop(iface, None)
            if iface not in self.lost_at:
                self.lost_at[iface] = now
                out.append(Change("link", iface, DEAD,
                                  "interface %s: carrier lost: connectivity lost" % iface))
        elif iface in self.lost_at:
            self.back_at.setdefault(iface, now)
            self._carrier_back(iface, now, out)
        return out

    def tick(self, now: float) -> list[Change]:
        out: list[Change] = []
        for p in self.pings.values():
            if p.status == UP and p.last is not None and now - p.last > self.deadping:
                self._set(p, DEAD, now, out, "ping node %s dead (no reply for %.2f s)"
                          % (p.name, now - p.last))
            elif (p.status == UP and not p.stale and self.fresh_for is not None
                  and p.last is not None and now - p.last > self.fresh_for):
                p.stale = True
                out.append(Change("fresh", p.name, DEAD, ""))
            elif p.status == INIT and now - self.start > max(self.initdead, self.deadping):
                self._set(p, DEAD, now, out, "ping node %s dead (no reply since the start)"
                          % p.name)
            elif p.status == DEAD and p.back is not None:
                if p.last is not None and now - p.last > self.gap:
                    p.back = None
                else:
                    self._back(p, now, out)
        for iface in list(self.back_at):
            self._carrier_back(iface, now, out)
        return out

    def _set(self, p: PingState, status: str, now: float, out: list, text: str) -> None:
        p.status, p.since, p.stale = status, now, False
        if status != DEAD:
            p.back = None
        out.append(Change("ping", p.name, status, text))

    def _back(self, p: PingState, now: float, out: list) -> None:
        if p.back is not None and now - p.back >= self.deadping:
            self._set(p, UP, now, out, "ping node %s up (answering for %.2f s)"
                      % (p.name, now - p.back))

    def _carrier_back(self, iface: str, now: float, out: list) -> None:
        if now - self.back_at[iface] >= self.deadping:
            del self.back_at[iface], self.lost_at[iface]
            out.append(Change("link", iface, UP, "interface %s: carrier back for %.2f s"
                              % (iface, self.deadping)))

    # ---------------------------------------------------------------- queries

    def count(self) -> int:
        return sum(p.status == UP for p in self.pings.values())

    def fresh(self) -> int:
        """Ping nodes up and heard within fresh_for: what the peer compares with
        when its own count drops (see Decider.judge)."""
        return sum(p.status == UP and not p.stale for p in self.pings.values())

    def deadlines(self) -> list[float]:
        """When tick() may change something without a new reply or link event."""
        ts = [self.start + max(self.initdead, self.deadping)]
        for p in self.pings.values():
            if p.last is not None:
                ts += [p.last + self.deadping, p.last + self.gap]
                if self.fresh_for is not None and p.status == UP and not p.stale:
                    ts.append(p.last + self.fresh_for)
            if p.back is not None:
                ts.append(p.back + self.deadping)
        ts += [t + self.deadping for t in self.back_at.values()]
        return ts

    def judged(self) -> bool:
        return all(p.status != INIT for p in self.pings.values())

    def nolink(self) -> str:
        """The groups' interfaces without carrier (comma-separated), or ''."""
        return ",".join(i for i in self.ifaces if i in self.lost_at)

    def score(self) -> int | None:
        if self.nolink():
            return -1
        if not self.judged():
            return None
        return self.count()

    def fields(self) -> dict[str, str]:
        """What the state file (so every status heartbeat) advertises."""
        f: dict[str, str] = {}
        if self.pings:
            f["pings"] = str(self.count())
            if self.fresh_for is not None:
                f["pfresh"] = str(self.fresh())
        if self.nolink():
            f["nolink"] = self.nolink()
        return f


def peer_score(fields: dict[str, str], kind: str) -> int | None:
    """The peer's reach from its status heartbeat: None when unknown (a Heartbeat node)."""
    if fields.get("nolink"):
        return -1
    p = fields.get("pings", "")
    if p.isdigit():
        return int(p)
    return 0 if kind == "hb" else None


class Decider:
    """ipfail's decision: hand the groups over when the peer reaches more, for long enough."""

    def __init__(self, keepalive: float) -> None:
        self.keepalive = keepalive
        self.worse_since: float | None = None
        self.grace = self.giveup()

    def judge(self, now: float, mine: int | None, peer: int | None, peer_alive: bool,
              holding: bool, peer_fresh: int | None = None) -> bool:
        """True when this node should hand every group it holds to the peer now.

        peer_fresh, the peer's ping nodes heard within deadping - 2 keepalives:
        had a ping node died for both, the peer would have said so a keepalive
        before this node's count dropped; if it still counts more, the loss is
        this node's alone and no grace is needed."""
        if not (holding and peer_alive) or mine is None or peer is None or mine >= peer:
            self.worse_since = None
            return False
        if self.worse_since is None:
            self.worse_since = now
        if mine >= 0 and peer_fresh is not None and peer_fresh > mine:
            return True
        self.grace = min(CARRIER_GRACE, self.keepalive) if mine < 0 else self.giveup()
        return now - self.worse_since >= self.grace - 1e-9

    def giveup(self) -> float:
        return GIVEUP_KEEPALIVES * self.keepalive + min(GIVEUP_MARGIN, self.keepalive / 4)

    def due(self) -> float | None:
        """When judge() may turn True without a new event (for the caller's timeout)."""
        return None if self.worse_since is None else self.worse_since + self.grace


def may_fail_back(mine: int | None, peer: int | None) -> bool:
    """auto_failback may give the peer its groups back only once it reaches as much."""
    return mine is None or peer is None or peer >= mine


# -------------------------------------------------------------------- monitor

@dataclass
class Watched:
    due: float
    token: int = 0                    # of the check in flight; 0: none
    deadline: float = 0.0
    fails: list = field(default_factory=list)      # failure times
    restarts: list = field(default_factory=list)   # restart times


class Monitor:
    """Due times, failures and restarts of the groups running here."""

    def __init__(self, interval: float | None, timeout: float | None = None) -> None:
        self.interval = interval
        self.timeout = timeout if timeout is not None else monitor_timeout(interval)
        self.groups: dict[int, Watched] = {}
        self.history: dict[int, Watched] = {}
        self.tokens = 0

    @property
    def on(self) -> bool:
        return bool(self.interval)

    def set_interval(self, interval: float | None, now: float) -> None:
        self.interval, self.timeout = interval, monitor_timeout(interval)
        for w in self.groups.values():
            w.due = min(w.due, now + (interval or 0.0))

    def track(self, i: int, now: float) -> None:
        """Group i is running here (started, restarted, recovered): check it in an interval."""
        w = self.groups.get(i) or self.history.pop(i, None) or Watched(now)
        w.due, w.token = now + (self.interval or 0.0), 0
        self.groups[i] = w

    def untrack(self, i: int) -> None:
        """Group i is no longer running here (stopping, given away)."""
        w = self.groups.pop(i, None)
        if w is not None:
            w.token = 0
            self.history[i] = w

    def tracked(self, i: int) -> bool:
        return i in self.groups

    def due(self, now: float) -> list[tuple[int, int]]:
        """Checks to run now: (group, token); each is in flight until result()."""
        if not self.on:
            return []
        out = []
        for i, w in sorted(self.groups.items()):
            if not w.token and now >= w.due:
                self.tokens += 1
                w.token, w.deadline = self.tokens, now + self.timeout
                out.append((i, w.token))
        return out

    def next_due(self) -> float | None:
        if not self.on or not self.groups:
            return None
        return min(w.deadline if w.token else w.due for w in self.groups.values())

    def result(self, i: int, token: int, ok: bool, now: float) -> str | None:
        """A check finished: OK, RESTART, MOVE; None when stale (the group moved since)."""
        w = self.groups.get(i)
        if w is None or not token or w.token != token:
            return None
        w.token = 0
        w.due = now + (self.interval or 0.0)
        if ok:
            return OK
        return self.failure(i, now)

    def expired(self, now: float) -> list[tuple[int, str]]:
        """Checks in flight past their timeout: failures, as (group, RESTART|MOVE)."""
        out = []
        for i, w in sorted(self.groups.items()):
            if w.token and now >= w.deadline:
                w.token = 0
                w.due = now + (self.interval or 0.0)
                out.append((i, self.failure(i, now)))
        return out

    def removed(self, i: int, now: float) -> str | None:
        """An address of group i vanished under us (netlink): a failure at once."""
        w = self.groups.get(i)
        if w is None:
            return None
        w.token = 0
        w.due = now + (self.interval or 0.0)
        return self.failure(i, now)

    def failure(self, i: int, now: float) -> str:
        w = self.groups[i]
        w.fails.append(now)
        self._prune(w, now)
        return MOVE if len(self.recent_fails(i, now)) >= MAX_FAILS else RESTART

    def restarted(self, i: int, now: float) -> None:
        w = self.groups.get(i) or self.history.get(i)
        if w is not None:
            w.restarts.append(now)
            self._prune(w, now)

    def forget_fails(self, i: int) -> None:
        """The group moved away for its failures: its count starts again here."""
        for d in (self.groups, self.history):
            if i in d:
                d[i].fails = []

    def window(self) -> float:
        return WINDOW_INTERVALS * (self.interval or 0.0)

    def recent_fails(self, i: int, now: float) -> list[float]:
        w = self.groups.get(i) or self.history.get(i)
        if w is None or not self.on:
            return []
        return [t for t in w.fails if now - t <= self.window()]

    def restarts(self, i: int, now: float) -> int:
        """Restarts of group i in the last hour."""
        w = self.groups.get(i) or self.history.get(i)
        return 0 if w is None else sum(1 for t in w.restarts if now - t <= HOUR)

    def _prune(self, w: Watched, now: float) -> None:
        keep = max(HOUR, self.window())
        w.fails = [t for t in w.fails if now - t <= keep]
        w.restarts = [t for t in w.restarts if now - t <= HOUR]


def monitor_timeout(interval: float | None) -> float:
    """A check's timeout: twice the interval, at least 2 s, at most 60 s."""
    return min(60.0, max(2.0, 2 * (interval or 0.0)))
