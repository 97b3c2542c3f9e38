"""The operator's word: requests from watch.fifo (standby, takeover, maintenance) and
a re-read configuration (SIGHUP).  Pure.

    standby [all|local|foreign|failback]    hand groups to the live peer
    takeover [all|local|foreign|failback]   ask the live peer for them, or take them
                                            when there is none (its `stuck=` is then
                                            forgotten: the operator's word)
    maintenance on SECONDS | off            start or stop nothing meanwhile; at the
                                            end every group is probed

The Admin mixin is part of owner.Owner.
"""

from __future__ import annotations

from hb.actions import Action, Run, Save, Send
from hb.settings import Config
from hb.groups import FAILED, ME, PROBING, RUNNING, STOPPED
from hb.handover import TAKEOVER_MAP

MAINT_MAX = 366 * 86400.0         # s: `maintenance on SECONDS` at most a year


class Admin:
    """Requests and reconfiguration (a mixin of owner.Owner)."""

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
