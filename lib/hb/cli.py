"""Command-line parsing shared by the commands: the docopt usage is the synopsis."""

from __future__ import annotations

import sys
from typing import Any

from hb import exits


def parse(doc: str, argv: list[str] | None) -> dict[str, Any] | int:
    """docopt's arguments, or exits.USAGE after saying the usage on stderr."""
    from docopt import DocoptExit, docopt
    try:
        return docopt(doc, argv=sys.argv[1:] if argv is None else argv)
    except DocoptExit as e:
        sys.stderr.write("%s\n" % e)
        return exits.USAGE
