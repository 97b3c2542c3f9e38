"""The settings of an hb pair, as ha.cf, haresources and authkeys give them.

The types below are the contract every command reads (hacf, haresources and
authkeys fill them; config loads the three files); ConfigError carries
"FILE:LINE: message" lines.  Also the value grammar the three files share:
times, booleans, bounded numbers, comments, numbered lines.  Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator


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


# ---------------------------------------------------------------- values

TRUE = {"true", "on", "yes", "y", "1"}
FALSE = {"false", "off", "no", "n", "0"}
_TIME = re.compile(r"\s*(\d+\.?\d*|\.\d+)\s*(ms|msec|us|usec)?\s*$", re.ASCII)
MAX_TIME = 86400.0    # s: no time of ha.cf is longer than a day (every timer fits)


def digits(s: str) -> bool:
    """Only ASCII digits ('²'.isdigit() is true, and int() refuses it)."""
    return s.isascii() and s.isdigit()


def number(s: str, lo: int, hi: int) -> int | None:
    """s as a whole number from lo to hi, or None: ASCII digits only, and its length
    checked before int() (which refuses more than 4,300 digits with a ValueError)."""
    if not digits(s) or len(s.lstrip("0")) > len(str(hi)):
        return None
    n = int(s)
    return n if lo <= n <= hi else None


def cut(msg: str) -> str:
    """A message with every word longer than 60 characters cut to 40 and '...': a value
    of 5,000 digits is named, not copied."""
    return re.sub(r"\S{61,}", lambda m: m.group()[:40] + "...", msg)


def short(v: str) -> str:
    """A value for an error message: repr, cut to 20 characters."""
    return repr(v) if len(v) <= 20 else repr(v[:20])[:-1] + "...'"


def parse_time(text: str) -> float:
    """Heartbeat's cl_get_msec: '2', '1.5', '500ms', '1500 msec', '800us' -> seconds,
    rounded to the millisecond, at most MAX_TIME.  ValueError otherwise."""
    m = _TIME.match(text)
    if not m:
        raise ValueError("bad time %s: a number of seconds, or with ms or us" % short(text))
    whole = m.group(1).partition(".")[0].lstrip("0")
    unit = m.group(2) or ""
    if len(whole) > 12:                      # float() of 400 digits is inf
        raise ValueError("time %s is too long: at most %d s (a day)"
                         % (short(text.strip())[1:-1], MAX_TIME))
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


def suggest(word: str, words: Iterable[str]) -> str:
    import difflib
    m = difflib.get_close_matches(word, sorted(words), n=1, cutoff=0.6) or \
        difflib.get_close_matches(word.lower(), sorted(words), n=1, cutoff=0.6)
    return " (did you mean %s?)" % m[0] if m else ""


def strip_comment(line: str) -> str:
    i = line.find("#")
    return (line if i < 0 else line[:i]).strip()


def numbered_lines(text: str, filename: str,
                   warnings: list[str] | None) -> Iterator[tuple[int, str]]:
    """Physical lines with numbers, CR stripped (with one warning)."""
    crlf = False
    for n, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
            if not crlf and warnings is not None:
                warnings.append("%s:%d: CRLF (DOS) line ends: accepted" % (filename, n))
            crlf = True
        yield n, line


# ---------------------------------------------------------------- digest

# what both nodes must agree on (config.digest hashes each; owner compares)
DIGEST_PARTS = (("haresources", 6), ("auto_failback", 2), ("keepalive", 3),
                ("deadtime", 3), ("warntime", 3), ("initdead", 3))


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
