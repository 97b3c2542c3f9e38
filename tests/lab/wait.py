"""Waiting on a condition with a deadline: the lab's only way to synchronise.

until() polls a predicate and fails naming what it waited for; steady() samples a
predicate for a while and fails at the first sample where it does not hold (the
"nothing happens for N seconds" checks); readline() and Lines read a child's
output with a deadline on every line.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from typing import IO, Callable


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


class Lines:
    """A child's output pipe read line by line in a thread, each line taken with a
    deadline: a child that stops writing fails the test instead of hanging it.  A
    line is read only when asked for, so the pipe can be read otherwise afterwards
    (communicate(), as before)."""

    def __init__(self, pipe: IO) -> None:
        self.pipe = pipe
        self.eof: "str | bytes" = "" if isinstance(pipe, io.TextIOBase) else b""
        self.asked: queue.Queue = queue.Queue()
        self.q: queue.Queue = queue.Queue()
        self.pending = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.asked.get()
            try:
                line = self.pipe.readline()
            except (OSError, ValueError):      # closed under us: the test is over
                line = self.eof
            self.q.put(line)
            if not line:
                return

    def next(self, timeout: float = 10) -> "str | bytes":
        """The next line ('' or b'' at end of file); AssertionError after timeout."""
        if not self.pending:
            self.asked.put(1)
            self.pending = True
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from the child in %gs" % timeout) from None
        self.pending = False
        if not line:
            self.q.put(line)                   # end of file stays end of file
            self.pending = True
        return line


_readers: dict[int, tuple[IO, Lines]] = {}


def readline(pipe: IO, timeout: float = 10) -> "str | bytes":
    """pipe.readline() with a deadline (through one Lines reader per pipe, so no line
    is lost between calls); '' or b'' at end of file."""
    got = _readers.get(id(pipe))
    if got is None or got[0] is not pipe:
        got = _readers[id(pipe)] = (pipe, Lines(pipe))
    return got[1].next(timeout)
