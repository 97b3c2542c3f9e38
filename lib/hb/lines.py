"""Message lines: hb-beat's stdout to hb-watch's stdin, and beat.fifo.  Pure.

One message per line, fields as name=value separated by single spaces; names and
values percent-encoded for '%', space, '=' and newline (and CR, TAB for safety).
Besides a message's own fields, hb-beat adds `_via` (the medium), `_rt` (when it
was received, CLOCK_MONOTONIC), `_self=1` (our own message), `_dup=1` (a link
heard only through a copy) and `_auth` (the message's auth field, for rc.d hooks).

One line of hb-beat's is not a message: `t=heard file=PATH slots=NODE/MEDIUM,...
token=HEX _via=local _rt=...` (no `_self`) offers RUNDIR/heard (hb.heard), whose
slots are in that order.  hb-watch answers on beat.fifo with `!heard TOKEN`; a
beat.fifo line starting with `!` is such a control line, never a message.  From
then on a status that only repeats the last one written out for its node and
medium (all fields but seq, ts, ld alike) within min(1.25 keepalive, warntime,
deadtime/2) of the one before gets no line: its time is in RUNDIR/heard.
"""

from __future__ import annotations

_ENC = {"%": "%25", " ": "%20", "=": "%3D", "\n": "%0A", "\r": "%0D", "\t": "%09"}
TABLE = str.maketrans(_ENC)


def quote(s: str) -> str:
    return s.translate(TABLE)


def unquote(s: str) -> str:
    if "%" not in s:
        return s
    out = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 3 <= n:
            h = s[i + 1:i + 3]
            try:
                out.append(chr(int(h, 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(c)
        i += 1
    return "".join(out)


def format_line(fields: dict[str, str]) -> str:
    """Render a message as one line (no trailing newline)."""
    t = TABLE
    return " ".join([k.translate(t) + "=" + str(v).translate(t) for k, v in fields.items()])


def parse_line(line: str) -> dict[str, str]:
    """Parse one message line; words without '=' are ignored."""
    words = line.rstrip("\r\n").split(" ")
    if "%" not in line:             # most lines: nothing to unquote
        return dict(w.split("=", 1) for w in words if "=" in w)
    out: dict[str, str] = {}
    for word in words:
        if "=" not in word:
            continue
        k, v = word.split("=", 1)
        if "%" in word:
            k, v = unquote(k), unquote(v)
        out[k] = v
    return out


def with_auth(line: str, auth: str | None) -> str:
    """A message line with `_auth=` (the message's auth field, for rc.d hooks'
    HA_auth); status lines go without (they are most of the traffic)."""
    if not auth:
        return line
    return "%s %s\n" % (line[:-1], format_line({"_auth": auth}))


def dup_every(deadtime: float) -> float:
    """How often hb-beat reports a link heard only through duplicates (another
    medium was faster): a link's last report may be this much older than its
    last packet, and hb-watch allows for it before calling the link dead."""
    return min(0.25, deadtime / 4)


def heard_offer(path: str, names: list[tuple[str, str]], token: str, now: float) -> str:
    """hb-beat's line offering RUNDIR/heard (see the module's doc)."""
    return "t=heard file=%s slots=%s token=%s _via=local _rt=%.6f\n" % (
        quote(path), quote(",".join("%s/%s" % nm for nm in names)), token, now)


def heard_slots(f: dict[str, str]) -> list[tuple[str, str]] | None:
    """The slots of an offer line's fields; None when it is not one."""
    if f.get("t") != "heard" or f.get("_via") != "local" or "_self" in f:
        return None
    out = []
    for w in (f.get("slots") or "").split(","):
        node, sep, medium = w.partition("/")
        if not (sep and node and medium):
            return None
        out.append((node, medium))
    return out or None
