"""Tables, result files and the failover chart.

Each bench writes bench/results/DATE-KIND.{txt,json} and prints the goals as the
newest results stand; docs/benchmarks.md presents those files by hand, dated.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import time

from pair import ROOT

RESULTS = os.path.join(ROOT, "bench", "results")
DOCS = os.path.join(ROOT, "docs")


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    try:
        with open("/etc/debian_version") as f:
            deb = f.read().strip()
    except OSError:
        deb = "?"
    vers = {}
    for p in ("keepalived", "ucarp", "heartbeat", "python3", "stress-ng"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], text=True,
                           capture_output=True)
        vers[p] = r.stdout.strip() or "?"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], text=True,
                             capture_output=True).stdout.strip()
    except OSError:
        rev = "?"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": cpu, "cores": os.cpu_count(), "mem_mb": mem,
            "kernel": platform.release(), "debian": deb, "versions": vers, "hb": rev}


def machine_line(m: dict) -> str:
    v = m["versions"]
    return ("%s; %s, %d cores, %d MB; Linux %s; Debian %s; keepalived %s, ucarp %s, "
            "heartbeat %s; hb %s" % (m["date"], m["cpu"], m["cores"], m["mem_mb"],
                                     m["kernel"], m["debian"], v["keepalived"], v["ucarp"],
                                     v["heartbeat"], m["hb"]))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table that also reads well as plain text."""
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
         for i, h in enumerate(headers)]
    fmt = "| " + " | ".join("%%-%ds" % x for x in w) + " |"
    lines = [fmt % tuple(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    lines += [fmt % tuple(r) for r in rows]
    return "\n".join(lines)


def mmm(s: list[float] | None) -> str:
    return "%.0f / %.0f / %.0f" % tuple(s) if s else "-"


def write(kind: str, text: str, data: dict) -> tuple[str, str]:
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, "%s-%s" % (time.strftime("%Y-%m-%d", time.gmtime()), kind))
    with open(base + ".txt", "w") as f:
        f.write(text.rstrip("\n") + "\n")
    with open(base + ".json", "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    return base + ".txt", base + ".json"


def newest(kind: str) -> dict | None:
    files = sorted(glob.glob(os.path.join(RESULTS, "*-%s.json" % kind)))
    if not files:
        return None
    with open(files[-1]) as f:
        d = json.load(f)
    d["_file"] = os.path.relpath(files[-1], ROOT)
    return d


def chart(cases: list[dict], path: str) -> None:
    """Each case's client-side timeline around a power loss (its median repetition)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = [c for c in cases if c.get("timeline")]
    if not cases:
        return
    span = max(c["timeline_ms"] for c in cases) + 400
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(cases) + 1.5))
    colours = {"old": "#4477aa", "new": "#66aa55", "both": "#cc3311"}
    for row, c in enumerate(reversed(cases)):
        tl = c["timeline"]
        old = next((w for t, w in tl if t < 0 and w), None)
        runs: list[list] = []          # [who, first ms, last ms]
        for t, who in tl:
            if runs and runs[-1][0] == who:
                runs[-1][2] = t * 1000
            else:
                runs.append([who, t * 1000, t * 1000])
        for who, t0, t1 in runs:
            if who is None:
                continue
            k = "both" if "+" in who else ("old" if who == old else "new")
            ax.broken_barh([(t0, t1 - t0 + 10)], (row - 0.35, 0.7), facecolors=colours[k],
                           linewidth=0)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels(["%s %s: %.0f ms" % (c["system"], c["label"], c["timeline_ms"])
                        for c in reversed(cases)], fontsize=8)
    ax.set_xlim(-300, span)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("ms since the active node lost power (one probe every 10 ms)")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=colours["old"], label="old node answered"),
                       Patch(color=colours["new"], label="new node answered"),
                       Patch(color=colours["both"], label="both answered")],
              loc="lower right", fontsize=8)
    ax.set_title("Who answered the client around a power loss (median repetition)")
    fig.tight_layout()
    matplotlib.rcParams["svg.hashsalt"] = "hb"      # the same data, the same file
    fig.savefig(path, format=path.rsplit(".", 1)[1], metadata={"Date": None})
    plt.close(fig)


def failover_rows(cases: list[dict]) -> list[list[str]]:
    rows = []
    for c in cases:
        rows.append([c["system"], c["label"], mmm(c.get("power_min_med_max")),
                     mmm(c.get("planned_min_med_max")),
                     "%.1f / %.1f" % (c["rss_kb"] / 1024, c.get("pss_kb", 0) / 1024)
                     if c.get("rss_kb") else "-",
                     "%.0f" % (c["cpu_s_min"] * 1000) if c.get("rss_kb") else "-",
                     str(len(c["power_ms"]) + len(c["planned_ms"])),
                     str(len(c["failed"])) + ("" if not c["both_served"]
                                              else " both=%d" % c["both_served"]),
                     str(c.get("moved_on_rejoin", 0))])
    return rows


FAILOVER_HEAD = ["system", "timings", "power loss ms min/med/max",
                 "planned ms min/med/max", "RSS / PSS MB", "CPU ms/min", "runs", "failed",
                 "moved on rejoin"]


def ratios(cases: list[dict]) -> list[str]:
    """hb / best peer, for the medians and the footprint."""
    hb = [c for c in cases if c["system"] == "hb"]
    peers = [c for c in cases if c["system"] != "hb"]
    if not hb or not peers:
        return []
    out = []
    for key, what in (("power_min_med_max", "power-loss median"),
                      ("planned_min_med_max", "planned median")):
        h = [c for c in hb if c.get(key)]
        p = [c for c in peers if c.get(key)]
        if h and p:
            bh = min(h, key=lambda c: c[key][1])
            bp = min(p, key=lambda c: c[key][1])
            out.append("%s: hb %.0f ms (%s) / %s %.0f ms (%s) = %.2f"
                       % (what, bh[key][1], bh["label"], bp["system"], bp[key][1],
                          bp["label"], bh[key][1] / max(bp[key][1], 1)))
    h = [c for c in hb if c.get("rss_kb")]
    p = [c for c in peers if c.get("rss_kb")]
    if h and p:
        bh = min(h, key=lambda c: c["rss_kb"])
        bp = min(p, key=lambda c: c["rss_kb"])
        out.append("idle RSS: hb %.1f MB / %s %.1f MB = %.2f"
                   % (bh["rss_kb"] / 1024, bp["system"], bp["rss_kb"] / 1024,
                      bh["rss_kb"] / bp["rss_kb"]))
    return out


def targets(f: dict | None, ld: dict | None, fp: dict | None,
            up: dict | None = None) -> list[str]:
    """The goals, each with the measured value and met/MISSED."""
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    cases = f["cases"] if f else []
    hb = [c for c in cases if c["system"] == "hb" and c.get("power_min_med_max")]
    for c in hb:
        med, bound = c["power_min_med_max"][1], c["deadtime"] * 1000 + 20
        out.append("Unplanned interruption <= deadtime + 20 ms (median), hb %s: %.0f ms "
                   "vs %.0f ms: %s" % (c["label"], med, bound, verdict(med <= bound)))
    ka = [c for c in cases if c["system"] == "keepalived" and c.get("power_min_med_max")]
    if hb and ka:
        h = min(hb, key=lambda c: c["power_min_med_max"][1])
        k = min(ka, key=lambda c: c["power_min_med_max"][1])
        out.append("Unloaded, hb's fastest beats keepalived's fastest: hb %s %.0f ms vs "
                   "keepalived %s %.0f ms: %s" % (
                       h["label"], h["power_min_med_max"][1], k["label"],
                       k["power_min_med_max"][1],
                       verdict(h["power_min_med_max"][1] < k["power_min_med_max"][1])))
    plan = [c for c in hb if c.get("planned_min_med_max")]
    if plan:
        p = min(plan, key=lambda c: c["planned_min_med_max"][1])
        out.append("Planned switch-over <= 20 ms (median): hb %s %.0f ms: %s"
                   % (p["label"], p["planned_min_med_max"][1],
                      verdict(p["planned_min_med_max"][1] <= 20)))
    if ld:
        fast = {c["system"]: c for c in ld.get("fastest", []) if c.get("power_min_med_max")}
        if "hb" in fast and "keepalived" in fast:
            h, k = fast["hb"], fast["keepalived"]
            hm, km = h["power_min_med_max"][1], k["power_min_med_max"][1]
            out.append("At the fastest stable settings, hb loses less than keepalived "
                       "(aim <= 50 ms): hb %s %.0f ms vs keepalived %s %.0f ms: %s"
                       % (h["label"], hm, k["label"], km, verdict(hm < km)
                          + ("" if hm <= 50 else ", aim of 50 ms missed")))
        rt = [r for r in ld.get("runs", []) if r["system"] == "hb" and "realtime on"
              in r["label"]]
        for r in rt:
            out.append("Zero false failovers under load with realtime on: %d in %g min: %s"
                       % (r["false"], r["minutes"], verdict(r["false"] == 0)))
    if fp:
        nodes = {n["label"] if n["system"] == "hb" else n["system"]: n for n in fp["nodes"]}
        h = next((n for n in fp["nodes"] if n["system"] == "hb"
                  and "realtime on" in n["label"]), None)
        hbt = nodes.get("heartbeat")
        if h:
            rss, cpu = h["rss_kb"] / 1024, h["cpu_ms_min"]
            out.append("Idle node <= 55 MB RSS and <= 40 ms CPU/min (keepalive 1 s): hb %.1f MB "
                       "RSS / %.1f MB PSS, %.0f ms CPU/min%s: %s" % (
                           rss, h["pss_kb"] / 1024, cpu,
                           " (Heartbeat %.1f MB / %.1f MB, %.0f ms)" % (
                               hbt["rss_kb"] / 1024, hbt["pss_kb"] / 1024, hbt["cpu_ms_min"])
                           if hbt else "", verdict(rss <= 55 and cpu <= 40)))
    for c in (up or {}).get("cases", []):
        if c["system"] != "hb" or not c.get("interruption_min_med_max"):
            continue
        med = c["interruption_min_med_max"][1]
        bound = 100 if c["kind"] == "carrier" else c["deadping"] * 1000 + 100
        out.append("Uplink lost on the active node, %s loss <= %.0f ms (median), hb %s: "
                   "%.0f ms: %s" % (c["kind"], bound, c["label"], med, verdict(med <= bound)))
    return out


def goals() -> str:
    """The goals, each with the newest measured value and met/MISSED, and the failover
    chart (docs/failover-timeline.svg) redrawn from the newest failover result.
    docs/benchmarks.md is kept by hand from the result files (dated runs, newest
    first): a bench never rewrites it."""
    f = newest("failover")
    if f:
        chart(f["cases"], os.path.join(DOCS, "failover-timeline.svg"))
    t = targets(f, newest("load"), newest("footprint"), newest("uplink"))
    return "\n".join(["Goals, from the newest result of each bench:"] + ["- " + x for x in t])
