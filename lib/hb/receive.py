"""hb-beat's receive path: the verdict on every datagram.  Pure.

Size first, then the authenticator over the raw bytes (found without parsing the
fields: one HMAC at most, only for a well-formed authenticator naming a known key),
then the fields (wire.parse) and the sequence (sequence.Sequencer).  Every drop is
counted under exactly one reason of DROPS.
"""

from __future__ import annotations

import re

from hb.sequence import MAX_GEN, MAX_SEQ, Sequencer, number
from hb.wire import (AUTH_FIELD, CLASSIC_START, MAXDGRAM, NS_END, NS_START, Packet, WireError,
                     check_token, parse)

_TRAILER = re.compile(rb"([0-9]{1,3}):(([0-9]{1,2}) ([0-9a-f]{1,128})),")
_UNSIGNED = re.compile(rb"^(?:auth=[^\n]*)?\n", re.M)    # auth and empty lines
_FIRST_AUTH = re.compile(rb"^auth=([^\n]*)\n", re.M)


def classic_signed(data: bytes) -> tuple[bytes, bytes] | None:
    """(S, auth value) of a classic frame without parsing its fields: S is every
    line between >>> and the first <<< line but empty and auth= ones (the bytes
    Heartbeat signs, for any frame whose fields parse), the auth value that of
    the first auth= line (b"" when none).  None when the frame has no end."""
    if data[-1:] == b"\0":
        data = data[:-1]
    end = data.find(b"\n<<<\n", 3)
    if end < 0:
        if data[-4:] != b"\n<<<" or len(data) < 7:
            return None
        end = len(data) - 4
    body = data[4:end + 1]
    k = body.rfind(b"\n", 0, len(body) - 1) + 1       # the last line: auth, as sent
    if body.startswith(b"auth=", k) and body.find(b"\nauth", 0, k) < 0 \
            and not body.startswith(b"auth", 0, k) and b"\n\n" not in body \
            and body[:1] != b"\n":
        return body[:k], body[k + 5:-1]
    m = _FIRST_AUTH.search(body)                    # anything else: the general rule
    return _UNSIGNED.sub(b"", body), m[1] if m else b""


def netstring_signed(data: bytes) -> tuple[bytes, bytes] | None:
    """(B, trailer) of a netstring frame without walking its items: B runs
    through the last %%%% line, the trailer is what follows (b"" when nothing).
    None when there is no such line."""
    k = data.rfind(NS_END)
    if k < 0:
        return None
    return data[:k + 4], data[k + 4:]


def authenticate(data: bytes, keys: dict[int, tuple[str, bytes]]) -> str:
    """Judge raw bytes before anything is parsed: 'ok', 'toobig' (over
    MAXDGRAM), 'garbage' (neither framing, or no end) or 'auth' (no or a
    malformed authenticator, an unknown key number, a wrong token).  Costs at
    most one HMAC over the frame, and only when its authenticator is well-formed
    and names a known key; never raises."""
    return _authenticate(data, keys)[0]


def _authenticate(data: bytes, keys: dict[int, tuple[str, bytes]]) -> tuple[str, bytes]:
    """authenticate(), and the token that matched."""
    if len(data) > MAXDGRAM:
        return "toobig", b""
    if data[:4] == CLASSIC_START:
        cs = classic_signed(data)
        if cs is None:
            return "garbage", b""
        signed, auth = cs
        m = AUTH_FIELD.fullmatch(auth)
        if m is None:
            return "auth", b""
        num, token = m[1], m[2]
    elif data[:4] == NS_START:
        ns = netstring_signed(data)
        if ns is None:
            return "garbage", b""
        signed, tr = ns
        m = _TRAILER.fullmatch(tr)
        if m is None or int(m[1]) != len(m[2]):
            return "auth", b""
        num, token = m[3], m[4]
    else:
        return "garbage", b""
    try:
        return ("ok", token) if check_token(keys, int(num), signed, token) else ("auth", b"")
    except (WireError, ValueError, TypeError):
        return "auth", b""


COUNTERS = ("received", "accepted", "garbage", "auth", "unknown", "replay", "dup",
            "notforus", "rexmit_asked", "rexmit_sent", "nak_sent", "lost", "unsent",
            "toobig", "malformed", "stale")
DROPS = ("garbage", "auth", "unknown", "replay", "dup", "toobig", "malformed", "stale")


class Receiver:
    """Verdict on every received datagram: size, authentication (before any
    parsing), then fields and sequence.  receive() never raises: whatever the
    bytes, the datagram is accepted or counted under one reason of DROPS."""

    def __init__(self, me: str, nodes: list[str], keys: dict[int, tuple[str, bytes]],
                 my_gen: int = -1, rng=None) -> None:
        self.me = me
        self.keys = keys
        self.seq = Sequencer(me, nodes, my_gen, rng)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.error: str | None = None       # the first unexpected exception (a bug)

    def own(self, seq: int, now: float) -> str:
        """A message we sent ourselves heard back (its bytes known): sequence only."""
        self.counts["received"] += 1
        v = self.seq.judge(self.me, self.seq.peers[self.me].gen, seq, now)
        self.counts[_COUNTER[v]] += 1
        return v

    def receive(self, data: bytes, now: float, via: str = "") -> tuple[str, Packet | None]:
        """(verdict, packet): 'ok' and 'late' (a gap filled) are accepted; 'dup'
        (first copy through this medium, packet given for a link notice),
        'again', 'replay', 'stale' (a status that fills a gap: superseded),
        'unknown', 'malformed', 'auth', 'garbage', 'toobig' are dropped."""
        c = self.counts
        c["received"] += 1
        try:
            v, pkt = self._judge(data, now, via)
        except Exception as e:          # a bug: counted, never a dead daemon
            if self.error is None:
                self.error = "%s: %s" % (type(e).__name__, e)
            v, pkt = "malformed", None
        c[_COUNTER[v]] += 1
        return v, pkt

    def _judge(self, data: bytes, now: float, via: str) -> tuple[str, Packet | None]:
        if not isinstance(data, bytes):
            data = bytes(data)
        v, token = _authenticate(data, self.keys)
        if v != "ok":
            return v, None
        try:                            # authentic: worth parsing
            pkt = parse(data)
        except WireError:
            return "malformed", None
        if pkt.framing == "netstring" and len(pkt.signed) != data.rfind(NS_END) + 4:
            return "malformed", None    # the signed bytes are not the message's
        f = pkt.text()
        t, src = f.get("t") or "", (f.get("src") or "").lower()
        ts = number(f.get("ts"), 16, (1 << 64) - 1)
        if not t or not src or len(t) > 64 or len(src) > 64 or ts <= 0:
            return "malformed", None
        hg = f.get("hg")
        gen = number(hg, 16, MAX_GEN) if hg is not None else 0
        ttl = f.get("ttl")
        if gen < 0 or (ttl is not None and number(ttl, 10, 255) < 0):
            return "malformed", None
        if t.startswith("NS_"):
            v = self.seq.judge_ns(src, gen, ts, token, now, via)
        else:
            seq = number(f.get("seq"), 16, MAX_SEQ)
            if seq < 0:
                return "malformed", None
            v = self.seq.judge(src, gen, seq, now, ts, via)
            if v == "late" and t == "status":
                v = "stale"             # a newer status was accepted: not news
        return v, pkt if v in ("ok", "late", "dup") else None


_COUNTER = {"ok": "accepted", "late": "accepted", "dup": "dup", "again": "dup",
            "replay": "replay", "stale": "stale", "unknown": "unknown",
            "malformed": "malformed", "auth": "auth", "garbage": "garbage",
            "toobig": "toobig"}
