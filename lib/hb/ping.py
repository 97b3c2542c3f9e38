"""Ping nodes: ICMP echo (IPv4 and IPv6) every keepalive, replies as `t=ping` lines."""

from __future__ import annotations

import logging
import os
import socket
import struct

from hb.media import RETRY, Medium

log = logging.getLogger("hb")


def _icmp_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Pinger:
    """ICMP echo to every ping node (IPv4 and IPv6) every keepalive.

    Uses an unprivileged ICMP datagram socket where net.ipv4.ping_group_range
    allows it, else a raw socket.  recv() gives (NAME, ADDR) per reply, NAME
    being the ping node's address or its ping_group's name.
    """

    MAGIC = b"hb-ping!"

    def __init__(self, pings: list) -> None:
        self.pings = pings
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.socks: dict[int, tuple[socket.socket, bool]] = {}     # family -> (sock, raw)
        self.targets: list[tuple[str, str, int, tuple]] = []      # name, addr, family, sa
        self.byaddr: dict[str, list[str]] = {}
        self.failed: dict[str, str] = {}
        self.next_try = 0.0

    def _open(self, now: float) -> None:
        self.next_try = now + RETRY
        targets = []
        for p in self.pings:
            for a in p.addrs:
                try:
                    ai = socket.getaddrinfo(a, None, 0, socket.SOCK_RAW)[0]
                except OSError as e:
                    self._fail(a, "resolve", e)
                    continue
                targets.append((p.name, ai[4][0], ai[0], ai[4]))
        self.targets = targets
        self.byaddr = {}
        for name, addr, _, _ in targets:
            self.byaddr.setdefault(addr, []).append(name)
        for fam in {t[2] for t in targets} - set(self.socks):
            proto = socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6
            try:
                sock, raw = socket.socket(fam, socket.SOCK_DGRAM, proto), False
            except OSError:
                try:
                    sock, raw = socket.socket(fam, socket.SOCK_RAW, proto), True
                except OSError as e:
                    self._fail("IPv%d" % (4 if fam == socket.AF_INET else 6), "open", e)
                    continue
            sock.setblocking(False)
            self.socks[fam] = (sock, raw)
            Medium.changes += 1             # hb-beat waits on it from now on

    def _fail(self, what: str, verb: str, e: OSError) -> None:
        if what not in self.failed:
            log.warning("ping %s failing: unable to %s: %s", what, verb, e.strerror or e)
        self.failed[what] = verb

    def fds(self) -> list[int]:
        return [s.fileno() for s, _ in self.socks.values()]

    def ping(self, now: float) -> None:
        if (not self.targets or len(self.socks) < len({t[2] for t in self.targets})) \
                and now >= self.next_try:
            self._open(now)
        self.seq = (self.seq + 1) & 0xFFFF
        for name, addr, fam, sa in self.targets:
            if fam not in self.socks:
                continue
            sock, raw = self.socks[fam]
            typ = 8 if fam == socket.AF_INET else 128
            body = self.MAGIC + struct.pack("!d", now)
            hdr = struct.pack("!BBHHH", typ, 0, 0, self.ident, self.seq)
            if raw and fam == socket.AF_INET:
                hdr = struct.pack("!BBHHH", typ, 0, _icmp_sum(hdr + body), self.ident, self.seq)
            try:
                sock.sendto(hdr + body, sa)
                if self.failed.pop(addr, None):
                    log.info("ping %s working again", addr)
            except OSError as e:
                self._fail(addr, "send", e)

    def recv(self, fd: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for fam, (sock, raw) in self.socks.items():
            if sock.fileno() != fd:
                continue
            for _ in range(64):
                try:
                    data, sa = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if raw and fam == socket.AF_INET:
                    data = data[(data[0] & 0x0F) * 4:] if data else b""
                if len(data) < 8 + len(self.MAGIC) or data[8:8 + len(self.MAGIC)] != self.MAGIC:
                    continue
                if data[0] not in (0, 129) or (raw and data[4:6] != struct.pack(
                        "!H", self.ident)):
                    continue
                addr = sa[0].split("%")[0]
                for name in self.byaddr.get(addr, []):
                    out.append((name, addr))
        return out

    def close(self) -> None:
        for s, _ in self.socks.values():
            s.close()
        self.socks = {}
