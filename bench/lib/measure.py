"""One benchmark case: a system at one setting, N power losses, N planned switch-overs.

Each repetition fails whichever node holds the VIP and measures, from the
client's probes (every 10 ms), the interruption the failure caused; the failed
node then reboots (or comes back) as a backup, so the roles alternate.
"""

from __future__ import annotations

import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable

from pair import Pair, idle_usage, pss_kb      # first: puts tests/ (lab) on the path
from lab import probe
from systems import System


@dataclass
class Result:
    system: str
    label: str
    power_ms: list[float] = field(default_factory=list)
    planned_ms: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)     # repetitions that did not recover
    both_served: int = 0         # probes answered by two nodes (must stay 0)
    both_held: int = 0           # broadcast probes answered by two nodes (VIP on both)
    moved_on_rejoin: int = 0     # the VIP left the survivor when the failed node came back
    rss_kb: int = 0              # idle, all processes of the active node
    rss_backup_kb: int = 0
    pss_kb: int = 0              # the same, shared pages split among their users
    cpu_s_min: float = 0.0       # idle CPU seconds per minute, active node
    cpu_backup_s_min: float = 0.0
    timeline: list[list] = field(default_factory=list)   # [t - t_fail, who] of one failure
    timeline_ms: float = 0.0
    deadtime: float | None = None    # hb and Heartbeat: the configured deadtime, s

    def stats(self, kind: str) -> tuple[float, float, float] | None:
        v = self.power_ms if kind == "power" else self.planned_ms
        return (min(v), statistics.median(v), max(v)) if v else None

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("power", "planned"):
            s = self.stats(k)
            d[k + "_min_med_max"] = list(s) if s else None
        return d


def steady(pr: probe.Prober, timeout: float, run: int = 30) -> str:
    """Wait until the last `run` probes were all served by one node; return it."""
    deadline = time.monotonic() + timeout
    while True:
        last = pr.probes()[-run:]
        if len(last) == run and last[0].who and all(p.who == last[0].who for p in last) \
                and "+" not in last[0].who:
            return last[0].who
        if time.monotonic() > deadline:
            raise AssertionError("the VIP was not served steadily by one node: %s"
                                 % probe.servers(pr.probes())[-5:])
        time.sleep(0.05)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def run_case(make: Callable[[Pair], System], reps: int, idle: float,
             kinds: tuple[str, ...] = ("power", "planned"), keep_timeline: bool = True
             ) -> Result:
    pair = Pair("bf")
    system = make(pair)
    res = Result(system.name, system.label, deadtime=getattr(system, "deadtime", None))
    try:
        _run(pair, system, res, reps, idle, kinds, keep_timeline)
    except Exception as e:    # a case that breaks is reported, the others still run
        res.failed.append("aborted: %s" % e)
        log("%s %s: aborted: %s" % (system.name, system.label, traceback.format_exc()))
        for n in "ab":
            try:
                with open(system.log(n), errors="replace") as f:
                    log("%s log of %s:\n%s" % (system.name, n, f.read()[-2500:]))
            except OSError:
                pass
    finally:
        system.close()
        pair.close()
    return res


def start_pair(pair: Pair, system: System) -> None:
    """a first, until the client is served by it; then b, until it settles."""
    boot = 20 + 4 * system.detect
    system.start("a")
    system.settled("a", boot)
    pr = pair.prober(boot + 5)
    try:
        pr.wait_served("a", boot)
    finally:
        pr.stop()
    system.start("b")
    system.settled("b", boot)


ALIVE_BEFORE_FAILURE = 6.0     # s a node has run before a failure strikes it


def _run(pair: Pair, system: System, res: Result, reps: int, idle: float,
         kinds: tuple[str, ...], keep_timeline: bool) -> None:
    boot = 20 + 4 * system.detect
    start_pair(pair, system)
    # node -> when it was last started (both at most now: a first failure soon after
    # start_pair would strike a node in its first 5 s)
    started: dict[str, float] = dict.fromkeys("ab", time.monotonic())
    if idle > 0:
        (res.rss_kb, res.cpu_s_min), (res.rss_backup_kb, res.cpu_backup_s_min) = \
            idle_usage([lambda: system.pids("a"), lambda: system.pids("b")], idle)
        res.pss_kb = pss_kb(system.pids("a"))
    expect = "a"
    timelines: list[tuple[float, list]] = []
    for kind in kinds:
        for i in range(reps):
            pr = pair.prober(60 + 4 * system.detect)
            try:
                active = steady(pr, 10)
                # Heartbeat 3.0.6 and hb advertise deadtime + 2 s during a node's first
                # 5 s: one that dies sooner is judged 2 s later.  Failures here strike
                # nodes past their start (the rebooted one rejoined at least 6 s ago).
                wait = started.get(active, -1e9) + ALIVE_BEFORE_FAILURE - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                    active = steady(pr, 10)
                if active != expect:
                    res.moved_on_rejoin += 1
                    log("%s %s: the VIP moved to %s when %s rejoined"
                        % (system.name, system.label, active, pair.peer(expect)))
                other = pair.peer(active)
                t = pair.power_loss(active) if kind == "power" else system.planned(active)
                try:
                    pr.wait_served(other, 15 + 3 * system.detect, since=t)
                except AssertionError as e:
                    res.failed.append("%s %d: %s" % (kind, i, e))
                    log("%s %s %s %d: no recovery: %s"
                        % (system.name, system.label, kind, i, e))
                    raise
                time.sleep(0.5)
            finally:
                probes = pr.stop()
            gap = probe.outage_after(probes, t)
            ms = gap.ms if gap else 0.0
            (res.power_ms if kind == "power" else res.planned_ms).append(ms)
            res.both_served += len(probe.multi(probes, "served"))
            res.both_held += len(probe.multi(probe.window(probes, t), "holders"))
            if kind == "power" and keep_timeline:
                timelines.append((ms, [[round(p.t - t, 4), p.who] for p in
                                       probe.window(probes, t - 0.3, t + 3 + 2 * ms / 1000)]))
            log("%s %s %s %d: %.0f ms" % (system.name, system.label, kind, i, ms))
            if kind == "power":
                pair.reboot(active)
                system.rebooted(active)
                system.start(active)
                started[active] = time.monotonic()
            else:
                system.after_planned(active)
            system.settled(active, boot)
            expect = other
    if timelines:
        timelines.sort(key=lambda x: x[0])
        res.timeline_ms, res.timeline = timelines[len(timelines) // 2]
