"""Liveness: the nodes and links heard, who is late or dead, and the silence rule.  Pure.

A node is up while its heartbeats come within its deadtime (the one it advertises
as `dt=`, else ours), a link while messages come through it.  The silence rule:
a node that cannot hear its own heartbeat judges nobody (what it does not hear may
be its own deafness); without its own heartbeat for deadtime/2 it goes silent and
lets go of every group, and once heard again it is hushed (starts and takes
nothing) until the peer says what it holds now.  A gap longer than deadtime between
two events means this node was frozen: nobody is judged for that gap.

The Liveness mixin is part of owner.Owner: its state (nodes, links, silent,
hush_from...) lives there.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from hb import lines
from hb.actions import Action, Reboot, Save, Send
from hb.settings import digest_diff
from hb.fields import DIGEST, DT_RANGE, HOLD_WORDS, ST_WORDS, hexint, parse_groups
from hb.groups import FAILED, ME, PEER, RUNNING, STARTING, STOPPED

HOUR = 3600.0
EVERY_BEAT = frozenset(("seq", "ts", "ld", "_rt", "_via"))    # what a repeated status changes


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
    said: tuple = ()                 # its last status but what changes every beat
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


def sent_at(f: dict, now: float) -> float:
    """When hb-beat sent our own status (its `_rt`: the line may be written a few
    ms later, with the peer's answer), on the same monotonic clock; else now."""
    try:
        rt = float(f.get("_rt", ""))
    except ValueError:
        return now
    return rt if now - 1.0 < rt <= now else now


class Liveness:
    """Node and link judgement, our own heartbeat, silence (a mixin of owner.Owner)."""

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

    def _clock(self, now: float, out: list) -> None:
        """A gap longer than deadtime between two events: this node was frozen
        (SIGSTOP, a VM paused, swap storm).  The peer may have taken our groups: keep
        each only if the peer does not say it holds it, and judge nobody dead for a
        missed deadtime we slept through."""
        gap = now - self.last_event
        if gap <= 0:                # a status heard earlier, told now (RUNDIR/heard)
            return
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

    def _repeat(self, n: Node, f: dict) -> bool:
        """This status says what n's last one said (but seq, ts, ld and hb-beat's
        _rt, _via): nothing to judge but its timing (_same_status)."""
        said = tuple(sorted((k, v) for k, v in f.items() if k not in EVERY_BEAT))
        if said == n.said:
            return True
        n.said = said
        return False

    def _same_status(self, n: Node, seq: int | None, now: float, out: list) -> None:
        """A peer's status that repeats its last one: what _status does of it
        (timing, lateness, holdings' sequence), the rest already done."""
        if seq is not None and seq > n.holds_seq:
            n.holds_seq = seq
        self._beat_gap(n, now, out)
        n.last = now
        n.beats += 1
        self._show(n, out)

    def heard(self, src: str, via: str, t: float, count: int) -> bool:
        """count statuses hb-beat heard from src through via and wrote no line for
        (each repeating the last one written, within 1.25 keepalives of the one
        before: RUNDIR/heard), the last at t.  True when taken as such (only clocks
        move); False when a whole status is wanted (a line made of the last one)."""
        n = self.nodes.get(src)
        if n is None:
            return True
        if src == self.me:
            if via != "local":
                return True             # our own message heard back: nothing to judge
            if n.status != "up" or self.silent or self.gone or n.last is None:
                return False
            n.last = max(n.last, t)
            return True
        if n.status != "up" or self.hush_from is not None or n.last is None:
            return False
        ln = self.links.get((src, via))
        if ln is None or ln.status != "up":
            return False
        ln.last = max(ln.last, t)
        n.last = max(n.last, t)
        n.beats += count
        return True

    def _show(self, n: Node, out: list) -> None:
        """What RUNDIR/status says of n: written now when it changed."""
        view = (n.status, n.st, n.cfd, n.gen, n.nolink, self.peer_reach(),
                frozenset(n.holds), len(n.lates))
        if view != n.shown:
            n.shown = view
            out.append(Save())

    def _beat_gap(self, n: Node, now: float, out: list) -> None:
        """The time since n's last status: its lateness, and a warning past warntime."""
        if n.last is not None:
            gap = now - n.last
            n.late.add(now, max(0.0, gap - self.cfg.keepalive))
            if gap > self.cfg.warntime and n.status == "up":
                n.lates.add(now)
                self._log(out, "warning", "node %s: late heartbeat, %.1f s" % (n.name, gap))

    def worst_late(self, n: Node, now: float) -> float:
        n.late.prune(now)
        n.lates.prune(now)
        return n.late.worst()

    def _heard_self(self, f: dict, now: float, out: list) -> None:
        n = self.nodes[self.me]
        self.echoed_stuck = parse_groups(f.get("stuck", "none"), self.gs) or set()
        if self.rebooting and not self.reboot_sent and "stuck" not in f:
            self.reboot_sent = True     # the peer no longer reads stuck=: it may take over
            out.append(Reboot(self.reboot_group if self.reboot_group is not None else 0))
        deaf_for = min(1.25 * self.cfg.keepalive, self.silence_after())
        gen = hexint(f.get("hg"))
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
        got = parse_groups(v, self.gs)
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
            dt = hexint(f["dt"])
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
        self._beat_gap(n, now, out)
        n.last = now
        n.beats += 1
        if not stale:
            n.st = st
            if f.get("seq") and hexint(f["seq"]) is not None:
                n.holds_seq = max(n.holds_seq, hexint(f["seq"]))
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
        if cfd and not DIGEST.fullmatch(cfd):
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

    def _liveness_timers(self) -> list[float]:
        """When a node, a link or this node's own heartbeat may be judged, the hourly
        summary is due, or a grace after a freeze or a peer's return ends."""
        ts = [self.next_summary, self.init_from + self.cfg.initdead]
        me = self.nodes.get(self.me)
        if me is not None and me.status == "up" and me.last is not None:
            ts.append(me.last + self.cfg.deadtime)
        if me is not None:
            ts.append((me.last if me.last is not None else self.start) + self.silence_after())
        ts += [ln.last + self._deadtime(self.nodes[ln.node]) + ln.slack
               for ln in self.links.values()
               if ln.status == "up" and ln.node in self.nodes]
        if any(gs.yield_ for gs in self.gs.values()):
            ts.append(self.yield_until)
        if self.peer is not None:
            ts.append(self.peer.back_at + self.grace())
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
