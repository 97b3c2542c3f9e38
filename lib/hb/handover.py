"""Handover: who takes which group when, by Heartbeat's haresources-mode protocol.  Pure.

At communication up each node takes its local groups (`starting` answered by
`resource`; Heartbeat peers: after RQSTDELAY or the peer's isstable, or by
`ip-request` under auto_failback legacy); at the peer's death or shutdown this
node takes every group (mach_down) but those the peer said may still run there.
A standby is a handshake between a giver and a taker (reference §4.10-4.15):

    giver: ask_resources info=me   -> taker: ask_resources info=other
    giver stops the groups         -> giver: ask_resources info=done
    taker starts them              -> taker: resource ..., ask_resources info=done

`hb_takeover` asks the peer to give (TAKEOVER_MAP turns the class around).  A giver
with no `other` reply within ASK_TIMEOUT gives up.

The Handover mixin is part of owner.Owner: its state (hs, gives, ipreq, rqst_at,
claims) lives there.
"""

from __future__ import annotations

from dataclasses import dataclass

from hb import health
from hb.actions import Save, Send
from hb.fields import format_groups, hexint, holds_from, hold_word
from hb.groups import FAILED, HELD, ME, PEER, RUNNING, STOPPED, GroupState
from hb.liveness import Node

RQSTDELAY = 10.0          # Heartbeat's wait when both start (Heartbeat peers only)
ASK_TIMEOUT = 10.0        # no `other` reply to `ask_resources info=me`
TAKEOVER_MAP = {"all": "all", "local": "foreign", "foreign": "local", "failback": "all"}


@dataclass
class Handshake:
    role: str                        # giver | taker
    what: str                        # all | local | foreign, relative to the giver
    groups: set
    phase: str                       # asked | stopping | waiting
    t0: float
    reason: str = ""
    peer_seq: int = 1 << 64          # giver: the taker's `other` (its later status is news)


class Handover:
    """Start-up, death and standby handshakes (a mixin of owner.Owner)."""

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

    def _announce(self, out: list) -> None:
        """Heartbeat's `resource ... isstable=1` each time this node settles."""
        if not self.stable() or self.shutting:
            self.announced = False
        elif not self.announced and self.peer_alive() and (
                self.cfg.auto_failback != "legacy" or self.peer.kind == "hb"):
            out.append(self._resource())
            out.append(Save())
            self.announced = True

    def _claim(self, what: str, value: bool) -> None:
        """Take or give up the responsibility for a class (relative to this node).
        The peer's class is claimed only when handed over, never by its death: an
        empty class then stays the peer's to claim when it comes back."""
        for c in ("local", "foreign"):
            if what in (c, "all"):
                self.claims[c] = value

    def _mine(self, what: str, node: str) -> set:
        return holds_from(what, node, self.cfg.groups)

    def state_fields(self) -> dict[str, str]:
        """What every status heartbeat advertises (RUNDIR/state)."""
        f = {"st": self.st,
             "rsc_hold": hold_word(self.held(), self.me, self.cfg.groups, self.claims),
             "grps": format_groups(self.held()),
             "isstable": "1" if self.stable() else "0", "hbv": "1"}
        if self.stuck():
            f["stuck"] = format_groups(self.stuck())
        if self.digest:
            f["cfd"] = self.digest
        f.update(self.reach.fields())
        return f

    def _resource(self, info: str = "", after: bool = False) -> Send:
        hold = self.wanted() if after else self.held()
        word = hold_word(hold, self.me, self.cfg.groups, self.claims)
        f = {"t": "resource", "rsc_hold": word, "rtype": "full",
             "isstable": "1" if self.stable() else "0"}
        if info:
            f["info"] = info
        f["grps"] = format_groups(self.held())
        if self.stuck():
            f["stuck"] = format_groups(self.stuck())
        return Send(f)

    def _handover_tick(self, now: float, out: list) -> None:
        """Time passed: both nodes started (take the local groups), a standby request
        without reply, a handshake whose last message was lost."""
        if self.rqst_at is not None and now >= self.rqst_at:
            self.rqst_at = None
            self._take_local(now, out, "both nodes started")
        hs = self.hs
        if hs and hs.role == "giver" and hs.phase == "asked" and now - hs.t0 > ASK_TIMEOUT:
            self._log(out, "warning", "no reply to standby request: standby request cancelled",
                      now)
            self.hs = None
        self._check_handshake(now, out)

    def _handover_timers(self) -> list[float]:
        ts = [self.rqst_at] if self.rqst_at is not None else []
        if self.hs is not None:
            ts += [self.hs.t0 + ASK_TIMEOUT, self.hs.t0 + self.cfg.keepalive * 2]
        return ts

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
            f["grps"] = format_groups(groups, empty="")
        out.append(Send(f))
        self.hs = Handshake("giver", what, set(groups), "asked", now, why)
        self._log(out, "info", "%s: asking %s to take %s groups" % (why, p.name, what), now)
        return True

    def _m_starting(self, n: Node, f: dict, now: float, out: list) -> None:
        out.append(self._resource())

    def _m_resource(self, n: Node, f: dict, now: float, out: list) -> None:
        info = f.get("info", "")
        seq = hexint(f.get("seq"))
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
            n.holds = holds_from(hold or "none", n.name, self.cfg.groups)
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
                    f["grps"] = format_groups(hs.groups - stuck)
                out.append(Send(f))
        elif hs.role == "taker":
            if all(self.gs[i].state in (RUNNING, FAILED) and not self.gs[i].busy
                   for i in hs.groups):
                self.hs = None
                out.append(self._resource())
                out.append(Send({"t": "ask_resources", "rsc_hold": hs.what, "info": "done"}))
