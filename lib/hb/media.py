"""Heartbeat media: serial, bcast, mcast, ucast (UDP on udpport) and ping;
the generation counter and real-time set-up of the hb-beat process.

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
import os
import select
import socket
import stat
import struct
import termios
import time
from typing import Any

from hb import runfiles, wire

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
SERIAL_QUEUE = 8
LOCKDIR = "/var/lock"  # UUCP locks of serial ports, as Heartbeat, cu and minicom take them

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


LOCK_GRACE = 30.0   # s: a live process may hold a lock this long before opening its port


def uucp_lock(dev: str, lockdir: str | None = None) -> str | None:
    """Take the UUCP lock of a serial device: LOCKDIR/LCK..NAME (NAME the device
    below /dev, `/` as `_`: LCK..ttyS0) holding our PID in ten columns, made
    whole by link(2) from a temp file created O_EXCL|O_NOFOLLOW under a random name
    (LOCKDIR is world-writable).  A lock found there is honoured (OSError EBUSY)
    only when lock_in_use() says so; otherwise it is removed and taken over.
    None when LOCKDIR cannot be written (not root, no such directory): the port
    is used without a lock."""
    real = os.path.realpath(dev)
    name = real[5:] if real.startswith("/dev/") else os.path.basename(real)
    lockdir = lockdir or LOCKDIR
    path = os.path.join(lockdir, "LCK.." + name.replace("/", "_"))
    me = os.getpid()
    try:
        fd, tmp = runfiles.create_excl(lockdir, "LTMP.", 0o644)
    except OSError:
        return None
    try:
        try:
            os.write(fd, b"%10d\n" % me)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        for _ in range(3):
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                pid = lock_owner(path)
                if pid == me:
                    return path
                why = lock_in_use(path, real)
                if why:
                    raise OSError(errno.EBUSY, "%s is locked by %s (%s)"
                                  % (dev, why, path)) from None
                try:
                    os.unlink(path)             # stale or forged: see lock_in_use
                except FileNotFoundError:
                    pass
                log.warning("%s: removed the UUCP lock %s (%s)", dev, path,
                            "its process is gone" if pid is None or pid <= 0
                            or not runfiles.pid_alive(pid)
                            else "process %d does not use the port" % pid)
        raise OSError(errno.EBUSY, "%s: cannot take %s" % (dev, path))
    finally:
        os.unlink(tmp)


def lock_in_use(path: str, dev: str, now: float | None = None) -> str | None:
    """Whether a UUCP lock found at path is honoured: the holder (\"process N\") or None.

    A lock is honoured only if it is a regular file naming a live process, and
      - that process has the device open (as cu, minicom or Heartbeat do), or
      - it is younger than LOCK_GRACE (its process may be about to open the port)
        and written by root, uucp or that process's own user.
    A symlink, fifo or unreadable lock, a lock naming no live process, one written by
    a user other than root and the named process's (e.g. a lock naming PID 1 left by
    anyone in the world-writable lock directory), and an old lock whose process does
    not use the port (a PID reused after a reboot) are stale: they are taken over."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    pid = lock_owner(path)
    if pid is None or pid <= 0 or not runfiles.pid_alive(pid):
        return None
    if _has_open(pid, dev):
        return "process %d" % pid
    try:
        uid = os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None
    if st.st_uid not in (0, uid, _uucp_uid()):
        return None
    now = time.time() if now is None else now
    if now - st.st_mtime < LOCK_GRACE:
        return "process %d" % pid
    return None


def _uucp_uid() -> int:
    """The uucp user's uid (setuid cu writes its locks as uucp), or 0."""
    import pwd
    try:
        return pwd.getpwnam("uucp").pw_uid
    except KeyError:
        return 0


def _has_open(pid: int, dev: str) -> bool:
    """pid has dev open (by /proc/PID/fd; True when that cannot be read: not ours)."""
    try:
        want = os.stat(dev)
    except OSError:
        want = None
    d = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(d)
    except PermissionError:
        return True
    except OSError:
        return False
    for fd in fds:
        try:
            if want is not None:
                st = os.stat(os.path.join(d, fd))
                if st.st_rdev == want.st_rdev and stat.S_ISCHR(st.st_mode) \
                        and st.st_rdev != 0:
                    return True
            elif os.readlink(os.path.join(d, fd)) == dev:
                return True
        except OSError:
            continue
    return False


def lock_owner(path: str) -> int | None:
    """The PID in a UUCP lock file (ASCII, as written by everyone since HDB UUCP);
    None when there is none, -1 when it cannot be read.  Never follows a symlink nor
    blocks on a fifo planted there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return -1
        text = os.read(fd, 64).strip()
    except OSError:
        return -1
    finally:
        os.close(fd)
    return int(text) if text.isdigit() and len(text) <= 10 else None


def uucp_unlock(path: str | None) -> None:
    if path is not None and lock_owner(path) == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass


class Serial(Medium):
    """A serial port: classic frames, RTS/CTS, never a backlog.

    Writes go through a short queue; a new status replaces a status that has
    not started yet, and nothing new is started while the kernel still holds
    bytes of the previous message (TIOCOUTQ), so a slow or dead port sends the
    newest status only and never delays anything else.
    """

    kind = "serial"

    def __init__(self, m: Any, baud: int) -> None:
        super().__init__(m.name)
        self.dev = m.dev
        self.baud = m.baud or baud
        self.port: Any = None
        self.fd = -1
        self.framer = wire.SerialFramer(wire.MAXDGRAM)
        self.cur = b""
        self.frag_left = 0                  # bytes of the current fragment not yet written
        self.next_frag = 0.0                # when the next fragment may be written
        self.pace = wire.frag_delay(self.baud)
        self.queue: list[tuple[bytes, bool]] = []
        self.dropped = 0
        self.lock: str | None = None

    def open(self) -> None:
        import serial      # pyserial: only when a serial medium exists
        self.lock = uucp_lock(self.dev)
        try:
            p = serial.Serial(self.dev, self.baud, bytesize=8, parity="N", stopbits=1,
                              rtscts=True, timeout=0, write_timeout=0, exclusive=True)
        except serial.SerialException as e:
            uucp_unlock(self.lock)
            self.lock = None
            raise OSError(errno.EIO, str(e)) from None
        self.port = p
        self.fd = p.fileno()
        os.set_blocking(self.fd, False)
        self.framer = wire.SerialFramer()
        self.cur = b""
        self.frag_left = 0

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:
                pass
        uucp_unlock(self.lock)
        self.port, self.lock = None, None
        self.fd = -1

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[bytes]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            raise OSError(errno.EIO, "end of file")
        return self.framer.feed(data)

    def write(self, data: bytes, status: bool) -> None:
        if status:
            n = len(self.queue)
            self.queue = [q for q in self.queue if not q[1]]
            self.dropped += n - len(self.queue)
        self.queue.append((data, status))
        if len(self.queue) > SERIAL_QUEUE:
            self.queue.pop(0)
            self.dropped += 1
        self.flush()

    def _outq(self) -> int:
        buf = fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0")
        return struct.unpack("@i", buf)[0]

    def flush(self) -> None:
        """Write what the port takes now, without blocking: as Heartbeat, a message
        goes out in wire.SERIAL_FRAG-byte fragments with wire.frag_delay() between
        two of them (a timer, not a sleep: the loop goes on meanwhile)."""
        if self.fd < 0:
            return
        try:
            while True:
                if not self.cur:
                    if not self.queue or self._outq() > 0:
                        return
                    self.cur = self.queue.pop(0)[0]
                    self.frag_left = min(wire.SERIAL_FRAG, len(self.cur))
                if self.frag_left == 0:             # between two fragments
                    now = time.monotonic()
                    if now < self.next_frag:
                        return
                    self.frag_left = min(wire.SERIAL_FRAG, len(self.cur))
                n = os.write(self.fd, self.cur[:self.frag_left])
                self.cur = self.cur[n:]
                self.frag_left -= n
                if self.frag_left:
                    return                          # the kernel is full: when writable
                if self.cur:
                    self.next_frag = time.monotonic() + self.pace
                    return
        except BlockingIOError:
            return
        except OSError as e:
            self.fail("write", e, time.monotonic())

    def wants_write(self) -> bool:
        return bool(self.cur) and self.frag_left > 0

    def timeout(self) -> float | None:
        if self.cur and not self.frag_left:         # the pause between fragments
            return max(0.001, self.next_frag - time.monotonic())
        return 0.02 if (self.queue and not self.cur) else None


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


def pipe_closed(fd: int) -> bool:
    """True when fd is a pipe whose reader went away."""
    p = select.poll()
    p.register(fd, 0)
    return any(ev & select.POLLERR for _, ev in p.poll(0))


def drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


_LD: list = [b"", "", -1e9, -1]        # raw, quoted, read at, fd kept open


def loadavg(now: float) -> tuple[bytes, str]:
    """The first line of /proc/loadavg (read at most once a second, by one
    pread on a descriptor kept open), raw and quoted."""
    if now - _LD[2] >= 1.0:
        try:
            if _LD[3] < 0:
                _LD[3] = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
            ld = os.pread(_LD[3], 128, 0).split(b"\n", 1)[0].strip()
        except OSError:
            ld = b"0.00 0.00 0.00 0/0 0"
        _LD[:3] = [ld, wire.format_line({"": ld.decode()})[1:], now]
    return _LD[0], _LD[1]


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
    for m in cfg.media:
        out.append(Serial(m, cfg.baud) if m.kind == "serial" else Udp(m))
        out[-1].retry = min(RETRY, cfg.keepalive)
    return out


# -- the process: generation counter, real-time scheduling --------------------

def heartbeat_generation(statedir: str) -> str:
    """Heartbeat's counter beside STATEDIR: /var/lib/heartbeat/hb_generation for the
    default /var/lib/hb."""
    return os.path.join(os.path.dirname(os.path.normpath(statedir)), "heartbeat",
                        "hb_generation")


def _read_generation(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and len(text) <= 15 else None


def _write_generation(path: str, gen: int) -> None:
    """Heartbeat's format (15-wide decimal and a newline), temp + rename, fsync'd."""
    d = os.path.dirname(path)
    tmp = os.path.join(d, ".%s.%d.new" % (os.path.basename(path), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, b"%15d\n" % gen)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def next_generation(statedir: str) -> tuple[int, str | None]:
    """Increment and return the generation, one more than the higher of hb's own
    (STATEDIR/generation) and Heartbeat's (heartbeat_generation()), so that a node
    moving from Heartbeat to hb or back is never a replay to its peer.  Heartbeat's
    file is kept current when its directory exists; a failure to write it is returned
    as a message (hb's own must be written: an OSError)."""
    own = os.path.join(statedir, "generation")
    theirs = heartbeat_generation(statedir)
    known = [g for g in (_read_generation(own), _read_generation(theirs)) if g is not None]
    gen = max(known) + 1 if known else int(time.time())
    os.makedirs(statedir, exist_ok=True)
    _write_generation(own, gen)
    if not os.path.isdir(os.path.dirname(theirs)):
        return gen, None
    try:
        _write_generation(theirs, gen)
    except OSError as e:
        return gen, "%s: %s" % (theirs, e.strerror or e)
    return gen, None


def load_highwater(statedir: str) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    """STATEDIR/highwater (wire.format_highwater's lines), and its problems:
    missing is empty, unreadable or bad lines are skipped (said), never fatal."""
    path = os.path.join(statedir, wire.HIGHWATER)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return {}, []
    except OSError as e:
        return {}, ["%s: %s" % (path, e.strerror or e)]
    marks, bad = wire.parse_highwater(data.decode("utf-8", "replace"))
    return marks, ["%s:%s" % (path, b) for b in bad]


def save_highwater(statedir: str, marks: dict[str, tuple[int, int, int]]) -> None:
    """Write STATEDIR/highwater (0600) with runfiles.write_atomic: a temp file of our
    own, renamed into place; not fsync'd (hb-beat writes it every second and must
    not wait for a disk).  OSError when it cannot be written."""
    runfiles.write_atomic(os.path.join(statedir, wire.HIGHWATER),
                          wire.format_highwater(marks), 0o600)
