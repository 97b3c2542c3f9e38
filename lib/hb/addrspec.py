"""The one grammar of floating addresses: Heartbeat specs and OCF parameters.

A haresources entry `IPaddr::192.0.2.7/24/eth0:1/192.0.2.255`, an `hb-ipaddr`
argument and an OCF agent's OCF_RESKEY_* parameters all become one `Spec`
here, checked by one set of rules, so that what `hb-supervise --check` accepts
is what a takeover can do.  The rules are Heartbeat's IPaddr/IPaddr2 wrappers
and resource-agents' findif:

    IP[/NETMASK[/IFACE[:LABEL][/BROADCAST]]][::NAME=VALUE...]

* IP: IPv4 dotted quad or IPv6; not unspecified, multicast or reserved
  (224.0.0.0/3), 0.0.0.0/8, the limited broadcast or IPv4-mapped; IPv6
  link-local needs IFACE.
* NETMASK: prefix length 1-32 (1-128) without leading zeros (ip(8) would read
  /024 as octal), or, for IPv4, a contiguous dotted mask.
* A third part starting with a digit is the broadcast address (IPaddr's form).
* IFACE: a kernel interface name (1-15 characters, no '/', ':', blank, not '.'
  or '..'); LABEL (IPv4 only) is the rest after the first ':' and IFACE:LABEL is
  at most 15 characters (`eth0:1:2` is the label `eth0:1:2`, as IPaddr2 makes it).
* BROADCAST: an IPv4 address, `+` (computed, the default) or `-` (host bits 0).
* NAME=VALUE (hb's extension; Heartbeat's wrappers take one argument): the
  agents' own OCF parameter names, e.g. `arp_count=10`, `arp_interval=500`
  (IPaddr2's) or `ARP_REPEAT`/`ARP_INTERVAL_MS` (IPaddr's).

Empty parts mean "not given" (`IP//eth0`).  The agent named sets the
announcement defaults as Heartbeat's do: IPaddr 10 request+reply pairs 500 ms
apart, IPaddr2 5 pairs 200 ms apart (send_arp: a reply half an interval after
each request).  Errors are SpecError with one line naming the spec.  Pure: no I/O.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6

# agent name -> (arp_count, arp_interval in ms): Heartbeat's IPaddr runs
# `send_arp -i 500 -r 10`, IPaddr2 `send_arp -i 200 -r 5`
AGENTS = {"IPaddr": (10, 500), "IPaddr2": (5, 200)}
DEFAULT_AGENT = "IPaddr2"
DAD_TIMEOUT_MS = 100
ARP_COUNT_MAX = 1000
ARP_INTERVAL_MAX = 60000
FORM = "IP[/NETMASK[/IFACE[/BROADCAST]]]"


class SpecError(ValueError):
    """An address spec or parameter that cannot be used (OCF_ERR_CONFIGURED)."""


class Spec:
    """One floating address, where it goes and how it is announced."""

    __slots__ = ("ip", "family", "prefix", "iface", "label", "broadcast", "agent",
                 "arp_count", "arp_interval", "arp_count_refresh", "dad", "dad_timeout",
                 "router", "noprefixroute", "text")

    def __init__(self, ip: str, family: int, prefix: int | None = None,
                 iface: str | None = None, label: str | None = None,
                 broadcast: str | None = None, agent: str = DEFAULT_AGENT) -> None:
        self.ip = ip
        self.family = family
        self.prefix = prefix
        self.iface = iface
        self.label = label              # the part after IFACE: ('1' for eth0:1)
        self.broadcast = broadcast      # dotted quad, '-' (host bits 0) or None (computed)
        self.agent = agent if agent in AGENTS else DEFAULT_AGENT
        count, interval = AGENTS[self.agent]
        self.arp_count = count
        self.arp_interval = interval / 1000     # seconds between pairs
        self.arp_count_refresh = 0
        self.dad = True
        self.dad_timeout = DAD_TIMEOUT_MS / 1000
        self.router = False
        self.noprefixroute = False
        self.text = ip

    def __repr__(self) -> str:
        return "Spec(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)

    def __str__(self) -> str:
        s = self.ip
        if self.prefix is not None:
            s += "/%d" % self.prefix
        if self.iface:
            s += " on " + self.device
        return s

    @property
    def raw(self) -> bytes:
        return socket.inet_pton(self.family, self.ip)

    @property
    def version(self) -> int:
        return 4 if self.family == AF_INET else 6

    @property
    def device(self) -> str | None:
        """IFACE or IFACE:LABEL, as the kernel shows the address's label."""
        if self.iface and self.label:
            return self.iface + ":" + self.label
        return self.iface


class _Bad(Exception):
    """A reason, and which part of a spec it is about."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(reason)
        self.part, self.reason = part, reason


# -- the parts -----------------------------------------------------------------

def _pton(text: str) -> tuple[int, bytes] | None:
    for fam in (AF_INET, AF_INET6):
        try:
            return fam, socket.inet_pton(fam, text)
        except (OSError, ValueError):
            pass
    return None


def parse_ip(text: str) -> tuple[int, str]:
    """(family, normalised text) of any IPv4 or IPv6 address; SpecError if neither."""
    got = _pton(text) if text.isascii() else None
    if got is None:
        raise SpecError("%r is not an IP address" % text)
    return got[0], socket.inet_ntop(got[0], got[1])


def _host_ip(text: str) -> tuple[int, str]:
    """An address a host may take; _Bad("address", why) otherwise."""
    if not text:
        raise _Bad("address", "no IP address")
    try:
        fam, ip = parse_ip(text)
    except SpecError as e:
        raise _Bad("address", str(e)) from None
    b = socket.inet_pton(fam, ip)
    why = None
    if fam == AF_INET:
        if b[0] == 0:
            why = "%s is in 0.0.0.0/8, which no host may use" % ip
        elif b[0] >= 224 and b != b"\xff" * 4:
            why = "%s is a multicast or reserved address (224.0.0.0/3)" % ip
        elif b == b"\xff" * 4:
            why = "%s is the limited broadcast address" % ip
    else:
        if b == bytes(16):
            why = ":: is the unspecified address"
        elif b[0] == 0xFF:
            why = "%s is a multicast address (ff00::/8)" % ip
        elif b[:12] == bytes(10) + b"\xff\xff":
            why = "%s is an IPv4-mapped address: write %s" % (
                ip, socket.inet_ntop(AF_INET, b[12:]))
    if why:
        raise _Bad("address", why)
    return fam, ip


def _link_local(family: int, ip: str) -> bool:
    """fe80::/10: the same address may be on every link, so the link must be named."""
    if family != AF_INET6:
        return False
    b = socket.inet_pton(AF_INET6, ip)
    return b[0] == 0xFE and b[1] & 0xC0 == 0x80


def _prefix(text: str, family: int) -> int:
    bits = 32 if family == AF_INET else 128
    if text.isascii() and text.isdigit():
        if len(text) > 1 and text[0] == "0":    # ip(8) reads /024 as octal: IPaddr2 adds /20
            raise _Bad("netmask", "/%s has a leading zero: write /%d" % (text, int(text)))
        n = int(text)
        if n > bits:
            raise _Bad("netmask", "/%s is more than %d bits" % (text, bits))
        if n == 0:
            raise _Bad("netmask", "/0 would make every address local")
        return n
    if family == AF_INET6:
        raise _Bad("netmask", "%r is not a prefix length (IPv6 takes bits: /64)" % text)
    got = _pton(text) if text.isascii() else None
    if got and got[0] == AF_INET:
        m = int.from_bytes(got[1], "big")
        n = bin(m).count("1")
        if m == (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF:
            if n == 0:
                raise _Bad("netmask", "0.0.0.0 would make every address local")
            return n
    raise _Bad("netmask", "%r is neither a prefix length nor a netmask like 255.255.255.0"
               % text)


def _iface(text: str) -> str:
    if not text:
        raise _Bad("interface", "no interface name")
    if len(text) > 15:
        raise _Bad("interface", "longer than 15 characters")
    if text in (".", "..") or any(c in text for c in "/: \t\n\r\v\f") or not text.isprintable():
        raise _Bad("interface", "%r is not an interface name" % text)
    return text


def _device(text: str, family: int) -> tuple[str, str | None]:
    """IFACE[:LABEL] -> (iface, label or None)."""
    iface, colon, label = text.partition(":")
    _iface(iface)
    if not colon:
        return iface, None
    if family != AF_INET:
        raise _Bad("interface", "IPv6 addresses take no label")
    _label(iface, label)
    return iface, label


def _label(iface: str, label: str) -> None:
    if not label:
        raise _Bad("interface", "empty label after ':'")
    if len(iface) + 1 + len(label) > 15:
        raise _Bad("interface", "IFACE:LABEL is longer than 15 characters")
    if any(c in label for c in "/ \t\n\r\v\f") or not label.isprintable():
        raise _Bad("interface", "%r is not a label" % label)


def _broadcast(text: str, family: int) -> str | None:
    if family != AF_INET:
        raise _Bad("address", "IPv6 has no broadcast address")
    if text == "+":
        return None
    if text == "-":
        return "-"
    got = _pton(text) if text.isascii() else None
    if not got or got[0] != AF_INET:
        raise _Bad("broadcast", "%r is not an IPv4 address" % text)
    return socket.inet_ntop(AF_INET, got[1])


def broadcast_of(ip: str, prefix: int, how: str | None = None) -> str | None:
    """The IPv4 broadcast address of ip/prefix: all host bits 1 (None for /31, /32),
    or with how='-' all host bits 0 (iproute2's `brd -`)."""
    if prefix >= 31:
        return None
    host = (1 << (32 - prefix)) - 1
    n = int.from_bytes(socket.inet_pton(AF_INET, ip), "big")
    n = n & ~host if how == "-" else n | host
    return socket.inet_ntop(AF_INET, n.to_bytes(4, "big"))


def in_subnet(raw: bytes, net: bytes, prefix: int) -> bool:
    """Whether address raw lies in net/prefix (both packed, same family)."""
    if len(raw) != len(net):
        return False
    shift = len(raw) * 8 - prefix
    return int.from_bytes(raw, "big") >> shift == int.from_bytes(net, "big") >> shift


# -- parameters (OCF names) ------------------------------------------------------

TRUE = ("1", "yes", "true", "on", "y")
FALSE = ("0", "no", "false", "off", "n", "")


def _bool(v: str) -> bool:
    if v.lower() in TRUE:
        return True
    if v.lower() in FALSE:
        return False
    raise _Bad("param", "%r is not yes or no" % v)


def _int(v: str, lo: int, hi: int, what: str) -> int:
    if not (v.isascii() and v.isdigit()) or not lo <= int(v) <= hi:
        raise _Bad("param", "%r is not %s %d-%d" % (v, what, lo, hi))
    return int(v)


def _set_count(s: Spec, v: str) -> None:
    s.arp_count = _int(v, 0, ARP_COUNT_MAX, "a count")


def _set_interval(s: Spec, v: str) -> None:
    s.arp_interval = _int(v, 1, ARP_INTERVAL_MAX, "milliseconds") / 1000


def _set_refresh(s: Spec, v: str) -> None:
    s.arp_count_refresh = _int(v, 0, ARP_COUNT_MAX, "a count")


def _set_nodad(s: Spec, v: str) -> None:
    s.dad = not _bool(v)


def _set_dad_timeout(s: Spec, v: str) -> None:
    s.dad_timeout = _int(v, 0, 10000, "milliseconds") / 1000


def _set_router(s: Spec, v: str) -> None:
    s.router = _bool(v)


def _set_noprefixroute(s: Spec, v: str) -> None:
    s.noprefixroute = _bool(v)


# name -> (type, default, description); the OCF meta-data is made from this table.
# Announcement defaults are IPaddr2's (hb-ipaddr's OCF face); a haresources
# IPaddr entry starts from IPaddr's (AGENTS).
OCF_PARAMS: list[tuple[str, str, str, str]] = [
    ("ip", "string", "", "The IPv4 or IPv6 address to manage (required)."),
    ("cidr_netmask", "string", "",
     "Prefix length (24) or IPv4 netmask; default: that of the interface's subnet "
     "that contains the address."),
    ("nic", "string", "",
     "Interface to put the address on (NIC or NIC:LABEL); default: the one whose "
     "subnet contains it."),
    ("iflabel", "string", "", "IPv4 label: the address shows as NIC:IFLABEL."),
    ("broadcast", "string", "",
     "IPv4 broadcast address, + (computed from the prefix, the default) or - (host "
     "bits 0)."),
    ("arp_count", "integer", str(AGENTS[DEFAULT_AGENT][0]),
     "Gratuitous ARP request+reply pairs (IPv4) or unsolicited neighbour "
     "advertisements (IPv6) sent at start; 0 sends none."),
    ("arp_interval", "integer", str(AGENTS[DEFAULT_AGENT][1]),
     "Milliseconds between pairs (a reply follows each request after half of it); "
     "the first request is sent at once."),
    ("ARP_REPEAT", "integer", "",
     "IPaddr's name for arp_count (arp_count wins when both are given)."),
    ("ARP_INTERVAL_MS", "integer", "",
     "IPaddr's name for arp_interval (arp_interval wins when both are given)."),
    ("arp_count_refresh", "integer", "0",
     "Announcements sent again at every monitor while the address is held."),
    ("nodad", "boolean", "false",
     "Skip duplicate address detection (ARP probe / neighbour solicitation)."),
    ("dad_timeout", "integer", str(DAD_TIMEOUT_MS),
     "Milliseconds to wait for another holder of the address to answer before start."),
    ("router", "boolean", "false", "IPv6: set the router flag in the advertisements."),
    ("noprefixroute", "boolean", "false", "Do not add the prefix route for the address."),
]

SETTERS = {"arp_count": _set_count, "arp_interval": _set_interval,
           "arp_count_refresh": _set_refresh, "nodad": _set_nodad,
           "dad_timeout": _set_dad_timeout, "router": _set_router,
           "noprefixroute": _set_noprefixroute}
# IPaddr's own names for the same two settings, and IPaddr2's old name
ALIASES = {"ARP_REPEAT": "arp_count", "ARP_INTERVAL_MS": "arp_interval",
           "netmask": "cidr_netmask"}
IN_SPEC = ("ip", "cidr_netmask", "nic", "iflabel", "broadcast")


def _suggest(word: str) -> str:
    import difflib
    names = sorted(SETTERS) + sorted(ALIASES)
    m = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return " (did you mean %s?)" % m[0] if m else ""


def _params(spec: Spec, items: Sequence[str]) -> None:
    """NAME=VALUE arguments after a spec."""
    seen: set[str] = set()
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise _Bad("param", "%r is not NAME=VALUE" % item)
        canon = ALIASES.get(name, name)
        if canon in IN_SPEC:
            raise _Bad("param", "%s belongs in the address itself: %s" % (name, FORM))
        if canon not in SETTERS:
            raise _Bad("param", "unknown parameter %s%s" % (name, _suggest(name)))
        if canon in seen:
            raise _Bad("param", "%s given twice" % canon)
        seen.add(canon)
        try:
            SETTERS[canon](spec, value)
        except _Bad as e:
            raise _Bad("param", "%s: %s" % (name, e.reason)) from None


def set_param(spec: Spec, name: str, value: str, label: str | None = None) -> None:
    """Set one parameter (OCF name or alias) on spec; SpecError 'LABEL: why'."""
    try:
        SETTERS[ALIASES.get(name, name)](spec, value)
    except _Bad as e:
        raise SpecError("%s: %s" % (label or name, e.reason)) from None


# -- the grammar ----------------------------------------------------------------------

def split_params(text: str) -> tuple[str, list[str]]:
    """'SPEC::a=1::b=2' -> ('SPEC', ['a=1', 'b=2']); IPv6's '::' stays in SPEC."""
    parts = text.split("::")
    i = len(parts)
    while i > 1 and "=" in parts[i - 1]:
        i -= 1
    return "::".join(parts[:i]), parts[i:]


def _spec(text: str, agent: str) -> Spec:
    body, params = split_params(text.strip())
    parts = body.split("/")
    if len(parts) > 1 and not parts[0]:
        raise _Bad("address", "no IP address before the first '/'")
    if len(parts) > 4:
        raise _Bad("address", FORM)
    family, ip = _host_ip(parts[0])
    spec = Spec(ip, family, agent=agent)
    spec.text = text
    if len(parts) > 1 and parts[1]:
        spec.prefix = _prefix(parts[1], family)
    rest = parts[2:]
    if rest and rest[0][:1].isdigit():          # IP/24/BROADCAST (IPaddr's form)
        if len(rest) > 1:
            raise _Bad("address", "the interface comes before the broadcast address")
        rest = ["", rest[0]]
    if rest and rest[0]:
        spec.iface, spec.label = _device(rest[0], family)
    if len(rest) > 1 and rest[1]:
        spec.broadcast = _broadcast(rest[1], family)
    if _link_local(family, ip) and not spec.iface:
        raise _Bad("address", "a link-local address needs its interface: %s/64/eth0"
                   % spec.ip)
    _params(spec, params)
    return spec


def parse(text: str, agent: str = DEFAULT_AGENT) -> Spec:
    """A Heartbeat IPaddr/IPaddr2 argument (with hb's ::NAME=VALUE parameters)."""
    try:
        return _spec(text, agent)
    except _Bad as e:
        raise SpecError(_message(text.strip(), e)) from None


def _message(text: str, e: _Bad) -> str:
    if e.part == "netmask":
        return "bad netmask in %r: %s" % (text, e.reason)
    if e.part == "interface":
        _body, _p = split_params(text)
        dev = (_body.split("/") + ["", ""])[2]
        return "bad interface %r in %r: %s" % (dev, text, e.reason)
    if e.part == "broadcast":
        return "bad broadcast address in %r: %s" % (text, e.reason)
    return "bad address %r: %s" % (text, e.reason)


def parse_resource(name: str, args: Sequence[str]) -> Spec:
    """A haresources IPaddr/IPaddr2 entry's arguments (NAME::SPEC[::K=V...])."""
    if not args or not args[0]:
        raise SpecError("%s needs an address: %s::192.0.2.10/24/eth0" % (name, name))
    return parse("::".join(args), name)


def from_ocf(env: Mapping[str, str], agent: str = DEFAULT_AGENT) -> Spec:
    """A Spec from OCF_RESKEY_* parameters (IPaddr2's names; IPaddr's ARP_REPEAT and
    ARP_INTERVAL_MS too); SpecError naming the parameter."""
    def get(name: str) -> str:
        v = env.get("OCF_RESKEY_" + name, "").strip()
        for alias, canon in ALIASES.items():
            if canon == name and not v:
                v = env.get("OCF_RESKEY_" + alias, "").strip()
        return v

    def bad(name: str, e: _Bad) -> SpecError:
        return SpecError("OCF_RESKEY_%s=%s: %s" % (name, get(name), e.reason))

    if not get("ip"):
        raise SpecError("OCF_RESKEY_ip is required")
    try:
        family, ip = _host_ip(get("ip"))
    except _Bad as e:
        raise bad("ip", e) from None
    spec = Spec(ip, family, agent=agent)
    spec.text = ip
    try:
        if get("cidr_netmask"):
            spec.prefix = _prefix(get("cidr_netmask"), family)
    except _Bad as e:
        raise bad("cidr_netmask", e) from None
    try:
        if get("nic"):
            spec.iface, spec.label = _device(get("nic"), family)
    except _Bad as e:
        raise bad("nic", e) from None
    try:
        if get("iflabel") and not spec.label:      # a label in nic wins, as in IPaddr2
            if family != AF_INET:
                raise _Bad("interface", "IPv6 addresses take no label")
            _label(spec.iface or "", get("iflabel"))
            spec.label = get("iflabel")
    except _Bad as e:
        raise bad("iflabel", e) from None
    try:
        if get("broadcast"):
            spec.broadcast = _broadcast(get("broadcast"), family)
    except _Bad as e:
        raise bad("broadcast", e) from None
    if _link_local(family, ip) and not spec.iface:
        raise SpecError("OCF_RESKEY_ip=%s: a link-local address needs OCF_RESKEY_nic" % ip)
    for name, setter in SETTERS.items():
        if get(name):
            try:
                setter(spec, get(name))
            except _Bad as e:
                raise bad(name, e) from None
    return spec


def ocf_params(spec: Spec) -> list[tuple[str, str]]:
    """The OCF parameters that make from_ocf() give this spec back (for export):
    those that differ from the OCF defaults, and the address's parts."""
    out = [("ip", spec.ip)]
    for name, v in (("cidr_netmask", spec.prefix), ("nic", spec.iface),
                    ("iflabel", spec.label), ("broadcast", spec.broadcast)):
        if v is not None:
            out.append((name, str(v)))
    count, interval = AGENTS[DEFAULT_AGENT]
    for name, v, default in (("arp_count", spec.arp_count, count),
                             ("arp_interval", int(round(spec.arp_interval * 1000)), interval),
                             ("arp_count_refresh", spec.arp_count_refresh, 0),
                             ("dad_timeout", int(round(spec.dad_timeout * 1000)),
                              DAD_TIMEOUT_MS)):
        if v != default:
            out.append((name, str(v)))
    for name, flag in (("nodad", not spec.dad), ("router", spec.router),
                       ("noprefixroute", spec.noprefixroute)):
        if flag:
            out.append((name, "true"))
    return out
