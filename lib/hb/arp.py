"""Frames on the link: gratuitous ARP, unsolicited neighbour advertisements,
duplicate address probes, and asking a neighbour for its address.

Frame building, the announcement schedule (Heartbeat's send_arp counts and
spacing) and the reading of received frames are pure.  Frames go through
AF_PACKET sockets kept open for the life of the process (closing one costs
~10 ms), one sending socket per interface and one filtered receiving socket
per interface and protocol.  Nothing here knows of netlink: the caller says
when to stop repeating.  Nothing happens at import time.
"""

from __future__ import annotations

import _thread
import select
import socket
import struct
import time
from collections.abc import Callable

from hb.addrspec import AF_INET, AF_INET6, Spec

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
PACKET_OUTGOING = 4
NBR_TIMEOUT = 1.0       # s a neighbour check waits in all
NBR_TRIES = 3           # requests sent within it
NOBODY = "no gateway or ping node in the subnet to ask"


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


def tx_socket(iface: str) -> socket.socket:
    """The sending socket of iface (by name and index: a re-created one gets a new
    one), opened on first use and kept open."""
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
    return tx_socket(iface).getsockname()[4][:6]


def _send(iface: str, frames: list[bytes]) -> None:
    s = tx_socket(iface)
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
    stop() is false (the caller's: its address no longer held, or a newer takeover);
    the caller sent plan[0] at t0.  How many sent."""
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
        if stop():
            break
        if not send_announcement(spec, iface, kind):
            break
        sent += 1
    return sent


# -- did the neighbours move? -------------------------------------------------------

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
