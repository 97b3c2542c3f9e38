"""Files under the run directory: atomic writes, key=value files, fifos.

Readers never lock: every file another process reads is written whole to a
temp file in the same directory and renamed over the old one.  A fifo has one
reader, which also holds it open for writing so that it never sees EOF.
"""

from __future__ import annotations

import errno
import os
import stat

RUNDIR = "/var/run/hb"
CONFDIR = "/etc/ha.d"
VARDIR = "/var/lib/hb"

STATUS = "status"
STATUS_EVERY = 5.0  # s: hb-watch rewrites STATUS on every change and at least this often
STATE = "state"
BEAT_FIFO = "beat.fifo"
WATCH_FIFO = "watch.fifo"

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


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write text to path via a temp file in the same directory and rename."""
    tmp = "%s.new.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        data = text.encode()
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)
    os.rename(tmp, path)


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


def make_fifo(path: str, mode: int = 0o600) -> None:
    """Create a fifo at path unless one is already there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, mode)
        return
    if not stat.S_ISFIFO(st.st_mode):
        raise OSError(errno.EEXIST, "not a fifo", path)


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
