"""Processes: the parent-death signal, realtime scheduling, memory locking, and
whether a pid file names a live process of a given name.  ctypes is imported only
by the calls that need it (not on hb's short paths)."""

from __future__ import annotations

import logging
import os
import signal

PR_SET_PDEATHSIG = 1
log = logging.getLogger("hb")


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
