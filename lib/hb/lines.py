"""Message lines: hb-beat's stdout to hb-watch's stdin, and beat.fifo.  Pure.

One message per line, fields as name=value separated by single spaces; names and
values percent-encoded for '%', space, '=' and newline (and CR, TAB for safety).
Besides a message's own fields, hb-beat adds `_via` (the medium), `_rt` (when it
was received, CLOCK_MONOTONIC), `_self=1` (our own message), `_dup=1` (a link
heard only through a copy) and `_auth` (the message's auth field, for rc.d hooks).
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
