"""Announcements as the agent named, seen on the wire by tcpdump, and the neighbour
check after a takeover (a gateway namespace that answers, and one that does not).

The announcer runs the address agent as hb-watch does (agents.Caller, in-process,
the repeats on a thread) or as a command (hb-ipaddr, the repeats in a child);
a third namespace captures with tcpdump, bounded by -c and timeout."""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess

from lab import heartbeat
from lab.wait import readline

VIP, VIP6 = "198.18.0.100", "2001:db8::100"
GW, GW6 = "198.18.0.254", "2001:db8::fe"

# Runs in the announcer's namespace: starts one resource the way hb-watch does, waits
# for the announcements and the neighbour check to end, prints what happened.
AGENT = r"""
import json, logging, sys, threading, time
from hb import address, addrspec, agents
from hb.settings import Resource
name, arg, pings, d = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
logging.basicConfig(filename=d + "/log", level=logging.INFO, format="%(message)s")
print(json.dumps(address.warm([arg], pings)))
c = agents.Caller(d, "a", d, d)
t0 = time.monotonic()
rc, text = c.call(Resource(name, [arg], name + "::" + arg, 1), "start")
took = time.monotonic() - t0
for t in threading.enumerate():
    if t.name.startswith("announce "):
        t.join(15)
assert address.wait_neighbours(15)
try:
    ip = addrspec.parse(arg).ip
except addrspec.SpecError:
    ip = None
print(json.dumps([rc, text, took, address.neighbours.get(ip), address.neighbour_field([ip])]))
"""


def mac_of(host, iface="eth0"):
    return host.run(["cat", "/sys/class/net/%s/address" % iface]).stdout.strip()


def lan(lab, v6=True):
    a = lab.host("a", "198.18.0.1/24")
    c = lab.host("c", "198.18.0.3/24")
    g = lab.host("g", GW + "/24")
    if v6:
        for h, n in ((a, "1"), (c, "3"), (g, "fe")):
            h.run(["ip", "addr", "add", "2001:db8::%s/64" % n, "dev", "eth0", "nodad"])
    return a, c, g


class Tcpdump:
    """tcpdump -w in a namespace, bounded by -c and timeout; read() parses the pcap."""

    def __init__(self, lab, host, expr, count, seconds):
        self.path = os.path.join(lab.tmp, "cap%d.pcap" % id(self))
        self.p = host.popen(["timeout", str(seconds), "tcpdump", "-i", "eth0", "-n", "-U",
                             "-c", str(count), "-w", self.path, expr],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = readline(self.p.stderr, seconds)    # "listening on eth0, ..." once ready
        assert "listening on" in line, line

    def read(self, timeout):
        self.p.wait(timeout)
        with open(self.path, "rb") as f:
            data = f.read()
        magic = struct.unpack_from("<I", data)[0]
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        out, off = [], 24
        while off + 16 <= len(data):
            sec, frac, incl, _orig = struct.unpack_from("<IIII", data, off)
            out.append((sec + frac * scale, data[off + 16:off + 16 + incl]))
            off += 16 + incl
        return out


def arp_filter(mac, ip):
    """Gratuitous ARP frames from mac for ip: sender and target address ip."""
    h = socket.inet_aton(ip).hex()
    return "ether src %s and arp and arp[14:4] = 0x%s and arp[24:4] = 0x%s" % (mac, h, h)


def na_filter(mac, ip):
    return "ether src %s and ip6 src %s and icmp6 and ip6[40] == 136" % (mac, ip)


def run_agent(lab, host, name, arg, pings=(), strict=True):
    r = host.run(["/usr/bin/python3", "-c", AGENT, name, arg, json.dumps(list(pings)),
                  lab.tmp], timeout=30)
    warm, res = [json.loads(x) for x in r.stdout.splitlines()]
    assert warm == [] or not strict, warm
    return res


def check_schedule(frames, pairs, gap, ipv6=False):
    """pairs request+reply (IPv4) or pairs advertisements (IPv6), gap seconds apart."""
    times = [t for t, _f in frames]
    n = pairs if ipv6 else 2 * pairs
    assert len(frames) == n, [round(t - times[0], 3) for t in times]
    if not ipv6:
        ops = [struct.unpack_from("!H", f, 20)[0] for _t, f in frames]
        assert ops == [1, 2] * pairs, ops
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert abs(statistics.median(gaps) - gap) < 0.03, gaps
    assert all(gap - 0.05 < g < gap + 0.25 for g in gaps), gaps
    span = times[-1] - times[0]
    assert abs(span - gap * (n - 1)) < 0.3, span


def test_ipaddr_announces_as_heartbeats_ipaddr(lab):
    """IPaddr: 10 request+reply pairs, frames 250 ms apart (4.75 s), off the caller's
    thread: the in-process start returns at once."""
    a, c, _g = lan(lab, v6=False)
    cap = Tcpdump(lab, c, arp_filter(mac_of(a), VIP), 21, 8)
    rc, text, took, _nbr, _field = run_agent(lab, a, "IPaddr", VIP)
    assert (rc, text) == (0, "added %s/24 on eth0:0" % VIP)      # IPaddr: an alias label
    assert took < 2.0        # the announcements take 4.75 s
    check_schedule(cap.read(10), 10, 0.25)


def test_ipaddr2_announces_as_heartbeats_ipaddr2(lab):
    """IPaddr2: 5 pairs, frames 100 ms apart (0.9 s)."""
    a, c, _g = lan(lab, v6=False)
    cap = Tcpdump(lab, c, arp_filter(mac_of(a), VIP), 11, 4)
    rc, text, _took, _nbr, _field = run_agent(lab, a, "IPaddr2", VIP + "/24/eth0")
    assert rc == 0, text
    check_schedule(cap.read(6), 5, 0.1)


def test_haresources_parameters_change_count_and_spacing(lab):
    """IPaddr::VIP::arp_count=3::arp_interval=600: 3 pairs, frames 300 ms apart; and
    the command: hb-ipaddr --agent IPaddr2 VIP::ARP_REPEAT=4::ARP_INTERVAL_MS=160."""
    a, c, _g = lan(lab, v6=False)
    cap = Tcpdump(lab, c, arp_filter(mac_of(a), VIP), 7, 4)
    rc, text, _took, _nbr, _field = run_agent(lab, a, "IPaddr",
                                              VIP + "::arp_count=3::arp_interval=600")
    assert rc == 0, text
    check_schedule(cap.read(6), 3, 0.3)
    assert a.run(["hb-ipaddr", VIP, "stop"]).returncode == 0
    cap = Tcpdump(lab, c, arp_filter(mac_of(a), VIP), 9, 4)
    r = a.run(["hb-ipaddr", "--agent", "IPaddr2", "--no-dad",
               VIP + "::ARP_REPEAT=4::ARP_INTERVAL_MS=160", "start"])
    assert r.returncode == 0, r.stderr
    check_schedule(cap.read(6), 4, 0.08)


def test_hb_ipaddr_agent_option_and_ipv6_advertisements(lab):
    """hb-ipaddr --agent IPaddr on IPv6: 10 unsolicited advertisements 500 ms apart."""
    a, c, _g = lan(lab)
    cap = Tcpdump(lab, c, na_filter(mac_of(a), VIP6), 11, 7.5)
    r = a.run(["hb-ipaddr", "--agent", "IPaddr", VIP6 + "/64/eth0", "start"])
    assert r.returncode == 0, r.stderr
    check_schedule(cap.read(9), 10, 0.5, ipv6=True)


def test_neighbour_check_gateway_answers_and_learns_the_address(lab):
    """The gateway answers the ARP request sent from the VIP, and its entry for the VIP
    now points at this node (no announcement sent: arp_count=0)."""
    a, c, g = lan(lab, v6=False)
    a.run(["ip", "route", "add", "default", "via", GW])
    g.run(["ip", "neigh", "replace", VIP, "lladdr", "02:00:00:00:00:99", "dev", "eth0",
           "nud", "stale"])
    rc, text, _took, nbr, field = run_agent(lab, a, "IPaddr2", VIP + "/24::arp_count=0")
    assert rc == 0, text
    ok, secs, detail = nbr
    assert ok and 0 < secs < 1.0, nbr
    assert detail == "%s answered %s in %d ms" % (GW, VIP, round(secs * 1000))
    assert field == "ok:%dms" % round(secs * 1000)
    neigh = g.run(["ip", "neigh", "show", VIP, "dev", "eth0"]).stdout
    assert "lladdr " + mac_of(a) in neigh, neigh
    log = open(os.path.join(lab.tmp, "log")).read()
    assert "neighbour check %s on eth0: %s answered" % (VIP, GW) in log


def test_neighbour_check_gateway_silent(lab):
    """A gateway that does not answer ARP (arp_ignore=8): failure after the bound,
    in the log as a warning and in the group's field."""
    a, c, g = lan(lab, v6=False)
    a.run(["ip", "route", "add", "default", "via", GW])
    for conf in ("all", "eth0"):
        g.run(["sysctl", "-qw", "net.ipv4.conf.%s.arp_ignore=8" % conf])
    rc, text, took, nbr, field = run_agent(lab, a, "IPaddr2", VIP + "/24")
    assert rc == 0 and took < 0.5, text     # the check never delays the start
    ok, secs, detail = nbr
    assert not ok and 0.9 < secs < 3, nbr
    assert detail == "%s did not answer %s within 1 s" % (GW, VIP)
    assert field == "fail:" + VIP
    assert "neighbour check %s on eth0: %s" % (VIP, detail) in \
        open(os.path.join(lab.tmp, "log")).read()


def test_neighbour_check_asks_ping_nodes_without_a_gateway(lab):
    """No default route on the VIP's interface: the ha.cf ping nodes in its subnet."""
    a, c, g = lan(lab, v6=False)
    rc, text, _took, nbr, _field = run_agent(lab, a, "IPaddr2", VIP + "/24",
                                             pings=["203.0.113.1", "198.18.0.3"])
    assert rc == 0, text
    assert nbr[0] and nbr[2].startswith("198.18.0.3 answered"), nbr
    rc, text, _took, nbr, field = run_agent(lab, a, "IPaddr2", "198.18.0.101/24",
                                            pings=["203.0.113.1"])
    assert nbr == [False, 0.0, "no gateway or ping node in the subnet to ask"]
    assert field == "none"


def test_neighbour_check_ipv6_gateway(lab):
    """IPv6: a neighbour solicitation from the VIP; the gateway's advertisement."""
    a, c, g = lan(lab)
    a.run(["ip", "-6", "route", "add", "default", "via", GW6])
    rc, text, _took, nbr, field = run_agent(lab, a, "IPaddr2", VIP6 + "/64")
    assert rc == 0, text
    assert nbr[0] and nbr[2].startswith("%s answered %s" % (GW6, VIP6)), nbr
    neigh = g.run(["ip", "-6", "neigh", "show", VIP6, "dev", "eth0"]).stdout
    assert "lladdr " + mac_of(a) in neigh, neigh
    g.run(["ip", "addr", "del", GW6 + "/64", "dev", "eth0"])          # now nobody answers
    a.run(["ip", "addr", "del", VIP6 + "/64", "dev", "eth0"])
    rc, text, _took, nbr, field = run_agent(lab, a, "IPaddr2", VIP6 + "/64")
    assert rc == 0 and nbr[0] is False and "did not answer" in nbr[2], nbr


# -- against Heartbeat 3.0.6's own agents ----------------------------------------------

def heartbeat_ra(host, agent, spec, action):
    """Heartbeat's /etc/ha.d/resource.d/AGENT SPEC ACTION in host's namespace, with a
    private /run (its pid files) and no logging outside the test."""
    env = dict(os.environ, HA_LOGFILE="/dev/null", HA_DEBUGLOG="/dev/null", HA_use_logd="no")
    return host.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount -t tmpfs tmpfs /run && mkdir -p /run/resource-agents && exec "$@"',
                     "hb-ra", "/etc/ha.d/resource.d/" + agent, spec, action],
                    env=env, check=False, timeout=30)


def shape(frames, mac, ip):
    """Each frame's Ethernet destination and ARP body with this sender's MAC and
    address blanked, and the gaps between frames."""
    m, a = bytes.fromhex(mac.replace(":", "")), socket.inet_aton(ip)
    body = [(f[:6] + f[12:42]).replace(m, b"M" * 6).replace(a, b"A" * 4) for _t, f in frames]
    times = [t for t, _f in frames]
    return body, [y - x for x, y in zip(times, times[1:])]


def test_announcements_match_heartbeats_own_agents(lab):
    """The same frames, the same count and spacing as Heartbeat's IPaddr and IPaddr2
    (send_arp) on the same wire: hb's in-process agent against the real scripts."""
    heartbeat.need_heartbeat()
    a, c, _g = lan(lab, v6=False)
    mac = mac_of(a)
    for n, (agent, frames, seconds) in enumerate((("IPaddr2", 10, 3), ("IPaddr", 20, 7.5))):
        theirs_ip, ours_ip = "198.18.0.%d" % (110 + n), "198.18.0.%d" % (120 + n)
        cap = Tcpdump(lab, c, arp_filter(mac, theirs_ip), frames + 1, seconds)
        r = heartbeat_ra(a, agent, theirs_ip + "/24/eth0", "start")
        assert r.returncode == 0, r.stdout + r.stderr
        theirs = shape(cap.read(seconds + 2), mac, theirs_ip)
        cap = Tcpdump(lab, c, arp_filter(mac, ours_ip), frames + 1, seconds)
        rc, text, _took, _nbr, _field = run_agent(lab, a, agent, ours_ip + "/24/eth0")
        assert rc == 0, text
        ours = shape(cap.read(seconds + 2), mac, ours_ip)
        assert len(theirs[0]) == frames, agent
        assert ours[0] == theirs[0], agent
        assert abs(statistics.median(ours[1]) - statistics.median(theirs[1])) < 0.02, \
            (agent, ours[1], theirs[1])
        assert abs(sum(ours[1]) - sum(theirs[1])) < 0.25, (agent, ours[1], theirs[1])


def kernel_view(host, ip):
    """(address/prefix, broadcast, label) as the kernel holds ip, or None."""
    for line in host.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout.splitlines():
        w = line.split("\\")[0].split()
        if w[3].split("/")[0] == ip:
            brd = w[w.index("brd") + 1] if "brd" in w else None
            label = w[-1] if w[2] == "inet" and w[-1].startswith("eth0") else None
            return w[3], brd, label
    return None


# agent, spec, and for a deliberate deviation (what Heartbeat does, what hb does)
SPECS = [
    ("IPaddr2", "198.18.0.100/24/eth0", None),
    ("IPaddr2", "198.18.0.100", None),
    ("IPaddr2", "198.18.0.100/255.255.255.0/eth0", None),
    ("IPaddr2", "198.18.0.100/24/eth0:1:2", None),
    ("IPaddr2", "198.18.0.100/24/eth0:web/198.18.0.127", None),
    ("IPaddr2", "198.18.0.100/24/198.18.0.127", None),
    ("IPaddr2", "198.18.0.100/24/eth0/-", None),
    ("IPaddr2", "198.18.0.100/24/eth0/+", None),
    ("IPaddr2", "198.18.0.100/33/eth0", None),
    ("IPaddr2", "198.18.0.100/0/eth0", None),
    ("IPaddr2", "198.18.0.100/255.0.255.0/eth0", None),
    ("IPaddr2", "198.18.0.100/24/eth0:labellabellabel", None),
    ("IPaddr2", "198.18.0.300/24", None),
    ("IPaddr2", "0.1.2.3/8/eth0", None),
    ("IPaddr2", "198.18.0.100/24/nosuch0", None),
    ("IPaddr2", "203.0.113.5", None),
    ("IPaddr2", "2001:db8::100/64/eth0:1", None),
    ("IPaddr2", "2001:db8::100/129", None),
    ("IPaddr2", "fe80::100", None),
    ("IPaddr2", "::ffff:198.18.0.100/120/eth0", None),
    ("IPaddr", "198.18.0.100/24/eth0", None),
    ("IPaddr", "198.18.0.100", None),
    ("IPaddr", "198.18.0.100/25/eth0", None),
    ("IPaddr", "198.18.0.100/16/eth0", None),
    ("IPaddr", "198.18.0.300/24", None),
    # deliberate deviations: IPv6 (Heartbeat's IPaddr2 wrapper sets lvs_support, which
    # IPaddr2 refuses with IPv6); the broadcast of a prefix other than the interface's
    # (IPaddr2 copies the interface's, or sets none); a multicast group taken as a
    # host address; an empty netmask read as the netmask 'eth0'; /024 handed to
    # ip(8), which reads octal
    ("IPaddr2", "198.18.0.100/25/eth0",
     (("198.18.0.100/25", "198.18.0.255", "eth0"), ("198.18.0.100/25", "198.18.0.127", "eth0"))),
    ("IPaddr2", "198.18.0.100/16/eth0",
     (("198.18.0.100/16", None, "eth0"), ("198.18.0.100/16", "198.18.255.255", "eth0"))),
    ("IPaddr2", "2001:db8::100/64/eth0", ("refused", ("2001:db8::100/64", None, None))),
    ("IPaddr2", "2001:db8::100", ("refused", ("2001:db8::100/64", None, None))),
    ("IPaddr2", "224.0.0.100/24/eth0", (("224.0.0.100/24", None, "eth0"), "refused")),
    ("IPaddr2", "198.18.0.100//eth0",
     ("refused", ("198.18.0.100/24", "198.18.0.255", "eth0"))),
    ("IPaddr2", "198.18.0.100/024/eth0", (("198.18.0.100/20", None, "eth0"), "refused")),
]


def test_the_grammar_against_heartbeats_agents(lab):
    """Each spec started by Heartbeat's IPaddr or IPaddr2 and by hb's agent of the same
    name on the same host: both refuse, or both put the same address, prefix,
    broadcast and label in the kernel; the deliberate deviations are listed."""
    heartbeat.need_heartbeat()
    a = lab.host("a", None)
    a.run(["ip", "addr", "add", "198.18.0.1/24", "brd", "+", "dev", "eth0"])
    a.run(["ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
    seen = []
    for agent, spec, deviation in SPECS:
        ip = spec.split("/")[0]
        r = heartbeat_ra(a, agent, spec, "start")
        theirs = kernel_view(a, ip) if r.returncode == 0 else "refused"
        if theirs != "refused":
            a.run(["ip", "addr", "del", theirs[0], "dev", "eth0"])
        rc, text, _took, _nbr, _field = run_agent(lab, a, agent, spec + "::arp_count=1",
                                                  strict=False)
        ours = kernel_view(a, ip) if rc == 0 else "refused"
        if ours != "refused":
            a.run(["ip", "addr", "del", ours[0], "dev", "eth0"])
        seen.append((agent, spec, theirs, ours))
        want = (theirs, theirs) if deviation is None else deviation
        assert (theirs, ours) == want, (agent, spec, theirs, ours, text, r.stdout)
    assert sum(t == "refused" for _a, _s, t, _o in seen) >= 10
    assert sum(t != "refused" for _a, _s, t, _o in seen) >= 10


# -- the whole daemon -------------------------------------------------------------------

def test_hb_watch_announces_from_haresources_and_checks_the_gateway(lab):
    """hb-supervise with `IPaddr::VIP/24/eth0::arp_count=3::arp_interval=300`: the
    owner announces 3 pairs 150 ms apart, labels the address eth0:0 as IPaddr does,
    and its status says the gateway answered (nbr=ok); after a power loss the peer
    announces the same way and, the gateway now silent, says nbr=fail."""
    from lab.pair import HbPair
    pair = HbPair(lab, haresources="alpha IPaddr::%s/24/eth0::arp_count=3::arp_interval=300\n"
                  % VIP)
    alpha, beta = pair["alpha"], pair["beta"]
    g = lab.host("g", GW + "/24")
    for n in (alpha, beta):
        n.host.run(["ip", "route", "add", "default", "via", GW])
    cap = Tcpdump(lab, g, arp_filter(mac_of(alpha.host), VIP), 7, 15)
    pair.start()
    pair.wait(alpha.has_vip, timeout=15, what="alpha to take the VIP")
    check_schedule(cap.read(17), 3, 0.15)
    assert "eth0:0" in alpha.host.run(["ip", "-o", "addr", "show", "label", "eth0:0"]).stdout
    line = "neighbour check %s on eth0: %s answered %s in " % (VIP, GW, VIP)
    pair.wait(lambda: line in alpha.log(), timeout=5, what="alpha's neighbour check")
    pair.wait(lambda: nbr(alpha).startswith("ok:"), timeout=5, what="nbr=ok in status")
    doc = json.loads(alpha.switch("status", "--format=json").stdout)
    got = doc["groups"][0]["neighbours"]
    assert got["result"] == "ok" and isinstance(got["ms"], int) and got["address"] is None
    assert "neighbours ok:" in alpha.switch("status").stdout
    pair.wait_up()
    # the gateway stops answering ARP: beta's takeover reports that nobody answered
    g.run(["sysctl", "-qw", "net.ipv4.conf.eth0.arp_ignore=8"])
    cap = Tcpdump(lab, g, arp_filter(mac_of(beta.host), VIP), 7, 10)
    alpha.power_loss()
    pair.wait(beta.has_vip, timeout=10, what="beta to take the VIP over")
    check_schedule(cap.read(12), 3, 0.15)
    pair.wait(lambda: nbr(beta) == "fail:" + VIP, timeout=10, what="beta's nbr=fail")
    assert "neighbour check %s on eth0: " % VIP in beta.log()
    doc = json.loads(beta.switch("status", "--format=json").stdout)
    assert doc["groups"][0]["neighbours"] == {"result": "fail", "ms": None, "address": VIP}


def nbr(node) -> str:
    """The `nbr=` of the node's group 1 in its status file, '' without one."""
    groups = [g for g in node.status()["group"] if g["index"] == "1"]
    return groups[0].get("nbr", "") if groups else ""
