"""Files under the run and state directories: atomic writes, key=value files,
fifos; who wrote RUNDIR/state; the generation counter and the high-water marks
of STATEDIR.

Readers never lock: every file another process reads is written whole to a
temp file in the same directory and renamed over the old one.  A temp file has an
unpredictable name and is created O_CREAT|O_EXCL|O_NOFOLLOW, so that nothing planted
in the directory (a symlink, a file of the same name) is followed or written through.
A write that fails (disk full, read-only file system) is an OSError for the caller;
Files keeps the newest text of each such file and writes it again later, so a daemon
logs the failure and goes on.  A fifo has one reader, which also holds it open for
writing so that it never sees EOF.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import time

from hb import sequence

RUNDIR = "/var/run/hb"
CONFDIR = "/etc/ha.d"
VARDIR = "/var/lib/hb"

STATUS = "status"
STATUS_EVERY = 5.0  # s: hb-watch rewrites STATUS on every change and at least this often
STATE = "state"
BEAT_FIFO = "beat.fifo"
WATCH_FIFO = "watch.fifo"
PEER_STUCK = "peer-stuck"  # in STATEDIR: node=PEER, stuck=N,N... or none

PIPE_BUF = 4096


class NotRunning(Exception):
    """No process has the fifo open for reading."""


def pid_alive(pid: int) -> bool:
    """A process with this PID exists (signal 0; one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def token_hex(n: int) -> str:
    """secrets.token_hex, without importing secrets (hmac, hashlib and OpenSSL's
    libcrypto with it: megabytes of RSS in every daemon)."""
    return os.urandom(n).hex()


def create_excl(directory: str, prefix: str, mode: int = 0o600) -> tuple[int, str]:
    """A new file directory/PREFIX<random>: (fd, path), created O_CREAT|O_EXCL|O_NOFOLLOW,
    so that a name planted in a shared directory (symlink, file) is never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(8):
        path = os.path.join(directory, prefix + token_hex(8))
        try:
            return os.open(path, flags, mode), path
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "cannot create a temporary file", directory)


def write_atomic(path: str, text: str | bytes, mode: int = 0o644) -> None:
    """Write text to path via a new temp file in the same directory, then rename.

    Raises OSError (the temp file removed) when it cannot: the old file stays whole."""
    d, base = os.path.split(path)
    fd, tmp = create_excl(d or ".", ".%s.new." % base, mode)
    try:
        try:
            data = text.encode() if isinstance(text, str) else text
            while data:
                n = os.write(fd, data)
                data = data[n:]
            os.fchmod(fd, mode)            # not the umask's: what the caller asked
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_in_place(path: str, text: str) -> bool:
    """A full file system has no room for a temp file, but the state file's own block
    is there: overwrite it in one write, padded with blank lines to its old length
    (readers skip them), so that the heartbeats do not keep advertising an old state."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        data = text.encode()
        size = os.fstat(fd).st_size
        if len(data) > max(size, PIPE_BUF):
            return False
        data += b"\n" * (size - len(data))
        if os.pwrite(fd, data, 0) != len(data):
            return False
        if len(data) > size:
            os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class Files:
    """Files others read, written by one daemon that must outlive a failed write.

    write() returns True when the file now holds the text; on an OSError it logs
    once (ERROR, with the reason), keeps the text and returns False; retry(),
    called from the daemon's loop, writes what is owed again (newest text only)
    at most every `every` seconds, and logs when it succeeds again."""

    def __init__(self, log: logging.Logger, every: float = 1.0,
                 clock=time.monotonic) -> None:
        self.log, self.every, self.clock = log, every, clock
        self.owed: dict[str, tuple[str | bytes, int]] = {}
        self.failing: dict[str, str] = {}          # path -> the error last logged
        self.due = 0.0

    def write(self, path: str, text: str | bytes, mode: int = 0o644) -> bool:
        try:
            write_atomic(path, text, mode)
        except OSError as e:
            self.owed[path] = (text, mode)
            why = e.strerror or str(e)
            if self.failing.get(path) != why:
                self.log.error("cannot write %s: %s; trying again every %g s",
                               path, why, self.every)
                self.failing[path] = why
            if self.due <= self.clock():
                self.due = self.clock() + self.every
            return False
        self.owed.pop(path, None)
        if self.failing.pop(path, None) is not None:
            self.log.warning("%s written again", path)
        return True

    def next_due(self) -> float | None:
        """When retry() has work (monotonic seconds), or None."""
        return self.due if self.owed else None

    def retry(self) -> bool:
        """Write again what is owed if due; True when nothing is owed any more."""
        if not self.owed:
            return True
        if self.clock() < self.due:
            return False
        self.due = self.clock() + self.every
        for path, (text, mode) in list(self.owed.items()):
            self.write(path, text, mode)
        return not self.owed


def open_owned(path: str, flags: int, mode: int = 0o600) -> int:
    """Open (or create) a file of our own, never through a symlink; OSError(EPERM)
    when it belongs to another user or is not a regular file (a planted name)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, "not a regular file of uid %d" % os.geteuid(), path)
    return fd


def read_text(path: str) -> str | None:
    """The whole file, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def parse_kv(text: str) -> dict[str, str]:
    """name=value lines to a dict; blank lines and '#' comments skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def format_kv(fields: dict[str, str]) -> str:
    return "".join("%s=%s\n" % (k, v) for k, v in fields.items())


def read_kv(path: str) -> dict[str, str]:
    text = read_text(path)
    return parse_kv(text) if text is not None else {}


def read_peer_stuck(path: str, peer: str | None) -> list[int]:
    """The groups STATEDIR/peer-stuck says PEER may still run (none when the file
    names another node)."""
    kv = read_kv(path)
    if peer is None or kv.get("node") != peer:
        return []
    return [int(x) for x in kv.get("stuck", "").split(",") if x.isdigit() and len(x) < 6]


def make_fifo(path: str, mode: int = 0o600) -> None:
    """Create a fifo at path unless one of ours is already there (OSError when the
    name is taken by anything else, or by another user's fifo)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, mode)
        return
    if not stat.S_ISFIFO(st.st_mode):
        raise OSError(errno.EEXIST, "not a fifo", path)
    if st.st_uid != os.geteuid():
        raise OSError(errno.EPERM, "a fifo of uid %d, not ours" % st.st_uid, path)


def open_fifo_reader(path: str) -> tuple[int, int]:
    """Open fifo for non-blocking reading; also hold a write end so no EOF.

    Returns (read_fd, keep_fd); the caller closes both when done.
    """
    make_fifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    return rfd, wfd


def fifo_send(path: str, line: str) -> None:
    """Write one request line to a fifo; NotRunning when nobody reads it."""
    data = (line.rstrip("\n") + "\n").encode()
    if len(data) > PIPE_BUF:
        raise ValueError("request longer than PIPE_BUF")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotRunning(path) from None
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise NotRunning(path) from None
        raise
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class FifoWriter:
    """Lines to a fifo whose reader may be away (restarting): kept in order until it
    reads them, each dropped with an error logged `keep` seconds after it was sent."""

    def __init__(self, path: str, reader: str, log: logging.Logger, keep: float = 5.0) -> None:
        self.path, self.reader, self.log, self.keep = path, reader, log, keep
        self.fd: int | None = None
        self.pending: list[tuple[float, bytes]] = []

    def send(self, line: str, now: float) -> None:
        self.pending.append((now + self.keep, (line + "\n").encode()))
        self.flush(now)

    def flush(self, now: float) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                if e.errno not in (errno.ENXIO, errno.ENOENT):
                    self.log.error("cannot open %s: %s", os.path.basename(self.path),
                                   e.strerror)
        while self.pending and self.fd is not None:
            try:
                os.write(self.fd, self.pending[0][1])
                self.pending.pop(0)
            except BlockingIOError:
                break
            except OSError:
                os.close(self.fd)
                self.fd = None
        while self.pending and self.pending[0][0] < now:
            self.log.error("%s is not reading %s: message lost: %s", self.reader,
                           os.path.basename(self.path), self.pending.pop(0)[1].decode().strip())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LineReader:
    """Split bytes read from a non-blocking fd into complete text lines."""

    def __init__(self, fd: int, limit: int = 65536) -> None:
        self.fd = fd
        self.buf = b""
        self.limit = limit
        self.eof = False

    def read(self) -> list[str]:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            self.eof = True
            return []
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        if len(self.buf) > self.limit:
            self.buf = b""
        return [ln.decode("utf-8", "replace") for ln in lines]


# -- who wrote RUNDIR/state -------------------------------------------------------

def proc_start(pid: int) -> str | None:
    """The start time of process pid (clock ticks after boot, /proc/PID/stat field
    22); None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return rest[19].decode() if len(rest) > 19 else None


_WRITER: list[str] = []


def writer_id() -> str:
    """PID:STARTTIME of this process: who wrote RUNDIR/state (`watch=`)."""
    if not _WRITER:
        _WRITER.append("%d:%s" % (os.getpid(), proc_start(os.getpid()) or "0"))
    return _WRITER[0]


def writer_alive(ident: str | None) -> bool | None:
    """Is the process that wrote RUNDIR/state (its `watch=`) still running?  None when
    the file does not say (written by hand, or by an older hb-watch)."""
    if not ident or ":" not in ident:
        return None
    pid, _, start = ident.partition(":")
    if not pid.isdigit():
        return None
    return proc_start(int(pid)) == start


class StateReader:
    """RUNDIR/state as hb-beat reads it every beat: read again only when replaced or
    changed, stat'ed relative to RUNDIR (held open), not by its whole path; and
    whether the hb-watch that wrote it (`watch=PID:START`) still runs."""

    def __init__(self, rundir: str) -> None:
        self.rundir = rundir
        self.dirfd = -1
        self.key: tuple = ()
        self.fields: dict[str, str] = {}
        self.writer: str | None = None     # its writer (watch=PID:START)
        self.writer_ok = True              # ... still running
        self.pidfd = -1                    # of that writer, once judged running

    def read(self) -> tuple[dict[str, str], bool]:
        """(fields, gone): the same dict while the file does not change; gone is True
        once, when the file's writer is found no longer running (writer_ok)."""
        try:
            if self.dirfd < 0:
                self.dirfd = os.open(self.rundir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            st = os.stat(STATE, dir_fd=self.dirfd)
            key: tuple = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = ()
            if self.dirfd >= 0:             # RUNDIR may have been replaced
                os.close(self.dirfd)
                self.dirfd = -1
        if key != self.key:
            self.key = key
            self.fields = read_kv(os.path.join(self.rundir, STATE)) if key else {}
            if self.fields.get("watch") != self.writer:
                self._forget()
            self.writer = self.fields.get("watch")
            self.writer_ok = True
        gone = False
        if self.writer is not None and self.writer_ok and not self._alive():
            self.writer_ok, gone = False, True
        return self.fields, gone

    def _alive(self) -> bool:
        """writer_alive() once for a new writer, then one poll of a pidfd of it a
        beat (readable once it exits), not an open and read of /proc/PID/stat."""
        if self.pidfd < 0:
            if not writer_alive(self.writer):
                return False
            try:
                self.pidfd = os.pidfd_open(int((self.writer or "").partition(":")[0]))
            except (OSError, ValueError, AttributeError):
                return True             # judged by writer_alive() again next time
            if not writer_alive(self.writer):    # the PID taken again meanwhile
                self._forget()
                return False
            return True
        return not select.select([self.pidfd], [], [], 0)[0]

    def _forget(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


# -- STATEDIR: the generation counter, the high-water marks -----------------------

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
    """STATEDIR/highwater (sequence.format_highwater's lines), and its problems:
    missing is empty, unreadable or bad lines are skipped (said), never fatal."""
    path = os.path.join(statedir, sequence.HIGHWATER)
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
    marks, bad = sequence.parse_highwater(data.decode("utf-8", "replace"))
    return marks, ["%s:%s" % (path, b) for b in bad]


def save_highwater(statedir: str, marks: dict[str, tuple[int, int, int]]) -> None:
    """Write STATEDIR/highwater (0600) once, with write_atomic (a temp file of our
    own, renamed into place).  OSError when it cannot be written.  hb-beat, which
    writes it every second, keeps a Highwater instead."""
    write_atomic(os.path.join(statedir, sequence.HIGHWATER),
                 sequence.format_highwater(marks), 0o600)


RECORD = 128        # Highwater's file is a whole number of these bytes
SECTOR = 512        # no line of it crosses a multiple of this: a torn write mixes lines


def highwater_bytes(marks: dict[str, tuple[int, int, int]]) -> bytes:
    """sequence.format_highwater's text laid out for writing in place: a line that
    would cross a SECTOR boundary starts at it instead (blank padding before it),
    and the whole is padded with spaces and a newline to a multiple of RECORD."""
    out = b""
    for line in sequence.format_highwater(marks).encode().splitlines(keepends=True):
        room = SECTOR - len(out) % SECTOR
        if len(line) > room and len(line) <= SECTOR:
            out += b" " * (room - 1) + b"\n"
        out += line
    size = -(-len(out) // RECORD) * RECORD
    if len(out) < size:
        out += b" " * (size - len(out) - 1) + b"\n"
    return out


class Highwater:
    """STATEDIR/highwater as hb-beat keeps it: the first write (and the first after
    a failure, or after the name stopped being our file) creates it as
    write_atomic does, 0600, and keeps that file open; each later write is one
    pwrite of highwater_bytes() over it in place (the file is cut only when it
    shrinks by a RECORD): one lstat and one pwrite a second instead of a temp
    file's six calls.  Never fsync'd: a power cut may leave the old text, the new,
    a mix of their lines (no line crosses a sector) or zeros, whose bad lines
    load_highwater skips.  Only the next hb-beat reads the file, so no reader
    sees a write half done."""

    def __init__(self, statedir: str) -> None:
        self.path = os.path.join(statedir, sequence.HIGHWATER)
        self.fd = -1
        self.ident: tuple[int, int] = (0, 0)    # (st_dev, st_ino) of the file we hold
        self.size = 0

    def save(self, marks: dict[str, tuple[int, int, int]]) -> None:
        """Write the marks; OSError when they could not be (tried afresh next time)."""
        data = highwater_bytes(marks)
        if self.fd >= 0:
            try:
                st = os.lstat(self.path)
                same = (st.st_dev, st.st_ino) == self.ident
            except OSError:
                same = False
            if not same:
                self.close()                # removed or replaced: made again
            else:
                try:
                    if os.pwrite(self.fd, data, 0) != len(data):
                        raise OSError(errno.ENOSPC, "short write", self.path)
                    if len(data) < self.size:
                        os.ftruncate(self.fd, len(data))
                    self.size = len(data)
                    return
                except OSError:
                    self.close()
                    raise
        self._create(data)

    def _create(self, data: bytes) -> None:
        d, base = os.path.split(self.path)
        fd, tmp = create_excl(d or ".", ".%s.new." % base, 0o600)
        try:
            n = os.write(fd, data)
            if n != len(data):
                raise OSError(errno.ENOSPC, "short write", tmp)
            os.fchmod(fd, 0o600)            # not the umask's
            st = os.fstat(fd)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.fd, self.ident, self.size = fd, (st.st_dev, st.st_ino), len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
