"""The serial medium: Heartbeat's serial framing and pacing, the port's UUCP lock,
and the port itself (non-blocking, RTS/CTS).

Loaded only when ha.cf names a serial medium (media.open_media), as pyserial is.
The UUCP lock lives here, not with hb's own files (runfiles): it is the port's,
in /var/lock under the convention cu, minicom and Heartbeat share.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
import termios
import time
from typing import Any

from hb import runfiles
from hb.media import Medium
from hb.wire import MAXDGRAM

SERIAL_QUEUE = 8
LOCKDIR = "/var/lock"  # UUCP locks of serial ports, as Heartbeat, cu and minicom take them

log = logging.getLogger("hb")


SERIAL_FRAG = 512      # Heartbeat's serial writer: fragments of at most this many bytes


def frag_delay(baud: int) -> float:
    """Heartbeat's pause between two fragments of one message (serial.c:
    FRAGSIZE / (baud / 8) seconds, the division in integers): the time the
    line needs to carry one fragment; 213 ms at 19200 bps, 35.6 ms at 115200."""
    return SERIAL_FRAG / max(1, baud // 8)


def fragments(data: bytes) -> list[bytes]:
    """data as Heartbeat writes it: SERIAL_FRAG-byte pieces, the last one shorter."""
    return [data[i:i + SERIAL_FRAG] for i in range(0, len(data), SERIAL_FRAG)] or [b""]


class SerialFramer:
    """Cut a serial byte stream into classic frames, resynchronising on '>>>'.

    CRs are dropped (IGNCR) and the 8th bit stripped (ISTRIP), as Heartbeat's
    port settings do.  Garbage between frames is counted in self.garbage.
    """

    def __init__(self, limit: int = MAXDGRAM) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.garbage = 0
        self.infr = False
        self.scan = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frames in data (after what came before).  The buffer never
        holds more than limit bytes plus one read; a longer frame is garbage."""
        data = bytes(data).translate(_ISTRIP, b"\r")
        self.buf += data
        out: list[bytes] = []
        while True:
            if not self.infr:
                i = self.buf.find(b">>>\n")
                if i < 0:
                    keep = len(self.buf) - 3 if len(self.buf) > 3 else 0
                    self.garbage += keep
                    del self.buf[:keep]
                    return out
                if i:
                    self.garbage += i
                    del self.buf[:i]
                self.infr = True
                self.scan = 4
            j = self.buf.find(b"\n<<<\n", self.scan - 1)
            if j < 0 or j + 5 > self.limit:
                self.scan = max(4, len(self.buf) - 4)
                if len(self.buf) > self.limit:
                    self.garbage += len(self.buf)
                    self.buf.clear()
                    self.infr = False
                    return out
                if j < 0:
                    return out
            end = j + 5
            frame = bytes(self.buf[:end])
            del self.buf[:end]
            self.infr = False
            nxt = frame.rfind(b">>>\n", 1)
            if nxt > 0:                 # a frame cut short, then a new one (a value
                self.garbage += nxt     # ending in '>>>' cannot cross a serial link)
                frame = frame[nxt:]
            out.append(frame)


_ISTRIP = bytes(b & 0x7F for b in range(256))


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
        self.framer = SerialFramer(MAXDGRAM)
        self.cur = b""
        self.frag_left = 0                  # bytes of the current fragment not yet written
        self.next_frag = 0.0                # when the next fragment may be written
        self.pace = frag_delay(self.baud)
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
        self.framer = SerialFramer()
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
        goes out in SERIAL_FRAG-byte fragments with frag_delay() between
        two of them (a timer, not a sleep: the loop goes on meanwhile)."""
        if self.fd < 0:
            return
        try:
            while True:
                if not self.cur:
                    if not self.queue or self._outq() > 0:
                        return
                    self.cur = self.queue.pop(0)[0]
                    self.frag_left = min(SERIAL_FRAG, len(self.cur))
                if self.frag_left == 0:             # between two fragments
                    now = time.monotonic()
                    if now < self.next_frag:
                        return
                    self.frag_left = min(SERIAL_FRAG, len(self.cur))
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
