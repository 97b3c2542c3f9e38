"""Liveness and resource ownership between two nodes.  Pure: no I/O, no clock.

An Owner is fed events with the time they happen (monotonic seconds):
message(fields, now), request(line, now), tick(now), agent_done(group, action,
rc, now), check_done(group, token, ok, detail, now), link(iface, up, now),
addr_gone(group, addr, now), shutdown(now), reconfigure(cfg, now).  Each
returns a list of actions for hb-watch to carry out: Send a message line, Run a
group's agents, Check a group (monitor, off the loop), Log a line, Save state
and status, feed the Watchdog, Exit.

Ownership is one variable per group, `assign` (this node, the peer, or not yet
decided), moved by Heartbeat's haresources-mode protocol (reference §4.10-4.15:
starting/resource, ask_resources, hb_takeover, ip-request, shutdone) and by
node deaths.  A second table then turns (group state, wanted here, held by the
peer) into agent runs, so a group is started only when a live peer does not
advertise it, and groups never wait on each other.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from hb import health, lines, runfiles, status
from hb.settings import Config, Group, digest_diff

# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Send:
    """A message for hb-beat to send now (beat.fifo)."""
    fields: dict


@dataclass(frozen=True)
class Run:
    """Run a group's agents: start (left to right), stop (right to left), status."""
    group: int
    action: str


@dataclass(frozen=True)
class Check:
    """Check a running group's resources (monitor), off the loop; answer check_done."""
    group: int
    token: int


@dataclass(frozen=True)
class Log:
    level: str          # debug | info | warning | error
    text: str


@dataclass(frozen=True)
class Save:
    """state and status changed: rewrite them."""


@dataclass(frozen=True)
class Watchdog:
    """Our own heartbeat went out: feed the watchdog."""


@dataclass(frozen=True)
class Exit:
    code: int


@dataclass(frozen=True)
class Reboot:
    """stop_failure reboot: a group could not be stopped; run the reboot command."""
    group: int


@dataclass(frozen=True)
class Alert:
    """A group is held because its stop failed: tell the admins (the group's MailTo)."""
    group: int
    text: str


Action = Union[Send, Run, Check, Log, Save, Watchdog, Exit, Reboot, Alert]

ME, PEER = "me", "peer"
STOPPED, STARTING, RUNNING, STOPPING, FAILED, PROBING = (
    "stopped", "starting", "running", "stopping", "failed", "probing")
HELD = (STARTING, RUNNING, STOPPING, PROBING)
RQSTDELAY = 10.0          # Heartbeat's wait when both start (Heartbeat peers only)
ASK_TIMEOUT = 10.0        # no `other` reply to `ask_resources info=me`
STOP_RETRY = 1.0
STOP_RETRIES = 10
STUCK_RETRY = 60.0        # s: a group that failed to stop for good is tried again (hold)
HOUR = 3600.0
TAKEOVER_MAP = {"all": "all", "local": "foreign", "foreign": "local", "failback": "all"}

# (group state, wanted here) -> (agent action, next state); the peer gate and
# split brain are decided before this table is consulted.
GROUP_TABLE: dict[tuple[str, bool], tuple[str, str]] = {
    (STOPPED, True): ("start", STARTING),
    (RUNNING, False): ("stop", STOPPING),
    (STOPPING, False): ("stop", STOPPING),      # a failed stop, retried
    (STOPPING, True): ("stop", STOPPING),       # finish the stop first
}

# (action, state while running, succeeded) -> next state
RESULT_TABLE: dict[tuple[str, str, bool], str] = {
    ("start", STARTING, True): RUNNING,
    ("start", STARTING, False): FAILED,
    ("start", RUNNING, True): RUNNING,          # re-announce
    ("start", RUNNING, False): RUNNING,
    ("stop", STOPPING, True): STOPPED,
    ("stop", STOPPING, False): STOPPING,
    ("restart", RUNNING, True): RUNNING,        # monitor: stopped resources started again
    ("restart", RUNNING, False): RUNNING,
}


# What a peer's field may hold (ASCII only: int() would take other scripts' digits).
_HEX = re.compile(r"[0-9a-fA-F]{1,16}")
_DEC = re.compile(r"[0-9]{1,4}")
_IFACES = re.compile(r"[A-Za-z0-9_.:@-]{1,15}(,[A-Za-z0-9_.:@-]{1,15}){0,31}")
_DIGEST = re.compile(r"[0-9a-f]{1,64}")
ST_WORDS = ("init", "up", "active", "dead", "ping")
HOLD_WORDS = ("none", "local", "foreign", "all")
DT_RANGE = (0.01, 86400.0)        # s: an advertised deadtime outside this is ignored
MAINT_MAX = 366 * 86400.0         # s: `maintenance on SECONDS` at most a year


def _hex(s: str | None) -> int | None:
    """A hexadecimal field (generation, sequence, dt): at most 16 ASCII hex digits."""
    return int(s, 16) if s and _HEX.fullmatch(s) else None


def _dec(s: str | None) -> int | None:
    """A small decimal count (pings, pfresh): at most 4 ASCII digits."""
    return int(s) if s and _DEC.fullmatch(s) else None


def _group_list(s: str | None, known: Iterable[int]) -> set | None:
    """grps=/stuck=: 'none' or comma-separated group numbers of this haresources;
    None when malformed (the field is then ignored as a whole)."""
    if s is None or len(s) > 1024:
        return None
    if s in ("", "none"):
        return set()
    out = set()
    for x in s.split(","):
        if not _DEC.fullmatch(x) or int(x) not in known:
            return None
        out.add(int(x))
    return out


class Hourly:
    """The maximum and count of values over the last hour, in one-minute buckets:
    bounded however often values come (a keepalive of 10 ms is 360,000 an hour)."""

    def __init__(self) -> None:
        self.buckets: collections.deque = collections.deque(maxlen=62)  # [minute, max, n]

    def add(self, t: float, value: float = 0.0) -> None:
        m = int(t // 60)
        if self.buckets and self.buckets[-1][0] == m:
            b = self.buckets[-1]
            b[1], b[2] = max(b[1], value), b[2] + 1
        else:
            self.buckets.append([m, value, 1])

    def prune(self, now: float) -> None:
        while self.buckets and (self.buckets[0][0] + 1) * 60 < now - HOUR:
            self.buckets.popleft()

    def worst(self) -> float:
        return max((b[1] for b in self.buckets), default=0.0)

    def __len__(self) -> int:
        return sum(b[2] for b in self.buckets)

    def __bool__(self) -> bool:
        return bool(self.buckets)


@dataclass
class GroupState:
    group: Group
    state: str = STOPPED
    assign: str | None = None
    busy: str | None = None          # agent action running
    since: float = 0.0
    fails: int = 0
    stop_tries: int = 0
    retry_at: float = 0.0
    dirty: bool = False              # a stop failed for good: may still run here
    rollback: bool = False           # stopping what a failed start left: FAILED when done
    verify: bool = False             # status after the last failed stop: is it still up?
    needs_failback: bool = False     # taken because its preferred node died
    split: bool = False              # held on both sides: waiting for the peer to let go
    reannounce: bool = False
    recovered: bool = False          # held by this node's previous hb-watch
    dup: bool = False                # the peer advertises it too, while it runs here
    yield_: bool = False             # held while this node was frozen


@dataclass
class Node:
    name: str
    kind: str = "unknown"            # hb | heartbeat | self
    status: str = "init"             # init | up | dead
    since: float = 0.0
    last: float | None = None        # last status heartbeat
    gen: int | None = None
    seq: int = -1
    status_seq: int = -1             # of its last status heartbeat
    block_seq: int = -1              # of the request that blocked groups (hb peer)
    holds_seq: int = -1              # of the message its holdings were last taken from
    heard: float = -1e9              # last message while still `init` (not up yet)
    dt: float | None = None          # its advertised deadtime
    st: str = ""
    stable: bool = False
    holds: set = field(default_factory=set)       # group indexes it holds
    holds_known: bool = False
    blocked: set = field(default_factory=set)     # Heartbeat peer: not released yet
    cfd: str = ""
    pings: int | None = None
    pfresh: int | None = None        # its ping nodes heard lately (health.Reach.fresh)
    nolink: str = ""
    back_at: float = -1e9            # came back from dead, or restarted
    rsc_hold: str = ""               # the classes it says it holds (relative to it)
    late: Hourly = field(default_factory=Hourly)      # lateness of each beat
    lates: Hourly = field(default_factory=Hourly)     # beats later than warntime
    stuck: set = field(default_factory=set)      # groups it said may still run there (a
    #                                              failed stop): never started here for it
    shown: tuple = ()                # its fields in RUNDIR/status as last written
    beats: int = 0
    shutdown: bool = False


@dataclass
class Link:
    node: str
    medium: str
    status: str = "up"
    since: float = 0.0
    last: float = 0.0
    slack: float = 0.0               # last heard through a duplicate: reported late


@dataclass
class Handshake:
    role: str                        # giver | taker
    what: str                        # all | local | foreign, relative to the giver
    groups: set
    phase: str                       # asked | stopping | waiting
    t0: float
    reason: str = ""
    peer_seq: int = 1 << 64          # giver: the taker's `other` (its later status is news)


def _holds_from(rsc_hold: str, node: str, groups: list[Group]) -> set:
    """Groups meant by rsc_hold=none|local|foreign|all, relative to node."""
    return {g.index for g in groups
            if rsc_hold == "all" or (rsc_hold == "local" and g.node == node)
            or (rsc_hold == "foreign" and g.node != node)}


def _hold_word(held: Iterable[int], node: str, groups: list[Group],
               claims: dict | None = None) -> str:
    """rsc_hold= for the groups held: a class (local, foreign) with no group in it
    counts as held when claimed, as Heartbeat tracks classes, not groups."""
    held = set(held)
    claims = claims or {}
    loc = any(g.index in held and g.node == node for g in groups) or (
        claims.get("local", False) and not any(g.node == node for g in groups))
    fgn = any(g.index in held and g.node != node for g in groups) or (
        claims.get("foreign", False) and not any(g.node != node for g in groups))
    return {(True, True): "all", (True, False): "local",
            (False, True): "foreign"}.get((loc, fgn), "none")


def _sent_at(f: dict, now: float) -> float:
    """When hb-beat sent our own status (its `_rt`: the line may be written a few
    ms later, with the peer's answer), on the same monotonic clock; else now."""
    try:
        rt = float(f.get("_rt", ""))
    except ValueError:
        return now
    return rt if now - 1.0 < rt <= now else now


class Owner:
    """The state machine of one hb-watch (see the module docstring)."""

    def __init__(self, cfg: Config, now: float, digest: str = "",
                 held: Iterable[int] = (), ifaces: Iterable[str] = (),
                 peer_stuck: Iterable[int] = ()) -> None:
        self.cfg = cfg
        self.me = cfg.node
        self.digest = digest
        self.start = now
        self.peer_name = cfg.peers[0] if cfg.peers else ""
        self.nodes = {n: Node(n, since=now) for n in cfg.nodes}
        self.nodes[self.me].kind = "self"
        self.links: dict[tuple[str, str], Link] = {}
        self.ifaces = list(ifaces)
        self.reach = health.Reach(cfg.pings, cfg.deadping, cfg.initdead, cfg.keepalive, now,
                                  self.ifaces if cfg.pings else ())
        self.decider = health.Decider(cfg.keepalive)
        self.mon = health.Monitor(cfg.monitor)
        self.gs = {g.index: GroupState(g, since=now) for g in cfg.groups}
        self.comm_up = False
        self.st = "up"
        self.hs: Handshake | None = None
        self.gives: list[tuple[str, set, str]] = []      # queued standby (what, groups, why)
        self.ipreq: set = set()          # groups to answer ip-request-resp for once stopped
        self.rqst_at: float | None = None
        self.last_tick = -1e9
        self.maint_until: float | None = None
        self.shutting = False
        self.exited = False
        self.cfd_logged = False
        self.announced = False
        self.kind_logged: set = set()
        self.last = (now, "started")
        self.history = status.History()       # the `why` records of RUNDIR/status
        self.next_summary = now + HOUR
        self.last_event = now
        self.yield_until = -1e9
        self.claims = {"local": False, "foreign": False}     # classes, for rsc_hold
        self.silent = False              # our own heartbeat stopped: judge nobody, hold nothing
        self.hush_from: float | None = None     # heard again: take nothing until a peer
        #                                         status received after this (or its death)
        self.gone = False                # hb-beat's pipe closed for good: release and exit
        self.init_from = now             # initdead counts from here
        self.own_gen: int | None = None  # our hb-beat's generation
        self.rebooting = False           # stop_failure reboot: decided (stuck= no longer sent)
        self.reboot_group: int | None = None
        self.reboot_sent = False         # the Reboot action was given
        self.echoed_stuck: set = set()   # stuck= in our last own heartbeat
        self.bad_logged: dict[str, float] = {}      # malformed field -> when last logged
        for i in held:
            if i in self.gs:
                gs = self.gs[i]
                gs.state, gs.busy, gs.recovered = PROBING, "status", True
        self._pending_runs = [i for i in held if i in self.gs]
        if self.peer is not None:      # what it said before this hb-watch (STATEDIR)
            self.peer.stuck = {i for i in peer_stuck if i in self.gs}

    # ------------------------------------------------------------ helpers

    @property
    def peer(self) -> Node | None:
        return self.nodes.get(self.peer_name)

    def _log(self, out: list, level: str, text: str, last: float | None = None) -> None:
        out.append(Log(level, text))
        if last is not None:
            self.last = (last, text)
            self.history.heard(text)

    def _set_group(self, gs: GroupState, state: str, now: float) -> None:
        if gs.state != state:
            self.history.note(gs.group.index, now, gs.state, state, self.last[1])
            gs.state = state
            gs.since = now

    def _deadtime(self, n: Node) -> float:
        return n.dt if n.dt else self.cfg.deadtime

    def peer_alive(self) -> bool:
        p = self.peer
        return bool(p) and p.status == "up" and not p.shutdown

    def peer_has(self, i: int) -> bool:
        """Does the live peer advertise (or not yet release) group i?  Or did the peer,
        live or not, last say that group i may still run there (its stop failed)?"""
        p = self.peer
        if p is not None and i in p.stuck:
            return True
        if not self.peer_alive():
            return False
        return i in p.holds or i in p.blocked

    def held(self) -> list[int]:
        return [i for i, gs in self.gs.items() if gs.state in HELD or gs.dirty]

    def stuck(self) -> list[int]:
        """Groups that may still run here although a stop failed (retried or given up):
        advertised as `stuck=`, so that the peer does not start them even if this node
        then goes silent; not once the reboot is decided (the peer takes them then)."""
        if self.rebooting:
            return []
        return [i for i, gs in self.gs.items()
                if gs.dirty or gs.verify or (gs.state == STOPPING and gs.stop_tries > 0)]

    def silence_after(self) -> float:
        """Without our own heartbeat for this long (deadtime/2: halfway between the
        keepalive that normally separates two and the deadtime - keepalive after
        which a peer's silence could be our own deafness), this node is silent."""
        return self.cfg.deadtime / 2

    def hearing(self, now: float) -> bool:
        """Our own heartbeat is current (at most 1.25 keepalives old, deadtime/2 at
        most): what we do not hear is not our own deafness, and a peer may be judged.
        Otherwise judging waits for our next heartbeat (or silence, above)."""
        me = self.nodes[self.me]
        return (not self.silent and not self.gone and me.last is not None
                and now - me.last <= min(1.25 * self.cfg.keepalive, self.silence_after()))

    def quiet(self) -> bool:
        """Silent, or heard again only lately: start nothing, take nothing."""
        return self.silent or self.hush_from is not None

    def wanted(self) -> list[int]:
        return [i for i, gs in self.gs.items() if gs.assign == ME]

    def stable(self) -> bool:
        return (self.comm_up and self.hs is None and self.rqst_at is None and not self.quiet()
                and not any(gs.busy or gs.state in (STARTING, STOPPING, PROBING)
                            for gs in self.gs.values()))

    def peer_stable(self) -> bool:
        p = self.peer
        return self.peer_alive() and p.stable and p.st == "active"

    def grace(self) -> float:
        """How long a node back from dead or restarted may take to drop what it no
        longer holds (its first heartbeats carry its old state) before a group
        advertised on both sides counts as a split brain."""
        return 2 * self.cfg.keepalive + 1.0

    def _clock(self, now: float, out: list) -> None:
        """A gap longer than deadtime between two events: this node was frozen
        (SIGSTOP, a VM paused, swap storm).  The peer may have taken our groups: keep
        each only if the peer does not say it holds it, and judge nobody dead for a
        missed deadtime we slept through."""
        gap = now - self.last_event
        self.last_event = now
        if gap <= self.cfg.deadtime:
            return
        self._log(out, "warning", "this node did not run for %.1f s (more than deadtime): "
                  "groups the peer took meanwhile are left to it" % gap, now)
        for n in self.nodes.values():
            if n.last is not None:
                n.last = now
        for ln in self.links.values():
            ln.last = now
        self.yield_until = now + max(2 * self.cfg.deadtime, self.grace())
        for gs in self.gs.values():
            if gs.state in (RUNNING, STARTING):
                gs.yield_ = True

    def in_maintenance(self, now: float) -> bool:
        return self.maint_until is not None and now < self.maint_until

    def _claim(self, what: str, value: bool) -> None:
        """Take or give up the responsibility for a class (relative to this node).
        The peer's class is claimed only when handed over, never by its death: an
        empty class then stays the peer's to claim when it comes back."""
        for c in ("local", "foreign"):
            if what in (c, "all"):
                self.claims[c] = value

    def _mine(self, what: str, node: str) -> set:
        return _holds_from(what, node, self.cfg.groups)

    def _resource(self, info: str = "", after: bool = False) -> Send:
        hold = self.wanted() if after else self.held()
        word = _hold_word(hold, self.me, self.cfg.groups, self.claims)
        f = {"t": "resource", "rsc_hold": word, "rtype": "full",
             "isstable": "1" if self.stable() else "0"}
        if info:
            f["info"] = info
        f["grps"] = ",".join(str(i) for i in self.held()) or "none"
        if self.stuck():
            f["stuck"] = ",".join(map(str, self.stuck()))
        return Send(f)

    def state_fields(self) -> dict[str, str]:
        """What every status heartbeat advertises (RUNDIR/state)."""
        f = {"st": self.st,
             "rsc_hold": _hold_word(self.held(), self.me, self.cfg.groups, self.claims),
             "grps": ",".join(str(i) for i in self.held()) or "none",
             "isstable": "1" if self.stable() else "0", "hbv": "1"}
        if self.stuck():
            f["stuck"] = ",".join(map(str, self.stuck()))
        if self.digest:
            f["cfd"] = self.digest
        f.update(self.reach.fields())
        f["watch"] = runfiles.writer_id()    # read by hb-beat only: a dead writer's state is stale
        return f

    def worst_late(self, n: Node, now: float) -> float:
        n.late.prune(now)
        n.lates.prune(now)
        return n.late.worst()

    # ------------------------------------------------------------ events

    def begin(self, now: float) -> list[Action]:
        """The first actions: probe the groups held before a respawn."""
        out: list[Action] = [Run(i, "status") for i in self._pending_runs]
        if self._pending_runs:
            self._log(out, "info", "recovering groups %s held before the restart: checking them"
                      % ",".join(map(str, self._pending_runs)), now)
        self._pending_runs = []
        out.append(Save())
        return out

    def message(self, f: dict, now: float) -> list[Action]:
        out: list[Action] = []
        self._clock(now, out)
        t, src, via = f.get("t", ""), f.get("src", "").lower(), f.get("_via", "")
        if t == "ping" or via == "ping":
            self._ping(f, now, out)
            return out
        if src == self.me:
            if t == "status" and via == "local":
                out.append(Watchdog())
                self._heard_self(f, _sent_at(f, now), out)
                self._reconcile(now, out)
            return out
        n = self.nodes.get(src)
        if n is None:
            return out
        gen, seq = _hex(f.get("hg")), _hex(f.get("seq"))
        if gen is not None and n.gen is not None and (
                gen < n.gen or (gen == n.gen and t == "status" and seq is not None
                                and seq < n.status_seq)):
            return out                # an older run's message, or a status overtaken:
        #                               it says nothing of now, not even that it lives
        if via and via != "local":
            self._link_heard(n, via, now, out, bool(f.get("_dup")))
        if f.get("_dup"):
            return out
        if n.status == "init":
            n.heard = now             # alive, if not up yet: initdead counts from here
        if gen is not None and n.gen is not None and gen > n.gen:
            self._log(out, "info", "node %s: restarted (generation %x -> %x)" % (src, n.gen, gen),
                      now)
            n.seq = n.status_seq = n.holds_seq = -1
            n.back_at = now
            if self.hs is not None:           # that run's handshake died with it
                self._log(out, "warning", "standby with %s cancelled: it restarted" % src, now)
                self.hs = None
                n.blocked = set()
            for gs in self.gs.values():       # failed here and left to it: may run again
                if gs.state == FAILED and not gs.dirty and not gs.busy and gs.assign != ME:
                    self._set_group(gs, STOPPED, now)
            if n.status == "up":
                n.last = now              # alive now: not dead for its previous run's silence
            if n.kind != "hb":
                n.holds, n.holds_known, n.blocked = set(), False, set()
            n.stable = False
        if gen is not None and (n.gen is None or gen > n.gen):
            n.gen = gen
        stale = seq is not None and seq < n.seq
        if seq is not None and seq > n.seq:
            n.seq = seq
        if t == "status":
            if seq is not None:
                n.status_seq = seq
            self._status(n, f, now, out, stale)
            if self.hush_from is not None and now >= self.hush_from and not stale \
                    and n.name == self.peer_name:
                self.hush_from = None     # it says what it holds since it could judge us
                self._hush_over(now, out)
            view = (n.status, n.st, n.cfd, n.gen, n.nolink, self.peer_reach(),
                    frozenset(n.holds), len(n.lates))
            if view != n.shown:       # what RUNDIR/status says of it: written now
                n.shown = view
                out.append(Save())
        else:                         # hb-beat delivers each message once, gaps filled late
            handler = getattr(self, "_m_" + t.replace("-", "_"), None)
            if handler is not None:
                handler(n, f, now, out)
                out.append(Save())
        self._reconcile(now, out)
        return out

    def request(self, line: str, now: float) -> list[Action]:
        out: list[Action] = []
        words = line.split()
        if not words:
            return out
        cmd, arg = words[0], words[1] if len(words) > 1 else "all"
        if cmd in ("standby", "takeover") and arg not in TAKEOVER_MAP:
            self._log(out, "warning", "request %r: want all, local, foreign or failback" % line)
            return out
        if cmd == "maintenance":
            self._maintenance(words[1:], now, out)
        elif self.in_maintenance(now) and cmd in ("standby", "takeover"):
            self._log(out, "warning", "request %r refused: in maintenance mode" % line)
        elif cmd == "standby":
            what = "foreign" if arg == "failback" else arg
            self._give(what, self._mine(what, self.me), "standby request", now, out,
                       manual=True)
        elif cmd == "takeover":
            self._takeover(arg, now, out)
        else:
            self._log(out, "warning", "unknown request %r" % line)
        self._reconcile(now, out)
        out.append(Save())
        return out

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        self.last_tick = now
        self._clock(now, out)
        self._check_nodes(now, out)
        if self.maint_until is not None and now >= self.maint_until:
            self._maintenance(["off"], now, out)
        if self.rqst_at is not None and now >= self.rqst_at:
            self.rqst_at = None
            self._take_local(now, out, "both nodes started")
        hs = self.hs
        if hs and hs.role == "giver" and hs.phase == "asked" and now - hs.t0 > ASK_TIMEOUT:
            self._log(out, "warning", "no reply to standby request: standby request cancelled",
                      now)
            self.hs = None
        self._check_handshake(now, out)
        self._connectivity(now, out)
        self._monitor(now, out)
        if now >= self.next_summary:
            self.next_summary = now + HOUR
            self._summary(now, out)
        self._reconcile(now, out)
        if out and not any(isinstance(a, Save) for a in out):
            out.append(Save())
        return out

    def _check_handshake(self, now: float, out: list) -> None:
        """With an hb peer, its isstable flag ends a handshake whose last message was lost."""
        hs, p = self.hs, self.peer
        if hs is None or p is None or p.kind != "hb" or not self.peer_stable():
            return
        if hs.role == "giver" and hs.phase == "waiting" and p.status_seq > hs.peer_seq:
            self.hs = None
            self._log(out, "info", "standby done: %s is stable" % p.name, now)
        elif hs.role == "taker" and now - hs.t0 > self.cfg.keepalive * 2:
            self.hs = None
            p.blocked -= hs.groups
            for i in hs.groups:
                gs = self.gs[i]
                if gs.state == STOPPED and not gs.busy and i in p.holds:
                    gs.assign = PEER
            self._log(out, "warning", "standby from %s cancelled" % p.name, now)

    def agent_done(self, i: int, action: str, rc: int, now: float) -> list[Action]:
        out: list[Action] = []
        gs = self.gs.get(i)
        if gs is None:
            return out
        gs.busy = None
        ok = rc == 0
        name = "group %d (%s)" % (i, gs.group.key)
        if action == "status" and gs.verify:
            gs.verify = False
            self._stop_verified(gs, rc, now, out)
        elif action == "status":
            if gs.state == PROBING:
                if rc == 0:
                    self._set_group(gs, RUNNING, now)
                    self._log(out, "info", "%s is running here" % name, now)
                elif rc == 3:
                    self._set_group(gs, STOPPED, now)
                    gs.recovered = False
                    self._log(out, "info", "%s is stopped here" % name, now)
                else:
                    self._set_group(gs, RUNNING, now)
                    gs.reannounce = True
                    self._log(out, "warning", "%s is partly running here" % name, now)
                gs.dirty = gs.rollback = False
                gs.stop_tries = 0
                if gs.recovered:
                    self._adopt(now, out)
                elif gs.state == RUNNING:
                    gs.assign = ME
        else:
            new = RESULT_TABLE.get((action, gs.state, ok), gs.state)
            if action == "start" and not ok and gs.state == STARTING:
                gs.fails += 1
                self._log(out, "error", "%s failed to start here: giving it up once what "
                          "may have started is stopped" % name, now)
                gs.assign = PEER if self.peer_alive() else None
                gs.rollback = True          # possibly running until a stop succeeds
                if self.peer_alive() and not self.shutting:
                    self.gives.append(("local" if gs.group.node == self.me else "foreign",
                                       {i}, "failed start"))
                new = STOPPING
            elif action == "start" and ok and gs.state == STARTING:
                self._log(out, "info", "%s running here" % name, now)
            elif action == "restart":
                self._log(out, "info" if ok else "error", "%s %s" % (
                    name, "restarted here" if ok else "failed to restart here"), now)
            elif action == "stop" and ok:
                was_dirty = gs.dirty
                gs.stop_tries, gs.dirty = 0, False
                if gs.rollback:
                    new, gs.rollback = FAILED, False
                self._log(out, "info", "%s stopped here" % name, now)
                if was_dirty:
                    self._stuck_released(gs, now, out)
            elif action == "stop":
                gs.stop_tries += 1
                gs.fails += 1
                gs.retry_at = now + (STUCK_RETRY if gs.dirty else STOP_RETRY)
                if gs.dirty:
                    new = FAILED
                    self._log(out, "error", "%s still fails to stop: it may still run here; "
                              "trying again in %g s" % (name, STUCK_RETRY), now)
                elif gs.stop_tries >= STOP_RETRIES:
                    gs.verify, gs.busy = True, "status"
                    out.append(Run(i, "status"))
                    self._log(out, "error", "%s failed to stop %d times: checking whether it "
                              "still runs" % (name, gs.stop_tries), now)
                else:
                    self._log(out, "error", "%s failed to stop (try %d): retrying"
                              % (name, gs.stop_tries), now)
            self._set_group(gs, new, now)
        tell = bool(self.peer and self.peer.kind == "hb" and action == "stop" and ok)
        pos = len(out)
        self._progress(now, out)
        self._reconcile(now, out)
        if tell:                      # what holds now, after what the stop set off, and
            out.insert(pos, self._resource("standby" if self.hs else ""))   # before `done`
        out.append(Save())
        return out

    def _stop_verified(self, gs: GroupState, rc: int, now: float, out: list) -> None:
        """The status after the last failed stop: stopped after all (Heartbeat: "probably
        not LSB-compliant"), or it may still run here: the stop_failure policy."""
        name = "group %d (%s)" % (gs.group.index, gs.group.key)
        if rc == 3:
            gs.stop_tries = 0
            self._set_group(gs, FAILED if gs.rollback else STOPPED, now)
            gs.rollback = False
            self._log(out, "warning", "%s: its stop failed but its status says stopped "
                      "(probably not LSB-compliant): taken as stopped" % name, now)
            return
        gs.dirty = True
        self._set_group(gs, FAILED, now)
        gs.retry_at = now + STUCK_RETRY
        if getattr(self.cfg, "stop_failure", "hold") == "reboot" and not self.rebooting:
            self.rebooting = True
            self.reboot_group = gs.group.index
            self._log(out, "error", "CRIT: %s: resource stop failure: it may still run here; "
                      "rebooting this node (stop_failure reboot)" % name, now)
            if not self.hearing(now):           # no heartbeat can carry it: at once
                out.append(Reboot(gs.group.index))
            return                  # else once a heartbeat without stuck= went out
        text = ("%s: resource stop failure: it may still run here; held here (the peer "
                "will not start it) and its stop retried every %g s; stop it by hand, or "
                "reboot this node" % (name, STUCK_RETRY))
        self._log(out, "error", "CRIT: " + text, now)
        out.append(Alert(gs.group.index, text))

    def _stuck_released(self, gs: GroupState, now: float, out: list) -> None:
        """A group that may have run here is stopped at last: the peer may have it."""
        i = gs.group.index
        self._log(out, "warning", "group %d: stopped at last: no longer held here" % i, now)
        if gs.assign != ME and self.peer_alive() and not self.shutting:
            self.gives.append(("local" if gs.group.node == self.me else "foreign", {i},
                               "group %d stopped at last" % i))

    def reboot_failed(self, why: str, now: float) -> list[Action]:
        """The reboot command did not reboot: hold the groups instead (stop_failure hold)."""
        out: list[Action] = []
        if not self.rebooting:
            return out
        self.rebooting = False
        text = ("reboot failed (%s): holding the groups that may still run here instead "
                "(as stop_failure hold)" % why)
        self._log(out, "error", "CRIT: " + text, now)
        if self.reboot_group is not None:
            out.append(Alert(self.reboot_group, text))
        out.append(Save())
        return out

    def shutdown(self, now: float) -> list[Action]:
        """SIGTERM: release every group (to the live peer, announced), then exit."""
        out: list[Action] = []
        if self.shutting:
            return out
        self.shutting = True
        self.maint_until = None
        self.hs, self.gives = None, []
        to = self.peer_name if self.peer_alive() else "nobody"
        self._log(out, "info", "shutting down: releasing all groups to %s" % to, now)
        if self.cfg.auto_failback != "legacy" or (self.peer and self.peer.kind == "hb"):
            out.append(Send({"t": "resource", "rsc_hold": "none", "rtype": "full",
                             "isstable": "0", "info": "shutdown",
                             "grps": ",".join(map(str, self.held())) or "none"}))
        for gs in self.gs.values():
            gs.assign = PEER
        self._claim("all", False)
        self._reconcile(now, out)
        out.append(Save())
        return out

    def reconfigure(self, cfg: Config, now: float, digest: str = "") -> list[Action]:
        """SIGHUP: new timings and settings; groups and holdings stay as they are."""
        out: list[Action] = []
        old = [(g.node, g.key) for g in self.cfg.groups]
        if [(g.node, g.key) for g in cfg.groups] != old:
            self._log(out, "error", "haresources changed: restart hb to apply it; "
                      "keeping the old groups")
            cfg.groups = self.cfg.groups
        self.cfg = cfg
        self.digest = digest or self.digest
        self.cfd_logged = False
        self.reach.reconfigure(cfg.pings, cfg.deadping, cfg.initdead, cfg.keepalive, now,
                               self.ifaces if cfg.pings else ())
        self.decider.keepalive = cfg.keepalive
        if cfg.monitor != self.mon.interval:
            self.mon.set_interval(cfg.monitor, now)
        self._log(out, "info", "configuration re-read", now)
        out.append(Save())
        return out

    # ------------------------------------------------------------ liveness

    def _heard_self(self, f: dict, now: float, out: list) -> None:
        n = self.nodes[self.me]
        self.echoed_stuck = _group_list(f.get("stuck", "none"), self.gs) or set()
        if self.rebooting and not self.reboot_sent and "stuck" not in f:
            self.reboot_sent = True     # the peer no longer reads stuck=: it may take over
            out.append(Reboot(self.reboot_group if self.reboot_group is not None else 0))
        deaf_for = min(1.25 * self.cfg.keepalive, self.silence_after())
        gen = _hex(f.get("hg"))
        restarted = gen is not None and self.own_gen is not None and gen != self.own_gen
        if gen is not None:
            self.own_gen = gen        # a new hb-beat: what came meanwhile was lost
        if n.last is not None and (restarted or now - n.last > deaf_for):
            for m in self.nodes.values():     # hb-beat may have been deaf meanwhile:
                if m is not n and m.last is not None:     # a peer's silence in that gap
                    m.last = max(m.last, now)             # is not counted against it
            for ln in self.links.values():
                ln.last = max(ln.last, now)
        if self.silent and not self.gone:
            self.silent = False
            gap = n.last is not None and now - n.last
            if self.comm_up:            # the peer may judge us dead until last + deadtime,
                self.hush_from = max(      # or until it hears this beat or the next one
                    now + 2 * self.cfg.keepalive,
                    (n.last or now) + self.cfg.deadtime + self.cfg.keepalive / 2)
            self.init_from = now        # initdead anew for nodes never heard
            for m in self.nodes.values():     # what we did not hear while silent is not
                if m is not n and m.last is not None:     # their silence: a deadtime anew
                    m.last = max(m.last, now)
            for ln in self.links.values():
                ln.last = max(ln.last, now)
            self._log(out, "warning", "node %s (this node): own heartbeat heard again%s: "
                      "judging again%s" % (
                          self.me, " after %.2f s" % gap if gap else "",
                          "; starting nothing until %s says what it holds now" % self.peer_name
                          if self.comm_up else ""), now)
            out.append(Save())
        if n.status != "up":
            self._log(out, "info" if n.status == "init" else "warning",
                      "node %s (this node): heartbeat %s" % (
                          self.me, "up" if n.status == "init" else "back"))
            n.status, n.since = "up", now
            out.append(Save())
        if n.last is not None:
            n.late.add(now, max(0.0, now - n.last - self.cfg.keepalive))
        n.last = now

    def _link_heard(self, n: Node, via: str, now: float, out: list, dup: bool = False) -> None:
        k = (n.name, via)
        ln = self.links.get(k)
        slack = lines.dup_every(self.cfg.deadtime) if dup else 0.0
        if ln is None:
            self.links[k] = Link(n.name, via, "up", now, now, slack)
            self._log(out, "info", "link %s %s up" % (n.name, via))
            out.append(Save())
            return
        if ln.status != "up":
            ln.status, ln.since = "up", now
            self._log(out, "info", "link %s %s up" % (n.name, via), now)
            out.append(Save())
        ln.last, ln.slack = now, slack

    def _bad(self, out: list, n: Node, name: str, value: str, now: float) -> None:
        """A malformed or out-of-range field from the peer: ignored, logged once a minute
        per field (escaped, cut short)."""
        key = "%s %s" % (n.name, name)
        if now - self.bad_logged.get(key, -1e9) >= 60.0 and len(self.bad_logged) < 64:
            self.bad_logged[key] = now
            self._log(out, "warning", "node %s: ignoring malformed %s=%s" % (
                n.name, name, ascii(value[:40]) + ("..." if len(value) > 40 else "")))

    def _groups_field(self, n: Node, f: dict, name: str, now: float, out: list) -> set | None:
        """grps= or stuck= as a set of this haresources' groups; None when absent or bad."""
        v = f.get(name)
        if v is None:
            return None
        got = _group_list(v, self.gs)
        if got is None:
            self._bad(out, n, name, v, now)
        return got

    def _hold_field(self, n: Node, f: dict, now: float, out: list) -> str | None:
        v = f.get("rsc_hold")
        if v is None or v in HOLD_WORDS:
            return v
        self._bad(out, n, "rsc_hold", v, now)
        return None

    def _status(self, n: Node, f: dict, now: float, out: list, stale: bool) -> None:
        if "dt" in f:
            dt = _hex(f["dt"])
            if dt is not None and DT_RANGE[0] <= dt / 1000.0 <= DT_RANGE[1]:
                n.dt = dt / 1000.0
            else:
                self._bad(out, n, "dt", f["dt"], now)
        st = f.get("st", "")
        if st not in ST_WORDS and st != "":
            self._bad(out, n, "st", st, now)
            st = n.st if n.st in ST_WORDS else "up"
        kind = "hb" if f.get("hbv") else "heartbeat"
        if n.kind == "hb" and kind == "heartbeat" and st in ("", "init", "up"):
            kind = "hb"               # an hb node's first beats, before its state file
        if n.kind != kind:
            n.kind = kind
            if kind == "hb" and self.rqst_at is not None:
                self.rqst_at = min(self.rqst_at, now + self.cfg.deadtime)
            if (n.name, kind) not in self.kind_logged and (kind == "hb" or st == "active"):
                self.kind_logged.add((n.name, kind))
                self._log(out, "info", "node %s runs %s" % (
                    n.name, "hb" if kind == "hb" else "Heartbeat: using Heartbeat's rules"))
        if n.last is not None:
            gap = now - n.last
            n.late.add(now, max(0.0, gap - self.cfg.keepalive))
            if gap > self.cfg.warntime and n.status == "up":
                n.lates.add(now)
                self._log(out, "warning", "node %s: late heartbeat, %.1f s" % (n.name, gap))
        n.last = now
        n.beats += 1
        if not stale:
            n.st = st
            if f.get("seq") and _hex(f["seq"]) is not None:
                n.holds_seq = max(n.holds_seq, _hex(f["seq"]))
            if kind == "hb":
                n.rsc_hold = self._hold_field(n, f, now, out) or n.rsc_hold
                g = self._groups_field(n, f, "grps", now, out)
                if g is not None:
                    n.holds = g
                    n.holds_known = True
                    if n.seq > n.block_seq:       # sent after its standby request
                        n.blocked &= g
                if st not in ("", "init", "up") or "grps" in f:   # its state file is read
                    stuck = self._groups_field(n, f, "stuck", now, out)
                    if stuck is not None or "stuck" not in f:
                        self._stuck(n, stuck or set(), now, out)
                n.stable = f.get("isstable") == "1"
            self._m_reach(n, f, now, out)
        cfd = f.get("cfd", "")
        if cfd and not _DIGEST.fullmatch(cfd):
            self._bad(out, n, "cfd", cfd, now)
            cfd = n.cfd
        n.cfd = cfd
        if cfd and self.digest and cfd != self.digest and not self.cfd_logged:
            self.cfd_logged = True
            what = ", ".join(digest_diff(cfd, self.digest)) or "settings"
            self._log(out, "error", "node %s: configuration differs: %s (digest %s there, %s "
                      "here); both nodes must have the same haresources, auto_failback and "
                      "timings" % (n.name, what, cfd, self.digest), now)
        if st == "dead":
            if n.status == "up":
                self._node_down(n, now, out, "it stopped (st=dead)")
            return
        if n.status != "up":
            was = n.status
            n.status, n.since, n.shutdown = "up", now, False
            if was == "dead":
                n.back_at = now
                self._log(out, "warning", "node %s: back after being dead%s" % (
                    n.name, "" if n.shutdown else ": a partition or a restart"), now)
                if kind != "hb":
                    n.stable = False
                for i, gs in self.gs.items():    # failed here while it was dead: its turn
                    if (gs.state == FAILED and not gs.dirty and gs.assign != PEER
                            and n.name == self.peer_name and not self.shutting):
                        self.gives.append(("local" if gs.group.node == self.me else "foreign",
                                           {i}, "failed start"))
            else:
                self._log(out, "info", "node %s: up" % n.name, now)
            out.append(Save())
            if not self.comm_up:
                self._comm_up(now, out)
        if not self.comm_up and self._all_heard():
            self._comm_up(now, out)

    def _all_heard(self) -> bool:
        return all(n.status != "init" for n in self.nodes.values() if n.kind != "self")

    def next_due(self) -> float:
        """The earliest monotonic time at which a peer may be declared dead: hb-watch
        sleeps no longer than that, so a death costs deadtime, not deadtime + a tick."""
        due = float("inf")
        judging = self.hearing(self.last_event)
        for n in self.nodes.values():
            if n.name == self.me or not judging:
                continue                # nobody is judged before our next heartbeat
            if n.status == "init":
                due = min(due, max(self.init_from, n.heard) + self.cfg.initdead)
            elif n.status == "up" and n.last is not None:
                due = min(due, n.last + self._deadtime(n))
        for t in (self.decider.due(), self.mon.next_due()):
            if t is not None:
                due = min(due, t)
        return due + 0.0005

    def next_wake(self) -> float:
        """next_due() and every other moment tick() may act without a new event, so
        that hb-watch need not tick at a fixed short step; timers already passed at
        the last tick are left out (what they wait for is no longer time)."""
        later = [t + 0.0005 for t in self._timers() if t > self.last_tick]
        return min([self.next_due(), *later])

    def _timers(self) -> list[float]:
        ts = [self.next_summary, self.init_from + self.cfg.initdead]
        me = self.nodes.get(self.me)
        if me is not None and me.status == "up" and me.last is not None:
            ts.append(me.last + self.cfg.deadtime)
        if me is not None:
            ts.append((me.last if me.last is not None else self.start) + self.silence_after())
        ts += [gs.retry_at for gs in self.gs.values() if gs.dirty]
        ts += [ln.last + self._deadtime(self.nodes[ln.node]) + ln.slack
               for ln in self.links.values()
               if ln.status == "up" and ln.node in self.nodes]
        ts += [t for t in (self.maint_until, self.rqst_at) if t is not None]
        if self.hs is not None:
            ts += [self.hs.t0 + ASK_TIMEOUT, self.hs.t0 + self.cfg.keepalive * 2]
        if any(gs.yield_ for gs in self.gs.values()):
            ts.append(self.yield_until)
        if self.peer is not None:
            ts.append(self.peer.back_at + self.grace())
        ts += [gs.retry_at for gs in self.gs.values() if gs.state == STOPPING]
        ts += self.reach.deadlines()
        return ts

    def _check_nodes(self, now: float, out: list) -> None:
        for n in self.nodes.values():
            if n.name == self.me:
                if n.status == "up" and n.last is not None and now - n.last > self.cfg.deadtime:
                    n.status, n.since = "dead", now
                    self._log(out, "error", "node %s (this node): no local heartbeat for %.1f s:"
                              " is hb-beat running?" % (self.me, now - n.last), now)
                    out.append(Save())
                last = n.last if n.last is not None else self.start if self.held() else None
                if not self.silent and (self.gone or (
                        last is not None and now - last > self.silence_after())):
                    self._go_silent(now, out)
                continue
            if not self.hearing(now):
                continue                # the peer's silence may be our own deafness
            if n.status == "init" and now - max(self.init_from, n.heard) > self.cfg.initdead:
                self._node_down(n, now, out, "not heard within initdead %g s"
                                % self.cfg.initdead)
            elif n.status == "up" and n.last is not None and now - n.last > self._deadtime(n):
                self._node_down(n, now, out, "no heartbeat for %.2f s" % (now - n.last))
        for ln in self.links.values():
            n = self.nodes[ln.node]
            if not self.hearing(now):
                break
            if ln.status == "up" and now - ln.last > self._deadtime(n) + ln.slack:
                ln.status, ln.since = "dead", now
                self._log(out, "warning", "link %s %s dead" % (ln.node, ln.medium), now)
                out.append(Save())
        if now - self.start > self.cfg.initdead and self.hearing(now):
            for n in self.nodes.values():
                if n.kind == "self":
                    continue
                for m in self.cfg.media:
                    if (n.name, m.name) not in self.links:
                        self.links[(n.name, m.name)] = Link(n.name, m.name, "dead", now, now)
                        self._log(out, "warning", "link %s %s dead" % (n.name, m.name))
                        out.append(Save())
        self._reached(self.reach.tick(now), now, out)

    def _hush_over(self, now: float, out: list) -> None:
        """Back from silence, the peer heard: groups it holds are left to it (see
        _reconcile); one that nobody holds now goes to its preferred node, so that
        two nodes back from silence at once do not both start it (the preferred
        node takes it back by the auto_failback rule when it did not want it)."""
        for i, gs in self.gs.items():
            if (gs.assign == ME and gs.state in (STOPPED, FAILED) and not gs.busy
                    and gs.group.node != self.me and not self.peer_has(i)):
                gs.assign = PEER
                self._log(out, "info", "group %d: released while silent: left to %s, its "
                          "preferred node" % (i, gs.group.node), now)

    def _go_silent(self, now: float, out: list) -> None:
        """Our own heartbeat stopped (hb-beat stopped, hung or gone): the peer may
        declare this node dead a deadtime after our last heartbeat went out.  Let go
        of every group now, so that none runs here by then; judge nobody meanwhile."""
        self.silent = True
        held = self.held()
        me = self.nodes[self.me]
        self.hs, self.gives = None, []
        why = ("hb-beat's pipe closed" if self.gone else
               "no heartbeat of our own for %.2f s (hb-beat stopped or not sending)"
               % (now - (me.last if me.last is not None else self.start)))
        if held:
            self._log(out, "error", "%s: the peer may soon declare this node dead: releasing "
                      "groups %s; judging nobody until our heartbeat is heard again" % (
                          why, ",".join(map(str, held))), now)
        else:
            self._log(out, "warning", "%s: judging nobody until our heartbeat is heard again"
                      % why, now)
        out.append(Save())

    def beat_gone(self, now: float) -> list[Action]:
        """hb-beat's pipe (our stdin) closed: no heartbeat of ours will go out again.
        Release everything, then exit."""
        out: list[Action] = []
        if self.gone:
            return out
        self.gone = True
        self._go_silent(now, out)
        if self.rebooting and not self.reboot_sent:
            self.reboot_sent = True
            out.append(Reboot(self.reboot_group if self.reboot_group is not None else 0))
        self._reconcile(now, out)
        return out

    def _ping(self, f: dict, now: float, out: list) -> None:
        self._reached(self.reach.reply(f.get("src", ""), f.get("addr", ""), now), now, out)

    def _node_down(self, n: Node, now: float, out: list, why: str) -> None:
        n.status, n.since = "dead", now
        if n.name == self.peer_name:
            self.hush_from = None
        n.stable = False
        gave_up = n.shutdown or (n.holds_known and not n.holds)
        self._log(out, "warning", "node %s: dead (%s)" % (n.name, why), now)
        out.append(Save())
        if n.name != self.peer_name:
            return
        if not n.shutdown:
            out.append(Send({"t": "stonith", "node": n.name,
                             "result": "unneeded" if gave_up else "n_stnth"}))
        self._mach_down(now, out, "%s is dead" % n.name)
        if not self.comm_up:
            self._comm_up(now, out)

    def _summary(self, now: float, out: list) -> None:
        parts = []
        for n in self.nodes.values():
            parts.append("node %s %s worst late %.3f s, %d heartbeats" % (
                n.name, n.status, self.worst_late(n, now), n.beats))
            n.beats = 0
        for ln in self.links.values():
            parts.append("link %s %s %s" % (ln.node, ln.medium, ln.status))
        self._log(out, "info", "hourly summary: " + "; ".join(parts))

    # ------------------------------------------------------------ connectivity

    def _m_reach(self, n: Node, f: dict, now: float, out: list) -> None:
        """The peer's reach: in its status heartbeats and, at once, in `t=reach`."""
        for name in ("pings", "pfresh"):
            if f.get(name) and _dec(f[name]) is None:
                self._bad(out, n, name, f[name], now)
        n.pings, n.pfresh = _dec(f.get("pings")), _dec(f.get("pfresh"))
        nolink = f.get("nolink", "")
        if nolink and not _IFACES.fullmatch(nolink):
            self._bad(out, n, "nolink", nolink, now)
            nolink = "?"
        n.nolink = nolink

    def _stuck(self, n: Node, stuck: set, now: float, out: list) -> None:
        """What the peer says may still run there although its stop failed."""
        if stuck == n.stuck:
            return
        for i in sorted(stuck - n.stuck):
            self._log(out, "error", "group %d: %s says it may still run there (a stop failed):"
                      " it is not started here until %s says it stopped" % (
                          i, n.name, n.name), now)
        for i in sorted(n.stuck - stuck):
            self._log(out, "info", "group %d: %s no longer says it may run there" % (i, n.name),
                      now)
        n.stuck = set(stuck)
        out.append(Save())

    def peer_reach(self) -> int | None:
        p = self.peer
        if p is None or p.kind not in ("hb", "heartbeat"):
            return None
        f = {"nolink": p.nolink}
        if p.pings is not None:
            f["pings"] = str(p.pings)
        return health.peer_score(f, p.kind)

    def link(self, iface: str, up: bool, now: float) -> list[Action]:
        """Carrier of an interface changed (netlink)."""
        out: list[Action] = []
        self._reached(self.reach.link(iface, up, now), now, out)
        return out

    def _reached(self, changes: list, now: float, out: list) -> None:
        """Ping nodes or carrier changed: log, save, tell an hb peer at once."""
        if not changes:
            return
        for c in changes:
            if c.text:
                self._log(out, "info" if c.status == "up" else "warning", c.text, now)
        out.append(Save())
        p = self.peer
        if p is not None and p.kind == "hb" and self.peer_alive():
            out.append(Send(dict({"t": "reach"}, **self.reach.fields())))

    def _connectivity(self, now: float, out: list) -> None:
        """ipfail: hand every group to a live peer that reaches more, for long enough."""
        held = {i for i in self.held() if self.gs[i].assign == ME}
        able = self.comm_up and not self.shutting and not self.in_maintenance(now)
        mine, peer = self.reach.score(), self.peer_reach()
        fresh = self.peer.pfresh if self.peer is not None and self.peer.kind == "hb" else None
        if not self.decider.judge(now, mine, peer, able and self.peer_alive(), bool(held),
                                  fresh):
            return
        if self.hs is not None or any(why == "connectivity" for _, _, why in self.gives):
            return
        what = _hold_word(held, self.me, self.cfg.groups)
        if self._give(what, held, "connectivity", now, out):
            self._log(out, "warning", "connectivity: %s reaches %s, %s reaches %s: handing "
                      "groups %s to %s" % (
                          self.me, health.describe(mine, self.reach.nolink()), self.peer_name,
                          health.describe(peer, self.peer.nolink),
                          ",".join(map(str, sorted(held))), self.peer_name), now)

    # ------------------------------------------------------------ monitor

    def _monitor(self, now: float, out: list) -> None:
        if not self.mon.on:
            return
        maint = self.in_maintenance(now)
        for i, gs in self.gs.items():
            idle = (gs.state == RUNNING and gs.assign == ME and not gs.busy and not gs.split
                    and not self.shutting and not maint)
            if idle and not self.mon.tracked(i):
                self.mon.track(i, now)
            elif not idle and self.mon.tracked(i):
                self.mon.untrack(i)
        for i, token in self.mon.due(now):
            out.append(Check(i, token))
        for i, verdict in self.mon.expired(now):
            self._check_failed(i, verdict, "no answer within %g s" % self.mon.timeout, now, out)

    def check_done(self, i: int, token: int, ok: bool, detail: str,
                   now: float) -> list[Action]:
        """A Check finished: ok, or why not (stopped, timed out, cannot run)."""
        out: list[Action] = []
        verdict = self.mon.result(i, token, ok, now)
        if verdict in (health.RESTART, health.MOVE):
            self._check_failed(i, verdict, detail, now, out)
        self._reconcile(now, out)
        return out

    def addr_gone(self, i: int, addr: str, now: float) -> list[Action]:
        """An address of group i vanished from its interface (netlink), not by our hand."""
        out: list[Action] = []
        gs = self.gs.get(i)
        if (gs is None or gs.state != RUNNING or gs.busy or gs.assign != ME or self.shutting
                or self.in_maintenance(now)):
            return out
        if not self.mon.on:
            self._log(out, "warning", "group %d: address %s removed under hb; not restarted "
                      "(no monitor in ha.cf)" % (i, addr), now)
            return out
        if not self.mon.tracked(i):
            self.mon.track(i, now)
        verdict = self.mon.removed(i, now)
        if verdict is not None:
            self._check_failed(i, verdict, "address %s removed" % addr, now, out)
        self._reconcile(now, out)
        return out

    def _check_failed(self, i: int, verdict: str, why: str, now: float, out: list) -> None:
        gs = self.gs[i]
        gs.fails += 1
        name = "group %d (%s)" % (i, gs.group.key)
        n = len(self.mon.recent_fails(i, now))
        if verdict == health.MOVE and self.peer_alive():
            self.mon.forget_fails(i)
            self.mon.untrack(i)
            self._log(out, "error", "%s: %s: %d failures within %g s: moving it to %s" % (
                name, why, n, self.mon.window(), self.peer_name), now)
            self.gives.append(("local" if gs.group.node == self.me else "foreign", {i},
                               "monitor failures of group %d" % i))
        else:
            self._log(out, "warning", "%s: %s: restarting it here (failure %d within %g s)"
                      % (name, why, n, self.mon.window()), now)
            self.mon.untrack(i)
            self.mon.restarted(i, now)
            gs.busy = "restart"
            out.append(Run(i, "restart"))
        out.append(Save())

    # ------------------------------------------------------------ ownership

    def _comm_up(self, now: float, out: list) -> None:
        self.comm_up = True
        self.st = "active"
        self._adopt(now, out)
        p = self.peer
        if p is None or p.status == "dead":
            for gs in self.gs.values():
                if gs.assign is None:
                    gs.assign = ME
            self._claim("local", True)
            self._log(out, "info", "communication up: taking all groups (no live peer)", now)
            return
        self._log(out, "info", "communication up with %s" % p.name, now)
        if self.cfg.auto_failback == "legacy":
            self._claim("local", True)
            for gs in self.gs.values():
                g = gs.group
                if g.node != self.me or gs.assign is not None:
                    if gs.assign is None:
                        gs.assign = PEER
                    continue
                if self.peer_has(g.index) or (p.kind != "hb" and p.st == "active"):
                    out.append(Send({"t": "ip-request", "ipaddr": g.key}))
                else:
                    gs.assign = ME
            return
        out.append(Send({"t": "starting"}))
        # An hb peer answers `starting` with its groups at once: take ours then.  Until
        # it has heard this run of ours it may still declare this node dead for the
        # silence of a previous run (a reboot within deadtime).
        self.rqst_at = now + (self.cfg.deadtime if p.kind == "hb" else RQSTDELAY)

    def _adopt(self, now: float, out: list) -> None:
        """Groups the previous hb-watch held and that still run: kept unless a live peer
        holds them (it took over while this node was down: they stop here)."""
        if not self.comm_up:
            return
        p = self.peer
        if p is not None and self.peer_alive() and p.kind != "hb" and not p.holds_known \
                and self.cfg.auto_failback != "legacy":
            return                    # a Heartbeat peer tells in its `resource` reply
        for gs in self.gs.values():
            if not gs.recovered or gs.busy or gs.state != RUNNING:
                continue
            gs.recovered = False
            if self.peer_has(gs.group.index):
                gs.assign = PEER
                self._log(out, "info", "group %d: %s took it over meanwhile: stopping it here"
                          % (gs.group.index, self.peer_name), now)
            else:
                gs.assign = ME
                self._log(out, "info", "group %d: still running here: kept" % gs.group.index,
                          now)

    def _take_local(self, now: float, out: list, why: str) -> None:
        self._adopt(now, out)
        p = self.peer            # our local class, unless the live peer says it has it
        self._claim("local", not (self.peer_alive() and p.rsc_hold in ("foreign", "all")))
        took = []
        for gs in self.gs.values():
            if gs.assign is not None:
                continue
            if gs.group.node == self.me and not self.peer_has(gs.group.index):
                gs.assign = ME
                took.append(gs.group.index)
            else:
                gs.assign = PEER
        if took and why:
            self._log(out, "info", "taking local groups %s: %s" % (
                ",".join(map(str, took)), why), now)

    def _mach_down(self, now: float, out: list, why: str) -> None:
        if not self.shutting:
            self._claim("local", True)
        p = self.peer
        p.holds, p.blocked, p.holds_known = set(), set(), False
        self.hs, self.gives, self.ipreq = None, [], set()
        self.rqst_at = None
        took = []
        for gs in self.gs.values():
            if self.shutting:
                continue
            if gs.group.index in p.stuck:
                gs.assign = PEER
                self._log(out, "error", "group %d: not taken: %s said it may still run there "
                          "(its stop failed); `hb-switch takeover` takes it once it is known "
                          "stopped there" % (gs.group.index, p.name), now)
                continue
            if gs.assign != ME:
                gs.assign = ME
                took.append(gs.group.index)
            if gs.group.node == p.name:     # held already or taken now: back when it returns
                gs.needs_failback = True
            if gs.state == FAILED and not gs.dirty:
                self._set_group(gs, STOPPED, now)
        if took:
            self._log(out, "info", "taking groups %s: %s" % (",".join(map(str, took)), why), now)
        if self.cfg.auto_failback != "legacy" and took:
            out.append(Send({"t": "resource", "rsc_hold": "foreign", "info": "mach_down"}))

    def _give(self, what: str, groups: set, why: str, now: float, out: list,
              manual: bool = False) -> bool:
        """Start the standby handshake as the giver; False when refused."""
        p = self.peer
        reason = None
        if self.shutting:
            reason = "shutting down"
        elif not self.peer_alive():
            reason = "no live peer"
        elif self.cfg.auto_failback == "legacy" and p.kind != "hb":
            reason = "standby needs auto_failback on or off with a Heartbeat peer"
        elif not self.stable():
            reason = "local resources in flux"
        elif not self.peer_stable():
            reason = "other side is in flux"
        stuck = {i for i in groups if self.gs[i].dirty}
        if not reason and stuck and stuck == set(groups):
            reason = "group%s %s may still run here (a stop failed)" % (
                "s" if len(stuck) > 1 else "", ",".join(map(str, sorted(stuck))))
        if reason:
            if manual:
                self._log(out, "warning", "%s refused: %s" % (why, reason), now)
            return False
        if stuck:
            self._log(out, "warning", "%s: group%s %s may still run here (a stop failed): not "
                      "handed over" % (why, "s" if len(stuck) > 1 else "",
                                       ",".join(map(str, sorted(stuck)))), now)
            groups = set(groups) - stuck
        f = {"t": "ask_resources", "rsc_hold": what, "info": "me"}
        if groups != self._mine(what, self.me):
            f["grps"] = ",".join(map(str, sorted(groups)))
        out.append(Send(f))
        self.hs = Handshake("giver", what, set(groups), "asked", now, why)
        self._log(out, "info", "%s: asking %s to take %s groups" % (why, p.name, what), now)
        return True

    def _takeover(self, arg: str, now: float, out: list) -> None:
        if self.peer_alive():
            out.append(Send({"t": "hb_takeover", "rsc_hold": arg}))
            self._log(out, "info", "takeover %s: asking %s to hand over" % (arg, self.peer_name),
                      now)
            return
        what = "all" if arg == "failback" else arg
        self._claim(what, True)
        p = self.peer
        for i in self._mine(what, self.me):
            gs = self.gs[i]
            gs.assign = ME
            if p is not None and i in p.stuck:
                p.stuck.discard(i)
                self._log(out, "warning", "takeover: group %d: forgetting that %s said it may "
                          "still run there (the operator's word)" % (i, p.name), now)
            if gs.state == FAILED and not gs.dirty:
                self._set_group(gs, STOPPED, now)
                gs.fails = 0
        self._log(out, "info", "takeover %s: no live peer, taking the groups" % arg, now)

    def _maintenance(self, args: list, now: float, out: list) -> None:
        if args[:1] == ["on"] and len(args) == 2:
            try:
                secs = float(args[1]) if len(args[1]) <= 32 else -1.0
            except ValueError:
                secs = -1.0
            if 0 < secs <= MAINT_MAX:
                self.maint_until = now + secs
                self._log(out, "info", "maintenance mode for %g s: no resource will be started "
                          "or stopped" % secs, now)
                out.append(Save())
                return
        if args == ["off"]:
            if self.maint_until is None:
                return
            self.maint_until = None
            self._log(out, "info", "maintenance mode off: checking the groups", now)
            for gs in self.gs.values():
                if gs.busy is None and gs.state in (STOPPED, RUNNING, FAILED):
                    self._set_group(gs, PROBING, now)
                    gs.busy = "status"
                    out.append(Run(gs.group.index, "status"))
            out.append(Save())
            return
        self._log(out, "warning", "bad maintenance request %s: want 'on SECONDS' (at most "
                  "%d) or 'off'" % (ascii(" ".join(args)[:60]), MAINT_MAX))

    # messages of the resource protocol (peer -> us)

    def _m_starting(self, n: Node, f: dict, now: float, out: list) -> None:
        out.append(self._resource())

    def _m_resource(self, n: Node, f: dict, now: float, out: list) -> None:
        info = f.get("info", "")
        seq = _hex(f.get("seq"))
        if seq is not None and seq < n.holds_seq:
            f = {k: v for k, v in f.items() if k not in ("grps", "stuck", "rsc_hold")}
            info = info if info == "shutdown" else "late"     # newer holdings are known
        elif seq is not None:
            n.holds_seq = seq
        grps = self._groups_field(n, f, "grps", now, out)
        hold = self._hold_field(n, f, now, out)
        if grps is not None:
            n.holds = grps
            n.holds_known = True
            if n.kind == "hb" and n.seq > n.block_seq:
                n.blocked &= grps
        if info not in ("standby", "shutdown") and hold is not None:
            n.rsc_hold = hold
        if "grps" not in f and info not in ("standby", "shutdown", "late"):
            n.holds = _holds_from(hold or "none", n.name, self.cfg.groups)
            n.holds_known = True
        stuck = self._groups_field(n, f, "stuck", now, out)
        if n.kind == "hb" and info != "late" and (stuck is not None or "stuck" not in f):
            self._stuck(n, stuck or set(), now, out)      # every hb `resource` says it
        if "isstable" in f:
            n.stable = f["isstable"] == "1"
        self._adopt(now, out)
        if info == "shutdown":
            self._log(out, "info", "received shutdown notice from %s" % n.name, now)
            n.stable = False
            if n.kind != "hb":
                n.blocked = set(n.holds)
            self.hs, self.gives = None, []
            if not self.shutting:
                self._claim("local", True)
                for gs in self.gs.values():
                    gs.assign = ME
                    if gs.group.node == n.name:
                        gs.needs_failback = True
            return
        if n.kind == "hb" and self.rqst_at is not None:
            self.rqst_at = None           # its answer to `starting`: it has heard us
            self._take_local(now, out, "")
        elif n.kind != "hb" and self.rqst_at is not None and "isstable" in f:
            if n.stable:
                self.rqst_at = None
                self._take_local(now, out, "%s is stable" % n.name)
            else:
                self.rqst_at = now + RQSTDELAY

    def _m_reqnodes(self, n: Node, f: dict, now: float, out: list) -> None:
        """Heartbeat 3's membership question (reference §4.9): the node list."""
        if f.get("dest", self.me) == self.me:
            out.append(Send({"dest": n.name, "t": "repnodes",
                             "nodelist": "".join(x + " " for x in self.cfg.nodes),
                             "delnodelist": ""}))

    def _m_shutdone(self, n: Node, f: dict, now: float, out: list) -> None:
        n.holds, n.blocked, n.shutdown = set(), set(), True
        n.holds_known = True
        if n.status == "up":
            n.status, n.since = "dead", now
            self._log(out, "info", "node %s: shut down, gave up its groups" % n.name, now)
            self._mach_down(now, out, "%s shut down" % n.name)
        out.append(Save())

    def _m_ask_resources(self, n: Node, f: dict, now: float, out: list) -> None:
        info, what = f.get("info", ""), self._hold_field(n, f, now, out) or "all"
        grps = self._groups_field(n, f, "grps", now, out) or set()
        hs = self.hs
        if info == "me":
            if self.shutting or self.in_maintenance(now) or not self.stable() or hs:
                self._log(out, "warning", "standby message [me] from %s ignored: local "
                          "resources in flux" % n.name, now)
                return
            groups = grps or self._mine(what, n.name)
            n.stable = False          # the giver is in flux until it says otherwise
            self._claim({"all": "all", "local": "foreign", "foreign": "local"}.get(what, "all"),
                        True)
            self.hs = Handshake("taker", what, groups, "waiting", now, "standby of " + n.name)
            worse = not health.may_fail_back(self.reach.score(), self.peer_reach())
            for i in groups:
                self.gs[i].assign = ME
                if self.gs[i].state == FAILED and not self.gs[i].dirty:
                    self._set_group(self.gs[i], STOPPED, now)   # handed over: try again
                if worse and self.gs[i].group.node == n.name:
                    self.gs[i].needs_failback = True    # back once it reaches as much
                if self.gs[i].state not in HELD:    # until `done`: its last grps=
                    n.blocked.add(i)                # may predate a start
            n.block_seq = n.seq       # (or a grps= sent after this request)
            out.append(Send({"t": "ask_resources", "rsc_hold": what, "info": "other"}))
            self._log(out, "info", "%s hands over %s groups %s" % (
                n.name, what, ",".join(map(str, sorted(groups)))), now)
        elif info == "other" and hs and hs.role == "giver" and hs.phase == "asked":
            hs.phase = "stopping"
            hs.peer_seq = n.seq
            n.stable = False          # the taker is in flux until its next status says not
            if hs.groups == self._mine(hs.what, self.me):     # a whole class
                self._claim(hs.what, False)
            for i in hs.groups:
                self.gs[i].assign = PEER
                self.gs[i].needs_failback = False
            out.append(self._resource("standby", after=True))
            self._progress(now, out)
        elif info == "done" and hs and hs.role == "taker":
            if "grps" in f:           # the giver could not stop the others: it keeps them
                for i in hs.groups - grps:
                    self.gs[i].assign = PEER
                    self._log(out, "warning", "group %d: %s could not stop it: not taken"
                              % (i, n.name), now)
                n.blocked -= hs.groups - grps
                hs.groups &= grps
            n.blocked -= hs.groups
            if n.kind != "hb":        # its last `resource` predates the stop
                n.holds -= hs.groups
            hs.phase = "starting"
            self._progress(now, out)
        elif info == "done" and hs and hs.role == "giver" and hs.phase == "waiting":
            self.hs = None
            if n.kind == "hb":        # it runs them now, whatever older messages say
                n.holds |= {i for i in hs.groups if not self.gs[i].dirty}
                n.holds_seq = max(n.holds_seq, n.seq)
            self._log(out, "info", "standby done: %s took %s groups" % (n.name, hs.what), now)
            out.append(self._resource())

    def _m_hb_takeover(self, n: Node, f: dict, now: float, out: list) -> None:
        what = TAKEOVER_MAP.get(f.get("rsc_hold", "all"), "all")
        self._give(what, self._mine(what, self.me), "takeover request from %s" % n.name, now,
                   out, manual=True)

    def _m_ip_request(self, n: Node, f: dict, now: float, out: list) -> None:
        gs = self._by_key(f.get("ipaddr", ""))
        if gs is None:
            return
        if gs.assign == ME or gs.state in HELD:
            gs.assign = PEER
            self.ipreq.add(gs.group.index)
            self._log(out, "info", "%s asks for group %d: releasing it" % (
                n.name, gs.group.index), now)
            self._progress(now, out)
        else:
            out.append(Send({"t": "ip-request-resp", "dest": n.name, "ipaddr": gs.group.key,
                             "weown": "no", "ok": "OK"}))

    def _m_ip_request_resp(self, n: Node, f: dict, now: float, out: list) -> None:
        gs = self._by_key(f.get("ipaddr", ""))
        if gs is None or f.get("dest", self.me) != self.me or f.get("ok") != "OK":
            return
        if gs.assign != ME:
            gs.assign = ME
            n.blocked.discard(gs.group.index)
            if n.kind != "hb":
                n.holds.discard(gs.group.index)
            self._log(out, "info", "%s released group %d" % (n.name, gs.group.index), now)

    def _by_key(self, key: str) -> GroupState | None:
        for gs in self.gs.values():
            if gs.group.key == key:
                return gs
        return None

    # ------------------------------------------------------------ progress

    def _progress(self, now: float, out: list) -> None:
        """Send what finished transitions owe the peer."""
        for i in sorted(self.ipreq):
            gs = self.gs[i]
            if gs.state not in HELD and not gs.busy:
                self.ipreq.discard(i)
                out.append(Send({"t": "ip-request-resp", "dest": self.peer_name,
                                 "ipaddr": gs.group.key, "weown": "yes", "ok": "OK"}))
        hs = self.hs
        if hs is None:
            return
        if hs.role == "giver" and hs.phase == "stopping":
            if all(self.gs[i].state not in HELD and not self.gs[i].busy for i in hs.groups):
                hs.phase = "waiting"
                f = {"t": "ask_resources", "rsc_hold": hs.what, "info": "done"}
                stuck = {i for i in hs.groups if self.gs[i].dirty}
                if stuck:             # done, but not with these: they may still run here
                    f["grps"] = ",".join(map(str, sorted(hs.groups - stuck))) or "none"
                out.append(Send(f))
        elif hs.role == "taker":
            if all(self.gs[i].state in (RUNNING, FAILED) and not self.gs[i].busy
                   for i in hs.groups):
                self.hs = None
                out.append(self._resource())
                out.append(Send({"t": "ask_resources", "rsc_hold": hs.what, "info": "done"}))

    def _reconcile(self, now: float, out: list) -> None:
        if self.exited:
            return
        maint = self.in_maintenance(now) and not self.silent
        quiet = self.quiet()
        if not maint and not self.shutting and not quiet:
            self._policy(now, out)
        serial = getattr(self.cfg, "resource_order", "serial") == "serial"
        starts: list[tuple[int, GroupState, str]] = []
        stops: list[tuple[int, GroupState, str]] = []
        for i, gs in sorted(self.gs.items()):
            if gs.busy:
                continue
            want = gs.assign == ME and not self.shutting and not quiet
            pa = self.peer_has(i)
            if quiet and pa and gs.assign == ME and not self.silent:
                gs.assign = PEER
                self._log(out, "warning", "group %d: %s holds it: left to it" % (
                    i, self.peer_name), now)
            if gs.yield_ and (now >= self.yield_until or gs.state not in (RUNNING, STARTING)):
                gs.yield_ = False
            if gs.yield_ and pa and want:
                gs.yield_, gs.assign, want = False, PEER, False
                self._log(out, "warning", "group %d: %s took it while this node was frozen: "
                          "stopping it here" % (i, self.peer_name), now)
            if (gs.state in (RUNNING, STARTING) and pa and want and not gs.split
                    and not gs.yield_ and now - self.peer.back_at >= self.grace()):
                self._split_brain(gs, now, out)
                want = gs.assign == ME
            if gs.state in (STOPPED, FAILED):
                gs.split = False
            if gs.state == RUNNING and want and pa and not gs.dup:
                gs.dup = gs.reannounce = True     # be the one clients reach meanwhile
                self._log(out, "warning", "group %d: %s advertises it too: announcing it here"
                          % (i, self.peer_name), now)
            elif gs.dup and not pa:
                gs.dup = gs.split = False     # the other copy is gone: clients' caches may
                if want and gs.state == RUNNING:      # still point at it: announce again
                    gs.reannounce = True
                    self._log(out, "info", "group %d: %s let go: announcing it again"
                              % (i, self.peer_name), now)
            if maint or (not self.comm_up and not self.shutting and not self.silent):
                continue
            if gs.reannounce and gs.state == RUNNING and want:
                gs.reannounce = False
                gs.busy = "start"
                out.append(Run(i, "start"))
                continue
            if gs.state == FAILED and gs.dirty:
                if now >= gs.retry_at and not self.rebooting:    # hold: try it again
                    self._set_group(gs, STOPPING, now)
                    gs.busy = "stop"
                    out.append(Run(i, "stop"))
                    out.append(Save())
                continue
            if gs.state == FAILED:
                continue
            step = GROUP_TABLE.get((gs.state, want))
            if step is None:
                continue
            action, nxt = step
            if action == "start" and pa:
                continue
            if gs.state == STOPPING and now < gs.retry_at:
                continue
            if serial:                  # decided below, once every group has been seen
                (starts if action == "start" else stops).append((i, gs, nxt))
                continue
            self._act(gs, action, nxt, now, out)
        if serial:
            self._serial(starts, stops, now, out)
        self._announce(out)
        self._finish(now, out)

    def _act(self, gs: GroupState, action: str, nxt: str, now: float, out: list) -> None:
        i = gs.group.index
        self._set_group(gs, nxt, now)
        gs.busy = action
        out.append(Run(i, action))
        self._log(out, "info", "group %d: %s" % (i, "starting here" if action == "start"
                                                 else "stopping here"), now)
        out.append(Save())

    def _serial(self, starts: list, stops: list, now: float, out: list) -> None:
        """resource_order serial (Heartbeat's): of the groups due to start, the first in
        haresources order starts, unless an earlier one is still starting; of those due to
        stop, the last stops, unless a later one is still stopping.  The others wait for
        the next pass (the end of that start or stop)."""
        busy = [j for j, g in self.gs.items() if g.busy == "start"]
        if starts:
            i, gs, nxt = starts[0]
            if not any(j < i for j in busy):
                self._act(gs, "start", nxt, now, out)
        busy = [j for j, g in self.gs.items() if g.busy == "stop" or g.state == STOPPING]
        if stops:
            i, gs, nxt = stops[-1]
            if not any(j > i for j in busy):
                self._act(gs, "stop", nxt, now, out)

    def _finish(self, now: float, out: list) -> None:
        """Exit once a shutdown (SIGTERM) or the end of our own heartbeat (stdin closed)
        has released every group it could; a group that may still run here is not
        handed over: under stop_failure hold, exit once a heartbeat told the peer so."""
        if not (self.shutting or self.gone) or self.exited:
            return
        if any(gs.busy or gs.state in HELD for gs in self.gs.values()):
            return
        dirty = [i for i, gs in self.gs.items() if gs.dirty]
        if dirty:
            if self.rebooting:
                return                  # the reboot comes
            if self.hearing(now) and self.echoed_stuck != set(self.stuck()):
                return                  # once the peer was told
            self.exited = True
            self._log(out, "error", "%s with groups %s perhaps still running here: not "
                      "handed over" % ("shut down" if self.shutting else "exiting",
                                       ",".join(map(str, dirty))), now)
            out.append(Save())
            out.append(Exit(1))
            return
        self.exited = True
        if self.gone and not self.shutting:
            self._log(out, "warning", "hb-beat's pipe closed: every group released; exiting", now)
            out.append(Save())
            out.append(Exit(0))
            return
        self.st = "dead"
        out.append(Send({"t": "shutdone", "st": "dead"}))
        self._log(out, "info", "shut down: all groups released", now)
        out.append(Save())
        out.append(Exit(0))

    def _announce(self, out: list) -> None:
        """Heartbeat's `resource ... isstable=1` each time this node settles."""
        if not self.stable() or self.shutting:
            self.announced = False
        elif not self.announced and self.peer_alive() and (
                self.cfg.auto_failback != "legacy" or self.peer.kind == "hb"):
            out.append(self._resource())
            out.append(Save())
            self.announced = True

    def _split_brain(self, gs: GroupState, now: float, out: list) -> None:
        g = gs.group
        gs.split = True
        if g.node == self.me:
            gs.assign = ME
            gs.reannounce = True
            self._log(out, "error", "split brain: group %d held by both %s and %s: %s "
                      "(preferred) keeps it" % (g.index, self.me, self.peer_name, self.me), now)
        else:
            gs.assign = PEER
            gs.needs_failback = False
            self._log(out, "error", "split brain: group %d held by both %s and %s: stopping it "
                      "here, %s (preferred) keeps it" % (g.index, self.me, self.peer_name,
                                                         g.node), now)

    def _policy(self, now: float, out: list) -> None:
        """Decisions that wait for both sides to be stable: failback, queued standbys."""
        if not self.comm_up or self.hs is not None or not self.peer_alive():
            return
        p = self.peer
        if self.gives and self.stable() and self.peer_stable():
            what, groups, why = self.gives.pop(0)
            self._give(what, groups, why, now, out)
            return
        if not (self.stable() and self.peer_stable()):
            return
        if self.cfg.auto_failback == "on":
            back = {i for i, gs in self.gs.items()
                    if gs.needs_failback and gs.group.node == p.name and gs.state == RUNNING}
            if back and health.may_fail_back(self.reach.score(), self.peer_reach()):
                for i in back:
                    self.gs[i].needs_failback = False
                self._give("foreign", back, "auto_failback to %s" % p.name, now, out)
                return
        if p.holds_known:
            for i, gs in self.gs.items():
                if (gs.group.node == self.me and gs.assign != ME and i not in p.holds
                        and i not in p.blocked and i not in p.stuck and not gs.dirty
                        and gs.state in (STOPPED, FAILED)):
                    gs.assign = ME
                    if gs.state == FAILED:
                        self._set_group(gs, STOPPED, now)
                    self._log(out, "info", "group %d: %s does not hold it: taking it back"
                              % (i, p.name), now)

    # ------------------------------------------------------------ status

    def status_text(self, now: float, wall: float, pid: int,
                    extra: dict[int, dict[str, str]] | None = None) -> str:
        """RUNDIR/status (status.py's records, every field escaped): wall is the epoch
        time at monotonic `now`; extra: more fields for a group's line (hb-watch's
        neighbour check, `nbr=`)."""
        def ep(t: float) -> int:
            return int(wall - (now - t))

        p = self.peer
        show_reach = bool(self.cfg.pings or self.reach.nolink() or (p and p.nolink))

        def reach(score: int | None, nolink: str) -> dict:
            if not show_reach:
                return {}
            return {"reach": "?" if score is None else score, "nolink": nolink or None}

        R = status.record
        lines = [R("updated", int(wall), pid=pid, node=self.me)]
        sf = self.state_fields()
        lines.append(R("self", self.me, st=sf["st"], rsc_hold=sf["rsc_hold"],
                       maintenance="on" if self.in_maintenance(now) else "off",
                       until=ep(self.maint_until) if self.in_maintenance(now) else None,
                       **reach(self.reach.score(), self.reach.nolink()),
                       stable=int(self.stable())))
        for n in self.nodes.values():
            st = self.st if n.kind == "self" else n.st if n.status == "up" and n.st else n.status
            kv: dict = {"since": ep(n.since), "late": "%.3g" % self.worst_late(n, now),
                        "gen": "%x" % n.gen if n.gen is not None else "0",
                        "kind": n.kind if n.kind != "unknown" else "hb",
                        "lates": len(n.lates), "st": st}
            if n.kind != "self" and n.cfd:
                kv["cfd"] = "same" if n.cfd == self.digest else "differs"
            if n is p and self.peer_reach() is not None:
                kv.update(reach(self.peer_reach(), n.nolink))
            if n.kind != "self":
                kv["stable"] = int(bool(n.stable))
                kv["dt"] = "%d" % round(self._deadtime(n) * 1000)   # its dead timer, ms
            lines.append(R("node", n.name, n.status, **kv))
        for ln in self.links.values():
            lines.append(R("link", ln.node, ln.medium, ln.status, since=ep(ln.since)))
        for pg in self.reach.pings.values():
            lines.append(R("ping", pg.name, "up" if pg.status == "up" else "dead",
                           since=ep(pg.since)))
        for i, gs in self.gs.items():
            here = gs.state in HELD or gs.dirty
            there = self.peer_alive() and i in self.peer.holds
            holder = "both" if here and there else self.me if here else \
                self.peer_name if there else "none"
            state = gs.state if gs.state != PROBING else STARTING
            if gs.dirty:
                state = "stuck"           # a stop failed: it may still run here
            if not here and there:
                state = RUNNING
            lines.append(R("group", i, holder, state, pref=gs.group.node, since=ep(gs.since),
                           fails=gs.fails,
                           restarts=self.mon.restarts(i, now) if self.mon.on else None,
                           key=gs.group.key, **(extra or {}).get(i, {})))
        for i, t, old, new, why in self.history.items():
            lines.append(R("why", i, ep(t), old, new, text=why))
        lines.append(R("last", ep(self.last[0]), text=self.last[1]))
        return "\n".join(lines) + "\n"
