"""Heartbeat's message FIFO (/var/lib/heartbeat/fifo): messages as shellfuncs'
ha_clustermsg writes them, a line `>>>`, name=value lines, a line `<<<`.  Pure:
hb-beat reads the bytes and sends each message as its own.
"""

from __future__ import annotations

import re

# FIFO limits: a message larger than this, or with more fields, is dropped.
FIFO_MAX_LINE = 4096
FIFO_MAX_FIELDS = 64
FIELD_NAME = re.compile(r"[A-Za-z0-9_.+-][A-Za-z0-9_.+()-]*")


class FifoParser:
    """Heartbeat's FIFO: blocks `>>>` / name=value lines / `<<<`.  Bounded: a line
    longer than FIFO_MAX_LINE, a message with more than FIFO_MAX_FIELDS fields, a
    bad line inside a block or text outside one drops what it spoils, with a
    reason; never an exception."""

    def __init__(self) -> None:
        self.buf = b""
        self.fields: list[tuple[str, str]] | None = None   # inside a block
        self.bad: str | None = None                          # the block is spoilt
        self.skipping = False                                # in an over-long line

    def feed(self, data: bytes) -> tuple[list[list[tuple[str, str]]], list[str]]:
        """(complete messages, problems) for the bytes read."""
        msgs: list[list[tuple[str, str]]] = []
        probs: list[str] = []
        self.buf += data
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > FIFO_MAX_LINE:
                    self.buf = b""
                    if not self.skipping:
                        self.skipping = True
                        self._spoil("line longer than %d bytes" % FIFO_MAX_LINE, probs)
                break
            raw, self.buf = self.buf[:i], self.buf[i + 1:]
            if self.skipping:           # the end of an over-long line
                self.skipping = False
                continue
            if len(raw) > FIFO_MAX_LINE:
                self._spoil("line longer than %d bytes" % FIFO_MAX_LINE, probs)
                continue
            self._line(raw.rstrip(b"\r"), msgs, probs)
        return msgs, probs

    def _spoil(self, why: str, probs: list[str]) -> None:
        if self.fields is not None:
            if self.bad is None:
                self.bad = why
        else:
            probs.append("text outside a message: %s" % why)

    def _line(self, raw: bytes, msgs: list, probs: list[str]) -> None:
        if raw == b">>>":
            if self.fields is not None:
                probs.append("message dropped: %s" % (self.bad or "no <<< before the next >>>"))
            self.fields, self.bad = [], None
            return
        if raw == b"<<<":
            if self.fields is None:
                probs.append("<<< outside a message: ignored")
            elif self.bad is not None:
                probs.append("message dropped: %s" % self.bad)
            elif not any(k == "t" and v for k, v in self.fields):
                probs.append("message dropped: no t= field")
            else:
                msgs.append(self.fields)
            self.fields, self.bad = None, None
            return
        if self.fields is None:
            if raw.strip():
                probs.append("text outside a message: %r" % raw[:80])
            return
        if self.bad is not None:
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad = "a line is not UTF-8"
            return
        name, eq, value = line.partition("=")
        if not eq or not FIELD_NAME.fullmatch(name):
            self.bad = "bad line %r" % line[:80]
        elif any(c in value for c in "\0\r\x13"):
            self.bad = "field %s: value not representable" % name
        elif len(self.fields) >= FIFO_MAX_FIELDS:
            self.bad = "more than %d fields" % FIFO_MAX_FIELDS
        else:
            self.fields.append((name, value))
