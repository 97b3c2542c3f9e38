"""bench/failover: unplanned and planned failover of hb and its peers, side by side.

Usage:
  failover [--reps N] [--idle SECONDS] [--only NAMES] [--merge] [--no-write]

Options:
  --reps N          repetitions of each failure per case [default: 10]
  --idle SECONDS    idle time over which RSS and CPU are measured [default: 15]
  --only NAMES      comma-separated systems: hb,keepalived,ucarp,heartbeat
  --merge           keep the newest result's cases of the systems not run now
  --no-write        print the table only (no bench/results, no docs)
"""

from __future__ import annotations

from typing import Callable

from docopt import docopt

import report
from measure import log, run_case
from pair import Pair
import lab  # after pair, which puts tests/ on the path
from systems import Heartbeat, Keepalived, System, Ucarp

CASES: list[tuple[str, Callable[[Pair], System]]] = [
    ("keepalived", lambda p: Keepalived(p, 1.0)),
    ("keepalived", lambda p: Keepalived(p, 0.05)),
    ("keepalived", lambda p: Keepalived(p, 0.02)),
    ("keepalived", lambda p: Keepalived(p, 0.01)),
    ("ucarp", lambda p: Ucarp(p, 1, 3)),
    ("ucarp", lambda p: Ucarp(p, 1, 1)),
    ("heartbeat", lambda p: Heartbeat(p, 0.2, 1.0)),
    ("heartbeat", lambda p: Heartbeat(p, 0.01, 0.05)),
]


def cases() -> list[tuple[str, Callable[[Pair], System]]]:
    out = []
    try:
        from systems import Hb
    except ImportError:
        Hb = None
    if Hb is not None and Hb.available():
        out += [("hb", lambda p: Hb(p, 0.2, 1.0)), ("hb", lambda p: Hb(p, 0.01, 0.04)),
                ("hb", lambda p: Hb(p, 0.01, 0.05))]
    return out + CASES


def main(argv: list[str] | None = None) -> int:
    args = docopt(__doc__, argv)
    lab.compiled_tree()
    reps = int(args["--reps"])
    idle = float(args["--idle"])
    only = set(args["--only"].split(",")) if args["--only"] else None
    results = []
    for name, make in cases():
        if only and name not in only:
            continue
        r = run_case(make, reps, idle)
        log("%s %s: power %s planned %s rss %d kB cpu %.3f s/min failed %s"
            % (r.system, r.label, r.stats("power"), r.stats("planned"), r.rss_kb,
               r.cpu_s_min, r.failed))
        results.append(r.as_dict())
    old, ran = None, set()
    if args["--merge"]:
        old = report.newest("failover")
        if old:
            ran = {r["system"] for r in results}
            results = [c for c in old["cases"] if c["system"] not in ran] + results
            order = [name for name, _ in cases()]
            results.sort(key=lambda c: order.index(c["system"]) if c["system"] in order
                         else len(order))
    text = report.table(report.FAILOVER_HEAD, report.failover_rows(results))
    ratios = report.ratios(results)
    text += "\n" + "".join("\n" + x for x in ratios)
    print(text)
    if not args["--no-write"]:
        data = {"machine": report.machine(), "reps": reps, "idle_s": idle, "cases": results}
        if args["--merge"] and old:
            data["merged"] = "cases of %s kept from %s (%s)" % (
                ", ".join(sorted({c["system"] for c in old["cases"]} - ran)), old["_file"],
                old["machine"]["date"])
        txt, _ = report.write("failover", text, data)
        print("wrote", txt)
        print(report.goals())
    return 0
