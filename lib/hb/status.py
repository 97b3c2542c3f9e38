"""RUNDIR/status: one record per line, every field escaped; its reader and its typed view.

A record is a kind, positional words, then key=value words, separated by single
spaces; `last` and `why` end with free text.  Every word and value is
percent-encoded (esc): a space, '%', '=', a control or any non-ASCII character
becomes %XX of its UTF-8 bytes, so that no value — a peer's `st`, its interface
names, an agent's message — can end a record or forge another.  The free text
keeps its spaces (esc_text).  The reader (parse) splits on '\\n' and ' ' only and
undoes the encoding.

Pure (access.py reads it and sets its permissions): Owner.status_text writes
with record(), hb-switch and hb-watch --check read with parse().
"""

from __future__ import annotations

import collections
import re
from typing import Iterable

HISTORY = 8             # transitions kept per group: the `why` records
TRANSIENT = ("starting", "stopping", "probing")

_NOT_CAUSES = re.compile(r"link |ping node |group \d+: (starting|stopping) here$|.* (is )?"
                         r"(running|stopped|partly running) here$")
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7f)) - {"%", "="}


def esc(s: object, keep: str = "") -> str:
    """Percent-encode what could split or end a record (space, '%', '=', controls,
    non-ASCII); characters in keep pass (esc_text keeps spaces)."""
    s = str(s)
    if all(c in _SAFE or c in keep for c in s):
        return s
    return "".join(c if c in _SAFE or c in keep else
                   "".join("%%%02X" % b for b in c.encode("utf-8", "surrogatepass"))
                   for c in s)


def esc_text(s: object) -> str:
    return esc(s, keep=" ")


def unesc(s: str) -> str:
    """Undo esc; a '%' not followed by two hex digits stays as it is."""
    if "%" not in s:
        return s
    out, i, n = bytearray(), 0, len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 2 < n and _hex2(s[i + 1:i + 3]):
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out += c.encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "replace")


def _hex2(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def record(kind: str, /, *pos: object, text: str | None = None, **kv: object) -> str:
    """One line: kind, escaped positional words (an empty one written '-'), key=value
    (None values left out), then the free text."""
    words = [kind] + [esc(p) or "-" for p in pos]
    words += ["%s=%s" % (k, esc(v)) for k, v in kv.items() if v is not None]
    if text is not None:
        words.append(esc_text(text))
    return " ".join(words)


# ------------------------------------------------------------------ reading

FIXED = {"updated": ["time"], "self": ["name"], "node": ["name", "status"],
         "link": ["node", "medium", "status"], "ping": ["name", "status"],
         "group": ["index", "holder", "state"], "why": ["group", "time", "from", "to"],
         "last": ["time"]}
LISTS = ("node", "link", "ping", "group", "why")
TEXT = {"last", "why"}


def parse(text: str) -> dict:
    """status text -> {'updated': {...}, 'self': {...}, 'node': [...], 'link': [...],
    'ping': [...], 'group': [...], 'why': [...], 'last': {'time': float|None, 'text': str}}.

    Values are strings (unescaped) but last.time; unknown kinds and short lines are
    skipped, never raised on."""
    st: dict = {k: [] if k in LISTS else {} for k in FIXED}
    for line in text.split("\n"):
        words = [w for w in line.split(" ") if w]
        if not words or words[0] not in FIXED:
            continue
        kind, names = words[0], FIXED[words[0]]
        if kind in TEXT:
            head = line.split(" ", len(names) + 1)[1:]
            rec: dict = dict(zip(names, (unesc(w) for w in head[:len(names)])))
            rec["text"] = unesc(head[len(names)]) if len(head) > len(names) else ""
            if kind == "last":
                st["last"] = {"time": _float(rec.get("time")), "text": rec["text"]}
            elif len(rec) == len(names) + 1:
                st["why"].append(rec)
            continue
        if len(words) <= len(names) or any("=" in w for w in words[1:1 + len(names)]):
            continue                  # positional words never hold '=' (escaped)
        rec = {n: unesc(w) for n, w in zip(names, words[1:])}
        for w in words[1 + len(names):]:
            k, sep, v = w.partition("=")
            if sep and k not in rec:
                rec[unesc(k)] = unesc(v)
        if kind in LISTS:
            st[kind].append(rec)
        else:
            st[kind] = rec
    return st


def _float(s: str | None) -> float | None:
    try:
        return float(s) if s is not None else None
    except ValueError:
        return None


def _int(s: object) -> int | None:
    try:
        return int(str(s))
    except ValueError:
        return None


# ------------------------------------------------------------------ history

class History:
    """The last HISTORY transitions of each group: (monotonic time, from, to, reason).

    Leaving a transient state (starting, stopping, probing) for a settled one keeps
    the reason it was entered with: a group is running because of what started it."""

    def __init__(self, keep: int = HISTORY) -> None:
        self.keep = keep
        self.by_group: dict[int, collections.deque] = {}
        self.cause = ""

    def heard(self, text: str) -> None:
        """A notable event (Owner's `last`): the cause of the transitions that follow,
        unless it is a link's or a ping node's news, or a group's own progress."""
        if not _NOT_CAUSES.match(text):
            self.cause = text

    def note(self, group: int, now: float, old: str, new: str, reason: str = "") -> None:
        q = self.by_group.setdefault(group, collections.deque(maxlen=self.keep))
        reason = self.cause or reason
        if old in TRANSIENT and new != "failed" and q and q[-1][2] == old:
            reason = q[-1][3]
        q.append((now, old, new, reason))

    def items(self) -> Iterable[tuple[int, float, str, str, str]]:
        for i in sorted(self.by_group):
            for t, old, new, why in self.by_group[i]:
                yield i, t, old, new, why
