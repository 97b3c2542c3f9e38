"""Floating addresses: find the interface, add, remove, query, announce, and
check that the neighbours moved.

Specs and OCF parameters are parsed by hb.addrspec (the one grammar).  Pure
parts here (findif, frame building, announcement schedules) take no I/O.
The read-only query `held()` and the event subscriber `LinkWatcher` speak
netlink on the standard library's AF_NETLINK socket; pyroute2 is imported
only on the first add or remove.  Announcements (gratuitous ARP, unsolicited
neighbour advertisements) and duplicate address probes go through AF_PACKET
sockets kept open for the life of the process: closing one costs ~10 ms.
After a takeover, confirm_neighbour() asks the subnet's gateway (or ping nodes)
for its address from the floating one, and times the answer.
Nothing happens at import time.
"""

from __future__ import annotations

import _thread
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable

from hb import addrspec, exits
from hb.addrspec import (AF_INET, AF_INET6, OCF_PARAMS, Spec, SpecError,  # noqa: F401
                         broadcast_of, from_ocf, parse_ip)

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing costs 3 ms at start-up; status must be quick
    from typing import Any

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
PACKET_OUTGOING = 4

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
IFLA_IFNAME = 3
IFF_LOWER_UP = 0x10000
IFA_F_SECONDARY, IFA_F_NODAD, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x01, 0x02, 0x08, 0x40
IFA_F_NOPREFIXROUTE = 0x200
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100


parse_spec = addrspec.parse


def _int_of(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def in_subnet(raw: bytes, net: bytes, prefix: int) -> bool:
    """Whether address raw lies in net/prefix (both packed, same family)."""
    if len(raw) != len(net):
        return False
    shift = len(raw) * 8 - prefix
    return _int_of(raw) >> shift == _int_of(net) >> shift


class Addr:
    """One address as the kernel reports it."""

    __slots__ = ("family", "raw", "prefix", "index", "ifname", "label", "flags")

    def __init__(self, family: int, raw: bytes, prefix: int, index: int, ifname: str,
                 label: str | None = None, flags: int = 0) -> None:
        self.family, self.raw, self.prefix, self.index = family, raw, prefix, index
        self.ifname, self.label, self.flags = ifname, label, flags

    @property
    def ip(self) -> str:
        return socket.inet_ntop(self.family, self.raw)

    def __repr__(self) -> str:
        return "Addr(%s/%d %s)" % (self.ip, self.prefix, self.ifname)


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


# -- pure: frames ----------------------------------------------------------------

BCAST = b"\xff" * 6
ZERO_MAC = b"\0" * 6


def arp_frame(op: int, mac: bytes, spa: bytes, tpa: bytes, tha: bytes = ZERO_MAC) -> bytes:
    """An Ethernet broadcast ARP frame (padded to 60 bytes)."""
    f = BCAST + mac + struct.pack("!HHHBBH", ETH_P_ARP, 1, 0x0800, 6, 4, op)
    f += mac + spa + tha + tpa
    return f + b"\0" * (60 - len(f))


def garp_frames(mac: bytes, ip: bytes) -> list[bytes]:
    """Gratuitous ARP as send_arp sends it: a request and a reply."""
    return [arp_frame(1, mac, ip, ip), arp_frame(2, mac, ip, ip, mac)]


def arp_probe_frame(mac: bytes, ip: bytes) -> bytes:
    """RFC 5227 probe: who has ip? from 0.0.0.0."""
    return arp_frame(1, mac, b"\0" * 4, ip)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _icmp6_frame(dst_mac: bytes, mac: bytes, src: bytes, dst: bytes, body: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", _csum(pseudo + body)) + body[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst
    return dst_mac + mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


ALL_NODES = socket.inet_pton(AF_INET6, "ff02::1")


def na_frame(mac: bytes, ip: bytes, router: bool = False) -> bytes:
    """Unsolicited neighbour advertisement for ip to all nodes (override flag set)."""
    flags = 0x20000000 | (0x80000000 if router else 0)
    body = struct.pack("!BBHI", 136, 0, 0, flags) + ip + b"\x02\x01" + mac
    return _icmp6_frame(b"\x33\x33\0\0\0\x01", mac, ip, ALL_NODES, body)


def dad_ns_frame(mac: bytes, ip: bytes) -> bytes:
    """Duplicate address detection: neighbour solicitation for ip from ::."""
    dst = socket.inet_pton(AF_INET6, "ff02::1:ff00:0")[:13] + ip[13:]
    body = struct.pack("!BBHI", 135, 0, 0, 0) + ip
    return _icmp6_frame(b"\x33\x33" + dst[12:], mac, b"\0" * 16, dst, body)


def ns_frame(mac: bytes, src: bytes, target: bytes) -> bytes:
    """Neighbour solicitation for target from src, with our link-layer address."""
    dst = socket.inet_pton(AF_INET6, "ff02::1:ff00:0")[:13] + target[13:]
    body = struct.pack("!BBHI", 135, 0, 0, 0) + target + b"\x01\x01" + mac
    return _icmp6_frame(b"\x33\x33" + dst[12:], mac, src, dst, body)


REQUEST, REPLY, NA = 1, 2, 0


def schedule(family: int, count: int, interval: float) -> list[tuple[float, int]]:
    """(seconds after the first, REQUEST/REPLY/NA) of each announcement frame.

    IPv4 as Heartbeat's send_arp: count pairs `interval` apart, each a request
    and, half an interval later, a reply (IPaddr: 10 pairs, 500 ms: 20 frames
    250 ms apart over 4.75 s; IPaddr2: 5 pairs, 200 ms: 10 frames 100 ms apart
    over 0.9 s).  IPv6: count unsolicited advertisements `interval` apart.
    """
    if family == AF_INET:
        return [(i * interval + h * interval / 2, REPLY if h else REQUEST)
                for i in range(count) for h in (0, 1)]
    return [(i * interval, NA) for i in range(count)]


def announcement(kind: int, mac: bytes, spec: Spec) -> bytes:
    raw = spec.raw
    if kind == REQUEST:
        return arp_frame(1, mac, raw, raw)
    if kind == REPLY:
        return arp_frame(2, mac, raw, raw, mac)
    return na_frame(mac, raw, spec.router)


def answers(frame: bytes, family: int, ip: bytes, target: bytes) -> bool:
    """Whether a received frame is target answering our request from ip: an ARP
    reply from target to ip, or a neighbour advertisement for target."""
    if len(frame) < 14:
        return False
    etype = struct.unpack_from("!H", frame, 12)[0]
    if family == AF_INET and etype == ETH_P_ARP and len(frame) >= 42:
        return (struct.unpack_from("!H", frame, 20)[0] == 2 and frame[28:32] == target
                and frame[38:42] == ip)
    if family == AF_INET6 and etype == ETH_P_IPV6 and len(frame) >= 78:
        return frame[20] == 58 and frame[54] == 136 and frame[62:78] == target
    return False


def conflict(frame: bytes, family: int, ip: bytes, mac: bytes) -> bool:
    """Whether a received frame shows another host using ip."""
    if len(frame) < 14 or frame[6:12] == mac:
        return False
    etype = struct.unpack_from("!H", frame, 12)[0]
    if family == AF_INET and etype == ETH_P_ARP and len(frame) >= 42:
        op = struct.unpack_from("!H", frame, 20)[0]
        return op in (1, 2) and frame[28:32] == ip and frame[22:28] != mac
    if family == AF_INET6 and etype == ETH_P_IPV6 and len(frame) >= 78:
        return frame[20] == 58 and frame[54] == 136 and frame[62:78] == ip
    return False


# -- netlink on the standard library ---------------------------------------------

def _nl_messages(data: bytes) -> Iterable[tuple[int, bytes]]:
    off = 0
    while off + 16 <= len(data):
        mlen, mtype = struct.unpack_from("IH", data, off)
        if mlen < 16:
            break
        yield mtype, data[off + 16:off + mlen]
        off += (mlen + 3) & ~3


def _nl_attrs(data: bytes, off: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= len(data):
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = data[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return "if%d" % index


def parse_addr_msg(payload: bytes) -> Addr:
    family, prefix, flags, _scope, index = struct.unpack_from("BBBBI", payload)
    at = _nl_attrs(payload, 8)
    raw = at.get(IFA_LOCAL) or at.get(IFA_ADDRESS) or b""
    if IFA_FLAGS in at:
        flags = struct.unpack("I", at[IFA_FLAGS][:4])[0]
    label = at[IFA_LABEL].rstrip(b"\0").decode() if IFA_LABEL in at else None
    return Addr(family, raw, prefix, index, _ifname(index), label, flags)


def parse_link_msg(payload: bytes) -> tuple[int, str, int]:
    """(index, name, flags) of an RTM_NEWLINK/DELLINK payload."""
    _fam, _type, index, flags = struct.unpack_from("BxHiI", payload)
    at = _nl_attrs(payload, 16)
    name = at.get(IFLA_IFNAME, b"").rstrip(b"\0").decode() or _ifname(index)
    return index, name, flags


def _nl_dump(msgtype: int, body: bytes, want: int) -> list[bytes]:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                      NETLINK_ROUTE)
    try:
        s.send(struct.pack("IHHII", 16 + len(body), msgtype, NLM_F_REQUEST | NLM_F_DUMP,
                           1, 0) + body)
        out = []
        while True:
            for mtype, payload in _nl_messages(s.recv(1 << 17)):
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("i", payload)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                elif mtype == want:
                    out.append(payload)
    finally:
        s.close()


def dump_addrs(family: int = 0) -> list[Addr]:
    """Every address on every interface (RTM_GETADDR dump), optionally one family."""
    return [parse_addr_msg(p) for p in
            _nl_dump(RTM_GETADDR, struct.pack("BBBBI", family, 0, 0, 0, 0), RTM_NEWADDR)]


def dump_links() -> list[tuple[int, str, int]]:
    return [parse_link_msg(p) for p in
            _nl_dump(RTM_GETLINK, struct.pack("BxHiII", 0, 0, 0, 0, 0), RTM_NEWLINK)]


def find_held(spec: Spec, addrs: Iterable[Addr] | None = None) -> Addr | None:
    raw = spec.raw
    for a in dump_addrs(spec.family) if addrs is None else addrs:
        if a.raw == raw and (not spec.iface or a.ifname == spec.iface):
            return a
    return None


def held(addr: str, iface: str | None = None) -> bool:
    """Whether addr (text) is on iface (or on any interface).  Standard library only."""
    family, ip = parse_ip(addr)
    return find_held(Spec(ip, family, iface=iface)) is not None


class LinkWatcher:
    """Netlink link and address events, for a poll loop.

    fileno() is readable when events are waiting; read() returns them as tuples
    ("link", ifname, carrier: bool) on carrier changes, and ("addr", ifname,
    address, added: bool).  Carrier is IFF_LOWER_UP; a removed link is carrier off.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self.sock.setblocking(False)
        self.carrier_of: dict[str, bool] = {
            name: bool(flags & IFF_LOWER_UP) for _i, name, flags in dump_links()}

    def fileno(self) -> int:
        return self.sock.fileno()

    def carrier(self, ifname: str) -> bool | None:
        return self.carrier_of.get(ifname)

    def read(self) -> list[tuple[Any, ...]]:
        events: list[tuple[Any, ...]] = []
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except BlockingIOError:
                return events
            except OSError:     # ENOBUFS: events lost; resynchronise carriers
                self._resync(events)
                continue
            for mtype, payload in _nl_messages(data):
                if mtype in (RTM_NEWLINK, RTM_DELLINK):
                    _i, name, flags = parse_link_msg(payload)
                    self._carrier(events, name, mtype == RTM_NEWLINK
                                  and bool(flags & IFF_LOWER_UP))
                    if mtype == RTM_DELLINK:
                        self.carrier_of.pop(name, None)
                elif mtype in (RTM_NEWADDR, RTM_DELADDR):
                    a = parse_addr_msg(payload)
                    if a.raw:
                        events.append(("addr", a.ifname, a.ip, mtype == RTM_NEWADDR))

    def _carrier(self, events: list, name: str, up: bool) -> None:
        if self.carrier_of.get(name) != up:
            self.carrier_of[name] = up
            events.append(("link", name, up))

    def _resync(self, events: list) -> None:
        for _i, name, flags in dump_links():
            self._carrier(events, name, bool(flags & IFF_LOWER_UP))

    def close(self) -> None:
        self.sock.close()


# -- AF_PACKET: announcements and probes --------------------------------------------

_tx: dict[tuple[str, int], socket.socket] = {}
_rx: dict[tuple[str, int, int], socket.socket] = {}
_locks: dict[object, _thread.LockType] = {}
_locks_lock = _thread.allocate_lock()


def _lock_for(key: object) -> _thread.LockType:
    """One lock per key: hb-watch may start groups from several threads at once."""
    with _locks_lock:
        lk = _locks.get(key)
        if lk is None:
            lk = _locks[key] = _thread.allocate_lock()
        return lk


def _tx_socket(iface: str) -> socket.socket:
    """The sending socket of iface (by name and index: a re-created one gets a new one)."""
    key = (iface, socket.if_nametoindex(iface))
    with _locks_lock:
        s = _tx.get(key)
        if s is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            try:
                s.bind((iface, 0))
            except OSError:
                s.close()
                raise
            _tx[key] = s
        return s


def _mac(iface: str) -> bytes:
    return _tx_socket(iface).getsockname()[4][:6]


def _send(iface: str, frames: list[bytes]) -> None:
    s = _tx_socket(iface)
    for f in frames:
        s.send(f)


def _bpf(proto: int) -> bytes:
    """Classic BPF: keep only ARP, or only ICMPv6 neighbour advertisements."""
    def ins(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)
    if proto == ETH_P_ARP:
        return ins(0x28, 0, 0, 12) + ins(0x15, 0, 1, ETH_P_ARP) + ins(0x6, 0, 0, 0xFFFF) + \
            ins(0x6, 0, 0, 0)
    return (ins(0x28, 0, 0, 12) + ins(0x15, 0, 5, ETH_P_IPV6) + ins(0x30, 0, 0, 20)
            + ins(0x15, 0, 3, 58) + ins(0x30, 0, 0, 54) + ins(0x15, 0, 1, 136)
            + ins(0x6, 0, 0, 0xFFFF) + ins(0x6, 0, 0, 0))


def _rx_socket(iface: str, proto: int) -> socket.socket:
    """A filtered receiving socket, kept open; the caller holds _lock_for((iface, proto))."""
    key = (iface, socket.if_nametoindex(iface), proto)
    s = _rx.get(key)
    if s is None:
        import ctypes
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                          socket.htons(proto))
        try:
            prog = _bpf(proto)
            buf = ctypes.create_string_buffer(prog)
            fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
            s.setsockopt(socket.SOL_SOCKET, 26, fprog)      # SO_ATTACH_FILTER
            s.bind((iface, proto))
        except OSError:
            s.close()
            raise
        s.setblocking(False)
        _rx[key] = s
    while True:     # drop what arrived before this probe
        try:
            s.recv(2048)
        except BlockingIOError:
            return s


def probe(spec: Spec, iface: str, timeout: float) -> bool:
    """Duplicate address detection: True when another host answers for spec.ip.

    An interface without an Ethernet address, or one that cannot send (down),
    has nobody to answer: False.
    """
    proto = ETH_P_ARP if spec.family == AF_INET else ETH_P_IPV6
    with _lock_for((iface, proto)):
        try:
            mac = _mac(iface)
            if len(mac) != 6:
                return False
            rx = _rx_socket(iface, proto)
            frame = (arp_probe_frame if proto == ETH_P_ARP else dad_ns_frame)(mac, spec.raw)
            _send(iface, [frame])
        except OSError:
            return False
        return _await_conflict(spec, rx, iface, frame, mac, timeout)


def _await_conflict(spec: Spec, rx: socket.socket, iface: str, frame: bytes, mac: bytes,
                    timeout: float) -> bool:
    raw = spec.raw
    start = time.monotonic()
    resent = False
    while True:
        left = start + timeout - time.monotonic()
        if not resent and left < timeout / 2:
            try:
                _send(iface, [frame])
            except OSError:
                pass
            resent = True
        if left <= 0:
            return False
        r, _, _ = select.select([rx], [], [], min(left, timeout / 2) if not resent else left)
        while r:
            try:
                data, addr = rx.recvfrom(2048)
            except BlockingIOError:
                break
            if addr[2] != PACKET_OUTGOING and conflict(data, spec.family, raw, mac):
                return True


def send_announcement(spec: Spec, iface: str, kind: int) -> bool:
    """One announcement frame (REQUEST, REPLY or NA) for spec on iface.

    False when the interface has no Ethernet address or cannot send (e.g. down).
    """
    try:
        mac = _mac(iface)
        if len(mac) != 6:
            return False
        _send(iface, [announcement(kind, mac, spec)])
    except OSError:
        return False
    return True


FROZEN = 0.25   # s a repeat may be late before the repeats are abandoned as stale


def repeat_announce(spec: Spec, iface: str, plan: list[tuple[float, int]],
                    stop: Callable[[], bool], t0: float | None = None) -> int:
    """Send the frames of plan (from schedule()) at t0 + their offsets, while spec
    is held and stop() is false; the caller sent plan[0] at t0.  How many sent."""
    if t0 is None:
        t0 = time.monotonic()
    sent = 0
    for offset, kind in plan[1:]:
        due = t0 + offset
        left = due - time.monotonic()
        if left > 0:
            time.sleep(left)
        if time.monotonic() - due > FROZEN:
            break       # this process was frozen: the peer may own the address by now
        if stop() or find_held(Spec(spec.ip, spec.family, iface=iface)) is None:
            break
        if not send_announcement(spec, iface, kind):
            break
        sent += 1
    return sent


# -- did the neighbours move? -------------------------------------------------------

RTM_GETROUTE, RTM_NEWROUTE = 26, 24
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN = 254
NBR_TIMEOUT = 1.0       # s a neighbour check waits in all
NBR_TRIES = 3           # requests sent within it
NOBODY = "no gateway or ping node in the subnet to ask"


def parse_route_msg(payload: bytes) -> tuple[int, int, str | None, int | None, int]:
    """(family, dst_len, gateway, oif index, table) of an RTM_NEWROUTE payload."""
    family, dst_len, _src_len, _tos, table = struct.unpack_from("BBBBB", payload)
    at = _nl_attrs(payload, 12)
    gw = socket.inet_ntop(family, at[RTA_GATEWAY]) if RTA_GATEWAY in at else None
    oif = struct.unpack("I", at[RTA_OIF][:4])[0] if RTA_OIF in at else None
    if RTA_TABLE in at:
        table = struct.unpack("I", at[RTA_TABLE][:4])[0]
    return family, dst_len, gw, oif, table


def default_gateways(family: int) -> list[tuple[str, str]]:
    """(gateway, interface) of every default route in the main table."""
    out = []
    for p in _nl_dump(RTM_GETROUTE, struct.pack("BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                      RTM_NEWROUTE):
        fam, dst_len, gw, oif, table = parse_route_msg(p)
        if fam == family and dst_len == 0 and gw and oif and table == RT_TABLE_MAIN:
            out.append((gw, _ifname(oif)))
    return out


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


def confirm_neighbour(spec: Spec, iface: str, targets: list[str],
                      timeout: float = NBR_TIMEOUT, tries: int = NBR_TRIES
                      ) -> tuple[bool, float, str]:
    """Ask targets (the gateway) for their address from spec.ip: an ARP request
    (IPv4) or a neighbour solicitation (IPv6) whose sender is the floating
    address, so that each target also learns that the address is here now.
    (ok, seconds until the first answer or given up, what happened); bounded by
    timeout, the request sent `tries` times within it."""
    if not targets:
        return False, 0.0, NOBODY
    proto = ETH_P_ARP if spec.family == AF_INET else ETH_P_IPV6
    raw = spec.raw
    want = {socket.inet_pton(spec.family, t): t for t in targets}
    with _lock_for((iface, proto)):
        try:
            mac = _mac(iface)
            if len(mac) != 6:
                return False, 0.0, "%s has no Ethernet address" % iface
            rx = _rx_socket(iface, proto)
            if proto == ETH_P_ARP:
                frames = [arp_frame(1, mac, raw, t) for t in want]
            else:
                frames = [ns_frame(mac, raw, t) for t in want]
        except OSError as e:
            return False, 0.0, "cannot ask on %s: %s" % (iface, e.strerror or e)
        t0 = time.monotonic()       # the neighbour's time, not our set-up's
        for i in range(max(1, tries)):
            try:
                _send(iface, frames)
            except OSError as e:
                return False, time.monotonic() - t0, "cannot send on %s: %s" % (
                    iface, e.strerror or e)
            end = t0 + timeout * (i + 1) / max(1, tries)
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                if not select.select([rx], [], [], left)[0]:
                    continue
                while True:
                    try:
                        data, addr = rx.recvfrom(2048)
                    except BlockingIOError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue
                    for t, name in want.items():
                        if answers(data, spec.family, raw, t):
                            dt = time.monotonic() - t0
                            return True, dt, "%s answered %s in %d ms" % (
                                name, spec.ip, round(dt * 1000))
    return False, time.monotonic() - t0, "%s did not answer %s within %g s" % (
        " ".join(targets), spec.ip, timeout)


# -- changes through pyroute2 -----------------------------------------------------

_ipr: Any = None
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400


def _pyroute2_core() -> tuple[Any, Any]:
    """pyroute2's rtnetlink socket and address message, without running the
    package's __init__: that one loads every plugin named by an entry point
    (NDB, IPDB, asyncio, sqlite3...), 25 MB and 120 ms where an address change
    needs 6 MB.  Should that layout change, the whole package is imported."""
    import sys

    def load() -> tuple[Any, Any]:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.iprsocket import IPRSocket
        return IPRSocket, ifaddrmsg

    if "pyroute2" in sys.modules:
        return load()
    import importlib.util
    import types
    spec = importlib.util.find_spec("pyroute2")
    shell = types.ModuleType("pyroute2")
    shell.__path__ = list(spec.submodule_search_locations or []) if spec else []
    shell.__spec__ = spec
    sys.modules["pyroute2"] = shell
    try:
        return load()
    except ImportError:
        for name in [n for n in sys.modules if n == "pyroute2" or n.startswith("pyroute2.")]:
            del sys.modules[name]
        return load()
    finally:
        if sys.modules.get("pyroute2") is shell:   # a later `import pyroute2` gets
            del sys.modules["pyroute2"]             # the real package


def _iproute() -> Any:
    global _ipr
    if _ipr is None:
        sock, msg = _pyroute2_core()
        _ipr = (sock(), msg)
    return _ipr


def _change(mtype: int, flags: int, family: int, index: int, prefix: int,
            ifa_flags: int, attrs: list[tuple[str, Any]]) -> None:
    """One RTM_NEWADDR/RTM_DELADDR request, acknowledged (NetlinkError on refusal)."""
    sock, ifaddrmsg = _iproute()
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = family, prefix, index
    msg["flags"], msg["scope"] = ifa_flags & 0xFF, 0
    if ifa_flags > 0xFF:
        attrs = attrs + [("IFA_FLAGS", ifa_flags)]
    msg["attrs"] = attrs
    sock.nlm_request(msg, msg_type=mtype, msg_flags=NLM_F_REQUEST | NLM_F_ACK | flags)


def add(spec: Spec, iface: str, prefix: int, alias: str | None = None) -> None:
    """Add spec on iface with prefix; alias: the label when the spec gives none."""
    idx = socket.if_nametoindex(iface)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", spec.ip), ("IFA_ADDRESS", spec.ip)]
    flags = 0
    if spec.family == AF_INET:
        b = broadcast_of(spec.ip, prefix, spec.broadcast) if spec.broadcast in (None, "-") \
            else spec.broadcast
        if b:
            attrs.append(("IFA_BROADCAST", b))
        label = spec.label or alias
        label = iface + ":" + label if label else iface
        if len(label) > 15:
            raise SpecError("label %s is longer than 15 characters" % label)
        attrs.append(("IFA_LABEL", label))
    else:
        flags |= IFA_F_NODAD
    if spec.noprefixroute:
        flags |= IFA_F_NOPREFIXROUTE
    try:
        _change(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, spec.family, idx, prefix, flags, attrs)
    except Exception as e:
        if getattr(e, "code", None) != 17:      # EEXIST: held already
            raise


def remove(a: Addr) -> None:
    family = AF_INET6 if ":" in a.ip else AF_INET
    try:
        _change(RTM_DELADDR, 0, family, a.index, a.prefix, 0,
                [("IFA_LOCAL", a.ip), ("IFA_ADDRESS", a.ip)])
    except Exception as e:
        if getattr(e, "code", None) not in (99, 19):    # EADDRNOTAVAIL, ENODEV: gone
            raise


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
        with _lock_for("netlink"):
            _iproute()
    except Exception as e:
        problems.append("netlink: %s" % e)
    for text in texts:
        try:
            spec = parse_spec(text)
            iface = spec.iface or findif(spec, dump_addrs(spec.family))[0]
            _tx_socket(iface)
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
    addrs = dump_addrs(spec.family)
    have = find_held(spec, addrs)
    if have is not None:
        iface, prefix = have.ifname, have.prefix
        what = "re-announced %s on %s" % (spec.ip, have.ifname)
    else:
        iface, prefix = findif(spec, addrs)
        _check_exists(iface)
        if spec.dad and spec.dad_timeout > 0 and probe(spec, iface, spec.dad_timeout):
            raise Refused("%s answers from another host on %s" % (spec.ip, iface))
        alias = None
        if spec.agent == "IPaddr" and spec.family == AF_INET and not spec.label:
            alias = free_alias(iface, addrs)
        with _lock_for("netlink"):
            add(spec, iface, prefix, alias)
        what = "added %s/%d on %s" % (spec.ip, prefix, iface + (":" + alias if alias else ""))
    _cancel(spec.ip)
    plan = schedule(spec.family, spec.arp_count, spec.arp_interval)
    if plan:
        t0 = time.monotonic()
        if send_announcement(spec, iface, plan[0][1]):
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
                repeat_announce(spec, iface, plan, lambda: False, t0)
            finally:
                os._exit(0)
        return
    import threading
    ev = threading.Event()
    _pending[spec.ip] = ev
    threading.Thread(target=repeat_announce, args=(spec, iface, plan, ev.is_set, t0),
                     name="announce " + spec.ip, daemon=True).start()


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
        targets = neighbour_targets(spec, iface, prefix, default_gateways(spec.family),
                                    _nbr_pings)
        ok, dt, detail = confirm_neighbour(spec, iface, targets)
    except Exception as e:      # a neighbour check must never take hb-watch down
        ok, dt, detail = False, 0.0, "%s: %s" % (type(e).__name__, e)
    quiet = ok or detail.startswith(NOBODY)
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
        if not ok and not detail.startswith(NOBODY):
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
    have = find_held(spec)
    if have is None:
        return "%s not held" % spec.ip
    with _lock_for("netlink"):
        remove(have)
    return "removed %s/%d from %s" % (spec.ip, have.prefix, have.ifname)


def refresh(spec: Spec) -> None:
    """monitor with arp_count_refresh: announce a held address again."""
    have = find_held(spec)
    if have is not None and spec.arp_count_refresh > 0:
        plan = schedule(spec.family, spec.arp_count_refresh, spec.arp_interval)
        t0 = time.monotonic()
        if send_announcement(spec, have.ifname, plan[0][1]):
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
    return findif(spec, dump_addrs(spec.family))


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
            if find_held(spec) is not None:
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
