"""Sequencing of received messages: generations, replays, duplicates, gaps and
their retransmission (NS_rexmit), the history we resend from, and the high-water
marks kept across restarts (STATEDIR/highwater).  Pure: every call takes `now`.
"""

from __future__ import annotations

import re
from typing import Any

HISTORY = 500           # messages kept for NS_rexmit (Heartbeat's MAXMSGHIST)
MAX_GAP = 250           # a bigger gap is "lost a lot of packets": not asked for
REXMIT_DELAY = 0.25     # max_rexmit_delay: between requests for one seq
REXMIT_MIN = 0.05
REXMIT_TRIES = 8        # then the packet counts as lost
REXMIT_SPACING = 0.24   # a message is resent at most this often
REXMIT_MAX = 50         # messages resent per request
DUP_WINDOW = 2.0        # an already-accepted seq seen within this is a duplicate
NS_SLACK = 2            # s: an NS_ message this much older (ts) than the newest is stale
NS_KEEP = 256           # NS_ messages remembered per node, to drop their copies
NS_REPEAT = 0.2         # s: the same NS_ message through one medium is taken this often
MAX_GEN = 0xFFFFFFFF    # a generation is a 32-bit count (time() when first made)
MAX_SEQ = (1 << 48) - 1  # 89,000 years at 100 messages a second
HIGHWATER = "highwater"  # STATEDIR file: the high-water marks, kept across restarts
PERSIST_EVERY = 1.0     # s between writes of it (and at once on a new generation)


class _Peer:
    def __init__(self, gen: int = -1) -> None:
        self.gen = gen
        self.last = 0
        self.ts = 0                             # newest ts accepted in this generation
        self.restored = False                   # last came from the file: no gap to ask
        self.missing: dict[int, float] = {}     # seq -> due time
        self.tries: dict[int, int] = {}
        self.recent: dict[int, tuple[float, tuple[str, ...]]] = {}   # seq -> (t, media)
        self.ns: dict[bytes, tuple[int, float, tuple[str, ...]]] = {}  # token -> ts, at, media


class Sequencer:
    """Per-node generation and sequence tracking (Heartbeat §4.7).

    judge() says what to do with a sequenced message: 'ok' (newer than the
    node's high-water mark), 'late' (older, but fills a gap), 'dup' (accepted
    less than DUP_WINDOW ago, first copy through this medium), 'again' (another
    copy through a medium that carried it), 'replay' or 'unknown'; judge_ns()
    the same for NS_ messages, which have no seq.  Gaps become requests returned
    by due().  events collects log lines for the caller to emit.  The high-water
    marks (snapshot(), restore()) survive a restart of hb-beat.
    """

    def __init__(self, me: str, nodes: list[str], my_gen: int = -1,
                 rng=None) -> None:
        import random
        self.me = me
        self.nodes = set(nodes) | {me}
        self.peers: dict[str, _Peer] = {}
        self.rng = rng or random.random
        self.events: list[str] = []
        self.lost = 0                   # messages given up
        self.next_due = float("inf")
        self.dirty = False              # a high-water mark moved since snapshot()
        self.urgent = False             # a generation changed since snapshot()
        if my_gen >= 0:
            self.peers[me] = _Peer(gen=my_gen)

    def _new_gen(self, src: str, p: _Peer, gen: int) -> _Peer:
        if p.gen >= 0 and src != self.me:
            self.events.append("generation of %s went from %x to %x: restart"
                               % (src, p.gen, gen))
        self.peers[src] = p = _Peer(gen=gen)
        self.dirty = self.urgent = True
        return p

    def judge(self, src: str, gen: int, seq: int | None, now: float,
              ts: int = 0, via: str = "") -> str:
        if seq is None:
            return self.judge_ns(src, gen, ts, b"", now, via)
        if src not in self.nodes:
            return "unknown"
        p = self.peers.get(src)
        if p is None:
            p = self.peers[src] = _Peer()
        if gen < p.gen and not self._back(src, p, ts, "generation", p.gen, gen):
            return "replay"
        if gen != p.gen:
            p = self._new_gen(src, p, gen)
            p.last, p.ts = seq, ts
            p.recent[seq] = (now, (via,))
            return "ok"
        if seq <= p.last and seq not in p.missing and seq not in p.recent and \
                self._back(src, p, ts, "sequence", p.last, seq):
            p.last = seq - 1 if seq else 0
            p.restored = True                   # no gap to ask for
            p.missing.clear()
            p.tries.clear()
        if seq > p.last:
            if p.last and seq > p.last + 1 and src != self.me and not p.restored:
                self._gap(src, p, seq, now)
            p.last, p.restored, self.dirty = seq, False, True
            if ts > p.ts:
                p.ts = ts
            self._seen(p, seq, now, via)
            return "ok"
        if seq in p.missing:
            del p.missing[seq]
            p.tries.pop(seq, None)
            self._seen(p, seq, now, via)
            return "late"
        r = p.recent.get(seq)
        if r is not None and now - r[0] <= DUP_WINDOW:
            if via in r[1]:
                return "again"
            p.recent[seq] = (r[0], r[1] + (via,))
            return "dup"
        return "replay"

    def _back(self, src: str, p: _Peer, ts: int, what: str, old: int, new: int) -> bool:
        """A node's generation or sequence number went back: trusted only when the
        message is newer (ts) than every message accepted from it, which no replay
        can be; so a corrupt huge value poisons the mark until the node's next
        message, not for ever."""
        if src == self.me or not p.ts or ts <= p.ts:
            return False
        self.events.append("%s of %s went back from %x to %x in a newer message: taking it"
                           % (what, src, old, new))
        return True

    def judge_ns(self, src: str, gen: int, ts: int, token: bytes, now: float,
                 via: str = "") -> str:
        """An NS_ message (no seq): a lower generation or a ts more than NS_SLACK
        seconds older than the newest accepted from that node is a replay; the
        same message (its authenticator) is 'again' when it came through another
        medium less than DUP_WINDOW ago or this one less than NS_REPEAT ago (a
        request repeated later is accepted: Heartbeat repeats NS_rexmit unchanged
        within a second)."""
        if src not in self.nodes:
            return "unknown"
        p = self.peers.get(src)
        if p is None:
            p = self.peers[src] = _Peer()
        if gen < p.gen:
            return "replay"
        if gen > p.gen:
            p = self._new_gen(src, p, gen)
        elif ts + NS_SLACK < p.ts:
            return "replay"
        elif token and token in p.ns:
            _, at, vias = p.ns[token]
            if now - at < (NS_REPEAT if via in vias else DUP_WINDOW):
                if via not in vias:
                    p.ns[token] = (ts, at, vias + (via,))
                return "again"
        if ts > p.ts:
            p.ts = ts
            self.dirty = True
        if token:
            ns = p.ns
            ns.pop(token, None)
            ns[token] = (ts, now, (via,))
            if len(ns) > NS_KEEP:
                for k in [k for k, e in ns.items() if e[0] + NS_SLACK < p.ts]:
                    del ns[k]
                while len(ns) > NS_KEEP:
                    del ns[next(iter(ns))]
        return "ok"

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """node -> (generation, seq, ts) high-water marks of the other nodes."""
        self.dirty = self.urgent = False
        return {n: (p.gen, p.last, p.ts) for n, p in self.peers.items()
                if n != self.me and p.gen >= 0}

    def restore(self, marks: dict[str, tuple[int, int, int]]) -> None:
        """Take high-water marks saved by an earlier run (configured nodes only;
        what this run heard already wins)."""
        for n, (gen, seq, ts) in marks.items():
            if n == self.me or n not in self.nodes or n in self.peers:
                continue
            p = self.peers[n] = _Peer(gen=gen)
            p.last, p.ts, p.restored = seq, ts, True

    def _seen(self, p: _Peer, seq: int, now: float, via: str = "") -> None:
        p.recent[seq] = (now, (via,))
        if len(p.recent) > 2 * HISTORY:
            for k in list(p.recent)[:HISTORY]:
                del p.recent[k]

    def _gap(self, src: str, p: _Peer, seq: int, now: float) -> None:
        n = seq - p.last - 1
        self.events.append("%d lost packet(s) for %s [%d:%d]" % (n, src, p.last, seq))
        if n > MAX_GAP:
            self.events.append("lost a lot of packets from %s: not asking again" % src)
            p.missing.clear()
            p.tries.clear()
            return
        for s in range(p.last + 1, seq):
            t = now + REXMIT_MIN + self.rng() * (REXMIT_DELAY - REXMIT_MIN)
            p.missing[s] = t
            p.tries[s] = 0
            self.next_due = min(self.next_due, t)
        while len(p.missing) > HISTORY:
            s = next(iter(p.missing))
            del p.missing[s]
            p.tries.pop(s, None)

    def due(self, now: float) -> list[tuple[str, int]]:
        """(node, seq) pairs to request with NS_rexmit now."""
        if now < self.next_due:
            return []
        out = []
        nd = float("inf")
        for src, p in self.peers.items():
            for s, t in list(p.missing.items()):
                if t <= now:
                    p.tries[s] = p.tries.get(s, 0) + 1
                    if p.tries[s] > REXMIT_TRIES:
                        self.events.append("irretrievably lost packet %d from %s" % (s, src))
                        self.lost += 1
                        del p.missing[s]
                        del p.tries[s]
                        continue
                    out.append((src, s))
                    t = p.missing[s] = now + REXMIT_DELAY
                nd = min(nd, t)
        self.next_due = nd
        return out

    def nak(self, src: str, seq: int) -> bool:
        """The peer cannot resend seq: stop asking.  True if we were asking."""
        p = self.peers.get(src)
        if p is None or seq not in p.missing:
            return False
        del p.missing[seq]
        p.tries.pop(seq, None)
        self.lost += 1
        self.events.append("irretrievably lost packet %d from %s (%s)" % (seq, src, "nak"))
        return True

    def missing(self, src: str) -> list[int]:
        p = self.peers.get(src)
        return sorted(p.missing) if p else []


class History:
    """The last HISTORY sent sequenced messages, as their original bytes."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self.msgs: dict[int, list] = {}     # seq -> [bytes, last resent at]

    def add(self, seq: int, data: bytes) -> None:
        """Keep data as seq; seq - size goes (sequence numbers are consecutive)."""
        self.msgs[seq] = [data, -1e9]
        self.msgs.pop(seq - self.size, None)
        if len(self.msgs) > self.size:
            for s in sorted(self.msgs)[:len(self.msgs) - self.size]:
                del self.msgs[s]

    def request(self, first: int, last: int, now: float
                ) -> tuple[list[bytes], list[tuple[int, str]]]:
        """Answer NS_rexmit: (packets to resend, [(seq, reason)] to NAK)."""
        out: list[bytes] = []
        naks: list[tuple[int, str]] = []
        if last < first:
            return out, naks
        oldest = min(self.msgs) if self.msgs else 1 << 62
        for s in range(first, min(last, first + REXMIT_MAX - 1) + 1):
            m = self.msgs.get(s)
            if m is None:
                naks.append((s, "seqno too low" if s < oldest else "seqno not found"))
            elif now - m[1] >= REXMIT_SPACING:
                m[1] = now
                out.append(m[0])
        return out, naks


def rexmit_fields(dest: str, seq: int) -> list[tuple[str, str]]:
    """NS_rexmit asking dest for one message (Heartbeat writes these seqs in decimal)."""
    return [("t", "NS_rexmit"), ("dest", dest), ("firstseq", str(seq)), ("lastseq", str(seq))]


def nak_fields(dest: str, seq: int, why: str) -> list[tuple[str, str]]:
    """NS_nak_rexmit: seq (in hex, as Heartbeat) cannot be sent again."""
    return [("t", "NS_nak_rexmit"), ("firstseq", "%x" % seq), ("dest", dest), ("info", why)]


def rexmit_range(pkt: Any) -> tuple[int, int]:
    """(first, last) asked for by an NS_rexmit; (1, 0), an empty range, if malformed."""
    first = number(pkt.get("firstseq"), 10, MAX_SEQ)
    last = number(pkt.get("lastseq"), 10, MAX_SEQ) if "lastseq" in pkt else first
    return (first, last) if first >= 1 and last >= 0 else (1, 0)


def nak_seq(pkt: Any) -> int:
    return number(pkt.get("firstseq"), 16, MAX_SEQ)


_HEXNUM = re.compile(r"[0-9a-fA-F]{1,16}")
_DECNUM = re.compile(r"[0-9]{1,20}")


def number(v: str | None, base: int, limit: int) -> int:
    """A peer's number: ASCII digits only (no sign, space, '_' or other
    script's digits), at most 16 hex or 20 decimal digits, <= limit; else -1."""
    if v is None or (_HEXNUM if base == 16 else _DECNUM).fullmatch(v) is None:
        return -1
    n = int(v, base)
    return n if n <= limit else -1


def format_highwater(marks: dict[str, tuple[int, int, int]]) -> str:
    """STATEDIR/highwater: one line per node, 'NODE GEN SEQ TS' in hex."""
    return "# hb-beat high-water marks: node generation seq ts (hex)\n" + "".join(
        "%s %x %x %x\n" % (n, g, q, t) for n, (g, q, t) in sorted(marks.items()))


def parse_highwater(text: str) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    """The marks of format_highwater's text, and 'LINE: problem' for lines
    that are not (a line is skipped, never fatal).  A last line without its
    newline is a write cut short, its last number perhaps too: skipped."""
    marks: dict[str, tuple[int, int, int]] = {}
    bad = []
    for i, line in enumerate(text.splitlines(keepends=True)[:1000], 1):
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if len(w) == 4 and len(w[0]) <= 64 and line[-1] in "\r\n":
            g, q, t = (number(w[1], 16, MAX_GEN), number(w[2], 16, MAX_SEQ),
                       number(w[3], 16, (1 << 64) - 1))
            if min(g, q, t) >= 0:
                marks[w[0]] = (g, q, t)
                continue
        bad.append("%d: not 'NODE GEN SEQ TS' in hex%s: %.60r"
                   % (i, "" if line[-1] in "\r\n" else " and a newline", line.rstrip("\r\n")))
    return marks, bad
