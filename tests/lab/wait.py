"""Waiting on a condition with a deadline: the lab's only way to synchronise.

until() polls a predicate and fails naming what it waited for; steady() samples a
predicate for a while and fails at the first sample where it does not hold (the
"nothing happens for N seconds" checks).
"""

from __future__ import annotations

import time
from typing import Callable

What = "str | Callable[[], str]"


def _say(what) -> str:
    return what() if callable(what) else str(what)


def until(pred: Callable[[], object], timeout: float, what: "str | Callable[[], str]" = "",
          step: float = 0.02) -> float:
    """Poll pred until true; returns time.monotonic() then.  On timeout an
    AssertionError names `what` (a callable is called only then, so it can show the
    state at the timeout)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s"
                                 % (timeout, _say(what) or pred))
        time.sleep(step)
    return time.monotonic()


def wait_until(pred: Callable[[], object], timeout: float,
               what: "str | Callable[[], str]", step: float = 0.02) -> float:
    """until(), returning the seconds waited."""
    t0 = time.monotonic()
    until(pred, timeout, what, step)
    return time.monotonic() - t0


def steady(pred: Callable[[], object], seconds: float, what: "str | Callable[[], str]" = "",
           step: float = 0.05) -> None:
    """pred() holds at every sample for `seconds` (sampled every `step`)."""
    end = time.monotonic() + seconds
    while True:
        if not pred():
            raise AssertionError("no longer true after %.2fs of %gs: %s" % (
                seconds - (end - time.monotonic()), seconds, _say(what) or pred))
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(step, left))
