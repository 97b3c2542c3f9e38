"""bench/load: false failovers with both cores saturated, and the fastest stable setting.

Usage:
  load [--minutes M] [--step-minutes S] [--confirm-minutes C] [--reps N] [--no-search]
       [--no-write]

Options:
  --minutes M          saturation per main run (hb realtime on/off, keepalived) [default: 2]
  --step-minutes S     saturation per step of the search [default: 1]
  --confirm-minutes C  saturation confirming the search's answer; 0: unconfirmed
                       [default: 10]
  --reps N             power losses measured at each fastest stable setting [default: 5]
  --no-search          only the main runs (the newest result's search is kept)
  --no-write           print only (no bench/results, no docs)

Load: `stress-ng --cpu 2 --io 2 --vm 1 --vm-bytes 256M` (both cores busy, sync()
storms, page faults) while a pair idles at keepalive 100 ms / deadtime 500 ms.
A false failover is the backup declaring the live active node dead (hb:
`node X: dead`) or becoming master (keepalived: `Entering MASTER STATE`).  The
search halves keepalive and deadtime (keepalived: advert_int) until a false
failover appears; the fastest setting before it is then run again under the
same load for --confirm-minutes.  A false failover there steps back to the next
slower setting of the search, which is confirmed in turn (at most 2 step-backs).
The confirmed setting is the fastest stable one, whose power-loss interruption
is then measured unloaded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from docopt import docopt

import report
from measure import log, run_case
from pair import Pair
import lab  # after pair, which puts tests/ on the path
from systems import Hb, Keepalived, System

EVENTS = {"hb": r"node \w+: dead", "keepalived": r"Entering MASTER STATE"}
# Both cores busy (cpu), sync() storms (io), page faults (vm: 256 MiB, a small
# share of the machine's memory, so the pair is never short of it).
STRESSORS = ["--cpu", "2", "--io", "2", "--vm", "1", "--vm-bytes", "256M"]
STEP_BACKS = 2      # slower settings confirmed after a failed confirmation


def stress(seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["stress-ng", *STRESSORS, "--timeout",
                             "%ds" % max(1, round(seconds)), "--quiet"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def trial(make, seconds: float, tries: int = 2) -> tuple[str, int, list[str]]:
    """Run the pair idle under saturation; (label, false failovers, their log lines).
    A pair that does not come up is tried again once."""
    for i in range(tries):
        try:
            return _trial(make, seconds)
        except (TimeoutError, AssertionError) as e:
            log("load: the pair did not come up (%s)%s" % (str(e).splitlines()[0],
                                                           "; again" if i + 1 < tries else ""))
            if i + 1 == tries:
                raise
    raise AssertionError("unreachable")


def _trial(make, seconds: float) -> tuple[str, int, list[str]]:
    pair = Pair("bl")
    system: System = make(pair)
    load = None
    try:
        system.start("a")
        system.settled("a", 30)
        system.start("b")
        system.settled("b", 30)
        time.sleep(2)
        marks = {n: os.path.getsize(system.log(n)) for n in "ab"}
        load = stress(seconds)
        load.wait(seconds + 30)
        time.sleep(1)
        lines = []
        for n in "ab":
            with open(system.log(n), errors="replace") as f:
                f.seek(marks[n])
                lines += ["%s: %s" % (n, ln.strip()) for ln in f
                          if re.search(EVENTS[system.name], ln)]
        return system.label, len(lines), lines
    finally:
        if load is not None and load.poll() is None:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
        system.close()
        pair.close()


def search(name: str, settings: list, make, seconds: float) -> tuple[list, list]:
    """Halving: the settings without a false failover (slowest first) up to the
    first one with, and every step's result."""
    steps, stable = [], []
    for s in settings:
        label, n, lines = trial(lambda p: make(p, s), seconds)
        log("search %s %s: %d false failovers %s" % (name, label, n, lines[:3]))
        steps.append({"label": label, "false": n, "events": lines[:10]})
        if n:
            break
        stable.append(s)
    return stable, steps


def confirm(name: str, stable: list, make, seconds: float) -> tuple[object, list]:
    """The fastest of the search's stable settings run again for `seconds`; a false
    failover steps back to the next slower one (at most STEP_BACKS times).  The
    confirmed setting (None if none held) and each confirmation's result."""
    runs: list[dict] = []
    for s in list(reversed(stable))[:STEP_BACKS + 1]:
        label, n, lines = trial(lambda p: make(p, s), seconds)
        log("confirm %s %s: %d false failovers in %g min %s"
            % (name, label, n, seconds / 60, lines[:3]))
        runs.append({"label": label, "false": n, "minutes": seconds / 60,
                     "events": lines[:10]})
        if not n:
            return s, runs
    return None, runs


def main(argv: list[str] | None = None) -> int:
    args = docopt(__doc__, argv)
    lab.compiled_tree()
    secs = float(args["--minutes"]) * 60
    step = float(args["--step-minutes"]) * 60
    conf = float(args["--confirm-minutes"]) * 60
    reps = int(args["--reps"])
    runs = []
    for what, make in (
            ("hb, realtime on", lambda p: Hb(p, 0.1, 0.5, True,
                                             "keepalive 100ms deadtime 500ms realtime on")),
            ("hb, realtime off", lambda p: Hb(p, 0.1, 0.5, False,
                                              "keepalive 100ms deadtime 500ms realtime off")),
            ("keepalived", lambda p: Keepalived(p, 0.1))):
        label, n, lines = trial(make, secs)
        log("load %s %s: %d false failovers %s" % (what, label, n, lines[:3]))
        runs.append({"system": what.split(",")[0], "label": label, "false": n,
                     "minutes": secs / 60, "events": lines[:10]})
    rows = [[r["system"], r["label"], "%g" % r["minutes"], str(r["false"])] for r in runs]
    text = ("Both cores saturated (`stress-ng %s`), pair idle, false "
            "failovers counted from the logs.\n\n" % " ".join(STRESSORS)
            + report.table(["system", "setting", "minutes", "false failovers"], rows) + "\n")
    data: dict = {"machine": report.machine(), "runs": runs}
    if not args["--no-search"]:
        hb_set = [(0.1 / 2 ** i, 0.5 / 2 ** i) for i in range(6)]        # to 3 ms / 16 ms
        ka_set = [0.1, 0.05, 0.03, 0.02, 0.01]       # VRRPv3 counts in centiseconds
        systems = (("hb", hb_set, lambda p, s: Hb(p, s[0], s[1])),
                   ("keepalived", ka_set, lambda p, s: Keepalived(p, s)))
        found = [(name, make) + search(name, sets, make, step)
                 for name, sets, make in systems]
        data["search"] = {name: steps for name, _, _, steps in found}
        srows = [[name, s["label"], "%g" % (step / 60), str(s["false"])]
                 for name, _, _, steps in found for s in steps]
        text += ("\nSearch for the fastest stable setting (halving until a false "
                 "failover), %g min of saturation per step:\n\n" % (step / 60)
                 + report.table(["system", "setting", "minutes", "false failovers"], srows)
                 + "\n")
        best: dict = {}
        if conf > 0:
            data["confirm"] = {}
            crows = []
            for name, make, stable, _ in found:
                best[name], runs = confirm(name, stable, make, conf)
                data["confirm"][name] = runs
                crows += [[name, r["label"], "%g" % r["minutes"], str(r["false"]),
                           "stepped back" if r["false"] and i + 1 < len(runs)
                           else "failed" if r["false"] else "confirmed"]
                          for i, r in enumerate(runs)]
                if not stable:
                    crows.append([name, "-", "-", "-", "nothing to confirm"])
                elif best[name] is None:
                    crows.append([name, "-", "-", "-", "none confirmed"])
            text += ("\nConfirmation of the search's answer, %g min of saturation each "
                     "(a false failover steps back to the next slower setting, at most "
                     "%d times):\n\n" % (conf / 60, STEP_BACKS)
                     + report.table(["system", "setting", "minutes", "false failovers",
                                     "result"], crows) + "\n")
        else:
            best = {name: stable[-1] if stable else None for name, _, stable, _ in found}
        data["confirm_minutes"] = conf / 60
        fastest = [run_case(lambda p, make=make, s=best[name]: make(p, s), reps, 0,
                            kinds=("power",), keep_timeline=False)
                   for name, make, _, _ in found if best[name] is not None]
        data["fastest"] = [r.as_dict() for r in fastest]
        how = ("%g min under load, 0 false failovers" % (conf / 60) if conf > 0
               else "unconfirmed")
        frows = [[r.system, r.label, how, report.mmm(r.stats("power")), str(len(r.failed))]
                 for r in fastest]
        note = "" if conf > 0 else " (the search's answer, unconfirmed)"
        text += ("\nPower loss (unloaded) at each one's fastest stable setting%s, "
                 "%d repetitions:\n\n" % (note, reps)
                 + report.table(["system", "fastest stable setting", "confirmed",
                                 "power loss ms min/med/max", "failed"], frows) + "\n")
        none = [name for name, _, _, _ in found if best[name] is None]
        if none:
            text += "\nNo fastest stable setting (none %s): %s\n" % (
                "confirmed" if conf > 0 else "without a false failover", ", ".join(none))
    elif not args["--no-write"]:
        prev = report.newest("load") or {}
        cut = prev.get("text", "").find("\nSearch for the fastest stable setting")
        if "search" in prev and cut >= 0:
            data["search"], data["fastest"] = prev["search"], prev.get("fastest", [])
            for k in ("confirm", "confirm_minutes"):
                if k in prev:
                    data[k] = prev[k]
            text += prev["text"][cut:].rstrip("\n") + "\n"
    print(text)
    data["text"] = text
    if not args["--no-write"]:
        txt, _ = report.write("load", text, data)
        print("wrote", txt)
        print(report.goals())
    return 0
