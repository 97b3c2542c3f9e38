"""ha.cf, haresources, authkeys -> typed settings.  Pure parsing.

The types below are the contract every command reads; parse_* functions take
text and a file name and raise ConfigError("FILE:LINE: message").  load() is
the one function that touches the file system (reading, authkeys mode check,
existence of devices and interfaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(Exception):
    """One line: 'FILE:LINE: what is wrong'."""


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
    groups: list[Group] = field(default_factory=list)
    auth: Auth | None = None
    defaulted: set[str] = field(default_factory=set)   # settings not given
    warnings: list[str] = field(default_factory=list)  # 'FILE:LINE: ...'
    infos: list[str] = field(default_factory=list)

    @property
    def peers(self) -> list[str]:
        return [n for n in self.nodes if n != self.node]
