"""The peer's message fields hb reads and writes: what each may hold, one parser and
one formatter per kind.  Pure.

A peer's field is checked before use (ASCII only: int() would take other scripts'
digits); a malformed one is ignored as a whole.  `grps=` and `stuck=` are lists of
group numbers ('none' when empty); `rsc_hold=` a class of groups relative to the
sender (none, local, foreign, all).
"""

from __future__ import annotations

import re
from typing import Iterable

from hb.settings import Group

HEX = re.compile(r"[0-9a-fA-F]{1,16}")
DEC = re.compile(r"[0-9]{1,4}")
IFACES = re.compile(r"[A-Za-z0-9_.:@-]{1,15}(,[A-Za-z0-9_.:@-]{1,15}){0,31}")
DIGEST = re.compile(r"[0-9a-f]{1,64}")
ST_WORDS = ("init", "up", "active", "dead", "ping")
HOLD_WORDS = ("none", "local", "foreign", "all")
DT_RANGE = (0.01, 86400.0)        # s: an advertised deadtime outside this is ignored


def hexint(s: str | None) -> int | None:
    """A hexadecimal field (generation, sequence, dt): at most 16 ASCII hex digits."""
    return int(s, 16) if s and HEX.fullmatch(s) else None


def decint(s: str | None) -> int | None:
    """A small decimal count (pings, pfresh): at most 4 ASCII digits."""
    return int(s) if s and DEC.fullmatch(s) else None


def parse_groups(s: str | None, known: Iterable[int]) -> set | None:
    """grps=/stuck=: 'none' or comma-separated group numbers of this haresources;
    None when malformed (the field is then ignored as a whole)."""
    if s is None or len(s) > 1024:
        return None
    if s in ("", "none"):
        return set()
    out = set()
    for x in s.split(","):
        if not DEC.fullmatch(x) or int(x) not in known:
            return None
        out.add(int(x))
    return out


def format_groups(groups: Iterable[int], empty: str = "none") -> str:
    """grps=/stuck=: the group numbers in order, comma-separated; `empty` if none."""
    return ",".join(map(str, sorted(groups))) or empty


def holds_from(rsc_hold: str, node: str, groups: list[Group]) -> set:
    """Groups meant by rsc_hold=none|local|foreign|all, relative to node."""
    return {g.index for g in groups
            if rsc_hold == "all" or (rsc_hold == "local" and g.node == node)
            or (rsc_hold == "foreign" and g.node != node)}


def hold_word(held: Iterable[int], node: str, groups: list[Group],
              claims: dict | None = None) -> str:
    """rsc_hold= for the groups held: a class (local, foreign) with no group in it
    counts as held when claimed, as Heartbeat tracks classes, not groups."""
    held = set(held)
    claims = claims or {}
    loc = any(g.index in held and g.node == node for g in groups) or (
        claims.get("local", False) and not any(g.node == node for g in groups))
    fgn = any(g.index in held and g.node != node for g in groups) or (
        claims.get("foreign", False) and not any(g.node != node for g in groups))
    return {(True, True): "all", (True, False): "local",
            (False, True): "foreign"}.get((loc, fgn), "none")
