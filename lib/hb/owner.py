"""Liveness and resource ownership between two nodes.  Pure: no I/O, no clock.

An Owner is fed events with the time they happen (monotonic seconds):
message(fields, now), request(line, now), tick(now), agent_done(group, action,
rc, now), check_done(group, token, ok, detail, now), link(iface, up, now),
addr_gone(group, addr, now), shutdown(now), reconfigure(cfg, now).  Each
returns a list of actions for hb-watch to carry out: Send a message line, Run a
group's agents, Check a group (monitor, off the loop), Log a line, Save state
and status, feed the Watchdog, Exit.

The core is split by concept, each part a mixin of Owner over the same state:
liveness.py (nodes, links, silence), handover.py (who takes what: start-up,
death, standby, failback), results.py (agent results, monitor checks, reach),
admin.py (the operator's requests); actions.py the actions, fields.py the peer's
fields, groups.py a group's record.  This module holds the state, the events and
the decisions that join them.

Ownership is one variable per group, `assign` (this node, the peer, or not yet
decided), moved by Heartbeat's haresources-mode protocol (reference §4.10-4.15:
starting/resource, ask_resources, hb_takeover, ip-request, shutdone), by node
deaths, split brains and silence.  policy.TABLE then turns (group state, event)
into agent runs, the event saying whether the group is wanted here and whether
the live peer advertises it: a group is started only when it does not, and
groups never wait on each other.
"""

from __future__ import annotations

from typing import Callable, Iterable

from hb import health, policy, status
from hb.actions import Action, Exit, Log, Run, Save, Send, Watchdog
from hb.admin import Admin
from hb.settings import Config
from hb.fields import format_groups, hexint
from hb.groups import (FAILED, HELD, ME, PEER, PROBING, RUNNING, STARTING, STOPPED,
                       STOPPING, GroupState)
from hb.handover import Handover, Handshake
from hb.liveness import HOUR, Link, Liveness, Node, sent_at
from hb.results import Results


class Owner(Liveness, Handover, Results, Admin):
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
        self.repeated = False            # the last message only repeated a status
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

    def in_maintenance(self, now: float) -> bool:
        return self.maint_until is not None and now < self.maint_until

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
        self.repeated = False           # set when it only repeats a status: see tick()
        self._clock(now, out)
        t, src, via = f.get("t", ""), f.get("src", "").lower(), f.get("_via", "")
        if t == "ping" or via == "ping":
            self._ping(f, now, out)
            return out
        if src == self.me:
            if t == "status" and via == "local":
                out.append(Watchdog())
                me = self.nodes[self.me]
                was = (self.silent, self.hush_from, me.status, len(out))
                self._heard_self(f, sent_at(f, now), out)
                if not self._repeat(me, f) or was != (self.silent, self.hush_from,
                                                      me.status, len(out)):
                    self._reconcile(now, out)
                else:
                    self.repeated = True          # only its clock moved: tick()
            return out
        n = self.nodes.get(src)
        if n is None:
            return out
        gen, seq = hexint(f.get("hg")), hexint(f.get("seq"))
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
            if not stale and self._repeat(n, f) and n.status == "up" and \
                    self.hush_from is None:
                self._same_status(n, seq, now, out)     # only its clock moves:
                self.repeated = True                    # tick() reconciles
                return out
            self._status(n, f, now, out, stale)
            if self.hush_from is not None and now >= self.hush_from and not stale \
                    and n.name == self.peer_name:
                self.hush_from = None     # it says what it holds since it could judge us
                self._hush_over(now, out)
            self._show(n, out)
        else:                         # hb-beat delivers each message once, gaps filled late
            handler = HANDLERS.get(t.replace("-", "_"))
            if handler is not None:
                handler(self, n, f, now, out)
                out.append(Save())
        self._reconcile(now, out)
        return out

    def awake(self, now: float) -> list[Action]:
        """hb-watch woke and read RUNDIR/heard, with nothing else due: only the
        clock (a gap since the last event is a freeze of this node)."""
        out: list[Action] = []
        self._clock(now, out)
        return out

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        self.last_tick = now
        self._clock(now, out)
        self._check_nodes(now, out)
        if self.maint_until is not None and now >= self.maint_until:
            self._maintenance(["off"], now, out)
        self._handover_tick(now, out)
        self._connectivity(now, out)
        self._monitor(now, out)
        if now >= self.next_summary:
            self.next_summary = now + HOUR
            self._summary(now, out)
        self._reconcile(now, out)
        if out and not any(isinstance(a, Save) for a in out):
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
                             "grps": format_groups(self.held())}))
        for gs in self.gs.values():
            gs.assign = PEER
        self._claim("all", False)
        self._reconcile(now, out)
        out.append(Save())
        return out

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
            paused = maint or (not self.comm_up and not self.shutting and not self.silent)
            step = policy.TABLE[policy.state_of(gs), policy.event(paused, want, pa,
                                                                  gs.reannounce)]
            if step.action == policy.REANNOUNCE:
                gs.reannounce = False
                gs.busy = "start"
                out.append(Run(i, "start"))
            elif step.action == policy.RETRY:
                if now >= gs.retry_at and not self.rebooting:    # hold: try it again
                    self._set_group(gs, step.next, now)
                    gs.busy = "stop"
                    out.append(Run(i, "stop"))
                    out.append(Save())
            elif step.action is not None:
                if gs.state == STOPPING and now < gs.retry_at:
                    continue            # a failed stop: retried once its time has come
                if serial:              # decided below, once every group has been seen
                    (starts if step.action == policy.START else stops).append(
                        (i, gs, step.next))
                    continue
                self._act(gs, step.action, step.next, now, out)
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

    def next_wake(self) -> float:
        """next_due() and every other moment tick() may act without a new event, so
        that hb-watch need not tick at a fixed short step; timers already passed at
        the last tick are left out (what they wait for is no longer time)."""
        later = [t + 0.0005 for t in self._timers() if t > self.last_tick]
        return min([self.next_due(), *later])

    def _timers(self) -> list[float]:
        ts = self._liveness_timers() + self._handover_timers() + self._results_timers()
        if self.maint_until is not None:
            ts.append(self.maint_until)
        return ts

    def status_text(self, now: float, wall: float, pid: int,
                    extra: dict[int, dict[str, str]] | None = None) -> str:
        """RUNDIR/status: wall is the epoch time at monotonic `now`; extra: more
        fields for a group's line (hb-watch's neighbour check, `nbr=`)."""
        return status.render(self.status_view(now, pid, extra), now, wall)

    def status_view(self, now: float, pid: int,
                    extra: dict[int, dict[str, str]] | None = None) -> status.View:
        """What RUNDIR/status shows of this node, the peer, links and groups."""
        p = self.peer
        show_reach = bool(self.cfg.pings or self.reach.nolink() or (p and p.nolink))
        nodes = []
        for n in self.nodes.values():
            other = n.kind != "self"
            nodes.append(status.NodeView(
                n.name, n.status, n.since, self.worst_late(n, now), n.gen, n.kind,
                len(n.lates), n.st if n.status == "up" and n.st and other else
                n.status if other else self.st,
                cfd=("same" if n.cfd == self.digest else "differs") if other and n.cfd else None,
                reach=(self.peer_reach(), n.nolink) if (
                    show_reach and n is p and self.peer_reach() is not None) else None,
                stable=bool(n.stable) if other else None,
                dt=self._deadtime(n) if other else None))
        groups = [status.GroupView(
            i, gs.state in HELD or gs.dirty, self.peer_alive() and i in self.peer.holds,
            gs.state, gs.dirty, gs.group.node, gs.since, gs.fails,
            self.mon.restarts(i, now) if self.mon.on else None, gs.group.key,
            (extra or {}).get(i, {})) for i, gs in self.gs.items()]
        sf = self.state_fields()
        return status.View(
            pid, self.me, self.peer_name, sf["st"], sf["rsc_hold"],
            self.maint_until if self.in_maintenance(now) else None,
            (self.reach.score(), self.reach.nolink()) if show_reach else None,
            self.stable(), nodes,
            [(ln.node, ln.medium, ln.status, ln.since) for ln in self.links.values()],
            [(pg.name, "up" if pg.status == "up" else "dead", pg.since)
             for pg in self.reach.pings.values()],
            groups, list(self.history.items()), self.last)


# Messages of the resource protocol (peer -> us), by type (`-` read as `_`, as
# Heartbeat's types mix both); `status` is liveness's, handled before these.
HANDLERS: dict[str, Callable[..., None]] = {
    "starting": Handover._m_starting,
    "resource": Handover._m_resource,
    "reqnodes": Handover._m_reqnodes,
    "shutdone": Handover._m_shutdone,
    "ask_resources": Handover._m_ask_resources,
    "hb_takeover": Handover._m_hb_takeover,
    "ip_request": Handover._m_ip_request,
    "ip_request_resp": Handover._m_ip_request_resp,
    "reach": Results._m_reach,
}
