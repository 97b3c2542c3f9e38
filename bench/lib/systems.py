"""The failover systems the bench compares, each run in a Pair's namespaces.

A system starts its daemons on a node, says when a node has settled, and makes
a planned switch-over the way its users do:
  keepalived  VRRPv3 unicast; planned = stop the master (SIGTERM: priority 0)
  ucarp       CARP over broadcast (-M); planned = stop the master (SIGTERM, -z)
  heartbeat   Debian's Heartbeat 3.0.6 (tests/heartbeat.py); planned = hb_standby
  hb          hb-supervise (or hb-beat | hb-watch); planned = hb-switch standby
Every system runs with the roles symmetric (no preemption, no auto_failback), so
after a failover the survivor keeps the VIP and the rebooted node rejoins.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from pair import ADDR, PREFIX, VIP, Pair


def _write(path: str, text: str, mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def _wait_file(path: str, pattern: str, timeout: float, since: int = 0) -> None:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                f.seek(since)
                if rx.search(f.read()):
                    return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("no /%s/ in %s within %.0fs" % (pattern, path, timeout))
        time.sleep(0.02)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class System:
    name = "?"
    label = "?"
    detect = 1.0       # seconds a failure takes to be noticed, for timeouts

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.tmp = pair.lab.tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.marks: dict[str, int] = {}

    def log(self, n: str) -> str:
        return os.path.join(self.tmp, "%s-%s.log" % (self.name, n))

    def popen(self, n: str, argv: list[str], **kw) -> subprocess.Popen:
        self.marks[n] = _size(self.log(n))
        f = open(self.log(n), "a")
        p = self.pair.hosts[n].popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT, **kw)
        f.close()
        self.procs[n] = p
        return p

    def start(self, n: str) -> None:
        raise NotImplementedError

    def settled(self, n: str, timeout: float) -> None:
        """Wait until node n, just started, runs as master or backup."""
        raise NotImplementedError

    def planned(self, n: str) -> float:
        """Switch the VIP away from active node n the planned way; returns the time."""
        t = time.monotonic()
        self.pair.lab.stop(self.procs[n], signal.SIGTERM, timeout=10)
        return t

    def after_planned(self, n: str) -> None:
        """Bring node n back as a backup after planned()."""
        self.start(n)

    def pids(self, n: str) -> list[int]:
        return self.pair.daemon_pids(n)

    def close(self) -> None:
        pass


class Keepalived(System):
    name = "keepalived"

    def __init__(self, pair: Pair, advert: float = 1.0) -> None:
        super().__init__(pair)
        self.advert = advert
        self.label = "advert_int %g" % advert + (" (default)" if advert == 1 else "")
        self.detect = 3.7 * advert

    def start(self, n: str) -> None:
        peer = ADDR[self.pair.peer(n)]
        conf = _write(os.path.join(self.tmp, "keepalived-%s.conf" % n), """\
global_defs {
  router_id %s
  vrrp_version 3
}
vrrp_instance VI {
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 51
  priority 100
  advert_int %g
  unicast_src_ip %s
  unicast_peer {
    %s
  }
  virtual_ipaddress {
    %s/%d dev eth0
  }
}
""" % (n, self.advert, ADDR[n], peer, VIP, PREFIX))
        run = os.path.join(self.tmp, "keepalived-%s" % n)
        for f in (".pid", "-vrrp.pid", "-check.pid"):    # a killed node's, maybe a zombie's
            if os.path.exists(run + f):
                os.unlink(run + f)
        self.popen(n, ["keepalived", "--dont-fork", "--log-console", "--log-detail",
                       "--no-syslog", "--vrrp", "-f", conf, "-p", run + ".pid",
                       "-r", run + "-vrrp.pid", "-c", run + "-check.pid"])

    def settled(self, n: str, timeout: float) -> None:
        _wait_file(self.log(n), r"Entering (BACKUP|MASTER) STATE", timeout, self.marks[n])


class Ucarp(System):
    name = "ucarp"

    def __init__(self, pair: Pair, advbase: int = 1, deadratio: int = 3) -> None:
        super().__init__(pair)
        self.advbase, self.deadratio = advbase, deadratio
        self.label = "-b %d -r %d" % (advbase, deadratio) + (
            " (default)" if (advbase, deadratio) == (1, 3) else "")
        self.detect = advbase * deadratio + 1.0
        self.up = _write(os.path.join(self.tmp, "ucarp-up"),
                         '#!/bin/sh\nexec ip addr add %s/%d dev "$1"\n' % (VIP, PREFIX), 0o755)
        self.down = _write(os.path.join(self.tmp, "ucarp-down"),
                           '#!/bin/sh\nexec ip addr del %s/%d dev "$1"\n' % (VIP, PREFIX),
                           0o755)

    def start(self, n: str) -> None:
        self.popen(n, ["ucarp", "-i", "eth0", "-s", ADDR[n], "-v", "1", "-p", "benchpw",
                       "-a", VIP, "-u", self.up, "-d", self.down, "-b", str(self.advbase),
                       "-r", str(self.deadratio), "-z", "-M", "-n"])

    def settled(self, n: str, timeout: float) -> None:
        _wait_file(self.log(n), r"Switching to state: (BACKUP|MASTER)", timeout,
                   self.marks[n])


class Heartbeat(System):
    name = "heartbeat"

    def __init__(self, pair: Pair, keepalive: float = 0.2, deadtime: float = 1.0) -> None:
        import heartbeat as hbfix            # tests/heartbeat.py, the shared fixture
        super().__init__(pair)
        self.fix = hbfix
        self.keepalive, self.deadtime = keepalive, deadtime
        self.label = "keepalive %s deadtime %s" % (_ms(keepalive), _ms(deadtime))
        self.detect = deadtime + 1.0
        self.cf = hbfix.hacf(["a", "b"], media=["ucast eth0 %s" % ADDR["a"],
                                                "ucast eth0 %s" % ADDR["b"]],
                             keepalive=_ms(keepalive), warntime=_ms(deadtime * 0.6),
                             deadtime=_ms(deadtime), initdead=_ms(max(2.0, 2 * deadtime)),
                             auto_failback="off")
        self.res = "a IPaddr2::%s/%d/eth0\n" % (VIP, PREFIX)
        self.nodes: dict[str, object] = {}

    def start(self, n: str) -> None:
        node = self.nodes.get(n)
        if node is None:
            node = self.nodes[n] = self.fix.HeartbeatNode(self.pair.lab, self.pair.hosts[n],
                                                          n, self.cf, self.res)
        self.marks[n] = node.mark()
        node.start()
        self.procs[n] = node.proc

    def settled(self, n: str, timeout: float) -> None:
        node = self.nodes[n]
        node.wait_log(r"(Local|remote) [Rr]esource (acquisition|transition) completed|"
                      r"Initial resource acquisition complete|"
                      r"[Rr]esource acquisition completed", timeout, self.marks[n])
        time.sleep(5.5)     # a new node's peer allows it deadtime + 2 s for 5 s (ref. 4.6)

    def planned(self, n: str) -> float:
        t = time.monotonic()
        self.nodes[n].hb_standby("all")
        return t

    def after_planned(self, n: str) -> None:
        time.sleep(1 + 2 * self.deadtime)

    def close(self) -> None:
        for node in self.nodes.values():
            try:
                node.close()
            except Exception:
                pass


def _ms(s: float) -> str:
    return "%dms" % round(s * 1000) if s < 1 or s != int(s) else "%d" % s
