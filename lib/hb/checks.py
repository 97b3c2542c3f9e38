"""Resource health for hb-watch: monitor checks off the loop, restarts in place, and
the addresses and interfaces of the groups (for netlink link and address events).

A check calls each resource of a group, `monitor` for the built-ins and `status`
for scripts (judged by their text as Heartbeat does), with a timeout; a resource
found stopped, a timeout, or an agent that cannot be run is a failure.  Checks run
in their own threads and answer through a pipe (fileno/collect), as agents.Runner
does, so a slow check never holds up heartbeats or takeovers.  `restart` starts
again, left to right, the resources of a group that are not running.
"""

from __future__ import annotations

import logging
import threading

from hb import agents, exits
from hb.settings import Group

log = logging.getLogger("hb")


class Caller(agents.Caller):
    """agents.Caller with the group action `restart` (only what is not running)."""

    def group(self, g: Group, action: str) -> int:
        if action != "restart":
            return super().group(g, action)
        for r in g.resources:
            if check(self, r)[0]:
                continue
            rc, _ = self.logged(r, "start")
            if rc != 0:
                log.error("group %d: %s failed to start again", g.index, self.describe(r, ""))
                return exits.FAIL
        return exits.OK


def check(caller: agents.Caller, r) -> tuple[bool, str]:
    """One resource: (running, why not)."""
    a = agents.lookup(r.name, caller.confdir, caller.initd)
    if a is None:
        return False, "cannot locate resource script %s" % r.name
    action = "monitor" if a.builtin else "status"
    rc, text = caller.call(r, action)
    if rc == exits.OK:
        return True, ""
    said = " ".join(text.split())[:200] or "exit %d" % rc
    return False, "%s: %s" % (caller.describe(r, action), said)


class Checker:
    """Runs group checks in threads; the loop selects on fileno() and collects
    (group, token, ok, why).  At most one check per group is in flight: a check
    asked for while the group's previous one has not returned (an agent stuck
    past every timeout) fails at once instead of starting another thread."""

    def __init__(self, caller: agents.Caller) -> None:
        self.caller = caller
        self.box = agents.Mailbox()
        self.busy: set[int] = set()     # groups whose check has not returned

    def fileno(self) -> int:
        return self.box.rfd

    def run(self, g: Group, token: int) -> None:
        if g.index in self.busy:
            self.box.post((g.index, token, False,
                           "the previous check of group %d has not returned" % g.index))
            return

        def work() -> None:
            ok, why = True, ""
            try:
                for r in g.resources:
                    ok, why = check(self.caller, r)
                    if not ok:
                        break
            except Exception as e:
                ok, why = False, "%s: %s" % (type(e).__name__, e)
            self.busy.discard(g.index)      # before the result: the next check may follow
            self.box.post((g.index, token, ok, why))
        self.busy.add(g.index)
        threading.Thread(target=work, daemon=True, name="check-%d" % g.index).start()

    def collect(self) -> list[tuple[int, int, bool, str]]:
        return self.box.take()

    def close(self) -> None:
        self.box.close()


def addresses(groups: list[Group], confdir: str) -> tuple[list[str], dict[str, set]]:
    """(interfaces carrying the groups' addresses, {address: group indexes}).

    The interface is the one in the spec, else the one whose subnet holds the
    address on this node now (Heartbeat's findif); an address that fits none is
    left out of the interfaces (its start will say why)."""
    from hb import address, addrspec, netlink
    ifaces: list[str] = []
    byip: dict[str, set] = {}
    known = None
    for g in groups:
        for r in g.resources:
            a = agents.lookup(r.name, confdir)
            if a is None or a.module != "address" or len(r.args) != 1:
                continue
            try:
                spec = addrspec.parse(r.args[0])
                byip.setdefault(spec.ip, set()).add(g.index)
                if spec.iface:
                    iface = spec.iface
                else:
                    if known is None:
                        known = netlink.dump_addrs()
                    iface = address.findif(spec, known)[0]
            except (addrspec.SpecError, OSError):
                continue
            if iface not in ifaces:
                ifaces.append(iface)
    return ifaces, byip
