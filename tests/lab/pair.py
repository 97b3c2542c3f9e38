"""Two hb nodes and a client in namespaces, for failover scenarios, the demo and bench.

The nodes (alpha and beta by default) have 198.18.0.1 and .2 on the lab bridge's
eth0, which carries the VIP (198.18.0.100) and, as configured, a UDP medium; the
client (198.18.0.10) probes the VIP from the same bridge.  Media (any of):
  ucast    ucast eth0 (both addresses listed, as on a real pair's shared ha.cf)
  bcast    bcast eth0
  eth1     ucast eth1 on a second bridge, 198.18.1.0/24
  serial   a socat pty pair (the same link name on both nodes)
Each node (node.Node) runs hb-supervise with its own CONFDIR, RUNDIR and STATEDIR in
the lab's directory, and a responder (probe.py) that answers for the VIP with the
node's name.  Pair is the demo's: julius and caesar over serial and bcast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Sequence

from . import probe, wait
from .netns import Lab
from .node import AUTHKEYS, Node

VIP = "198.18.0.100"
NAMES = ("alpha", "beta")
ADDRS = (("198.18.0.1", "198.18.1.1"), ("198.18.0.2", "198.18.1.2"))
ADDR = dict(zip(NAMES, ADDRS))
CLIENT = "198.18.0.10/24"


class HbPair:
    """Two nodes running hb, a client, responders; see the module docstring."""

    def __init__(self, lab: Lab, media: Sequence[str] = ("ucast",), keepalive: str = "100ms",
                 deadtime: str = "500ms", warntime: str | None = None, initdead: str = "1",
                 auto_failback: str = "off", realtime: str = "on", extra: str = "",
                 haresources: str | None = None, names: Sequence[str] = NAMES,
                 authkeys: str = AUTHKEYS) -> None:
        self.lab, self.media, self.vip = lab, list(media), VIP
        self.names = list(names)
        self.addr = dict(zip(self.names, ADDRS))
        self.socat: subprocess.Popen | None = None
        self.sampler: probe.Holders | None = None
        ttys: tuple[str | None, str | None] = (None, None)
        if "serial" in self.media:
            ttys = lab.serial_pair()
            self.socat = lab.procs[-1]
        self.nodes: dict[str, Node] = {}
        for name, tty in zip(self.names, ttys):
            host = lab.host(name, None)
            host.run(["ip", "addr", "add", self.addr[name][0] + "/24", "brd", "+",
                      "dev", "eth0"])
            host.ifaces["eth0"] = self.addr[name][0] + "/24"
            if "eth1" in self.media:
                lab.plug(host, "eth1", self.addr[name][1] + "/24", bridge="br1")
            self.nodes[name] = Node(lab, host, name, tty=tty, pair=self)
        self.client = lab.host("client", CLIENT)
        cf = hacf(self.names, self.media, keepalive, deadtime, warntime, initdead,
                  auto_failback, realtime, extra, self.addr)
        res = haresources or "%s %s/24/eth0\n" % (self.names[0], VIP)
        for n in self.nodes.values():
            n.configure(cf, res, authkeys)
            n.respond(VIP)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def peer(self, name: str) -> Node:
        return self.nodes[self.names[1] if name == self.names[0] else self.names[0]]

    def ifaces(self) -> list[str]:
        return ["eth0"] + (["eth1"] if "eth1" in self.media else [])

    def serial_stop(self) -> None:
        """The serial cable pulled: socat stopped (its ptys stay, nothing flows)."""
        if self.socat is not None and self.socat.poll() is None:
            os.kill(self.socat.pid, signal.SIGSTOP)

    def serial_start(self) -> None:
        if self.socat is not None and self.socat.poll() is None:
            os.kill(self.socat.pid, signal.SIGCONT)

    def start(self, *names: str, gap: float = 0.0) -> "HbPair":
        """Start hb on the nodes, `gap` seconds apart (a staggered boot, not a wait)."""
        for n in names or self.names:
            self.nodes[n].start()
            time.sleep(gap)
        return self

    def prober(self, duration: float = 120, **kw) -> probe.Prober:
        return probe.Prober(self.client, VIP, duration=duration, **kw)

    def holders(self, limit: float = 120.0) -> probe.Holders:
        """Start sampling which nodes' kernels hold the VIP (each node's `ip addr`,
        every 100 ms: the only way to see two holders, since a unicast probe reaches
        one MAC); the sampler is kept as self.sampler for one_holder()."""
        self.sampler = probe.Holders({n: self.nodes[n].host.ns for n in self.names},
                                     VIP, limit)
        self.sampler.start()
        return self.sampler

    def one_holder(self, *windows: tuple[float, float]) -> None:
        """Stop the sampler; in each window (t0, t1) of time.monotonic() (the whole
        run if none is given) samples were taken and none shows the VIP on both."""
        assert self.sampler is not None, "holders() was not started"
        samples = self.sampler.stop()
        for t0, t1 in windows or ((float("-inf"), float("inf")),):
            seen = [(t, sorted(h)) for t, h in samples if t0 <= t <= t1]
            assert seen, "no sample of the holders in %s" % ((t0, t1),)
            both = [x for x in seen if len(x[1]) > 1]
            assert both == [], "the VIP on both nodes at %s\n%s" % (both[:5], self.logtail())

    def wait(self, pred: Callable[[], object], timeout: float = 15, what: str = "") -> float:
        """Until pred() is true; returns time.monotonic() then (fails with the logs)."""
        return wait.until(pred, timeout, lambda: "%s\n%s" % (what or pred, self.logtail()))

    def wait_up(self, timeout: float = 15) -> float:
        """Until each node says the other is up."""
        return self.wait(lambda: all(n.peer_status() == "up" for n in self.nodes.values()),
                         timeout, "both nodes to see each other up")

    def logtail(self, n: int = 40) -> str:
        return "\n".join(x.logtail(n) for x in self.nodes.values())


class Pair(HbPair):
    """The demo's pair: julius and caesar, heartbeats over a serial line and bcast."""

    def __init__(self, lab: Lab, haresources: str | None = None, keepalive: str = "100ms",
                 warntime: str = "300ms", deadtime: str = "500ms", initdead: str = "1",
                 realtime: str = "on", extra: str = "") -> None:
        super().__init__(lab, ("serial", "bcast"), keepalive, deadtime, warntime, initdead,
                         "off", realtime, extra, haresources, ("julius", "caesar"))


def hacf(names: Sequence[str], media: Sequence[str], keepalive: str = "100ms",
         deadtime: str = "500ms", warntime: str | None = None, initdead: str = "1",
         auto_failback: str = "off", realtime: str = "on", extra: str = "",
         addr: dict[str, tuple[str, str]] | None = None) -> str:
    addr = addr or dict(zip(names, ADDRS))
    lines = ["keepalive %s" % keepalive, "deadtime %s" % deadtime]
    if warntime:
        lines.append("warntime %s" % warntime)
    lines += ["initdead %s" % initdead, "udpport 694"]
    for m in media:
        if m == "ucast":
            lines += ["ucast eth0 %s" % addr[n][0] for n in names]
        elif m == "bcast":
            lines.append("bcast eth0")
        elif m == "eth1":
            lines += ["ucast eth1 %s" % addr[n][1] for n in names]
        elif m == "serial":
            lines += ["baud 115200", "serial @TTY@"]
        else:
            raise ValueError("unknown medium %r" % m)
    lines += ["auto_failback %s" % auto_failback, "realtime %s" % realtime,
              "node %s" % " ".join(names)]
    return "\n".join(lines) + "\n" + extra
