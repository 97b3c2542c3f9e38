"""Heartbeat messages: codec, authentication, and hb's message lines.  Pure.

Message lines (hb-beat stdout -> hb-watch stdin, and beat.fifo): one message per
line, fields as name=value separated by single spaces, values percent-encoded
for '%', space, '=' and newline (and CR, TAB for safety).
"""

from __future__ import annotations

_ENC = {"%": "%25", " ": "%20", "=": "%3D", "\n": "%0A", "\r": "%0D", "\t": "%09"}


def _quote(s: str) -> str:
    if not any(c in s for c in _ENC):
        return s
    return "".join(_ENC.get(c, c) for c in s)


def _unquote(s: str) -> str:
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
    return " ".join("%s=%s" % (_quote(k), _quote(str(v))) for k, v in fields.items())


def parse_line(line: str) -> dict[str, str]:
    """Parse one message line; words without '=' are ignored."""
    out: dict[str, str] = {}
    for word in line.strip().split(" "):
        if "=" not in word:
            continue
        k, v = word.split("=", 1)
        out[_unquote(k)] = _unquote(v)
    return out
