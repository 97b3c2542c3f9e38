"""Command-line parsing shared by the commands: the docopt usage is the synopsis.

A usage error is one line on stderr (what was wrong, then where help is) and
exits.USAGE; -h/--help prints the docopt text, -V/--version the program and
hb's version (hb.__version__, the one place), each exiting 0.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from hb import __version__, exits


def version(prog: str) -> str:
    return "%s %s" % (prog, __version__)


def _prog(doc: str) -> str:
    return doc.split(":", 1)[0].strip()


def usage_error(doc: str, argv: list[str]) -> str:
    """One line: what in argv the usage does not accept."""
    from docopt import (AnyOptions, Argument, DocoptExit, Option, TokenStream, formal_usage,
                        parse_argv, parse_defaults, printable_usage, parse_pattern)
    usage = printable_usage(doc)
    options = parse_defaults(doc)
    pattern = parse_pattern(formal_usage(usage), options)
    try:
        parsed = parse_argv(TokenStream(list(argv), DocoptExit), list(options), False)
    except DocoptExit as e:
        return _first(str(e)) or "bad command line"
    known = {o.name for o in options} | {o.name for o in pattern.flat(Option)}
    for o in parsed:
        if isinstance(o, Option) and o.name not in known:
            return "unknown option %s" % o.name
    for ao in pattern.flat(AnyOptions):
        ao.children = list(set(options) - set(pattern.flat(Option)))
    matched, left, _ = pattern.fix().match(parsed)
    if matched and left:
        w = left[0]
        if isinstance(w, Option):
            return "option %s is not allowed here" % w.name
        return "unexpected argument %r" % w.value
    words = [w.value for w in parsed if isinstance(w, Argument)]
    lines = [_slots(line) for line in usage.splitlines()[1:]]
    for k, w in enumerate(words):
        allowed = set().union(*(s[k] for s in lines if len(s) > k and all(
            words[j] in s[j] for j in range(k))))
        if not allowed:
            break
        if w not in allowed:
            return "unknown command %r%s (one of: %s)" % (
                w, " after %r" % " ".join(words[:k]) if k else "", ", ".join(sorted(allowed)))
    k = len(words)
    fits = [s for s in lines if len(s) >= k and all(words[j] in s[j] for j in range(k))]
    if k == 0:                  # the -h/--version line aside, when there are commands
        fits = [s for s in fits if s] or fits
    if fits and all(len(s) > k for s in fits):
        return "missing command%s (one of: %s)" % (
            " after %r" % " ".join(words) if words else "",
            ", ".join(sorted(set().union(*(s[k] for s in fits)))))
    return "missing or bad arguments after %r" % " ".join(argv) if argv else \
        "missing arguments"


def _slots(line: str) -> list[set[str]]:
    """The command words a usage line starts with, one set per position:
    'prog cl_status (hbstatus|rscstatus) [-r R]' -> [{'cl_status'}, {'hbstatus', 'rscstatus'}]."""
    out = []
    for tok in line.split()[1:]:
        names = tok.strip("()").split("|")
        if not all(re.fullmatch(r"[a-z][a-z0-9_-]*", n) for n in names):
            break
        out.append(set(names))
    return out


def _first(text: str) -> str:
    """docopt's own message (its first line), without the usage that follows."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return "" if line.lower().startswith("usage:") else line


def parse(doc: str, argv: list[str] | None) -> dict[str, Any] | int:
    """docopt's arguments; or, having printed what is due, exits.OK (--help,
    --version) or exits.USAGE (one line on stderr)."""
    from docopt import DocoptExit, docopt
    argv = sys.argv[1:] if argv is None else argv
    prog = _prog(doc)
    try:
        args = docopt(doc, argv=argv, help=False)
    except DocoptExit:
        sys.stderr.write("%s: %s (try '%s --help')\n" % (prog, usage_error(doc, argv), prog))
        return exits.USAGE
    if args.get("--help"):
        sys.stdout.write(doc.strip("\n") + "\n")
        return exits.OK
    if args.get("--version"):
        sys.stdout.write(version(prog) + "\n")
        return exits.OK
    return args
