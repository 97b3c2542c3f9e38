"""A bench pair: nodes a and b and a client c in namespaces, a VIP, a prober.

Shared by bench/failover, bench/load, bench/footprint and bench/uplink, on the
tests' lab (tests/lab: namespaces, responders, probers).  A `system` (see
systems.py) runs the failover daemons; this module builds the network, starts
the responders, kills and reboots nodes, and measures processes.  A bench's
main() calls lab.compiled_tree() first: hb byte-compiled, as the .deb installs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tests"))
import lab  # noqa: E402  (tests/lab: the lab the tests and demo/run use)
lab.source_tree()           # this tree's lib/ and bin/ on the paths, for every process

from lab import ROOT, probe  # noqa: E402,F401  (ROOT: for the other bench modules)
from lab.netns import Host, Lab, inside, kill_inside  # noqa: E402

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
        return inside(self.hosts[n].ns)

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
        alive = kill_inside(self.hosts[n].ns)
        if alive:
            raise RuntimeError("node %s: processes %s survive SIGKILL" % (n, alive))
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


# -- bench/uplink: a router between the pair and its users --------------------

ROUTER = "198.18.0.254"         # the ping node, the pair's gateway (LAN side)
OUTSIDE = "198.18.1.254"        # the router's other side, the users' network
CLIENT = "198.18.1.10"
WATCHER = "198.18.0.20"         # on the LAN: sees which node's kernel holds the VIP
LINK = {"a": "198.18.2.1", "b": "198.18.2.2"}    # the dedicated heartbeat link (eth1)


class UplinkPair(Pair):
    """Nodes a and b on a LAN (br0) with their router and a watcher w, joined by a
    dedicated heartbeat link too (eth1, br1); the client c sits behind the router
    (br2), so it reaches the VIP only through the router, as users do.

    An uplink is lost two ways: carrier loss (the switch port of the node's eth0
    goes down) and ping loss (the switch stops forwarding between the node and the
    router, both ways: the node's carrier stays up, it still hears its peer on the
    LAN, but neither the ping node nor the users reach it)."""

    def __init__(self, tag: str = "bu") -> None:
        self.lab = Lab(tag)
        self.hosts = {}
        self.responders = {}
        try:
            for n in "ab":
                h = self.hosts[n] = self.lab.host(n, "%s/%d" % (ADDR[n], PREFIX))
                self.lab.plug(h, "eth1", LINK[n] + "/24", bridge="br1")
                h.run(["ip", "route", "add", "198.18.1.0/24", "via", ROUTER])
            r = self.hosts["router"] = self.lab.host("router", ROUTER + "/24")
            self.lab.plug(r, "eth1", OUTSIDE + "/24", bridge="br2")
            r.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            c = self.hosts["c"] = self.lab.host("c", CLIENT + "/24", bridge="br2")
            c.run(["ip", "route", "add", "default", "via", OUTSIDE])
            self.hosts["w"] = self.lab.host("w", WATCHER + "/24")
            for n in "ab":
                self.respond(n)
        except BaseException:
            self.lab.close()
            raise

    def watcher(self, duration: float = 600, **kw) -> probe.Prober:
        """Probes from the LAN: their `holders` say whose kernel holds the VIP."""
        return probe.Prober(self.hosts["w"], VIP, duration=duration, tag="w", **kw)

    def carrier_loss(self, n: str) -> float:
        """Node n's uplink cable pulled; returns the time the cut was made."""
        self.lab.cut(self.hosts[n])
        return time.monotonic()

    def carrier_back(self, n: str) -> None:
        self.lab.mend(self.hosts[n])

    def _ports(self, n: str) -> tuple[str, str]:
        return self.hosts[n].ifaces["port:eth0"], self.hosts["router"].ifaces["port:eth0"]

    def ping_loss(self, n: str) -> float:
        """The switch drops every frame between node n and the router (ARP too)."""
        p, r = self._ports(n)
        rules = ("add table bridge hbup\n"
                 "add chain bridge hbup uplink { type filter hook forward priority 0; }\n"
                 "add rule bridge hbup uplink iifname %s oifname %s drop\n"
                 "add rule bridge hbup uplink iifname %s oifname %s drop\n" % (p, r, r, p))
        subprocess.run(["ip", "netns", "exec", self.lab.sw, "nft", "-f", "-"], input=rules,
                       text=True, check=True, capture_output=True)
        return time.monotonic()

    def ping_back(self, n: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.lab.sw, "nft", "delete", "table",
                        "bridge", "hbup"], check=True, capture_output=True)
