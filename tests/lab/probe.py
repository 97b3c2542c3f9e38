"""Who serves the VIP: a responder on each node, a client asking every 10 ms.

Run inside a namespace (as a program, by the fixtures and the benchmark):

    probe.py serve VIP PORT NAME
        answer every datagram sent to VIP:PORT with NAME.  The socket is bound
        with IP_FREEBIND, so it starts before the node holds the address and
        answers only while the node's kernel holds it.
    probe.py ask VIP PORT OUT [INTERVAL [DURATION [LIMIT]]]
        every INTERVAL seconds (0.01) send two requests and write one line per
        request to OUT once its reply window (LIMIT, 0.03 s) is over:
            SEQ T SERVED HOLDERS
        T is the send time (time.monotonic(), the clock every namespace shares);
        SERVED the nodes that answered an ordinary datagram to the VIP (what a
        client sees: the kernel's ARP entry picks one node); HOLDERS the nodes
        that answered the same request sent as a link-layer broadcast, so every
        node whose kernel holds the VIP answers it.  Each is a comma-separated
        list of NAME:RTT_MS, or `-`.  Stops after DURATION seconds (120) or on
        SIGTERM/SIGINT.

The rest is analysis for tests and the benchmark: read() and the helpers below;
Prober runs `ask` from a lab host.  The lab's two other probers live here too:
Holders samples which namespaces' kernels hold an address (`ip -n NS addr`, every
100 ms: the only way to tell that two nodes hold it at once, since a unicast probe
reaches one MAC), and Ping sends ICMP echo every 10 ms (iputils ping -D), for
systems without a responder.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

PORT = 7407
INTERVAL = 0.01
LIMIT = 0.03
IP_FREEBIND = 15
HERE = os.path.abspath(__file__)


def serve(vip: str, port: int, name: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    s.bind((vip, port))
    me = name.encode()
    while True:
        data, peer = s.recvfrom(512)
        try:
            s.sendto(data + b" " + me, peer)
        except OSError:
            pass


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16:
        n = (n & 0xFFFF) + (n >> 16)
    return ~n & 0xFFFF


def _frame(mac: bytes, src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet broadcast frame carrying a UDP datagram to a unicast address."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def _iface_for(src: str) -> str:
    import fcntl
    for _, name in socket.if_nameindex():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            req = struct.pack("256s", name.encode()[:15])
            addr = fcntl.ioctl(s.fileno(), 0x8915, req)[20:24]   # SIOCGIFADDR
            if socket.inet_ntoa(addr) == src:
                return name
        except OSError:
            pass
        finally:
            s.close()
    raise SystemExit("probe: fatal: unable to find the interface of %s" % src)


def ask(vip: str, port: int, out: str, interval: float = INTERVAL,
        duration: float = 120, limit: float = LIMIT) -> int:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((vip, port))          # only to learn our source address and port
    src, sport = u.getsockname()
    u.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((src, sport))
    u.setblocking(False)
    iface = _iface_for(src)
    with open("/sys/class/net/%s/address" % iface) as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    pending: dict[int, tuple[float, list[str], list[str]]] = {}
    f = open(out, "w", buffering=1 << 16)
    t0 = time.monotonic()
    end = t0 + duration
    nxt = t0
    seq = 0
    last_flush = t0

    def finish(upto: float) -> None:
        for s in sorted(pending):
            t, served, held = pending[s]
            if t + limit > upto:
                break
            f.write("%d %.6f %s %s\n" % (s, t, ",".join(served) or "-", ",".join(held) or "-"))
            del pending[s]

    while not stop:
        now = time.monotonic()
        if now >= nxt:
            if now >= end:
                break
            msg = b"%d" % seq
            pending[seq] = (now, [], [])
            try:
                u.sendto(msg + b" u", (vip, port))
            except OSError:
                pass
            try:
                raw.send(_frame(mac, src, vip, sport, port, msg + b" b"))
            except OSError:
                pass
            seq += 1
            nxt += interval
            if nxt < now:                     # we were late: do not burst
                nxt = now + interval
        finish(now)
        if now - last_flush > 0.1:
            f.flush()
            last_flush = now
        wait = max(0.0, min(nxt, end) - time.monotonic())
        try:
            r, _, _ = select.select([u], [], [], wait)
        except InterruptedError:
            continue
        if not r:
            continue
        now = time.monotonic()
        while True:
            try:
                data = u.recv(512)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            try:
                s_, kind, node = data.decode().split(" ", 2)
                t, served, held = pending[int(s_)]
            except (ValueError, KeyError):
                continue
            rtt = now - t
            if rtt <= limit:
                (served if kind == "u" else held).append("%s:%.1f" % (node, rtt * 1000))
    finish(float("inf"))
    f.close()
    return 0


# -- analysis -------------------------------------------------------------


@dataclass
class Probe:
    seq: int
    t: float
    served: dict[str, float] = field(default_factory=dict)   # node -> rtt ms
    holders: dict[str, float] = field(default_factory=dict)

    @property
    def who(self) -> str | None:
        """The node that served this probe (None: nobody; '+' joins several)."""
        return "+".join(sorted(self.served)) if self.served else None


def _nodes(s: str) -> dict[str, float]:
    if s == "-":
        return {}
    out = {}
    for item in s.split(","):
        name, _, rtt = item.rpartition(":")
        out[name] = float(rtt)
    return out


def read(path: str) -> list[Probe]:
    """Every finished probe in OUT (a running prober's file is read as far as written)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) == 4:
                    out.append(Probe(int(w[0]), float(w[1]), _nodes(w[2]), _nodes(w[3])))
    except FileNotFoundError:
        pass
    return out


def window(probes: list[Probe], since: float = float("-inf"),
           until: float = float("inf")) -> list[Probe]:
    return [p for p in probes if since <= p.t <= until]


@dataclass
class Gap:
    """A run of unserved probes: last served before, first served after."""
    before: Probe | None
    after: Probe | None
    missed: int
    interval: float

    @property
    def ms(self) -> float:
        """The interruption, estimated as missed probes times the interval."""
        return self.missed * self.interval * 1000

    @property
    def start(self) -> float:
        return self.before.t if self.before else float("-inf")


def gaps(probes: list[Probe], interval: float = INTERVAL) -> list[Gap]:
    """Every interruption of service, in time order (an unserved tail counts too)."""
    out: list[Gap] = []
    before: Probe | None = None
    missed = 0
    for p in probes:
        if p.served:
            if missed:
                out.append(Gap(before, p, missed, interval))
            before, missed = p, 0
        else:
            missed += 1
    if missed:
        out.append(Gap(before, None, missed, interval))
    return out


def max_interruption(probes: list[Probe], interval: float = INTERVAL) -> float:
    """The longest interruption in ms (0 when every probe was served)."""
    return max((g.ms for g in gaps(probes, interval)), default=0.0)


def outage_after(probes: list[Probe], t: float, interval: float = INTERVAL) -> Gap | None:
    """The interruption a failure at time t caused: the first gap after t - interval
    that ends served (None if service never stopped)."""
    for g in gaps(window(probes, t - 2 * interval), interval):
        if g.after is not None and g.after.t >= t:
            return g
    return None


def multi(probes: list[Probe], attr: str = "served") -> list[Probe]:
    """Probes answered by more than one node (attr: 'served' or 'holders')."""
    return [p for p in probes if len(getattr(p, attr)) > 1]


def servers(probes: list[Probe]) -> list[tuple[str | None, float, float, int]]:
    """Runs of the same answer: (who or None, first t, last t, count)."""
    out: list[tuple[str | None, float, float, int]] = []
    for p in probes:
        w = p.who
        if out and out[-1][0] == w:
            out[-1] = (w, out[-1][1], p.t, out[-1][3] + 1)
        else:
            out.append((w, p.t, p.t, 1))
    return out


# -- running them from a test or the benchmark -------------------------------


def responder(host, vip: str, name: str, port: int = PORT):
    """Start `probe.py serve` in host (a netns.Host); returns its Popen."""
    return host.popen(["/usr/bin/python3", HERE, "serve", vip, str(port), name],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Prober:
    """`probe.py ask` running in a client host, its output in the lab's directory."""

    def __init__(self, host, vip: str, port: int = PORT, interval: float = INTERVAL,
                 duration: float = 120, limit: float = LIMIT, tag: str = "") -> None:
        import itertools
        Prober._n = getattr(Prober, "_n", itertools.count())
        self.host = host
        self.interval = interval
        self.out = os.path.join(host.lab.tmp, "probe%s-%d" % (tag, next(Prober._n)))
        self.proc = host.popen(["/usr/bin/python3", HERE, "ask", vip, str(port), self.out,
                                repr(interval), repr(duration), repr(limit)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def probes(self) -> list[Probe]:
        return read(self.out)

    def stop(self) -> list[Probe]:
        """End the prober (it writes what it has) and return every probe."""
        self.host.lab.stop(self.proc, signal.SIGTERM)
        return self.probes()

    def wait_served(self, who: str | None, timeout: float = 10, count: int = 3,
                    since: float = float("-inf")) -> float:
        """Until `count` probes in a row after `since` were served by `who`
        (None: by nobody); returns the send time of the first of them."""
        deadline = time.monotonic() + timeout
        while True:
            run = 0
            for p in window(self.probes(), since):
                run = run + 1 if p.who == who else 0
                if run == 1:
                    first = p.t
                if run >= count:
                    return first
            if self.proc.poll() is not None:
                raise AssertionError("the prober exited: %s" % self.proc.stderr.read())
            if time.monotonic() > deadline:
                tail = servers(window(self.probes(), since))[-6:]
                raise AssertionError("the VIP was not served by %s within %.1fs; last: %s"
                                     % (who, timeout, tail))
            time.sleep(0.05)


# -- the other two probers ----------------------------------------------------


class Holders(threading.Thread):
    """Which namespaces' kernels hold an address, sampled every 100 ms with
    `ip -n NS addr` (nodes: {name: namespace})."""

    def __init__(self, nodes: dict[str, str], addr: str, limit: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.nodes, self.addr, self.limit = nodes, addr, limit
        self.samples: list[tuple[float, frozenset]] = []
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        while not self.done.is_set() and time.monotonic() < end:
            t = time.monotonic()
            held = self.read(list(self.nodes.items()))
            if len(held) > 1:
                # the nodes are read one after another: an address moving from one read
                # to a later one looks held by both; read again in the reverse order, and
                # a true double is seen both times
                held &= self.read(list(self.nodes.items())[::-1])
            self.samples.append((t, frozenset(held)))
            self.done.wait(max(0.0, t + 0.1 - time.monotonic()))

    def read(self, nodes: list[tuple[str, str]]) -> set:
        held = set()
        for name, ns in nodes:
            out = subprocess.run(["ip", "-n", ns, "-o", "addr", "show"],
                                 capture_output=True, text=True, timeout=5).stdout
            if " %s/" % self.addr in out:
                held.add(name)
        return held

    def seen(self, names: set, since: float) -> bool:
        return any(t >= since and set(h) == names for t, h in self.samples)

    def since(self, t0: float) -> list[frozenset]:
        return [h for t, h in self.samples if t >= t0]

    def stop(self) -> list[tuple[float, frozenset]]:
        self.done.set()
        self.join(10)
        return self.samples


class Ping:
    """ICMP echo to an address every 10 ms from a client host (iputils ping -D)."""

    RX = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ([0-9.]+): icmp_seq=(\d+)(.*)$")

    def __init__(self, host, addr: str, interval: float = 0.01,
                 duration: float = 60) -> None:
        self.host = host
        self.addr = addr
        self.out = os.path.join(host.lab.tmp, "probe-%s-%d" % (addr, id(self)))
        self._f = open(self.out, "w")
        count = int(duration / interval)
        self.proc = host.popen(["stdbuf", "-oL", "ping", "-n", "-D", "-i", "%g" % interval,
                                "-W", "1", "-c", str(count), addr],
                               stdout=self._f, stderr=subprocess.STDOUT)
        self.t0 = time.time()

    def stop(self) -> None:
        self.host.lab.stop(self.proc, signal.SIGINT)
        self._f.close()

    def replies(self) -> list[tuple[float, int, bool]]:
        """(epoch time, icmp_seq, duplicate) of every reply so far."""
        out = []
        with open(self.out) as f:
            for line in f:
                m = self.RX.match(line.strip())
                if m:
                    out.append((float(m.group(1)), int(m.group(3)), "DUP" in m.group(4)))
        return out

    def replied_since(self, t: float) -> bool:
        return any(ts >= t for ts, _, _ in self.replies())

    def gaps(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Silences between consecutive replies in [since, until], largest first.

        The reply just before `since` and just after `until` bound the window, so a
        silence that spans either edge counts whole."""
        ts = sorted(t for t, _, dup in self.replies() if not dup)
        before = [t for t in ts if t < since][-1:]
        after = [t for t in ts if t > until][:1]
        ts = before + [t for t in ts if since <= t <= until] + after
        return sorted((b - a for a, b in zip(ts, ts[1:])), reverse=True)

    def outage(self, since: float = 0.0, until: float = float("inf")) -> float:
        """The longest silence (seconds) in the window, less one probe interval."""
        g = self.gaps(since, until)
        return max(0.0, (g[0] if g else 0.0) - 0.01)

    def duplicates(self, since: float = 0.0) -> int:
        return sum(1 for t, _, dup in self.replies() if dup and t >= since)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "serve":
        return serve(argv[1], int(argv[2]), argv[3])
    if 4 <= len(argv) <= 7 and argv[0] == "ask":
        return ask(argv[1], int(argv[2]), argv[3], *[float(a) for a in argv[4:]])
    sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
    return 100


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
