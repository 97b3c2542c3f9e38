"""A bench pair: nodes a and b and a client c in namespaces, a VIP, a prober.

Shared by bench/failover, bench/load and bench/footprint.  A `system` (see
systems.py) runs the failover daemons; this module builds the network, starts
the responders, kills and reboots nodes, and measures processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "lib"))
os.environ["PYTHONPATH"] = os.path.join(ROOT, "lib") + (
    ":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ["PATH"] = os.path.join(ROOT, "bin") + ":" + os.environ["PATH"]

import probe  # noqa: E402
from netns import Host, Lab  # noqa: E402

VIP = "198.18.0.100"
PREFIX = 24
ADDR = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.10"}
TICK = os.sysconf("SC_CLK_TCK")


class Pair:
    """Two nodes and a client on one bridge; responders on both nodes."""

    def __init__(self, tag: str = "bn") -> None:
        self.lab = Lab(tag)
        self.hosts: dict[str, Host] = {}
        try:
            for n in "abc":
                self.hosts[n] = self.lab.host(n, "%s/%d" % (ADDR[n], PREFIX))
            self.responders: dict[str, subprocess.Popen] = {}
            for n in "ab":
                self.respond(n)
        except BaseException:
            self.lab.close()
            raise

    def respond(self, n: str) -> None:
        self.responders[n] = probe.responder(self.hosts[n], VIP, n)

    def peer(self, n: str) -> str:
        return "b" if n == "a" else "a"

    def prober(self, duration: float = 600, **kw) -> probe.Prober:
        return probe.Prober(self.hosts["c"], VIP, duration=duration, **kw)

    def netns_pids(self, n: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.hosts[n].ns], text=True,
                             capture_output=True).stdout
        return [int(p) for p in out.split()]

    def daemon_pids(self, n: str) -> list[int]:
        """Every process of node n but its responder: the failover system's."""
        r = self.responders.get(n)
        skip = {r.pid} if r is not None else set()
        return [p for p in self.netns_pids(n) if p not in skip and _alive(p)]

    def power_loss(self, n: str) -> float:
        """Node n loses power: every process frozen (so none can react, e.g. to its
        parent's death), its cable pulled, then every process killed; returns the time."""
        t = time.monotonic()
        pids = self.netns_pids(n)
        for sig in (signal.SIGSTOP, None, signal.SIGKILL):
            if sig is None:
                self.lab.cut(self.hosts[n])
                continue
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
        return t

    def reboot(self, n: str) -> None:
        """After power_loss: no process, no VIP, cable back in, responder again."""
        deadline = time.monotonic() + 5
        while self.netns_pids(n) and time.monotonic() < deadline:
            for p in self.netns_pids(n):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for p in self.lab.procs:
            p.poll()
        self.hosts[n].run(["ip", "addr", "del", "%s/%d" % (VIP, PREFIX), "dev", "eth0"],
                          check=False)
        self.lab.mend(self.hosts[n])
        self.respond(n)

    def close(self) -> None:
        self.lab.close()


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kb(pids: list[int]) -> int:
    """Resident set of the processes, kB (Rss of smaps_rollup, shared pages counted)."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def pss_kb(pids: list[int]) -> int:
    """Proportional set size, kB: shared libraries split among their users."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of the processes (all threads), from the scheduler's exact account
    (se.sum_exec_runtime) where the kernel has it, else from clock ticks."""
    total = 0.0
    for p in pids:
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/sched" % (p, t)) as f:
                    for line in f:
                        if line.startswith("se.sum_exec_runtime"):
                            total += float(line.split(":")[1]) / 1000
                            break
            except OSError:
                try:
                    with open("/proc/%d/task/%s/stat" % (p, t)) as f:
                        w = f.read().rsplit(")", 1)[1].split()
                    total += (int(w[11]) + int(w[12])) / TICK
                except OSError:
                    pass
    return total


def idle_usage(pids_fns: list, seconds: float) -> list[tuple[int, float]]:
    """For each pids function: (RSS kB, CPU seconds per minute over `seconds`)."""
    before = [(fn(), ) for fn in pids_fns]
    c0 = [cpu_seconds(b[0]) for b in before]
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    out = []
    for fn, (pids, ), c in zip(pids_fns, before, c0):
        now = [p for p in fn() if p in pids]
        out.append((rss_kb(now), (cpu_seconds(now) - c) / dt * 60))
    return out
