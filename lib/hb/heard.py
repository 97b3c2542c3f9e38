"""RUNDIR/heard: when hb-beat last heard each node through each medium, shared with
hb-watch so that a status that only repeats the last one needs no line and no wake-up.

The file is hb-beat's, written in place through a shared mapping (no system call
per heartbeat); hb-watch maps it read-only and reads it when it wakes for its own
deadlines.  Layout (all little-endian):

    bytes 0-63     header, ASCII: "hb-heard 1 slots=N token=HEX\\n", NUL-padded
    then N slots   16 bytes each: float64 time, int64 count

`time` is the CLOCK_MONOTONIC second at which the slot's last status that got no
line was heard (0: never), `count` how many such statuses it has heard; hb-beat
stores the time first, the count second.  Each 8-byte value is aligned and
stored and loaded by one machine instruction: a reader never sees half of one.
Which slot is which node and medium is said in the line that offers the file
(see lines.heard_offer); the token ties that line, the file and hb-watch's answer
together.
"""

from __future__ import annotations

import mmap
import os

HEARD = "heard"             # in RUNDIR
HEADER = 64
SLOT = 16
MAGIC = b"hb-heard 1 "


def _header(n: int, token: str) -> bytes:
    text = b"%sslots=%d token=%s\n" % (MAGIC, n, token.encode())
    return text + b"\0" * (HEADER - len(text))


class Board:
    """hb-beat's side: a fresh file of len(names) zeroed slots, mapped shared."""

    def __init__(self, path: str, names: list[tuple[str, str]]) -> None:
        self.path, self.names = path, names
        self.token = os.urandom(8).hex()
        self.index = {k: i for i, k in enumerate(names)}
        size = HEADER + SLOT * len(names)
        tmp = "%s.%s" % (path, self.token)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        try:
            os.ftruncate(fd, size)
            os.pwrite(fd, _header(len(names), self.token), 0)
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        self.times = memoryview(self.map).cast("d")
        self.counts = memoryview(self.map).cast("q")

    def mark(self, i: int, now: float) -> None:
        """Slot i heard, at now, a status that gets no line."""
        k = (HEADER // 8) + 2 * i
        self.times[k] = now
        self.counts[k + 1] += 1

    def close(self) -> None:
        self.times.release()
        self.counts.release()
        self.map.close()


class Sheet:
    """hb-watch's side: the file hb-beat offered, mapped read-only, checked against
    the offer's token and slot count.  OSError or ValueError when it cannot be."""

    def __init__(self, path: str, token: str, n: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size != HEADER + SLOT * n:
                raise ValueError("%s: %d bytes, not %d" % (path, size, HEADER + SLOT * n))
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        if self.map[:HEADER] != _header(n, token):
            self.map.close()
            raise ValueError("%s: not the file offered (token %s)" % (path, token))
        self.n, self.token = n, token
        self.times = memoryview(self.map).cast("d")
        self.counts = memoryview(self.map).cast("q")

    def read(self, i: int) -> tuple[float, int]:
        """(time, count) of slot i."""
        k = (HEADER // 8) + 2 * i
        return self.times[k], self.counts[k + 1]

    def close(self) -> None:
        self.times.release()
        self.counts.release()
        self.map.close()
