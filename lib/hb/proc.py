"""This process and its children: the parent-death signal, realtime scheduling,
memory locking.  Each is one system call; ctypes is imported only by the calls
that need it (not on hb's short paths)."""

from __future__ import annotations

import signal

PR_SET_PDEATHSIG = 1


def pdeathsig(sig: int = signal.SIGTERM) -> None:
    """In a child (Popen's preexec_fn): sig when the parent dies, even by SIGKILL."""
    import ctypes                 # lazy: only the respawned programs pay for it
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
