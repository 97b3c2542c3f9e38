"""This process: real-time scheduling, locked memory, the load average it
advertises, its signal pipe and its stdout pipe."""

from __future__ import annotations

import logging
import os
import select

from hb.lines import quote

log = logging.getLogger("hb")


def set_realtime(prio: int | None = None, lock: bool = True) -> None:
    """mlockall (with lock) + SCHED_RR at priority prio (ha.cf's rtprio; None:
    the lowest); one warning if refused."""
    why = []
    if lock:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.mlockall(3) != 0:     # MCL_CURRENT | MCL_FUTURE
                why.append("mlockall: %s" % os.strerror(ctypes.get_errno()))
        except OSError as e:
            why.append("mlockall: %s" % e)
    try:
        lo, hi = os.sched_get_priority_min(os.SCHED_RR), os.sched_get_priority_max(os.SCHED_RR)
        prio = lo if prio is None else max(lo, min(hi, prio))
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
    except OSError as e:
        why.append("SCHED_RR %s: %s" % (prio, e.strerror))
    if why:
        log.warning("realtime refused, running without it (%s)", "; ".join(why))


def lock_memory() -> None:
    """mlockall with MCL_ONFAULT: every page the beat path has touched or will touch
    stays in memory, but the mapped libraries are not read in whole (+5 MB RSS)."""
    import ctypes       # here: ctypes is not loaded unless realtime is on
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(7) != 0 and libc.mlockall(3) != 0:    # MCL_CURRENT|FUTURE|ONFAULT
        log.warning("realtime: mlockall refused: %s", os.strerror(ctypes.get_errno()))


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
        _LD[:3] = [ld, quote(ld.decode()), now]
    return _LD[0], _LD[1]
