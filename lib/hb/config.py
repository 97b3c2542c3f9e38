"""ha.cf, haresources, authkeys -> typed settings.  Pure parsing.

The types below are the contract every command reads; parse_* functions take
text and a file name and raise ConfigError("FILE:LINE: message").  load() is
the one function that touches the file system (reading, authkeys mode check,
existence of devices and interfaces).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass, field
from collections.abc import Iterable


class ConfigError(Exception):
    """One line: 'FILE:LINE: what is wrong'.

    Parsing goes on past a bad line: .errors lists every error found, in file
    order (the first is the message)."""

    def __init__(self, msg: str, errors: list[str] | None = None) -> None:
        super().__init__(msg)
        self.errors = errors or [msg]


@dataclass
class Medium:
    """One heartbeat medium of ha.cf."""
    kind: str            # 'serial' | 'bcast' | 'mcast' | 'ucast' | 'mcast6' | 'ucast6'
    dev: str             # serial device path, or interface name
    addr: str = ""       # mcast group / ucast peer (as written; may be a host name)
    port: int = 694      # UDP port (udpport at the time of the line; mcast's own)
    ttl: int = 1         # mcast
    loop: int = 0        # mcast
    baud: int = 19200    # serial
    line: int = 0

    @property
    def name(self) -> str:
        """Link name used in _via=, status and logs: 'ttyS0', 'eth1'."""
        return self.dev.rsplit("/", 1)[-1] if self.kind == "serial" else self.dev


@dataclass
class PingNode:
    """A ping node (`ping ADDR`) or a ping group (`ping_group NAME ADDR...`)."""
    name: str            # the address itself, or the group name
    addrs: list[str]
    group: bool = False
    line: int = 0


@dataclass
class Respawn:
    user: str
    command: str         # the rest of the line, as written
    line: int = 0


@dataclass
class Resource:
    """One `NAME::arg::arg` entry of a haresources group."""
    name: str            # 'IPaddr', 'IPaddr2', 'MailTo', 'apache', ...
    args: list[str]
    text: str            # as written (a bare address stays bare)
    line: int = 0


@dataclass
class Group:
    index: int           # 1-based, file order
    node: str            # preferred node (lower-cased)
    resources: list[Resource]
    line: int = 0

    @property
    def key(self) -> str:
        """Heartbeat's group key: the first resource as written."""
        return self.resources[0].text


@dataclass
class AuthKey:
    num: int
    method: str          # 'sha1' | 'md5' | 'crc' | 'sha256'
    key: bytes = b""
    line: int = 0


@dataclass
class Auth:
    use: int
    keys: dict[int, AuthKey]

    @property
    def signing(self) -> AuthKey:
        return self.keys[self.use]


@dataclass
class Config:
    """Effective settings.  Times are in seconds (float)."""
    confdir: str = "/etc/ha.d"
    node: str = ""                       # this node
    nodes: list[str] = field(default_factory=list)
    media: list[Medium] = field(default_factory=list)
    keepalive: float = 1.0
    deadtime: float = 30.0
    warntime: float = 15.0
    initdead: float = 30.0
    deadping: float = 30.0
    udpport: int = 694
    baud: int = 19200
    auto_failback: str = "legacy"        # 'on' | 'off' | 'legacy'
    pings: list[PingNode] = field(default_factory=list)
    respawns: list[Respawn] = field(default_factory=list)
    ipfail: bool = False                 # a `respawn ... ipfail` line was seen
    logfile: str | None = None
    debugfile: str | None = None
    logfacility: str | None = None
    debug: int = 0
    realtime: bool = True
    watchdog: str | None = None
    monitor: float | None = None         # hb extension: resource monitor interval
    stop_failure: str = "hold"           # hb extension: 'hold' | 'reboot' (a group's stop failed)
    reboot_command: str = "reboot -nf"   # stop_failure reboot COMMAND...
    resource_order: str = "serial"       # hb extension: 'serial' (Heartbeat's) | 'parallel'
    rtprio: int | None = None            # SCHED_RR priority with realtime (None: minimum)
    env: dict[str, str] = field(default_factory=dict)  # `env NAME=value`: HA_NAME
    groups: list[Group] = field(default_factory=list)
    auth: Auth | None = None
    defaulted: set[str] = field(default_factory=set)   # settings not given
    warnings: list[str] = field(default_factory=list)  # 'FILE:LINE: ...'
    infos: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # setting -> ha.cf line

    @property
    def peers(self) -> list[str]:
        return [n for n in self.nodes if n != self.node]


@dataclass
class Address:
    """An IPaddr/IPaddr2 spec: IP[/NETMASK[/IFACE[:LABEL][/BROADCAST]]]."""
    ip: str
    version: int
    prefix: int | None = None
    iface: str | None = None
    label: str | None = None         # 'eth0:1' -> label '1'
    broadcast: str | None = None

    @property
    def device(self) -> str | None:
        """The interface with its label, as `ip addr ... label` wants it."""
        if self.iface and self.label:
            return self.iface + ":" + self.label
        return self.iface


# ---------------------------------------------------------------- values

TRUE = {"true", "on", "yes", "y", "1"}
FALSE = {"false", "off", "no", "n", "0"}
FACILITIES = {
    "auth", "authpriv", "cron", "daemon", "kern", "lpr", "mail", "news", "user",
    "uucp", "syslog", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7", "none",
}
BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800)
_TIME = re.compile(r"\s*(\d+\.?\d*|\.\d+)\s*(ms|msec|us|usec)?\s*$", re.ASCII)
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")
_BARE_IPV4 = re.compile(r"^[0-9].*\.[0-9].*\.[0-9].*\.[0-9]")  # ResourceManager's glob
_SPLIT = re.compile(r"[\s,]+")


MAX_TIME = 86400.0    # s: no time of ha.cf is longer than a day (every timer fits)


def _num(s: str) -> bool:
    """Only ASCII digits ('²'.isdigit() is true, and int() refuses it)."""
    return s.isascii() and s.isdigit()


def _int(s: str, lo: int, hi: int) -> int | None:
    """s as a whole number from lo to hi, or None: ASCII digits only, and its length
    checked before int() (which refuses more than 4,300 digits with a ValueError)."""
    if not _num(s) or len(s.lstrip("0")) > len(str(hi)):
        return None
    n = int(s)
    return n if lo <= n <= hi else None


def _cut(msg: str) -> str:
    """A message with every word longer than 60 characters cut to 40 and '...': a value
    of 5,000 digits is named, not copied."""
    return re.sub(r"\S{61,}", lambda m: m.group()[:40] + "...", msg)


def _short(v: str) -> str:
    """A value for an error message: repr, cut to 20 characters."""
    return repr(v) if len(v) <= 20 else repr(v[:20])[:-1] + "...'"


def parse_time(text: str) -> float:
    """Heartbeat's cl_get_msec: '2', '1.5', '500ms', '1500 msec', '800us' -> seconds,
    rounded to the millisecond, at most MAX_TIME.  ValueError otherwise."""
    m = _TIME.match(text)
    if not m:
        raise ValueError("bad time %s: a number of seconds, or with ms or us" % _short(text))
    whole = m.group(1).partition(".")[0].lstrip("0")
    unit = m.group(2) or ""
    if len(whole) > 12:                      # float() of 400 digits is inf
        raise ValueError("time %s is too long: at most %d s (a day)"
                         % (_short(text.strip())[1:-1], MAX_TIME))
    n = float(m.group(1))
    ms = n * 1000 if not unit else n if unit.startswith("m") else n / 1000
    if ms > MAX_TIME * 1000:
        raise ValueError("time %s is too long: at most %d s (a day)" % (text.strip(), MAX_TIME))
    return int(ms + 0.5) / 1000.0


def parse_bool(text: str) -> bool:
    w = text.lower()
    if w in TRUE:
        return True
    if w in FALSE:
        return False
    raise ValueError("bad boolean %r: yes/no, on/off, true/false, y/n, 1/0" % text)


def format_time(s: float) -> str:
    """Seconds -> '5s' or '500ms' (ms when not whole seconds)."""
    ms = int(round(s * 1000))
    return "%ds" % (ms // 1000) if ms % 1000 == 0 else "%dms" % ms


def parse_address(spec: str, agent: str = "IPaddr") -> Address:
    """Parse an IPaddr/IPaddr2 argument with hb.addrspec (the one grammar that
    hb-ipaddr and hb-watch use too); ValueError saying what is wrong."""
    from hb import addrspec
    s = addrspec.parse(spec, agent)
    return Address(ip=s.ip, version=s.version, prefix=s.prefix, iface=s.iface,
                   label=s.label, broadcast=s.broadcast)


def _suggest(word: str, words) -> str:
    import difflib
    m = difflib.get_close_matches(word, sorted(words), n=1, cutoff=0.6) or \
        difflib.get_close_matches(word.lower(), sorted(words), n=1, cutoff=0.6)
    return " (did you mean %s?)" % m[0] if m else ""


def _strip_comment(line: str) -> str:
    i = line.find("#")
    return (line if i < 0 else line[:i]).strip()


def _lines(text: str, filename: str, warnings: list[str] | None):
    """Physical lines with numbers, CR stripped (with one warning)."""
    crlf = False
    for n, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
            if not crlf and warnings is not None:
                warnings.append("%s:%d: CRLF (DOS) line ends: accepted" % (filename, n))
            crlf = True
        yield n, line


# ---------------------------------------------------------------- ha.cf

NO_EFFECT = {
    "hopfudge": "hb relays nothing (nor does Heartbeat 3)",
    "apiauth": "hb has no client API; hb-switch talks to hb-watch through its fifo",
    "compression": "hb never compresses (only large CRM messages were compressed)",
    "compression_threshold": "hb never compresses",
    "traditional_compression": "hb never compresses",
    "coredumps": "hb leaves core dumps to the system's settings",
    "coreroot": "hb leaves core dumps to the system's settings",
    "use_logd": "hb logs through logfile, debugfile and logfacility itself",
    "conn_logd_time": "hb does not use ha_logd",
    "log_badpack": "hb-beat's logging of bad packets is fixed",
    "syslogmsgfmt": "hb's syslog format is fixed",
    "msgfmt": "hb sends classic messages and receives both formats",
    "hbgenmethod": "hb keeps its generation counter in STATEDIR",
    "uuidfrom": "hb sends no node UUID",
    "cluster": "a two-node hb pair needs no cluster name",
    "memreserve": "hb has no heap to pre-grow",
    "max_rexmit_delay": "hb-beat times its retransmission requests itself",
    "use_apphbd": "hb does not use apphbd",
    "quorum_server": "only a CRM cluster uses a quorum server",
    "crm_daemon_dir": "only a CRM cluster uses it",
    "crmd_spawns_pengine": "only a CRM cluster uses it",
    "record_config_changes": "only a CRM cluster uses it",
    "record_pengine_inputs": "only a CRM cluster uses it",
    "enable_config_writes": "only a CRM cluster uses it",
}

_PACEMAKER = ("a CRM cluster is Pacemaker's job: remove the line to run the haresources "
              "groups with hb, or move to Corosync + Pacemaker (hb-supervise --export "
              "pacemaker)")
_STONITH = ("hb has no STONITH: remove the line (give each node two heartbeat media "
            "instead), or move to Pacemaker, which fences (hb-supervise --export pacemaker)")

_SCALARS = ("keepalive", "deadtime", "warntime", "initdead", "deadping", "udpport", "baud",
            "auto_failback", "logfile", "debugfile", "logfacility", "debug", "realtime",
            "rtprio", "watchdog", "monitor", "stop_failure", "resource_order")


class _HaCf:
    def __init__(self, cfg: Config, filename: str, local_addrs: Iterable[str]) -> None:
        self.cfg = cfg
        self.fn = filename
        self.local = {str(a).lower() for a in local_addrs}
        self.line = 0
        self.media_seen: dict[tuple, int] = {}

    def err(self, msg: str, line: int | None = None) -> ConfigError:
        return ConfigError("%s:%d: %s" % (self.fn, self.line if line is None else line,
                                          _cut(msg)))

    def warn(self, msg: str, line: int | None = None) -> None:
        where = self.line if line is None else line
        self.cfg.warnings.append("%s:%d: %s" % (self.fn, where, _cut(msg)))

    def info(self, msg: str) -> None:
        self.cfg.infos.append("%s:%d: %s" % (self.fn, self.line, msg))

    # -- helpers
    def one(self, word: str, toks: list[str]) -> str:
        if not toks:
            raise self.err("%s needs a value" % word)
        if len(toks) > 1:
            self.warn("%s given %d values: the last, %s, is used (as Heartbeat does)"
                      % (word, len(toks), toks[-1]))
        return toks[-1]

    def setting(self, name: str, value) -> None:
        if name in self.cfg.lines:
            self.warn("%s set again (line %d): this value wins"
                      % (name, self.cfg.lines[name]))
        self.cfg.lines[name] = self.line
        setattr(self.cfg, name, value)

    def time(self, word: str, rest: str) -> float:
        try:
            t = parse_time(rest)
        except ValueError as e:
            toks = _SPLIT.split(rest.strip())
            try:
                t = parse_time(self.one(word, toks))
            except ValueError:
                raise self.err("%s: %s" % (word, e)) from None
        if t <= 0:
            raise self.err("%s must be at least 1ms" % word)
        return t

    def integer(self, word: str, toks: list[str], lo: int, hi: int) -> int:
        v = self.one(word, toks)
        n = _int(v, lo, hi)
        if n is None:
            raise self.err("%s: bad value %s: a whole number from %d to %d"
                           % (word, _short(v), lo, hi))
        return n

    def add_medium(self, m: Medium) -> None:
        m.line = self.line
        key = (m.kind, m.dev, m.addr.lower())
        if key in self.media_seen:
            self.warn("%s %s %s repeats line %d: ignored"
                      % (m.kind, m.dev, m.addr, self.media_seen[key]))
            return
        self.media_seen[key] = self.line
        self.cfg.media.append(m)

    def iface(self, word: str, dev: str) -> str:
        if not _IFNAME.match(dev):
            raise self.err("%s: bad interface name %r" % (word, dev))
        return dev

    def host(self, word: str, addr: str, version: int | None) -> str:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            if re.match(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$", addr) and \
                    not re.match(r"^[0-9.]+$", addr):
                return addr                     # a host name, resolved when used
            raise self.err("%s: %r is neither an IP%s address nor a host name"
                           % (word, addr, "v%d" % version if version else ""))
        if version and ip.version != version:
            other = {"ucast": "ucast6", "ucast6": "ucast", "ping": "ping6",
                     "ping6": "ping"}.get(word, word)
            raise self.err("%s takes an IPv%d address: %s is IPv%d; use %s"
                           % (word, version, addr, ip.version, other))
        return str(ip)

    # -- directives
    def d_node(self, word, rest, toks):
        if not toks:
            raise self.err("node needs at least one node name")
        for t in toks:
            n = t.lower()
            if n in self.cfg.nodes:
                self.warn("node %s listed twice" % n)
                continue
            if len(self.cfg.nodes) == 2:
                raise self.err("node %s: hb runs pairs and %s are listed already; a larger "
                               "cluster is Pacemaker's job (hb-supervise --export pacemaker)"
                               % (n, " and ".join(self.cfg.nodes)))
            self.cfg.nodes.append(n)
        self.cfg.lines.setdefault("node", self.line)

    def d_time(self, word, rest, toks):
        self.setting(word, self.time(word, rest))

    def d_monitor(self, word, rest, toks):
        if len(toks) == 1 and toks[0].lower() in FALSE:
            self.setting("monitor", None)
            return
        m = re.match(r"^\s*(\d+\.?\d*|\.\d+)\s*(s|sec)\s*$", rest, re.ASCII)   # hb-only: 5s too
        self.setting("monitor", self.time(word, m.group(1) if m else rest))

    def d_udpport(self, word, rest, toks):
        self.setting("udpport", self.integer(word, toks, 1, 65535))
        if any(m.kind in ("bcast", "ucast", "ucast6") for m in self.cfg.media):
            self.warn("udpport after a bcast or ucast line: those media keep the port they "
                      "were given (Heartbeat reads udpport when a medium is created); move "
                      "udpport before them")

    def d_baud(self, word, rest, toks):
        v = self.one(word, toks)
        rate = _int(v, 0, max(BAUDS))
        if rate not in BAUDS:
            raise self.err("baud: bad rate %s: one of %s"
                           % (_short(v), " ".join(map(str, BAUDS))))
        self.setting("baud", rate)
        if any(m.kind == "serial" for m in self.cfg.media):
            old = [m.baud for m in self.cfg.media if m.kind == "serial"][-1]
            self.warn("baud after a serial line: those ports keep %d bps; move baud before "
                      "serial" % old)

    def d_serial(self, word, rest, toks):
        if not toks:
            raise self.err("serial needs a device, e.g. serial /dev/ttyS0")
        for dev in toks:
            if not dev.startswith("/"):
                raise self.err("serial: %r is not a full path name such as /dev/ttyS0" % dev)
            self.add_medium(Medium("serial", dev, baud=self.cfg.baud))

    def d_bcast(self, word, rest, toks):
        if not toks:
            raise self.err("%s needs an interface, e.g. bcast eth1" % word)
        if word == "udp":
            self.info("udp is the old name of bcast")
        for dev in toks:
            self.add_medium(Medium("bcast", self.iface(word, dev), port=self.cfg.udpport))

    def d_ucast(self, word, rest, toks):
        toks = rest.split()
        v = 6 if word == "ucast6" else 4
        if len(toks) < 2:
            raise self.err("%s needs an interface and a peer: %s eth0 %s"
                           % (word, word, "2001:db8::2" if v == 6 else "192.0.2.2"))
        if len(toks) > 2:
            self.warn("%s takes one peer per line: %s ignored (repeat the line for more peers)"
                      % (word, " ".join(toks[2:])))
        dev = self.iface(word, toks[0])
        peer = self.host(word, toks[1], v)
        if peer.lower() in self.local or peer.lower() == self.cfg.node:
            self.info("%s to this node's own address %s: ignored" % (word, peer))
            return
        self.add_medium(Medium(word, dev, addr=peer, port=self.cfg.udpport))

    def d_mcast(self, word, rest, toks):
        toks = rest.split()
        v = 6 if word == "mcast6" else 4
        if len(toks) != 5:
            example = "ff02::694" if v == 6 else "239.0.0.1"
            raise self.err("%s needs 5 values: %s IFACE GROUP PORT TTL LOOP, e.g. %s eth1 %s "
                           "694 1 0" % (word, word, word, example))
        dev = self.iface(word, toks[0])
        try:
            group = ipaddress.ip_address(toks[1])
        except ValueError:
            group = None
        if group is None or group.version != v or not group.is_multicast:
            raise self.err("%s: %r is not an IPv%d multicast group (%s)"
                           % (word, toks[1], v, "ff00::/8" if v == 6 else "224.0.0.0/4"))
        port = self.integer(word + " port", [toks[2]], 1, 65535)
        ttl = self.integer(word + " ttl", [toks[3]], 0, 4 if v == 4 else 255)
        loop = self.integer(word + " loop", [toks[4]], 0, 1)
        self.add_medium(Medium(word, dev, addr=str(group), port=port, ttl=ttl, loop=loop))

    def d_auto_failback(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v == "legacy":
            self.warn("auto_failback legacy: Heartbeat's old ip-request protocol; prefer on "
                      "or off")
            self.setting("auto_failback", "legacy")
            return
        try:
            self.setting("auto_failback", "on" if parse_bool(v) else "off")
        except ValueError:
            raise self.err("auto_failback: bad value %r: on, off or legacy" % v) from None

    def d_stop_failure(self, word, rest, toks):
        v = toks[0].lower() if toks else ""
        if v == "hold" and len(toks) == 1:
            self.setting("stop_failure", "hold")
        elif v == "reboot":
            self.setting("stop_failure", "reboot")
            command = rest.strip()[len(toks[0]):].strip()
            if command and not command.startswith("/"):
                raise self.err("stop_failure reboot: %r is not a full path name"
                               % command.split()[0])
            self.cfg.reboot_command = command or "reboot -nf"
        else:
            raise self.err("stop_failure: want hold, or reboot [/path/to/command args]")

    def d_resource_order(self, word, rest, toks):
        v = toks[0].lower() if len(toks) == 1 else ""
        if v not in ("serial", "parallel"):
            raise self.err("resource_order: want serial (groups one after another, as "
                           "Heartbeat) or parallel (all at once), not %r" % rest.strip())
        self.setting("resource_order", v)

    def d_nice_failback(self, word, rest, toks):
        try:
            on = parse_bool(self.one(word, toks))
        except ValueError as e:
            raise self.err("nice_failback: %s" % e) from None
        new = "off" if on else "legacy"
        self.warn("nice_failback is obsolete: write auto_failback %s" % new)
        self.setting("auto_failback", new)

    def d_ping(self, word, rest, toks):
        if not toks:
            raise self.err("ping needs an address, e.g. ping 192.0.2.254")
        for t in toks:
            addr = self.host(word, t, 6 if word == "ping6" else None)
            if any(p.name == addr for p in self.cfg.pings):
                self.warn("ping %s listed twice" % addr)
                continue
            self.cfg.pings.append(PingNode(addr, [addr], line=self.line))

    def d_ping_group(self, word, rest, toks):
        if len(toks) < 2:
            raise self.err("ping_group needs a name and addresses: ping_group NAME ADDR...")
        name = toks[0]
        if any(p.name == name for p in self.cfg.pings) or name.lower() in self.cfg.nodes:
            raise self.err("ping_group %s: the name is already used" % name)
        addrs = [self.host(word, t, None) for t in toks[1:]]
        self.cfg.pings.append(PingNode(name, addrs, group=True, line=self.line))

    def d_respawn(self, word, rest, toks):
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise self.err("respawn needs a user and a program: respawn USER /path/to/program")
        user, command = parts
        prog = command.split()[0]
        if os.path.basename(prog) == "ipfail":
            self.cfg.ipfail = True
            self.cfg.lines["ipfail"] = self.line
            self.info("respawn ipfail: hb-watch itself moves the groups away from a node "
                      "that lost its ping nodes (deadping), as ipfail did; not run")
            return
        if not prog.startswith("/"):
            raise self.err("respawn: %r is not a full path name" % prog)
        self.cfg.respawns.append(Respawn(user, command.strip(), line=self.line))

    def d_failfast(self, word, rest, toks):
        raise self.err("failfast is not supported (it reboots when the program dies): use "
                       "respawn, which restarts it")

    def d_path(self, word, rest, toks):
        v = self.one(word, toks)
        if word != "watchdog" and v.lower() in ("none", "/dev/null"):
            self.setting(word, None)
            return
        if not v.startswith("/"):
            raise self.err("%s: %r is not a full path name" % (word, v))
        self.setting(word, v)

    def d_logfacility(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v not in FACILITIES:
            raise self.err("logfacility: unknown facility %r%s" % (v, _suggest(v, FACILITIES)))
        self.setting("logfacility", v)

    def d_debug(self, word, rest, toks):
        self.setting("debug", self.integer(word, toks, 0, 255))

    def d_rtprio(self, word, rest, toks):
        self.setting("rtprio", self.integer(word, toks, 1, 99))

    def d_realtime(self, word, rest, toks):
        try:
            self.setting("realtime", parse_bool(self.one(word, toks)))
        except ValueError as e:
            raise self.err("realtime: %s" % e) from None

    def d_env(self, word, rest, toks):
        name, eq, value = rest.strip().partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise self.err("env: write env NAME=value")
        self.cfg.env[name] = value

    def d_crm(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if "crm" in self.cfg.lines:
            raise self.err("%s: crm or pacemaker already given (line %d): say it once, as "
                           "Heartbeat requires" % (word, self.cfg.lines["crm"]))
        self.cfg.lines["crm"] = self.line
        if v in FALSE:
            return
        raise self.err("%s %s: %s" % (word, v, _PACEMAKER))

    def d_autojoin(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v == "none":
            return
        if v in ("any", "other"):
            raise self.err("autojoin %s: nodes joining by themselves conflicts with haresources "
                           "(as in Heartbeat): remove the line and list both nodes with node"
                           % v)
        raise self.err("autojoin: bad value %r: none, other or any" % v)

    def d_stonith(self, word, rest, toks):
        raise self.err("%s: %s" % (word, _STONITH))

    def d_hbaping(self, word, rest, toks):
        raise self.err("hbaping (Fibre Channel ping) is not supported: use ping or ping_group")

    def d_no_effect(self, word, rest, toks):
        self.info("%s has no effect in hb: %s" % (word, NO_EFFECT[word]))

    def dispatch(self):
        return {
            "node": self.d_node, "keepalive": self.d_time, "deadtime": self.d_time,
            "warntime": self.d_time, "initdead": self.d_time, "deadping": self.d_time,
            "monitor": self.d_monitor, "stop_failure": self.d_stop_failure,
            "resource_order": self.d_resource_order,
            "udpport": self.d_udpport, "baud": self.d_baud,
            "serial": self.d_serial, "bcast": self.d_bcast, "udp": self.d_bcast,
            "ucast": self.d_ucast, "ucast6": self.d_ucast, "mcast": self.d_mcast,
            "mcast6": self.d_mcast, "auto_failback": self.d_auto_failback,
            "nice_failback": self.d_nice_failback, "ping": self.d_ping,
            "ping6": self.d_ping, "ping_group": self.d_ping_group, "respawn": self.d_respawn,
            "failfast": self.d_failfast, "logfile": self.d_path, "debugfile": self.d_path,
            "watchdog": self.d_path, "logfacility": self.d_logfacility, "debug": self.d_debug,
            "rtprio": self.d_rtprio, "realtime": self.d_realtime, "env": self.d_env,
            "crm": self.d_crm, "pacemaker": self.d_crm, "autojoin": self.d_autojoin,
            "stonith": self.d_stonith, "stonith_host": self.d_stonith,
            "hbaping": self.d_hbaping,
            **{w: self.d_no_effect for w in NO_EFFECT},
        }

    def finish(self, last: int) -> None:
        cfg = self.cfg
        L = cfg.lines
        for name in _SCALARS:
            if name not in L:
                cfg.defaulted.add(name)
        if "warntime" not in L:
            cfg.warntime = cfg.deadtime / 2
        if "initdead" not in L:
            d = cfg.deadtime
            cfg.initdead = d if d > 10 else 12.0 if d < 6 else 2 * d
        if "deadping" not in L:
            cfg.deadping = cfg.deadtime

        def at(*names: str) -> int:
            return max([L[n] for n in names if n in L] or [last])

        ka = format_time(cfg.keepalive)
        if cfg.deadtime <= 2 * cfg.keepalive:
            raise self.err("deadtime %s must be more than twice keepalive %s"
                           % (format_time(cfg.deadtime), ka), at("deadtime", "keepalive"))
        if cfg.warntime <= cfg.keepalive or cfg.warntime > cfg.deadtime:
            raise self.err("warntime %s must be between keepalive %s and deadtime %s"
                           % (format_time(cfg.warntime), ka, format_time(cfg.deadtime)),
                           at("warntime", "keepalive", "deadtime"))
        if cfg.warntime == cfg.deadtime:
            self.warn("warntime equals deadtime: no late-heartbeat warning before a node is "
                      "declared dead", at("warntime", "deadtime"))
        if cfg.initdead < cfg.deadtime:
            raise self.err("initdead %s must be at least deadtime %s"
                           % (format_time(cfg.initdead), format_time(cfg.deadtime)),
                           at("initdead", "deadtime"))
        if cfg.initdead < 10 and "initdead" in L:
            self.warn("initdead %s is under 10s: a peer booting at the same time may not be "
                      "heard yet" % format_time(cfg.initdead), L["initdead"])
        if cfg.deadping <= 2 * cfg.keepalive:
            raise self.err("deadping %s must be more than twice keepalive %s"
                           % (format_time(cfg.deadping), ka), at("deadping", "keepalive"))
        if not cfg.nodes:
            raise self.err("no node lines: list both nodes, e.g. node %s PEER"
                           % (cfg.node or "NAME"), last)
        if cfg.node not in cfg.nodes:
            raise self.err("this node %s is not listed in node (%s): the names must match "
                           "uname -n (or use --node)" % (cfg.node, " ".join(cfg.nodes)),
                           L["node"])
        if len(cfg.nodes) == 1:
            self.warn("only one node listed: there is no peer to fail over to", L["node"])
        if not cfg.media:
            what = " (ping nodes only answer pings: they are not a medium)" if cfg.pings else ""
            raise self.err("no heartbeat medium: add serial, bcast, mcast or ucast%s" % what,
                           last)
        if "auto_failback" not in L:
            self.warn("auto_failback not set: legacy, as in Heartbeat; set it to on or off",
                      last)
        for p in cfg.pings:
            if p.name.lower() in cfg.nodes:
                raise self.err("ping %s: a cluster node cannot be a ping node" % p.name,
                               p.line)
        if not (cfg.logfile or cfg.debugfile or cfg.logfacility):
            self.cfg.infos.append("%s:%d: no logfile, debugfile or logfacility: hb logs to "
                                  "stderr only (Heartbeat would use ha_logd)" % (self.fn, last))
        if cfg.ipfail and not cfg.pings:
            self.warn("respawn ipfail without ping or ping_group: nothing to judge "
                      "connectivity by", L["ipfail"])
        names: dict[str, Medium] = {}
        for m in cfg.media:
            if m.name in names and m.kind != names[m.name].kind:
                self.warn("%s %s and %s %s (line %d) share the link name %s"
                          % (m.kind, m.dev, names[m.name].kind, names[m.name].dev,
                             names[m.name].line, m.name), m.line)
            names.setdefault(m.name, m)


def parse_hacf(text: str, filename: str, node: str,
               local_addrs: Iterable[str] = ()) -> Config:
    """ha.cf text -> Config (everything but groups and auth).

    node is this node's name; local_addrs this machine's addresses (ucast lines
    naming one of them are ignored)."""
    cfg = Config(node=node.lower())
    p = _HaCf(cfg, filename, local_addrs)
    table = p.dispatch()
    last = 1
    errors: list[str] = []
    for n, raw in _lines(text, filename, cfg.warnings):
        p.line = n
        line = _strip_comment(raw)
        if not line:
            continue
        last = n
        word, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip()
        fn = table.get(word)
        try:
            if fn is None:
                raise p.err("unknown directive %r%s" % (word, _suggest(word, table)))
            fn(word, rest, [t for t in _SPLIT.split(rest) if t])
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError(errors[0], errors)
    p.line = last
    p.finish(last)
    return cfg


# ---------------------------------------------------------------- haresources

def _resource(tok: str, line: int) -> Resource:
    if ("::" not in tok and _BARE_IPV4.match(tok)) or _is_ip(tok.split("/")[0]):
        return Resource("IPaddr", [tok], tok, line)
    if "::" not in tok:
        return Resource(tok, [], tok, line)
    name, _, rest = tok.partition("::")
    if name in ("IPaddr", "IPaddr2"):
        return Resource(name, [rest] if rest else [], tok, line)   # IPv6 holds '::'
    return Resource(name, rest.split("::"), tok, line)


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def parse_haresources(text: str, filename: str, nodes: list[str],
                      warnings: list[str] | None = None) -> list[Group]:
    """haresources text -> groups, in file order (index from 1)."""
    groups: list[Group] = []
    keys: dict[str, int] = {}
    logical: list[tuple[int, str]] = []
    errors: list[str] = []

    def err(line: int, msg: str) -> ConfigError:
        return ConfigError("%s:%d: %s" % (filename, line, _cut(msg)))

    def flush() -> None:
        if not logical:
            return
        first = logical[0][0]
        node = logical[0][1].lower()
        if node not in nodes:
            raise err(first, "node %s is not listed in ha.cf (%s)%s"
                      % (logical[0][1], " ".join(nodes), _suggest(node, nodes)))
        if len(logical) < 2:
            raise err(first, "node %s has no resources: NODE RESOURCE..." % node)
        rs = []
        for n, tok in logical[1:]:
            r = _resource(tok, n)
            if not r.name or "/" in r.name:
                raise err(n, "bad resource %r: NAME or NAME::ARG::ARG (a script in "
                          "resource.d or /etc/init.d)" % tok)
            if r.name in ("IPaddr", "IPaddr2"):
                from hb import addrspec
                try:
                    addrspec.parse_resource(r.name, r.args)
                except ValueError as e:
                    raise err(n, str(e)) from None
            if r.name == "MailTo" and (not 1 <= len(r.args) <= 2 or not r.args[0]):
                raise err(n, "MailTo takes an address list and an optional subject: "
                          "MailTo::root@example.org[,other@...][::Subject]")
            rs.append(r)
        g = Group(len(groups) + 1, node, rs, first)
        if g.key in keys:
            raise err(first, "group key %s (the first resource) also starts line %d: "
                      "keys must be unique" % (g.key, keys[g.key]))
        keys[g.key] = first
        groups.append(g)
        logical.clear()

    def group() -> None:
        try:
            flush()
        except ConfigError as e:
            errors.append(str(e))
            logical.clear()

    cont = False
    for n, raw in _lines(text, filename, warnings):
        line = _strip_comment(raw)
        more = line.endswith("\\")
        if more:
            line = line[:-1]
        if not cont:
            group()
        logical.extend((n, t) for t in line.split())
        cont = more
    group()
    if errors:
        raise ConfigError(errors[0], errors)
    return groups


# ---------------------------------------------------------------- authkeys

AUTH_METHODS = ("sha1", "md5", "crc", "sha256")


def parse_authkeys(text: str, filename: str, warnings: list[str] | None = None) -> Auth:
    """authkeys text -> Auth.  A key is one token, as in Heartbeat (it may hold '#')."""
    use = None
    use_line = 0
    keys: dict[int, AuthKey] = {}
    warnings = warnings if warnings is not None else []

    def err(line: int, msg: str) -> ConfigError:
        return ConfigError("%s:%d: %s" % (filename, line, _cut(msg)))

    def line(n: int, toks: list[str]) -> None:
        nonlocal use, use_line
        if toks[0].startswith("a"):
            if toks[0] != "auth" or len(toks) < 2 or not _num(toks[1]):
                raise err(n, "write auth N, N being the key that signs (e.g. auth 1)")
            if _int(toks[1], 1, 15) is None:
                raise err(n, "auth %s: the key number is from 1 to 15" % _short(toks[1])[1:-1])
            if use is not None:
                warnings.append("%s:%d: auth given again (line %d): this one wins"
                                % (filename, n, use_line))
            use, use_line = int(toks[1]), n
            return
        num = _int(toks[0], 0, 15)
        if num is None:
            raise err(n, "write N METHOD KEY, N from 1 to 15 (e.g. 1 sha1 SECRET)")
        if len(toks) < 2:
            raise err(n, "key %d has no method: sha1, md5 or crc" % num)
        method = toks[1].lower()
        if method not in AUTH_METHODS:
            raise err(n, "unknown method %r%s: sha1, md5 or crc"
                      % (toks[1], _suggest(method, AUTH_METHODS)))
        if method == "crc":
            if len(toks) > 2:
                raise err(n, "crc takes no key")
            warnings.append("%s:%d: key %d is crc: it authenticates nothing; anyone on the "
                            "link can take the resources (use sha1)" % (filename, n, num))
            key = b""
        else:
            if len(toks) < 3:
                raise err(n, "%s needs a key: %d %s SECRET" % (method, num, method))
            if len(toks) > 3:
                warnings.append("%s:%d: a key is one word: %s ignored"
                                % (filename, n, " ".join(toks[3:])))
            key = toks[2].encode("utf-8", "surrogateescape")
        if method == "sha256":
            warnings.append("%s:%d: sha256 is an hb extension: a Heartbeat peer cannot "
                            "verify it (use sha1 while Heartbeat nodes remain)" % (filename, n))
        if num in keys:
            warnings.append("%s:%d: key %d listed again (line %d): this one wins"
                            % (filename, n, num, keys[num].line))
        keys[num] = AuthKey(num, method, key, n)

    errors: list[str] = []
    last = 1
    for n, raw in _lines(text, filename, warnings):
        toks = raw.split()
        if not toks or toks[0].startswith("#"):
            continue
        last = n
        try:
            line(n, toks)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError(errors[0], errors)
    if use is None:
        raise err(last, "no auth line: add auth N naming the key that signs")
    if use not in keys:
        raise err(use_line, "auth %d: there is no key %d (listed: %s)"
                  % (use, use, " ".join(map(str, sorted(keys))) or "none"))
    return Auth(use, keys)


# ---------------------------------------------------------------- I/O

def default_node(confdir: str = "/etc/ha.d") -> str:
    """CONFDIR/nodeinfo's first line (as Heartbeat), else uname -n; lower-cased."""
    try:
        with open(os.path.join(confdir, "nodeinfo")) as f:
            name = f.readline().strip()
        if name:
            return name.lower()
    except OSError:
        pass
    return os.uname().nodename.lower()


def local_addresses() -> set[str]:
    """This network namespace's own addresses (from /proc; no netlink library)."""
    addrs: set[str] = set()
    try:
        with open("/proc/net/fib_trie") as f:
            last = ""
            for line in f:
                s = line.strip()
                if s.startswith("|--"):
                    last = s[3:].strip()
                elif s.startswith("/32 host LOCAL") and last:
                    addrs.add(last)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                h = line.split()[0]
                addrs.add(str(ipaddress.IPv6Address(bytes.fromhex(h))))
    except (OSError, ValueError, IndexError):
        pass
    return addrs


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ConfigError("%s:0: cannot read: %s" % (path, e.strerror)) from None


def authkeys_mode_problem(path: str) -> str | None:
    """Why authkeys may not be used: not mode 600 (or stricter), or not owned by root."""
    try:
        st = os.stat(path)
    except OSError as e:
        return "%s:0: cannot read: %s" % (path, e.strerror)
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~0o600:
        return "%s:0: mode %03o: the keys must be readable by root only: chmod 600 %s" \
            % (path, mode, path)
    if st.st_uid != 0:
        return "%s:0: owned by uid %d: the keys must be owned by root: chown root %s" \
            % (path, st.st_uid, path)
    return None


def load(confdir: str = "/etc/ha.d", node: str | None = None,
         check_devices: bool = True) -> Config:
    """Read and check CONFDIR/{ha.cf,haresources,authkeys}.

    A missing serial device, interface, watchdog or respawn program, and an authkeys file
    others may read or not owned by root, are errors when check_devices
    (starting), warnings otherwise (--check)."""
    node = (node or default_node(confdir)).lower()
    hacf = os.path.join(confdir, "ha.cf")
    har = os.path.join(confdir, "haresources")
    ak = os.path.join(confdir, "authkeys")
    errors: list[str] = []
    cfg: Config | None = None
    try:
        cfg = parse_hacf(_read(hacf), hacf, node, local_addresses())
        cfg.confdir = confdir
        cfg.groups = parse_haresources(_read(har), har, cfg.nodes, cfg.warnings)
    except ConfigError as e:
        errors += e.errors
    warnings = cfg.warnings if cfg else []
    try:
        text = _read(ak)
        why = authkeys_mode_problem(ak)
        if why:
            (errors if check_devices else warnings).append(why)
        auth = parse_authkeys(text, ak, warnings)
    except ConfigError as e:
        errors += e.errors
    if errors or cfg is None:
        raise ConfigError(errors[0], errors)
    cfg.auth = auth
    _check_system(cfg, hacf, har, check_devices)
    return cfg


def _check_system(cfg: Config, hacf: str, har: str, strict: bool) -> None:
    try:
        ifaces = {name for _, name in socket.if_nameindex()}
    except OSError:
        ifaces = set()

    errors: list[str] = []

    def problem(fn: str, line: int, msg: str) -> None:
        (errors if strict else cfg.warnings).append("%s:%d: %s" % (fn, line, msg))

    def chardev(path: str, fifo: bool = False) -> str | None:
        try:
            st = os.stat(path)
        except OSError as e:
            return e.strerror
        if stat.S_ISCHR(st.st_mode) or (fifo and stat.S_ISFIFO(st.st_mode)):
            return None
        return "not a character device"

    for m in cfg.media:
        if m.kind == "serial":
            why = chardev(m.dev)
            if why:
                problem(hacf, m.line, "serial device %s: %s" % (m.dev, why))
        elif m.dev not in ifaces:
            problem(hacf, m.line, "%s: no interface %s on this machine" % (m.kind, m.dev))
    if cfg.watchdog:
        why = chardev(cfg.watchdog, fifo=True)
        if why:
            problem(hacf, cfg.lines["watchdog"], "watchdog %s: %s" % (cfg.watchdog, why))
    for r in cfg.respawns:
        prog = r.command.split()[0]
        if not os.access(prog, os.X_OK):
            problem(hacf, r.line, "respawn: %s is not an executable file" % prog)
    for g in cfg.groups:
        for r in g.resources:
            if r.name in ("IPaddr", "IPaddr2"):
                a = parse_address(r.args[0])
                if a.iface and a.iface not in ifaces:
                    problem(har, r.line, "%s: no interface %s on this machine"
                            % (r.text, a.iface))
    if errors:
        raise ConfigError(errors[0], errors)


# ---------------------------------------------------------------- output

def describe(cfg: Config) -> str:
    """The effective settings, one per line, with units and '(default)'."""
    out = []

    def put(name: str, value: str) -> None:
        out.append("%s %s%s" % (name, value, " (default)" if name in cfg.defaulted else ""))

    out.append("# hb settings from %s for node %s" % (cfg.confdir, cfg.node))
    for n in cfg.nodes:
        out.append("node %s%s" % (n, " (this node)" if n == cfg.node else ""))
    for m in cfg.media:
        if m.kind == "serial":
            out.append("medium %s serial %s %d bps" % (m.name, m.dev, m.baud))
        elif m.kind == "bcast":
            out.append("medium %s bcast port %d" % (m.name, m.port))
        elif m.kind.startswith("ucast"):
            out.append("medium %s %s %s port %d" % (m.name, m.kind, m.addr, m.port))
        else:
            out.append("medium %s %s %s port %d ttl %d loop %d"
                       % (m.name, m.kind, m.addr, m.port, m.ttl, m.loop))
    for k in ("keepalive", "warntime", "deadtime", "initdead", "deadping"):
        put(k, format_time(getattr(cfg, k)))
    put("udpport", str(cfg.udpport))
    put("baud", "%d bps" % cfg.baud)
    put("auto_failback", cfg.auto_failback)
    put("monitor", "off" if cfg.monitor is None else "every " + format_time(cfg.monitor))
    put("stop_failure", cfg.stop_failure + (" " + cfg.reboot_command
                                            if cfg.stop_failure == "reboot" else ""))
    put("resource_order", cfg.resource_order)
    for p in cfg.pings:
        if p.group:
            out.append("ping_group %s %s" % (p.name, " ".join(p.addrs)))
        else:
            out.append("ping %s" % p.name)
    if not cfg.pings:
        out.append("ping none (default)")
    out.append("ipfail %s%s" % ("yes" if cfg.ipfail else "no",
                                "" if cfg.ipfail else " (default)"))
    for r in cfg.respawns:
        out.append("respawn %s %s" % (r.user, r.command))
    for name in ("logfile", "debugfile", "logfacility", "watchdog"):
        put(name, getattr(cfg, name) or "none")
    put("debug", str(cfg.debug))
    put("realtime", "on" if cfg.realtime else "off")
    put("rtprio", "minimum" if cfg.rtprio is None else str(cfg.rtprio))
    for k, v in cfg.env.items():
        out.append("env HA_%s=%s" % (k, v))
    for g in cfg.groups:
        out.append("group %d %s %s" % (g.index, g.node, " ".join(r.text for r in g.resources)))
    if cfg.auth:
        listed = " ".join(map(str, sorted(cfg.auth.keys)))
        out.append("auth %d %s (keys %s)" % (cfg.auth.use, cfg.auth.signing.method, listed))
    out.append("digest %s" % digest(cfg))
    out += ["warning: " + w for w in cfg.warnings]
    out += ["info: " + i for i in cfg.infos]
    return "\n".join(out) + "\n"


DIGEST_PARTS = (("haresources", 6), ("auto_failback", 2), ("keepalive", 3),
                ("deadtime", 3), ("warntime", 3), ("initdead", 3))


def digest(cfg: Config) -> str:
    """Short hex digest of what both nodes must agree on: the groups,
    auto_failback and the timings; one fixed-width piece each (DIGEST_PARTS),
    so that digest_diff() can name what differs."""
    values = {"haresources": "\n".join("%s %s" % (g.node, " ".join(r.text for r in g.resources))
                                       for g in cfg.groups),
              "auto_failback": cfg.auto_failback}
    from hb.wire import hasher          # not hashlib: OpenSSL costs 3.7 MB per daemon
    sha256 = hasher("sha256")
    for k in ("keepalive", "deadtime", "warntime", "initdead"):
        values[k] = "%d" % int(round(getattr(cfg, k) * 1000))
    return "".join(sha256(("%s=%s" % (k, values[k])).encode()).hexdigest()[:n]
                   for k, n in DIGEST_PARTS)


def digest_diff(a: str, b: str) -> list[str]:
    """The settings whose pieces differ between two digests ([] if equal; every
    setting if either is not a digest of this version)."""
    width = sum(n for _, n in DIGEST_PARTS)
    if len(a) != width or len(b) != width:
        return [k for k, _ in DIGEST_PARTS] if a != b else []
    out, i = [], 0
    for k, n in DIGEST_PARTS:
        if a[i:i + n] != b[i:i + n]:
            out.append(k)
        i += n
    return out
