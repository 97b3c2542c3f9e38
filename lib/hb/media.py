"""Heartbeat media: bcast, mcast, ucast (UDP on udpport), and what every medium
shares (serial.py has the serial one, ping.py the ping nodes).

Every medium is non-blocking and owns its failures: a datagram that cannot be
sent is lost alone (counted, logged at most every SUMMARY seconds); a medium
that cannot be opened, or whose socket or device fails, logs it once, is retried
every min(RETRY, keepalive) seconds, and never holds up the others.  No heavy
imports: pyserial only when a serial medium is configured; interface addresses
come from ioctl, not netlink.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import struct
from typing import Any

from hb import wire


RETRY = 1.0          # reopen a failed medium after min(RETRY, keepalive)
SUMMARY = 10.0       # at most one log line per medium this often while datagrams fail
DATAGRAM_ERRORS = frozenset((
    errno.EPERM, errno.EACCES, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED,
    errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN, errno.EADDRNOTAVAIL, errno.ENETDOWN,
    errno.EHOSTDOWN, errno.EINTR))
SIOCGIFADDR = 0x8915
SIOCGIFBRDADDR = 0x8919
SIOCGIFNETMASK = 0x891B
IP_TOS_LOWDELAY = 0x10

log = logging.getLogger("hb")


def _ifreq(dev: str) -> bytes:
    return struct.pack("256s", dev.encode()[:15])


def if_ipv4(dev: str, which: int = SIOCGIFADDR) -> str:
    """IPv4 address (or broadcast address) of interface dev, via ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        r = fcntl.ioctl(s.fileno(), which, _ifreq(dev))
    return socket.inet_ntoa(r[20:24])


def if_broadcast(dev: str) -> str:
    """The interface's broadcast address, or address | ~netmask when none is set."""
    addr = if_ipv4(dev, SIOCGIFBRDADDR)
    if addr != "0.0.0.0":
        return addr
    a = struct.unpack("!I", socket.inet_aton(if_ipv4(dev, SIOCGIFADDR)))[0]
    m = struct.unpack("!I", socket.inet_aton(if_ipv4(dev, SIOCGIFNETMASK)))[0]
    return socket.inet_ntoa(struct.pack("!I", a | (~m & 0xFFFFFFFF)))


class Medium:
    """One link.  Subclasses open(), fileno(), read() and write().

    A send error that concerns one datagram (DATAGRAM_ERRORS: a firewall rule,
    no route, a full queue...) loses that datagram only: it is counted in
    `lost`, the first is logged, then a summary at most every SUMMARY seconds;
    the socket stays open and the next message is tried.  Any other error is
    the socket's or the device's: it is closed and reopened `retry` seconds
    later (min(RETRY, keepalive) under hb-beat), then every `retry` seconds.
    """

    kind = "?"
    echoes = False                         # hears its own messages (broadcast)
    changes = 0                            # bumped when any medium opens or closes

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: str | None = None     # the reason, while closed by a failure
        self.next_try = 0.0
        self.retry = RETRY
        self.sent = 0
        self.errors = 0
        self.lost = 0                      # datagrams lost to DATAGRAM_ERRORS
        self.dropping: str | None = None   # the reason, while datagrams fail (logged)
        self.unlogged = 0
        self.next_log = -1e9
        self.reason = ""

    def __repr__(self) -> str:
        return "%s %s" % (self.kind, self.name)

    def fail(self, verb: str, e: BaseException, now: float) -> None:
        self.errors += 1
        reason = "%s: %s" % (verb, getattr(e, "strerror", None) or e)
        if self.failed is None:
            log.warning("medium %s %s failing: unable to %s; retrying every %gs",
                        self.kind, self.name, reason, self.retry)
        self.failed = reason
        self.next_try = now + self.retry
        self.close()
        Medium.changes += 1

    def ok(self) -> None:
        if self.failed is not None:
            log.info("medium %s %s working again", self.kind, self.name)
            self.failed = None

    def ensure(self, now: float) -> bool:
        """Open when closed (at most once per retry); True when usable."""
        if self.fileno() >= 0:
            return True
        if now < self.next_try:
            return False
        try:
            self.open()
        except (OSError, ValueError, wire.WireError) as e:
            self.fail("open", e, now)
            return False
        Medium.changes += 1
        return True

    def send(self, data: bytes, status: bool, now: float) -> bool:
        """Send data; False when it was not sent (counted and logged as above)."""
        if self.fileno() < 0 and not self.ensure(now):
            return False
        try:
            self.write(data, status)
        except OSError as e:
            if e.errno in DATAGRAM_ERRORS:
                self.drop(e, len(data), now)
            else:
                self.fail("send", e, now)
            return False
        self.sent += 1
        if self.failed is not None or self.dropping is not None or self.unlogged:
            self.recovered(now)
        return True

    def drop(self, e: OSError, size: int, now: float) -> None:
        """One datagram lost; the socket stays open."""
        self.lost += 1
        self.errors += 1
        self.reason = e.strerror or str(e)
        if e.errno == errno.EMSGSIZE:
            self.reason += " (%d bytes)" % size
        if self.dropping is None and not self.unlogged and now >= self.next_log:
            log.warning("medium %s %s failing: unable to send: %s; datagram lost, "
                        "trying the next one", self.kind, self.name, self.reason)
            self.dropping = self.reason
            self.next_log = now + SUMMARY
            self.refresh()
            return
        self.unlogged += 1
        self.summary(now)

    def summary(self, now: float) -> None:
        if self.unlogged and now >= self.next_log:
            log.warning("medium %s %s: %d more datagram(s) not sent in %gs (last: %s)",
                        self.kind, self.name, self.unlogged, SUMMARY, self.reason)
            self.unlogged = 0
            self.next_log = now + SUMMARY
            self.refresh()

    def recovered(self, now: float) -> None:
        if self.dropping is not None:
            log.info("medium %s %s working again", self.kind, self.name)
            self.dropping = None
        self.ok()
        self.summary(now)

    def refresh(self) -> None:
        """Re-derive what the socket sends to (an interface's address may change)."""

    def recv(self, now: float) -> list[bytes]:
        if self.fileno() < 0:
            return []
        try:
            return self.read()
        except OSError as e:
            if e.errno in DATAGRAM_ERRORS:
                return []
            self.fail("receive", e, now)
            return []

    # subclass interface
    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def read(self) -> list[bytes]:
        return []

    def write(self, data: bytes, status: bool) -> None:
        raise NotImplementedError

    def wants_write(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def timeout(self) -> float | None:
        return None


class Udp(Medium):
    """bcast / mcast / ucast (and mcast6 / ucast6) on one interface."""

    def __init__(self, m: Any) -> None:
        super().__init__(m.name)
        self.kind = m.kind
        self.dev = m.dev
        self.addr = m.addr
        self.port = m.port
        self.ttl = m.ttl
        self.loop = m.loop
        self.sock: socket.socket | None = None
        self.dest: tuple | None = None
        self.echoes = self.kind == "bcast" or (self.kind.startswith("mcast") and bool(self.loop))

    def open(self) -> None:
        v6 = self.kind.endswith("6") or ":" in self.addr
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dev.encode())
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.kind == "bcast":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
                self.dest = (if_broadcast(self.dev), self.port)
            elif self.kind.startswith("mcast"):
                self._join(s, v6)
            else:
                info = socket.getaddrinfo(self.addr, self.port, fam, socket.SOCK_DGRAM)
                self.dest = info[0][4]
                if not v6:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IP_TOS_LOWDELAY)
            s.bind(("::" if v6 else "", self.port))
        except BaseException:
            s.close()
            raise
        self.sock = s

    def _join(self, s: socket.socket, v6: bool) -> None:
        idx = socket.if_nametoindex(self.dev)
        if v6:
            mreq = socket.inet_pton(socket.AF_INET6, self.addr) + struct.pack("@I", idx)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.ttl)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, self.loop)
            self.dest = (self.addr, self.port, 0, idx)
            return
        mreqn = socket.inet_aton(self.addr) + socket.inet_aton("0.0.0.0") + struct.pack("@i", idx)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, self.loop)
        self.dest = (self.addr, self.port)

    def refresh(self) -> None:
        if self.kind == "bcast" and self.sock is not None:
            try:
                self.dest = (if_broadcast(self.dev), self.port)
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def read(self) -> list[bytes]:
        """One datagram per readiness: no EAGAIN exception to end a loop."""
        assert self.sock is not None
        return [self.sock.recv(wire.MAXDGRAM + 1)]

    def write(self, data: bytes, status: bool) -> None:
        assert self.sock is not None and self.dest is not None
        self.sock.sendto(data, self.dest)


def serial_waits(serials: list, wait: float) -> tuple[list[int], float]:
    """The serial ports with bytes to write, and wait shortened to their timeouts."""
    wl = []
    for m in serials:
        if m.wants_write():
            wl.append(m.fileno())
        if (t := m.timeout()) is not None and t < wait:
            wait = t
    return wl, wait


def wait_set(meds: list[Medium], fixed: list[int], now: float
             ) -> tuple[list[int], dict[int, Medium], float]:
    """The fds to wait on (fixed ones, then every medium open or opened now),
    the media by fd, and when the first closed one may be opened."""
    rl, byfd, next_open = list(fixed), {}, float("inf")
    for m in meds:
        if m.ensure(now):
            byfd[m.fileno()] = m
            rl.append(m.fileno())
        elif m.next_try < next_open:
            next_open = m.next_try
    return rl, byfd, next_open


def open_media(cfg: Any) -> list[Medium]:
    """Media objects for every ha.cf medium (opened lazily by ensure()), reopened
    min(RETRY, keepalive) after a failure."""
    out: list[Medium] = []
    if any(m.kind == "serial" for m in cfg.media):
        from hb.serial import Serial     # here: the serial code only for a serial medium
    for m in cfg.media:
        out.append(Serial(m, cfg.baud) if m.kind == "serial" else Udp(m))
        out[-1].retry = min(RETRY, cfg.keepalive)
    return out
