"""bench/footprint: what a node costs, idle and at a 10 ms beat; what each command costs to start.

Usage:
  footprint [--seconds S] [--only ROWS] [--no-write]

Options:
  --seconds S   time over which CPU is measured, per row [default: 60]
                (the "load" column: the 1-minute load average at its end)
  --only ROWS   comma-separated rows to run (default: all): a row's name (below),
                a system (hb, heartbeat, keepalived, ucarp, python3), a beat (1s, 10ms) or
                `commands`
  --no-write    print only (no bench/results, no docs)

A pair of each system runs and every process of the active node is measured:
RSS (shared pages counted in each process), PSS (shared pages split) and CPU
over S seconds.  Rows (name: setting):

  hb-1s-rt, hb-1s       hb keepalive 1 deadtime 10, realtime on / off
  heartbeat-1s          Heartbeat keepalive 1, deadtime 10
  keepalived-1s         keepalived advert_int 1
  ucarp-1s              ucarp -b 1 -r 3
  hb-10ms               hb keepalive 10ms deadtime 40ms (realtime on)
  keepalived-10ms       keepalived advert_int 0.01
  python3-1s, python3-10ms
                        not a failover system: floorbeat.py, the least a heartbeat
                        in Python does (one signed status sent, the peer's checked,
                        per keepalive): the interpreter's share of hb-beat's cost

Then (`commands`) the start of every hb command (`--help`, and `hb-ipaddr ...
status`, the path cron and Pacemaker monitors call) is timed beside
resource-agents' IPaddr2 monitor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

from docopt import docopt

import report
from measure import log
from pair import ROOT, VIP, Pair, pss_kb, rss_kb
import lab  # after pair, which puts tests/ on the path
from systems import Hb, Heartbeat, Keepalived, PythonFloor, System, Ucarp


def comm(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    prog = [os.path.basename(a) for a in argv[:2] if not a.endswith("python3")]
    name = prog[0] if prog else os.path.basename(argv[0]) if argv else "?"
    try:
        with open("/proc/%d/comm" % pid) as f:
            own = f.read().strip()
    except OSError:
        return name
    return own if name == "hb-supervise" and own.startswith("hb-") else name  # forked ones


def threads_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of pid (a thread that ends takes its time along,
    so a process total could fall: hb-watch's address announcements are threads)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
    except OSError:
        return {}
    return {t: cpu_seconds_tid(pid, t) for t in tids}


def cpu_seconds_tid(pid: int, tid: int) -> float:
    try:
        with open("/proc/%d/task/%d/sched" % (pid, tid)) as f:
            for line in f:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return 0.0


def cpu_since(pid: int, before: dict[int, float]) -> float:
    """CPU seconds pid's threads used since before (threads_cpu): the live threads'
    growth; a thread that ended meanwhile is not counted."""
    now = threads_cpu(pid)
    return sum(max(0.0, c - before.get(t, 0.0)) for t, c in now.items())


def node(make, seconds: float) -> dict:
    pair = Pair("fp")
    system: System = make(pair)
    try:
        system.start("a")
        system.settled("a", 30)
        system.start("b")
        system.settled("b", 30)
        time.sleep(3)
        pids = system.pids("a")
        c0 = {p: threads_cpu(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        load = loadavg().split()[0]
        procs = [{"comm": comm(p), "rss_kb": rss_kb([p]), "pss_kb": pss_kb([p]),
                  "cpu_ms_min": cpu_since(p, c0[p]) / dt * 60000} for p in pids]
        return {"system": system.name, "label": system.label, "procs": procs,
                "rss_kb": sum(p["rss_kb"] for p in procs),
                "pss_kb": sum(p["pss_kb"] for p in procs),
                "cpu_ms_min": sum(p["cpu_ms_min"] for p in procs), "load": load}
    finally:
        system.close()
        pair.close()


def timed(argv: list[str], env: dict | None = None, runs: int = 5) -> tuple[float, int]:
    """(best wall ms, max RSS kB) of a command over several runs.  The RSS comes from
    GNU time, whose child is forked from a small process: a child forked from this
    Python would report this Python's RSS as its high-water mark."""
    best, rss = float("inf"), 0
    out = "/tmp/hb-footprint-%d" % os.getpid()
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out, *argv], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, (time.monotonic() - t) * 1000)
        with open(out) as f:
            rss = max(rss, int(f.read().split()[-1]))
    os.unlink(out)
    return best, rss


def commands() -> list[list[str]]:
    rows = []
    bindir = os.path.join(ROOT, "bin")
    for cmd in sorted(os.listdir(bindir)):
        ms, kb = timed([os.path.join(bindir, cmd), "--help"])
        rows.append(["%s --help" % cmd, "%.0f" % ms, "%.1f" % (kb / 1024)])
    pair = Pair("fc")
    try:
        a = pair.hosts["a"]
        a.run(["ip", "addr", "add", "%s/24" % VIP, "dev", "eth0"])
        spec = "%s/24/eth0" % VIP
        ms, kb = timed(a.argv([os.path.join(bindir, "hb-ipaddr"), spec, "status"]))
        rows.append(["hb-ipaddr %s status" % spec, "%.0f" % ms, "%.1f" % (kb / 1024)])
        agent = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"
        if os.access(agent, os.X_OK):
            env = dict(os.environ, OCF_ROOT="/usr/lib/ocf", OCF_RESKEY_ip=VIP,
                       OCF_RESKEY_cidr_netmask="24", OCF_RESKEY_nic="eth0")
            ms, kb = timed(a.argv([agent, "monitor"]), env=env)
            rows.append(["IPaddr2 monitor (resource-agents)", "%.0f" % ms,
                         "%.1f" % (kb / 1024)])
    finally:
        pair.close()
    return rows


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def header(argv: list[str], t0: float, load0: str) -> str:
    """The command line, when, the machine with hb's commit, and the load around the run."""
    return ("$ bench/footprint %s   (%s-%s UTC; %s; load average %s at the start, %s at "
            "the end; 2 cores shared with other work)\n\n"
            % (" ".join(argv), time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)),
               time.strftime("%H:%M", time.gmtime()),
               report.machine_line(report.machine()).split("; ", 1)[-1],
               load0, loadavg()))


NODE_HEAD = ["system", "setting", "processes", "RSS MB", "PSS MB", "CPU ms/min", "load"]
TITLES = {"1s": "Idle active node at keepalive 1 s, every process of its failover system, "
                "CPU over %g s:",
          "10ms": "Active node at a 10 ms beat (hb keepalive 10ms deadtime 40ms; keepalived "
                  "advert_int 0.01), every process, CPU over %g s:"}


def render(nodes: list[dict], crows: list[list[str]], secs: float) -> str:
    text = ""
    for beat, title in TITLES.items():
        rows = [[n["system"], n["label"], str(len(n["procs"])), "%.1f" % (n["rss_kb"] / 1024),
                 "%.1f" % (n["pss_kb"] / 1024), "%.0f" % n["cpu_ms_min"], n.get("load", "")]
                for n in nodes if n.get("beat", "1s") == beat]
        if rows:
            text += (title % secs + "\n\n" + report.table(NODE_HEAD, rows) + "\n\n")

    def who(n: dict) -> str:
        return n.get("row") or n["system"]
    prows = [[who(n), p["comm"], "%.1f" % (p["rss_kb"] / 1024),
              "%.1f" % (p["pss_kb"] / 1024), "%.0f" % p["cpu_ms_min"]]
             for n in nodes for p in n["procs"]]
    head = ["row", "process", "RSS MB", "PSS MB", "CPU ms/min"]
    if prows:
        text += "Per process:\n\n" + report.table(head, prows) + "\n\n"
    if crows:
        text += ("Command start-up (best of 5 wall ms, max RSS):\n\n"
                 + report.table(["command", "ms", "RSS MB"], crows) + "\n")
    return text


ROWS: list[tuple[str, str, Callable[[Pair], System]]] = [    # name, beat, system
    ("hb-1s-rt", "1s", lambda p: Hb(p, 1.0, 10.0, True, "keepalive 1 deadtime 10 realtime on")),
    ("hb-1s", "1s", lambda p: Hb(p, 1.0, 10.0, False, "keepalive 1 deadtime 10 realtime off")),
    ("heartbeat-1s", "1s", lambda p: Heartbeat(p, 1.0, 10.0)),
    ("keepalived-1s", "1s", lambda p: Keepalived(p, 1.0)),
    ("ucarp-1s", "1s", lambda p: Ucarp(p, 1, 3)),
    ("hb-10ms", "10ms", lambda p: Hb(p, 0.01, 0.04, True, "keepalive 10ms deadtime 40ms")),
    ("keepalived-10ms", "10ms", lambda p: Keepalived(p, 0.01)),
    ("python3-1s", "1s", lambda p: PythonFloor(p, 1.0)),
    ("python3-10ms", "10ms", lambda p: PythonFloor(p, 0.01)),
]


def chosen(only: str | None) -> tuple[list[tuple[str, str, Callable[[Pair], System]]], bool]:
    """The rows --only names (by name, system or beat), and whether `commands` runs."""
    if not only:
        return ROWS, True
    want = {w.strip() for w in only.split(",") if w.strip()}
    known = {r[0] for r in ROWS} | {r[0].split("-", 1)[0] for r in ROWS} \
        | {r[1] for r in ROWS} | {"commands"}
    bad = sorted(want - known)
    if bad:
        raise SystemExit("footprint: --only: unknown %s (rows: %s)"
                         % (", ".join(bad), ", ".join(sorted(known))))
    rows = [r for r in ROWS if want & {r[0], r[0].split("-", 1)[0], r[1]}]
    return rows, "commands" in want


def main(argv: list[str] | None = None) -> int:
    args = docopt(__doc__, argv)
    rows, cmds = chosen(args["--only"])
    lab.compiled_tree()
    secs = float(args["--seconds"])
    t0, load0 = time.time(), loadavg()
    nodes = []
    for name, beat, make in rows:
        try:
            n = node(make, secs)
        except Exception as e:        # a system that cannot run is reported, not fatal
            log("footprint %s: %s" % (name, e))
            continue
        n["row"], n["beat"] = name, beat
        log("footprint %s %s: %d kB RSS, %d kB PSS, %.0f ms CPU/min"
            % (n["system"], n["label"], n["rss_kb"], n["pss_kb"], n["cpu_ms_min"]))
        nodes.append(n)
    crows = commands() if cmds else []
    text = header(sys.argv[1:] if argv is None else argv, t0, load0) + render(nodes, crows, secs)
    print(text)
    if not args["--no-write"]:
        txt, _ = report.write("footprint", text, {"machine": report.machine(), "nodes": nodes,
                                                  "commands": crows, "text": text})
        print("wrote", txt)
        print(report.goals())
    return 0
