"""Processes: the parent-death signal, realtime scheduling, memory locking, whether
a pid file names a live process of a given name, and this process's load average
(advertised in `ld`), its signal pipe and its stdout pipe.  ctypes is imported only
by the calls that need it (not on hb's short paths)."""

from __future__ import annotations

import logging
import os
import select
import signal

from hb.lines import quote

PR_SET_PDEATHSIG = 1
log = logging.getLogger("hb")


HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}  # what hb-beat and hb-watch catch


def signals_ready() -> None:
    """The program's handlers for HANDLED are in: deliver those signals now.
    hb-supervise forks hb-beat and hb-watch with them blocked (daemons._child), so
    that a SIGTERM sent right after the fork (a stop just after a start or an
    upgrade) is neither lost to the supervisor's handlers nor fatal before the
    program can release its groups.  Nothing to do for a program exec'd by hand."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


def pdeathsig(sig: int = signal.SIGTERM) -> None:
    """In a child (Popen's preexec_fn): sig when the parent dies, even by SIGKILL."""
    import ctypes                 # lazy: only the respawned programs pay for it
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def set_realtime(prio: int | None = None) -> None:
    """SCHED_RR at priority prio (ha.cf's rtprio; None: the lowest); one warning if
    refused.  Memory is locked by lock_memory."""
    try:
        lo, hi = os.sched_get_priority_min(os.SCHED_RR), os.sched_get_priority_max(os.SCHED_RR)
        prio = lo if prio is None else max(lo, min(hi, prio))
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
    except OSError as e:
        log.warning("realtime refused, running without it (SCHED_RR %s: %s)", prio, e.strerror)


def lock_memory() -> None:
    """mlockall with MCL_ONFAULT: every page the beat path has touched or will touch
    stays in memory, but the mapped libraries are not read in whole (+5 MB RSS)."""
    import ctypes                 # lazy: only a realtime daemon pays for it
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(7) != 0 and libc.mlockall(3) != 0:    # MCL_CURRENT|FUTURE|ONFAULT
        log.warning("realtime: mlockall refused: %s", os.strerror(ctypes.get_errno()))


def runs(pidfile: str, name: str) -> bool:
    """PIDFILE names a live process called NAME (/proc/PID/comm): Heartbeat's master
    control process, for one, in /var/run/heartbeat.pid."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() == name
    except (OSError, ValueError, IndexError):
        return False


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
