"""Floating addresses: parse, find the interface, add, remove, query, announce.

Pure parts (address specs, OCF parameters, findif, frame building) take no I/O.
The read-only query `held()` and the event subscriber `LinkWatcher` speak
netlink on the standard library's AF_NETLINK socket; pyroute2 is imported
only on the first add or remove.  Announcements (gratuitous ARP, unsolicited
neighbour advertisements) and duplicate address probes go through AF_PACKET
sockets kept open for the life of the process: closing one costs ~10 ms.
Nothing happens at import time.
"""

from __future__ import annotations

import _thread
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping

from hb import exits

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing costs 3 ms at start-up; status must be quick
    from typing import Any

ARP_COUNT = 5
ARP_INTERVAL = 0.2          # seconds
DAD_TIMEOUT = 0.1           # seconds to wait for another holder to answer; 0 = no probe

AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
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


class SpecError(ValueError):
    """An address spec or OCF parameter that cannot be used (OCF_ERR_CONFIGURED)."""


class Spec:
    """One floating address and how to announce it."""

    __slots__ = ("ip", "family", "prefix", "iface", "label", "broadcast", "arp_count",
                 "arp_interval", "arp_count_refresh", "dad", "dad_timeout", "router",
                 "noprefixroute")

    def __init__(self, ip: str, family: int, prefix: int | None = None,
                 iface: str | None = None, label: str | None = None,
                 broadcast: str | None = None) -> None:
        self.ip = ip
        self.family = family
        self.prefix = prefix
        self.iface = iface
        self.label = label
        self.broadcast = broadcast
        self.arp_count = ARP_COUNT
        self.arp_interval = ARP_INTERVAL
        self.arp_count_refresh = 0
        self.dad = True
        self.dad_timeout = DAD_TIMEOUT
        self.router = False
        self.noprefixroute = False

    def __repr__(self) -> str:
        return "Spec(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)

    def __str__(self) -> str:
        s = self.ip
        if self.prefix is not None:
            s += "/%d" % self.prefix
        if self.iface:
            s += " on " + self.iface + (":" + self.label if self.label else "")
        return s

    @property
    def raw(self) -> bytes:
        return socket.inet_pton(self.family, self.ip)


# -- pure: specs and parameters ------------------------------------------------

def parse_ip(text: str) -> tuple[int, str]:
    """(family, normalised text) of an IPv4 or IPv6 address; SpecError if neither."""
    for fam in (AF_INET, AF_INET6):
        try:
            return fam, socket.inet_ntop(fam, socket.inet_pton(fam, text))
        except (OSError, ValueError):
            pass
    raise SpecError("not an IPv4 or IPv6 address: %r" % text)


def parse_prefix(text: str, family: int) -> int:
    """Prefix length from bits ('24') or, for IPv4, a dotted netmask."""
    bits = 32 if family == AF_INET else 128
    if text.isdigit():
        n = int(text)
        if n > bits:
            raise SpecError("prefix length %s out of range 0-%d" % (text, bits))
        return n
    if family == AF_INET:
        try:
            m = int.from_bytes(socket.inet_pton(AF_INET, text), "big")
        except OSError:
            m = -1
        if m >= 0:
            n = bin(m).count("1")
            if m == (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF:
                return n
    raise SpecError("bad netmask %r" % text)


def _check_iface(name: str) -> None:
    if not name or len(name) > 15 or any(c in name for c in "/: \t\n"):
        raise SpecError("bad interface name %r" % name)


def _split_label(text: str) -> tuple[str, str | None]:
    """IFACE[:LABEL] -> (iface, label without the 'iface:' part)."""
    if ":" not in text:
        _check_iface(text)
        return text, None
    iface, label = text.split(":", 1)
    _check_iface(iface)
    _check_label(iface, label)
    return iface, label


def _check_label(iface: str, label: str) -> None:
    if not label or len(iface) + 1 + len(label) > 15 or any(c in label for c in "/: \t\n"):
        raise SpecError("bad interface label %r (IFACE:LABEL is at most 15 characters)"
                        % label)


def parse_spec(text: str) -> Spec:
    """Heartbeat's IPaddr/IPaddr2 argument: IP[/PREFIX|NETMASK[/IFACE[:LABEL][/BROADCAST]]].

    As IPaddr does, a third part that starts with a digit is the broadcast address.
    """
    parts = text.strip().split("/")
    if len(parts) > 4:
        raise SpecError("too many '/' in address spec %r" % text)
    family, ip = parse_ip(parts[0])
    spec = Spec(ip, family)
    if len(parts) > 1 and parts[1]:
        spec.prefix = parse_prefix(parts[1], family)
    rest = parts[2:]
    if rest and rest[0][:1].isdigit():
        if len(rest) > 1:
            raise SpecError("broadcast given twice in %r" % text)
        rest = ["", rest[0]]
    if rest and rest[0]:
        spec.iface, spec.label = _split_label(rest[0])
    if len(rest) > 1 and rest[1]:
        spec.broadcast = parse_broadcast(rest[1], family)
    if spec.label and family != AF_INET:
        raise SpecError("interface labels are for IPv4 addresses only")
    return spec


def parse_broadcast(text: str, family: int) -> str:
    if family != AF_INET:
        raise SpecError("IPv6 has no broadcast address")
    fam, b = parse_ip(text)
    if fam != AF_INET:
        raise SpecError("bad broadcast address %r" % text)
    return b


TRUE = ("1", "yes", "true", "on", "y")
FALSE = ("0", "no", "false", "off", "n", "")


def _bool(name: str, v: str) -> bool:
    if v.lower() in TRUE:
        return True
    if v.lower() in FALSE:
        return False
    raise SpecError("%s: not a boolean: %r" % (name, v))


def _int(name: str, v: str, lo: int, hi: int) -> int:
    if not v.strip().isdigit() or not lo <= int(v) <= hi:
        raise SpecError("%s: not an integer in %d-%d: %r" % (name, lo, hi, v))
    return int(v)


# name -> (type, default, short description); the meta-data is made from this table
OCF_PARAMS: list[tuple[str, str, str, str]] = [
    ("ip", "string", "", "The IPv4 or IPv6 address to manage (required)."),
    ("cidr_netmask", "string", "",
     "Prefix length (24) or IPv4 netmask; default: that of the interface's subnet "
     "that contains the address."),
    ("nic", "string", "",
     "Interface to put the address on; default: the one whose subnet contains it."),
    ("iflabel", "string", "", "IPv4 label: the address shows as NIC:IFLABEL."),
    ("broadcast", "string", "",
     "IPv4 broadcast address; default: computed from the prefix."),
    ("arp_count", "integer", str(ARP_COUNT),
     "Gratuitous ARPs (request and reply) or unsolicited NAs sent at start."),
    ("arp_interval", "integer", str(int(ARP_INTERVAL * 1000)),
     "Milliseconds between announcements; the first is sent at once."),
    ("arp_count_refresh", "integer", "0",
     "Announcements sent again at every monitor while the address is held."),
    ("nodad", "boolean", "false",
     "Skip duplicate address detection (ARP probe / neighbour solicitation)."),
    ("dad_timeout", "integer", str(int(DAD_TIMEOUT * 1000)),
     "Milliseconds to wait for another holder of the address to answer before start."),
    ("router", "boolean", "false", "IPv6: set the router flag in the advertisements."),
    ("noprefixroute", "boolean", "false", "Do not add the prefix route for the address."),
]


def from_ocf(env: Mapping[str, str]) -> Spec:
    """A Spec from OCF_RESKEY_* parameters (IPaddr2's names); SpecError if unusable."""
    def get(name: str) -> str:
        return env.get("OCF_RESKEY_" + name, "").strip()
    ip = get("ip")
    if not ip:
        raise SpecError("parameter ip is required")
    family, ip = parse_ip(ip)
    spec = Spec(ip, family)
    if get("cidr_netmask"):
        spec.prefix = parse_prefix(get("cidr_netmask"), family)
    if get("nic"):
        spec.iface, spec.label = _split_label(get("nic"))
        if spec.label:
            raise SpecError("nic: give the base interface; use iflabel for a label")
    if get("iflabel"):
        if family != AF_INET:
            raise SpecError("iflabel: labels are for IPv4 addresses only")
        _check_label(spec.iface or "", get("iflabel"))
        spec.label = get("iflabel")
    if get("broadcast") and get("broadcast") not in ("+", "-"):
        spec.broadcast = parse_broadcast(get("broadcast"), family)
    if get("arp_count"):
        spec.arp_count = _int("arp_count", get("arp_count"), 0, 1000)
    if get("arp_interval"):
        spec.arp_interval = _int("arp_interval", get("arp_interval"), 1, 60000) / 1000
    if get("arp_count_refresh"):
        spec.arp_count_refresh = _int("arp_count_refresh", get("arp_count_refresh"), 0, 1000)
    spec.dad = not _bool("nodad", get("nodad"))
    if get("dad_timeout"):
        spec.dad_timeout = _int("dad_timeout", get("dad_timeout"), 0, 10000) / 1000
    spec.router = _bool("router", get("router"))
    spec.noprefixroute = _bool("noprefixroute", get("noprefixroute"))
    return spec


def _int_of(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def in_subnet(raw: bytes, net: bytes, prefix: int) -> bool:
    """Whether address raw lies in net/prefix (both packed, same family)."""
    if len(raw) != len(net):
        return False
    shift = len(raw) * 8 - prefix
    return _int_of(raw) >> shift == _int_of(net) >> shift


def broadcast_of(ip: str, prefix: int) -> str | None:
    """The IPv4 broadcast address of ip/prefix (None for /31 and /32)."""
    if prefix >= 31:
        return None
    n = _int_of(socket.inet_pton(AF_INET, ip)) | ((1 << (32 - prefix)) - 1)
    return socket.inet_ntop(AF_INET, n.to_bytes(4, "big"))


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


def announce_frames(spec: Spec, iface: str) -> list[bytes]:
    mac = _mac(iface)
    if spec.family == AF_INET:
        return garp_frames(mac, spec.raw)
    return [na_frame(mac, spec.raw, spec.router)]


def announce(spec: Spec, iface: str) -> bool:
    """One gratuitous ARP pair (IPv4) or unsolicited NA (IPv6) for spec on iface.

    False when the interface has no Ethernet address or cannot send (e.g. down).
    """
    try:
        if len(_mac(iface)) != 6:
            return False
        _send(iface, announce_frames(spec, iface))
    except OSError:
        return False
    return True


FROZEN = 0.25   # s a repeat may be late before the repeats are abandoned as stale


def repeat_announce(spec: Spec, iface: str, count: int, stop: Callable[[], bool]) -> int:
    """Send count announcements spec.arp_interval apart while spec is held; how many."""
    sent = 0
    for _ in range(count):
        t0 = time.monotonic()
        time.sleep(spec.arp_interval)
        if time.monotonic() - t0 > spec.arp_interval + FROZEN:
            break       # this process was frozen: the peer may own the address by now
        if stop() or find_held(Spec(spec.ip, spec.family, iface=iface)) is None:
            break
        if not announce(spec, iface):
            break
        sent += 1
    return sent


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


def add(spec: Spec, iface: str, prefix: int) -> None:
    idx = socket.if_nametoindex(iface)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", spec.ip), ("IFA_ADDRESS", spec.ip)]
    flags = 0
    if spec.family == AF_INET:
        b = spec.broadcast or broadcast_of(spec.ip, prefix)
        if b:
            attrs.append(("IFA_BROADCAST", b))
        label = iface + ":" + spec.label if spec.label else iface
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


def warm(texts: list[str]) -> list[str]:
    """Pay every one-time cost of a takeover now: import pyroute2, open its netlink
    socket, and open the AF_PACKET socket of each address's interface (closing one
    costs ~10 ms, importing pyroute2 200-300 ms).  hb-watch calls this at start so
    that a takeover is one netlink call and one gratuitous ARP.  Returns problems.
    """
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


def start(spec: Spec, background: str = "thread") -> str:
    """Add spec (idempotent) and announce it; returns a line saying what was done.

    The first announcement is sent before returning; the rest by a daemon thread
    (background="thread"), a detached child ("fork") or not at all ("none").
    Raises SpecError, Refused, or OSError.
    """
    addrs = dump_addrs(spec.family)
    have = find_held(spec, addrs)
    if have is not None:
        iface, what = have.ifname, "re-announced %s on %s" % (spec.ip, have.ifname)
    else:
        iface, prefix = findif(spec, addrs)
        _check_exists(iface)
        if spec.dad and spec.dad_timeout > 0 and probe(spec, iface, spec.dad_timeout):
            raise Refused("%s answers from another host on %s" % (spec.ip, iface))
        with _lock_for("netlink"):
            add(spec, iface, prefix)
        what = "added %s/%d on %s" % (spec.ip, prefix, iface)
    _cancel(spec.ip)
    if spec.arp_count > 0:
        if announce(spec, iface):
            _background(spec, iface, spec.arp_count - 1, background)
        else:
            what += " (not announced: %s cannot send)" % iface
    return what


def _background(spec: Spec, iface: str, count: int, how: str) -> None:
    if count <= 0 or how == "none":
        return
    if how == "fork":
        if os.fork() == 0:      # detached child: the caller returns at once
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                repeat_announce(spec, iface, count, lambda: False)
            finally:
                os._exit(0)
        return
    import threading
    ev = threading.Event()
    _pending[spec.ip] = ev
    threading.Thread(target=repeat_announce, args=(spec, iface, count, ev.is_set),
                     name="announce " + spec.ip, daemon=True).start()


def stop(spec: Spec) -> str:
    """Remove spec wherever it is held (on spec.iface if given); absent is success."""
    _cancel(spec.ip)
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
        announce(spec, have.ifname)
        _background(spec, have.ifname, spec.arp_count_refresh - 1, "fork")


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


def run_agent(args: list[str], action: str) -> tuple[int, str]:
    """IPaddr/IPaddr2 in-process for hb-watch: (LSB exit code, text).

    status prints running/stopped (0/3); monitor the same with OCF codes (0/7);
    start and stop return 0 or 1 with a line saying what was done or why not.
    """
    if len(args) != 1:
        return exits.LSB_UNKNOWN if action == "status" else exits.FAIL, \
            "IPaddr takes one argument, got %d" % len(args)
    try:
        spec = parse_spec(args[0])
        if action in ("status", "monitor"):
            if find_held(spec) is not None:
                return exits.OK, "running"
            return (exits.LSB_NOT_RUNNING if action == "status"
                    else exits.OCF_NOT_RUNNING), "stopped"
        if action == "start":
            return exits.OK, start(spec, "thread")
        if action == "stop":
            return exits.OK, stop(spec)
    except (SpecError, Refused, OSError) as e:
        return exits.FAIL, "%s %s: %s" % (action, args[0], e)
    except Exception as e:      # pyroute2's NetlinkError and friends
        return exits.FAIL, "%s %s: %s" % (action, args[0], e)
    return exits.OCF_ERR_UNIMPLEMENTED, "unknown action %s" % action
