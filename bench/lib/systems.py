"""The failover systems the bench compares, each run in a Pair's namespaces.

A system starts its daemons on a node, says when a node has settled, and makes
a planned switch-over the way its users do:
  keepalived  VRRPv3 unicast; planned = stop the master (SIGTERM: priority 0)
  ucarp       CARP over broadcast (-M); planned = stop the master (SIGTERM, -z)
  heartbeat   Debian's Heartbeat 3.0.6 (tests/lab/heartbeat.py); planned = hb_standby
  hb          hb-supervise (or hb-beat | hb-watch); planned = hb-switch standby
  python3     not a failover system: floorbeat.py, a yardstick for footprint
Every system runs with the roles symmetric (no preemption, no auto_failback), so
after a failover the survivor keeps the VIP and the rebooted node rejoins.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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

    def rebooted(self, n: str) -> None:
        """Node n comes back from a power loss: what a reboot clears (/run) goes."""

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

    def vrrp(self, n: str) -> tuple[str, str, str, str]:
        """(interface, tracked interfaces, our address, the peer's) for VRRP."""
        return "eth0", "", ADDR[n], ADDR[self.pair.peer(n)]

    def start(self, n: str) -> None:
        iface, track, me, peer = self.vrrp(n)
        track = "  track_interface {\n    %s\n  }\n" % track if track else ""
        conf = _write(os.path.join(self.tmp, "keepalived-%s.conf" % n), """\
global_defs {
  router_id %s
  vrrp_version 3
}
vrrp_instance VI {
  state BACKUP
  nopreempt
  interface %s
%s  virtual_router_id 51
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
""" % (n, iface, track, self.advert, me, peer, VIP, PREFIX))
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


class PythonFloor(System):
    """Not a failover system: floorbeat.py, the least a heartbeat in Python does (a
    signed status sent and the peer's checked every keepalive), measured beside hb
    as the interpreter's share of a beat."""
    name = "python3"

    def __init__(self, pair: Pair, keepalive: float = 1.0) -> None:
        super().__init__(pair)
        self.keepalive = keepalive
        self.label = "floorbeat.py, keepalive %s" % _ms(keepalive)

    def start(self, n: str) -> None:
        peer = ADDR["b" if n == "a" else "a"]
        self.popen(n, [sys.executable, os.path.join(os.path.dirname(__file__), "floorbeat.py"),
                       n, peer, str(self.keepalive)])

    def settled(self, n: str, timeout: float) -> None:
        _wait_file(self.log(n), r"running:", timeout, self.marks[n])


class Heartbeat(System):
    name = "heartbeat"

    def __init__(self, pair: Pair, keepalive: float = 0.2, deadtime: float = 1.0) -> None:
        from lab import heartbeat as hbfix   # the tests' Heartbeat node
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
        self.fix.close_all(list(self.nodes.values()))


def _ms(s: float) -> str:
    return "%dms" % round(s * 1000) if s < 1 or s != int(s) else "%d" % s


class Hb(System):
    """hb-supervise on each node, ucast on eth0 like the others, realtime on."""
    name = "hb"

    @staticmethod
    def available() -> bool:
        from pair import ROOT
        return os.access(os.path.join(ROOT, "bin", "hb-supervise"), os.X_OK)

    def __init__(self, pair: Pair, keepalive: float = 0.2, deadtime: float = 1.0,
                 realtime: bool = True, label: str = "") -> None:
        super().__init__(pair)
        self.keepalive, self.deadtime = keepalive, deadtime
        self.label = label or "keepalive %s deadtime %s" % (_ms(keepalive), _ms(deadtime))
        self.detect = deadtime + 1.0
        self.dirs: dict[str, dict[str, str]] = {}
        cf = "\n".join([
            "keepalive %s" % _ms(keepalive), "deadtime %s" % _ms(deadtime),
            "initdead %s" % _ms(max(1.0, 2 * deadtime)), "udpport 694",
            "ucast eth0 %s" % ADDR["a"], "ucast eth0 %s" % ADDR["b"],
            "auto_failback off", "realtime %s" % ("on" if realtime else "off"),
            "node a b", ""])
        # the run directory on a tmpfs, as /run is on a Debian system (a rename
        # there costs ~10 us; on this disk's file system, 350 us once a second)
        self.shm = tempfile.mkdtemp(prefix="hb-bench-", dir="/dev/shm") \
            if os.path.isdir("/dev/shm") else os.path.join(self.tmp, "run")
        for n in "ab":
            d = {k: os.path.join(self.tmp, "hb-" + n, k) for k in ("ha.d", "state")}
            d["run"] = os.path.join(self.shm, "hb-" + n)
            for k in ("ha.d", "state"):
                os.makedirs(d[k], exist_ok=True)
            _write(os.path.join(d["ha.d"], "ha.cf"), "logfile %s\n" % self.log(n) + cf)
            _write(os.path.join(d["ha.d"], "haresources"), "a %s/%d/eth0\n" % (VIP, PREFIX))
            _write(os.path.join(d["ha.d"], "authkeys"), "auth 1\n1 sha1 bench\n", 0o600)
            self.dirs[n] = d

    def start(self, n: str) -> None:
        d = self.dirs[n]
        self.popen(n, ["hb-supervise", "-c", d["ha.d"], "-r", d["run"], "-s", d["state"],
                       "--node", n, "--fifo", os.path.join(d["state"], "fifo")])

    def status(self, n: str) -> str:
        try:
            with open(os.path.join(self.dirs[n]["run"], "status")) as f:
                return f.read()
        except OSError:
            return ""

    def settled(self, n: str, timeout: float) -> None:
        peer = self.pair.peer(n)
        alone = peer not in self.procs or self.procs[peer].poll() is not None
        self._wait_status(n, (r"^group 1 %s running" % n) if alone else (r"^node %s up" % peer),
                          timeout)

    def _wait_status(self, n: str, want: str, timeout: float) -> None:
        rx = re.compile(want, re.M)
        deadline = time.monotonic() + timeout
        while not rx.search(self.status(n)):
            if time.monotonic() > deadline:
                raise TimeoutError("hb %s: no /%s/ in its status within %.0fs:\n%s"
                                   % (n, want, timeout, self.status(n)))
            time.sleep(0.02)

    def planned(self, n: str) -> float:
        t = time.monotonic()
        r = subprocess.run(["hb-switch", "standby", "-r", self.dirs[n]["run"]], text=True,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("hb-switch standby on %s: %s%s" % (n, r.stdout, r.stderr))
        return t

    def after_planned(self, n: str) -> None:
        pass

    def rebooted(self, n: str) -> None:
        shutil.rmtree(self.dirs[n]["run"], ignore_errors=True)     # /run is a tmpfs

    def close(self) -> None:
        shutil.rmtree(self.shm, ignore_errors=True)


# -- bench/uplink: the same systems with a ping node and a heartbeat link -------
#
# Each node has its uplink on eth0 (the VIP, the router 198.18.0.254 as ping node)
# and a dedicated heartbeat link on eth1 (pair.UplinkPair).  Besides start and
# settled, a system says when a node that got its uplink back counts it as back
# (uplink_back), so that the next failure, of the other node, is judged against
# a peer that reaches the router again.


def _uplink_media() -> list[str]:
    from pair import LINK
    return ["ucast eth1 %s" % LINK["a"], "ucast eth1 %s" % LINK["b"],
            "ucast eth0 %s" % ADDR["a"], "ucast eth0 %s" % ADDR["b"]]


class HbUplink(Hb):
    """hb with `ping ROUTER` and `deadping`: its built-in ipfail, plus the carrier
    of the group's interface (eth0)."""

    def __init__(self, pair: Pair, keepalive: float = 0.1, deadtime: float = 0.5,
                 deadping: float = 1.0) -> None:
        from pair import ROUTER
        super().__init__(pair, keepalive, deadtime, label="keepalive %s deadtime %s "
                         "deadping %s" % (_ms(keepalive), _ms(deadtime), _ms(deadping)))
        self.deadping = deadping
        self.detect = deadping + 1.0
        for n in "ab":
            path = os.path.join(self.dirs[n]["ha.d"], "ha.cf")
            with open(path) as f:
                cf = f.read()
            cf = cf.replace("ucast eth0 %s\nucast eth0 %s\n" % (ADDR["a"], ADDR["b"]),
                            "\n".join(_uplink_media()) + "\n")
            _write(path, cf + "ping %s\ndeadping %s\n" % (ROUTER, _ms(deadping)))

    def settled(self, n: str, timeout: float) -> None:
        super().settled(n, timeout)
        self.uplink_back(n, timeout)

    def mark(self, n: str) -> None:
        pass

    def uplink_back(self, n: str, timeout: float) -> None:
        """n reaches the ping node again, by its own count and its peer's."""
        self._wait_status(n, r"^self %s .*reach=1\b" % n, timeout)
        peer = self.pair.peer(n)
        if peer in self.procs and self.procs[peer].poll() is None:
            self._wait_status(peer, r"^node %s up .*reach=1\b" % n, timeout)


class HeartbeatUplink(Heartbeat):
    """Heartbeat 3.0.6 with `ping ROUTER`, `deadping` and ipfail (haresources mode)."""

    def __init__(self, pair: Pair, keepalive: float = 0.1, deadtime: float = 0.5,
                 deadping: float = 1.0) -> None:
        from pair import ROUTER
        super().__init__(pair, keepalive, deadtime)
        self.deadping = deadping
        self.label = "keepalive %s deadtime %s deadping %s, ipfail" % (
            _ms(keepalive), _ms(deadtime), _ms(deadping))
        self.detect = deadping + 3.0
        self.cf = self.fix.hacf(
            ["a", "b"], media=_uplink_media(), keepalive=_ms(keepalive),
            warntime=_ms(deadtime * 0.6), deadtime=_ms(deadtime),
            initdead=_ms(max(2.0, 2 * deadtime)), auto_failback="off",
            extra="ping %s\ndeadping %s\ncrm off\n"
                  "respawn hacluster /usr/libexec/heartbeat/ipfail\n"
                  "apiauth ipfail gid=haclient uid=hacluster\n" % (ROUTER, _ms(deadping)))

    def uplink_back(self, n: str, timeout: float, ipfail: bool = True) -> None:
        """Heartbeat logs the ping node's link up again; then ipfail, told that the
        ping node came up, asks the peer for its count.  ipfail was seen to handle
        its events up to 10 s late after a giveup, so its own line is waited for
        (after a start, ipfail may have connected after the ping node came up)."""
        from pair import ROUTER
        node = self.nodes[n]
        node.wait_log(r"Link %s:%s up" % (ROUTER, ROUTER), timeout, self.marks[n])
        if ipfail:
            node.wait_log(r"ipfail: .*A ping node just came up", timeout, self.marks[n])
        time.sleep(1.0)

    def settled(self, n: str, timeout: float) -> None:
        super().settled(n, timeout)
        self.uplink_back(n, timeout, ipfail=False)

    def mark(self, n: str) -> None:
        self.marks[n] = self.nodes[n].mark()


class KeepalivedUplink(Keepalived):
    """keepalived, VRRP over the heartbeat link (eth1), the VIP on eth0 and
    `track_interface eth0`: a carrier loss puts the master into FAULT at once."""

    def __init__(self, pair: Pair, advert: float = 0.1) -> None:
        super().__init__(pair, advert)
        self.label = "advert_int %g, track_interface eth0" % advert

    def vrrp(self, n: str) -> tuple[str, str, str, str]:
        from pair import LINK
        return "eth1", "eth0", LINK[n], LINK[self.pair.peer(n)]

    def uplink_back(self, n: str, timeout: float) -> None:
        _wait_file(self.log(n), r"Entering (BACKUP|MASTER) STATE", timeout, self.marks[n])

    def mark(self, n: str) -> None:
        self.marks[n] = _size(self.log(n))
