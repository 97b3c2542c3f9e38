"""rtnetlink: list, add and remove addresses, default routes, link events.

The read-only parts (`dump_addrs`, `find_held`, `held`, `default_gateways`,
`LinkWatcher`) speak netlink on the standard library's AF_NETLINK socket:
`hb-ipaddr ... status` is one RTM_GETADDR dump, without pyroute2.  Changes
(`add`, `remove`) go through pyroute2's rtnetlink socket, imported on the
first change or by `prepare()` (200-300 ms: hb-watch pays it at start), one
change at a time.  Message parsing is pure.  Nothing happens at import time.
"""

from __future__ import annotations

import _thread
import os
import socket
import struct
from collections.abc import Iterable

from hb.addrspec import AF_INET, AF_INET6, Spec, SpecError, broadcast_of, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing costs 3 ms at start-up; status must be quick
    from typing import Any

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
IFLA_IFNAME = 3
IFF_LOWER_UP = 0x10000
IFA_F_SECONDARY, IFA_F_NODAD, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x01, 0x02, 0x08, 0x40
IFA_F_NOPREFIXROUTE = 0x200
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN = 254


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


# -- the standard library's netlink socket ------------------------------------------

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


# -- default routes --------------------------------------------------------------

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


# -- changes through pyroute2 -----------------------------------------------------

_ipr: Any = None       # (pyroute2's rtnetlink socket, its address message) once opened
# one change at a time: hb-watch may start groups from several threads at once
_ipr_lock = _thread.allocate_lock()


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
    import importlib.util       # only to locate the package: the imports above are plain
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
    """The caller holds _ipr_lock."""
    global _ipr
    if _ipr is None:
        sock, msg = _pyroute2_core()
        _ipr = (sock(), msg)
    return _ipr


def prepare() -> None:
    """Import pyroute2's core and open its socket now (200-300 ms), not at the
    first change."""
    with _ipr_lock:
        _iproute()


def _change(mtype: int, flags: int, family: int, index: int, prefix: int,
            ifa_flags: int, attrs: list[tuple[str, Any]]) -> None:
    """One RTM_NEWADDR/RTM_DELADDR request, acknowledged (NetlinkError on refusal)."""
    with _ipr_lock:
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
