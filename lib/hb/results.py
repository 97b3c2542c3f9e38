"""Results: what the agents' runs and checks say of a group here, and the reach rule.  Pure.

agent_done turns a start, stop, restart or status result into the group's next
state (policy.RESULT_TABLE), with Heartbeat's answers to failure: a failed
start is stopped and handed to the peer; a failed stop is retried STOP_RETRIES
times, then the group's status says whether it may still run here (stop_failure
hold: held, retried every STUCK_RETRY s and advertised as `stuck=`; reboot).
The monitor (health.Monitor) restarts a running group that fails its check, and
moves it to the peer after too many failures; ipfail (health.Decider) hands every
group to a live peer that reaches more ping nodes for long enough.

The Results mixin is part of owner.Owner.
"""

from __future__ import annotations

from hb import health
from hb.actions import Action, Alert, Check, Reboot, Run, Save, Send
from hb.fields import IFACES, decint, hold_word
from hb.groups import (FAILED, ME, PEER, PROBING, RUNNING, STARTING, STOP_RETRIES, STOP_RETRY,
                       STOPPED, STOPPING, STUCK_RETRY, GroupState)
from hb.liveness import Node
from hb.policy import RESULT_TABLE


class Results:
    """Agent results, monitor checks, reach (a mixin of owner.Owner)."""

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

    def _results_timers(self) -> list[float]:
        """Stops to retry (a failed stop, a stuck group) and the reach's deadlines."""
        ts = [gs.retry_at for gs in self.gs.values() if gs.dirty]
        ts += [gs.retry_at for gs in self.gs.values() if gs.state == STOPPING]
        return ts + self.reach.deadlines()

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

    def _m_reach(self, n: Node, f: dict, now: float, out: list) -> None:
        """The peer's reach: in its status heartbeats and, at once, in `t=reach`."""
        for name in ("pings", "pfresh"):
            if f.get(name) and decint(f[name]) is None:
                self._bad(out, n, name, f[name], now)
        n.pings, n.pfresh = decint(f.get("pings")), decint(f.get("pfresh"))
        nolink = f.get("nolink", "")
        if nolink and not IFACES.fullmatch(nolink):
            self._bad(out, n, "nolink", nolink, now)
            nolink = "?"
        n.nolink = nolink

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

    def _ping(self, f: dict, now: float, out: list) -> None:
        self._reached(self.reach.reply(f.get("src", ""), f.get("addr", ""), now), now, out)

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
        what = hold_word(held, self.me, self.cfg.groups)
        if self._give(what, held, "connectivity", now, out):
            self._log(out, "warning", "connectivity: %s reaches %s, %s reaches %s: handing "
                      "groups %s to %s" % (
                          self.me, health.describe(mine, self.reach.nolink()), self.peer_name,
                          health.describe(peer, self.peer.nolink),
                          ",".join(map(str, sorted(held))), self.peer_name), now)
