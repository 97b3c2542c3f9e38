"""One floating address (an IPaddr/IPaddr2 resource): find its interface, take
it over (add, announce), release it, query it, and check that the neighbours
moved.

Specs and OCF parameters are parsed by hb.addrspec (the one grammar); netlink
changes and queries are hb.netlink's, frames on the link hb.arp's.  findif,
free_alias and neighbour_targets are pure.  After a takeover,
check_neighbour_later() asks the subnet's gateway (or ping nodes) for its
address from the floating one, on one thread, and times the answer.
Nothing happens at import time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable

from hb import addrspec, arp, exits, netlink
from hb.addrspec import AF_INET, AF_INET6, Spec, SpecError, in_subnet, parse_ip
from hb.netlink import Addr

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing costs 3 ms at start-up; status must be quick
    from typing import Any


def findif(spec: Spec, addrs: Iterable[Addr]) -> tuple[str, int]:
    """(iface, prefix) for spec: Heartbeat's findif over the configured addresses.

    The interface is the one with a subnet containing the address (unless given);
    the prefix is that subnet's (unless given).  SpecError when none or several fit.
    """
    raw = spec.raw
    fits: dict[str, int] = {}
    for a in addrs:
        if a.family != spec.family or a.raw == raw or a.prefix == 0:
            continue
        if spec.iface and a.ifname != spec.iface:
            continue
        if a.family == AF_INET6 and a.raw[:2] == b"\xfe\x80" and raw[:2] != b"\xfe\x80":
            continue
        if in_subnet(raw, a.raw, a.prefix):
            fits[a.ifname] = max(fits.get(a.ifname, 0), a.prefix)
    if spec.iface:
        if spec.prefix is not None:
            return spec.iface, spec.prefix
        if spec.iface not in fits:
            raise SpecError("no subnet on %s contains %s: give the prefix" % (
                spec.iface, spec.ip))
        return spec.iface, fits[spec.iface]
    if not fits:
        raise SpecError("no interface has a subnet containing %s: give the interface"
                        % spec.ip)
    if len(fits) > 1:
        raise SpecError("several interfaces have a subnet containing %s (%s): give the "
                        "interface" % (spec.ip, " ".join(sorted(fits))))
    iface, prefix = next(iter(fits.items()))
    return iface, spec.prefix if spec.prefix is not None else prefix


def free_alias(iface: str, addrs: Iterable[Addr]) -> str | None:
    """Heartbeat's IPaddr labels each address IFACE:N, the first N not in use (as
    ifconfig's aliases); None when IFACE:N would not fit in 15 characters."""
    used = {a.label for a in addrs if a.family == AF_INET and a.label}
    n = 0
    while "%s:%d" % (iface, n) in used:
        n += 1
    return str(n) if len(iface) + 1 + len(str(n)) <= 15 else None


def neighbour_targets(spec: Spec, iface: str, prefix: int,
                      gateways: Iterable[tuple[str, str]], pings: Iterable[str]) -> list[str]:
    """Whom to ask after a takeover: the default gateways on iface inside the
    address's subnet, else the ping nodes inside it (same family)."""
    net = spec.raw

    def inside(ip: str) -> bool:
        try:
            fam, ip = parse_ip(ip)
        except SpecError:
            return False
        raw = socket.inet_pton(fam, ip)
        return fam == spec.family and raw != net and in_subnet(raw, net, prefix)

    def link_local(ip: str) -> bool:
        return spec.family == AF_INET6 and ip.lower().startswith("fe8")

    gws = [g for g, dev in gateways if dev == iface and (inside(g) or link_local(g))]
    if gws:
        return list(dict.fromkeys(gws))
    return list(dict.fromkeys(parse_ip(p)[1] for p in pings if inside(p)))


# -- actions --------------------------------------------------------------------------

class Refused(Exception):
    """start would clash: another host answers for the address."""


_pending: dict[str, Any] = {}        # ip -> threading.Event stopping its repeats


def _cancel(ip: str) -> None:
    ev = _pending.pop(ip, None)
    if ev is not None:
        ev.set()


def warm(texts: list[str], pings: list[str] | None = None) -> list[str]:
    """Pay every one-time cost of a takeover now: import pyroute2, open its netlink
    socket, and open the AF_PACKET socket of each address's interface (closing one
    costs ~10 ms, importing pyroute2 200-300 ms).  hb-watch calls this at start so
    that a takeover is one netlink call and one gratuitous ARP.  pings are the
    ping nodes the neighbour check may ask.  Returns problems.
    """
    if pings is not None:
        _nbr_pings[:] = pings
        _nbr_worker()
    problems = []
    try:
        netlink.prepare()
    except Exception as e:
        problems.append("netlink: %s" % e)
    for text in texts:
        try:
            spec = addrspec.parse(text)
            iface = spec.iface or findif(spec, netlink.dump_addrs(spec.family))[0]
            arp.tx_socket(iface)
        except Exception as e:
            problems.append("%s: %s" % (text, e))
    return problems


def start(spec: Spec, background: str = "thread", confirm: bool = False) -> str:
    """Add spec (idempotent) and announce it; returns a line saying what was done.

    The first announcement frame is sent before returning; the rest (schedule())
    by a daemon thread (background="thread"), a detached child ("fork") or not at
    all ("none").  confirm: then check the neighbours in a thread of its own
    (check_neighbour_later).  Raises SpecError, Refused, or OSError.
    """
    addrs = netlink.dump_addrs(spec.family)
    have = netlink.find_held(spec, addrs)
    if have is not None:
        iface, prefix = have.ifname, have.prefix
        what = "re-announced %s on %s" % (spec.ip, have.ifname)
    else:
        iface, prefix = findif(spec, addrs)
        _check_exists(iface)
        if spec.dad and spec.dad_timeout > 0 and arp.probe(spec, iface, spec.dad_timeout):
            raise Refused("%s answers from another host on %s" % (spec.ip, iface))
        alias = None
        if spec.agent == "IPaddr" and spec.family == AF_INET and not spec.label:
            alias = free_alias(iface, addrs)
        netlink.add(spec, iface, prefix, alias)
        what = "added %s/%d on %s" % (spec.ip, prefix, iface + (":" + alias if alias else ""))
    _cancel(spec.ip)
    plan = arp.schedule(spec.family, spec.arp_count, spec.arp_interval)
    if plan:
        t0 = time.monotonic()
        if arp.send_announcement(spec, iface, plan[0][1]):
            _background(spec, iface, plan, t0, background)
        else:
            what += " (not announced: %s cannot send)" % iface
    if confirm:
        check_neighbour_later(spec, iface, prefix)
    return what


def _background(spec: Spec, iface: str, plan: list[tuple[float, int]], t0: float,
                how: str) -> None:
    if len(plan) <= 1 or how == "none":
        return
    if how == "fork":
        if os.fork() == 0:      # detached child: the caller returns at once
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                arp.repeat_announce(spec, iface, plan, _gone(spec, iface), t0)
            finally:
                os._exit(0)
        return
    import threading        # here: status and stop never start a thread
    ev = threading.Event()
    _pending[spec.ip] = ev
    threading.Thread(target=arp.repeat_announce,
                     args=(spec, iface, plan, _gone(spec, iface, ev.is_set), t0),
                     name="announce " + spec.ip, daemon=True).start()


def _gone(spec: Spec, iface: str,
          cancelled: Callable[[], bool] = lambda: False) -> Callable[[], bool]:
    """When the repeats of spec on iface stop: cancelled (a newer start or a stop),
    or the address no longer on iface."""
    here = Spec(spec.ip, spec.family, iface=iface)
    return lambda: cancelled() or netlink.find_held(here) is None


# ip -> (ok, seconds, detail); ok is None while the check runs
neighbours: dict[str, tuple[bool | None, float, str]] = {}
_nbr_pings: list[str] = []
_nbr_turn: dict[str, object] = {}
on_neighbour: Callable[[str, bool, float, str], None] | None = None


_nbr: Any = None       # (queue of checks, condition, [checks not yet done]) once started


def _nbr_worker() -> Any:
    """The one thread that runs neighbour checks, started once: a takeover only
    queues its check (starting a thread there costs the caller about a millisecond)."""
    global _nbr
    if _nbr is None:
        import queue
        import threading
        _nbr = (queue.SimpleQueue(), threading.Condition(), [0])
        threading.Thread(target=_nbr_loop, args=(_nbr,), name="neighbours",
                         daemon=True).start()
    return _nbr


def check_neighbour_later(spec: Spec, iface: str, prefix: int) -> None:
    """confirm_neighbour on the neighbour thread: the result goes to the log ("hb"),
    to neighbours[spec.ip] and to on_neighbour(ip, ok, seconds, detail)."""
    jobs, cond, left = _nbr_worker()
    neighbours[spec.ip] = (None, 0.0, "checking")
    _nbr_turn[spec.ip] = turn = object()      # a later start or a stop makes this one stale
    with cond:
        left[0] += 1
    jobs.put((spec, iface, prefix, turn))


def wait_neighbours(timeout: float) -> bool:
    """Until every queued neighbour check is done (tests, shutdown); False on timeout."""
    if _nbr is None:
        return True
    _jobs, cond, left = _nbr
    with cond:
        return cond.wait_for(lambda: left[0] == 0, timeout)


def _nbr_loop(nbr: Any) -> None:
    import logging
    log = logging.getLogger("hb")
    jobs, cond, left = nbr
    while True:
        spec, iface, prefix, turn = jobs.get()
        try:
            _nbr_check(log, spec, iface, prefix, turn)
        finally:
            with cond:
                left[0] -= 1
                cond.notify_all()


def _nbr_check(log: Any, spec: Spec, iface: str, prefix: int, turn: object) -> None:
    import logging
    try:
        targets = neighbour_targets(spec, iface, prefix,
                                    netlink.default_gateways(spec.family), _nbr_pings)
        ok, dt, detail = arp.confirm_neighbour(spec, iface, targets)
    except Exception as e:      # a neighbour check must never take hb-watch down
        ok, dt, detail = False, 0.0, "%s: %s" % (type(e).__name__, e)
    quiet = ok or detail.startswith(arp.NOBODY)
    log.log(logging.INFO if quiet else logging.WARNING, "neighbour check %s on %s: %s",
            spec.ip, iface, detail)
    if _nbr_turn.get(spec.ip) is not turn:
        return
    neighbours[spec.ip] = (ok, dt, detail)
    if on_neighbour is not None:
        try:
            on_neighbour(spec.ip, ok, dt, detail)
        except Exception as e:
            log.error("neighbour check %s: reporting: %s: %s", spec.ip, type(e).__name__, e)


def neighbour_field(ips: Iterable[str]) -> str | None:
    """A group's neighbour check for its status line: `ok:12ms` (all answered; the
    slowest), `fail:IP` (the first address nobody answered), `none` (no one to
    ask), `pending`; None when no address of the group was checked."""
    got = [(ip, neighbours[ip]) for ip in ips if ip in neighbours]
    if not got:
        return None
    if any(ok is None for _ip, (ok, _dt, _d) in got):
        return "pending"
    for ip, (ok, _dt, detail) in got:
        if not ok and not detail.startswith(arp.NOBODY):
            return "fail:" + ip
    oks = [dt for _ip, (ok, dt, _d) in got if ok]
    if not oks:
        return "none"
    return "ok:%dms" % round(max(oks) * 1000)


def stop(spec: Spec) -> str:
    """Remove spec wherever it is held (on spec.iface if given); absent is success."""
    _cancel(spec.ip)
    neighbours.pop(spec.ip, None)
    _nbr_turn.pop(spec.ip, None)
    have = netlink.find_held(spec)
    if have is None:
        return "%s not held" % spec.ip
    netlink.remove(have)
    return "removed %s/%d from %s" % (spec.ip, have.prefix, have.ifname)


def refresh(spec: Spec) -> None:
    """monitor with arp_count_refresh: announce a held address again."""
    have = netlink.find_held(spec)
    if have is not None and spec.arp_count_refresh > 0:
        plan = arp.schedule(spec.family, spec.arp_count_refresh, spec.arp_interval)
        t0 = time.monotonic()
        if arp.send_announcement(spec, have.ifname, plan[0][1]):
            _background(spec, have.ifname, plan, t0, "fork")


def _check_exists(iface: str) -> None:
    try:
        socket.if_nametoindex(iface)
    except OSError:
        raise SpecError("no such interface: %s" % iface) from None


def validate(spec: Spec) -> tuple[str, int]:
    """(iface, prefix) start would use; SpecError when it cannot be started here."""
    if spec.iface:
        _check_exists(spec.iface)
    return findif(spec, netlink.dump_addrs(spec.family))


def run_agent(args: list[str], action: str, agent: str = addrspec.DEFAULT_AGENT,
              confirm: bool = False) -> tuple[int, str]:
    """IPaddr/IPaddr2 in-process for hb-watch: (LSB exit code, text).

    args are the haresources arguments (SPEC[::NAME=VALUE...]); agent the name
    (IPaddr or IPaddr2), which sets the announcement defaults.  status prints
    running/stopped (0/3); monitor the same with OCF codes (0/7); start and stop
    return 0 or 1 with a line saying what was done or why not.
    """
    try:
        spec = addrspec.parse_resource(agent, args)
        if action in ("status", "monitor"):
            if netlink.find_held(spec) is not None:
                return exits.OK, "running"
            return (exits.LSB_NOT_RUNNING if action == "status"
                    else exits.OCF_NOT_RUNNING), "stopped"
        if action == "start":
            return exits.OK, start(spec, "thread", confirm)
        if action == "stop":
            return exits.OK, stop(spec)
    except SpecError as e:
        return exits.LSB_UNKNOWN if action == "status" else exits.FAIL, \
            "%s %s: %s" % (action, "::".join(args), e)
    except (Refused, OSError) as e:
        return exits.FAIL, "%s %s: %s" % (action, "::".join(args), e)
    except Exception as e:      # pyroute2's NetlinkError and friends
        return exits.FAIL, "%s %s: %s" % (action, "::".join(args), e)
    return exits.OCF_ERR_UNIMPLEMENTED, "unknown action %s" % action
