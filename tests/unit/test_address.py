"""address.py's pure parts: findif, frames, announcement schedules, neighbour targets,
netlink parsing."""

import socket
import struct
import subprocess
import sys

import pytest

from hb import address as A
from hb.address import AF_INET, AF_INET6, Addr, SpecError


def raw(ip):
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


def test_the_grammar_is_addrspec():
    """Specs and OCF parameters are parsed by hb.addrspec (tests/unit/test_addrspec.py)."""
    from hb import addrspec
    assert A.parse_spec is addrspec.parse and A.from_ocf is addrspec.from_ocf
    assert A.Spec is addrspec.Spec and A.SpecError is addrspec.SpecError


def test_subnets_and_broadcast():
    assert A.in_subnet(raw("198.18.0.100"), raw("198.18.0.1"), 24)
    assert not A.in_subnet(raw("198.18.1.100"), raw("198.18.0.1"), 24)
    assert A.in_subnet(raw("2001:db8::100"), raw("2001:db8::1"), 64)
    assert not A.in_subnet(raw("2001:db8:1::100"), raw("2001:db8::1"), 64)
    assert not A.in_subnet(raw("198.18.0.1"), raw("2001:db8::1"), 0)
    assert A.broadcast_of("198.18.0.100", 24) == "198.18.0.255"
    assert A.broadcast_of("198.18.0.100", 15) == "198.19.255.255"
    assert A.broadcast_of("198.18.0.100", 31) is None


ADDRS = [
    Addr(AF_INET, raw("127.0.0.1"), 8, 1, "lo"),
    Addr(AF_INET, raw("198.18.0.1"), 24, 2, "eth0"),
    Addr(AF_INET, raw("198.51.100.1"), 24, 3, "eth1"),
    Addr(AF_INET, raw("198.51.100.200"), 25, 4, "eth2"),
    Addr(AF_INET6, raw("2001:db8::1"), 64, 2, "eth0"),
    Addr(AF_INET6, raw("fe80::1"), 64, 2, "eth0"),
    Addr(AF_INET6, raw("fe80::2"), 64, 3, "eth1"),
]


@pytest.mark.parametrize("spec,want", [
    ("198.18.0.100", ("eth0", 24)),
    ("198.18.0.100/32", ("eth0", 32)),
    ("198.18.0.100/24/eth5", ("eth5", 24)),
    ("198.51.100.7/24/eth1", ("eth1", 24)),
    ("198.51.100.7//eth1", ("eth1", 24)),
    ("198.51.100.250//eth2", ("eth2", 25)),
    ("2001:db8::100", ("eth0", 64)),
    ("2001:db8::100/128", ("eth0", 128)),
])
def test_findif(spec, want):
    assert A.findif(A.parse_spec(spec), ADDRS) == want


@pytest.mark.parametrize("spec,msg", [
    ("203.0.113.5", "no interface has a subnet containing 203.0.113.5"),
    ("198.51.100.250", r"several interfaces .* \(eth1 eth2\)"),
    ("198.18.0.100//eth1", "no subnet on eth1 contains"),
    ("2001:db8:5::1", "no interface"),
])
def test_findif_errors(spec, msg):
    with pytest.raises(SpecError, match=msg):
        A.findif(A.parse_spec(spec), ADDRS)


def test_findif_ignores_the_address_itself():
    held = ADDRS + [Addr(AF_INET, raw("203.0.113.5"), 24, 3, "eth1")]
    with pytest.raises(SpecError, match="no interface"):
        A.findif(A.parse_spec("203.0.113.5"), held)


MAC = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("020000000002")


def test_garp_frames_are_request_and_reply():
    req, rep = A.garp_frames(MAC, raw("198.18.0.100"))
    assert len(req) == len(rep) == 60
    assert req[:6] == rep[:6] == b"\xff" * 6 and req[6:12] == MAC
    assert req[12:22] == bytes.fromhex("08060001080006040001")
    assert rep[20:22] == b"\x00\x02"
    for f in (req, rep):
        assert f[22:28] == MAC and f[28:32] == f[38:42] == raw("198.18.0.100")
    assert req[32:38] == b"\0" * 6 and rep[32:38] == MAC
    probe = A.arp_probe_frame(MAC, raw("198.18.0.100"))
    assert probe[28:32] == b"\0" * 4 and probe[38:42] == raw("198.18.0.100")


def _icmp6_ok(frame):
    ip6 = frame[14:54]
    src, dst, body = ip6[8:24], ip6[24:40], frame[54:]
    assert struct.unpack("!H", ip6[4:6])[0] == len(body) and ip6[6] == 58 and ip6[7] == 255
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    return A._csum(pseudo + body) == 0


def test_na_frame():
    f = A.na_frame(MAC, raw("2001:db8::100"))
    assert f[:6] == bytes.fromhex("333300000001") and f[6:12] == MAC
    assert f[22:38] == raw("2001:db8::100") and f[38:54] == raw("ff02::1")
    assert f[54] == 136 and f[58] == 0x20          # override, not router, not solicited
    assert f[62:78] == raw("2001:db8::100") and f[78:80] == b"\x02\x01" and f[80:86] == MAC
    assert _icmp6_ok(f)
    assert A.na_frame(MAC, raw("2001:db8::100"), router=True)[58] == 0xA0
    assert _icmp6_ok(A.na_frame(MAC, raw("2001:db8::100"), router=True))


def test_dad_ns_frame():
    f = A.dad_ns_frame(MAC, raw("2001:db8::12:3456"))
    assert f[:6] == bytes.fromhex("3333ff123456")
    assert f[22:38] == b"\0" * 16 and f[38:54] == raw("ff02::1:ff12:3456")
    assert f[54] == 135 and f[62:78] == raw("2001:db8::12:3456") and len(f) == 78
    assert _icmp6_ok(f)


def test_conflict():
    ip4, ip6 = raw("198.18.0.100"), raw("2001:db8::100")
    theirs = A.garp_frames(OTHER, ip4)
    assert all(A.conflict(f, AF_INET, ip4, MAC) for f in theirs)
    assert not any(A.conflict(f, AF_INET, ip4, MAC) for f in A.garp_frames(MAC, ip4))
    assert not A.conflict(A.arp_probe_frame(OTHER, ip4), AF_INET, ip4, MAC)
    assert not A.conflict(theirs[1], AF_INET, raw("198.18.0.101"), MAC)
    assert A.conflict(A.na_frame(OTHER, ip6), AF_INET6, ip6, MAC)
    assert not A.conflict(A.na_frame(MAC, ip6), AF_INET6, ip6, MAC)
    assert not A.conflict(A.na_frame(OTHER, raw("2001:db8::1")), AF_INET6, ip6, MAC)
    assert not A.conflict(A.dad_ns_frame(OTHER, ip6), AF_INET6, ip6, MAC)
    assert not A.conflict(b"short", AF_INET, ip4, MAC)


def _nlmsg(mtype, body):
    return struct.pack("IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def _attr(atype, value):
    n = 4 + len(value)
    return struct.pack("HH", n, atype) + value + b"\0" * (-n % 4)


def test_parse_netlink_messages():
    addr = struct.pack("BBBBI", AF_INET, 24, 0, 0, 1) + _attr(A.IFA_ADDRESS, raw("198.18.0.9")) \
        + _attr(A.IFA_LOCAL, raw("198.18.0.9")) + _attr(A.IFA_LABEL, b"lo:x\0") \
        + _attr(A.IFA_FLAGS, struct.pack("I", A.IFA_F_NODAD | A.IFA_F_NOPREFIXROUTE))
    link = struct.pack("BxHiII", 0, 1, 1, A.IFF_LOWER_UP | 1, 0) + _attr(A.IFLA_IFNAME, b"lo\0")
    data = _nlmsg(A.RTM_NEWADDR, addr) + _nlmsg(A.RTM_NEWLINK, link)
    (t1, p1), (t2, p2) = list(A._nl_messages(data))
    a = A.parse_addr_msg(p1)
    assert (t1, a.ip, a.prefix, a.index, a.label, a.flags) == \
        (A.RTM_NEWADDR, "198.18.0.9", 24, 1, "lo:x", A.IFA_F_NODAD | A.IFA_F_NOPREFIXROUTE)
    assert (t2, A.parse_link_msg(p2)) == (A.RTM_NEWLINK, (1, "lo", A.IFF_LOWER_UP | 1))


def test_held_on_loopback():
    assert A.held("127.0.0.1")
    assert A.held("127.0.0.1", "lo")
    assert not A.held("127.0.0.1", "nonesuch0")
    assert not A.held("198.18.250.250")


def test_import_is_light():
    """status/monitor must not pay for pyroute2 (200-300 ms): not even imported
    (hb-ipaddr's own: tests/cmd/test_ipaddr.py)."""
    code = ("import sys; from hb import address; address.held('127.0.0.1'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyroute2', 'threading', 'ctypes', 'dataclasses', 'logging')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_warm_pays_the_one_time_costs_now(lab):
    """After warm(), pyroute2's netlink core is imported (not its plugins: no NDB,
    no IPDB, no asyncio) and the interface's AF_PACKET socket is open."""
    h = lab.host("w", "198.18.0.1/24")
    code = ("import sys, time\n"
            "from hb import address\n"
            "assert 'pyroute2' not in sys.modules\n"
            "print(address.warm(['198.18.0.100/24', '198.18.0.101/24/eth0', '203.0.113.9']))\n"
            "print('pyroute2.netlink.rtnl.iprsocket' in sys.modules,\n"
            "      [m for m in ('pyroute2.ndb', 'pyroute2.ipdb', 'asyncio') if m in sys.modules],\n"
            "      sorted(k[0] for k in address._tx))\n")
    out = h.run(["/usr/bin/python3", "-c", code]).stdout.splitlines()
    assert out[0].startswith("['203.0.113.9: ") and len(eval(out[0])) == 1
    assert out[1] == "True [] ['eth0']"


def test_repeats_are_abandoned_when_the_process_was_frozen(monkeypatch):
    """A repeat that wakes far too late (SIGSTOP, a hung VM) is stale: none is sent."""
    spec = A.parse_spec("198.18.0.100/24/eth0::arp_count=2::arp_interval=20")
    plan = A.schedule(spec.family, spec.arp_count, spec.arp_interval)
    sent = []
    monkeypatch.setattr(A, "send_announcement", lambda s, i, k: sent.append(k) or True)
    monkeypatch.setattr(A, "find_held", lambda *a: object())
    assert A.repeat_announce(spec, "eth0", plan, lambda: False) == 3
    assert sent == [A.REPLY, A.REQUEST, A.REPLY]
    real_sleep = A.time.sleep
    monkeypatch.setattr(A.time, "sleep",
                        lambda s: real_sleep(s + A.FROZEN + 0.05))
    assert A.repeat_announce(spec, "eth0", plan, lambda: False) == 0
    assert len(sent) == 3


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_repeats_follow_the_schedule_on_a_fake_clock(monkeypatch):
    """Each frame at t0 + its offset; stop() or the address going away ends them."""
    clock = FakeClock()
    monkeypatch.setattr(A, "time", clock)
    sent = []
    monkeypatch.setattr(A, "send_announcement",
                        lambda s, i, k: sent.append((round(clock.now - 100, 3), k)) or True)
    held = [True]
    monkeypatch.setattr(A, "find_held", lambda *a: object() if held[0] else None)
    spec = A.parse_spec("198.18.0.100/24/eth0", "IPaddr")
    plan = A.schedule(spec.family, spec.arp_count, spec.arp_interval)
    assert A.repeat_announce(spec, "eth0", plan, lambda: False, t0=100.0) == 19
    assert sent == [(round(o, 3), k) for o, k in plan[1:]]
    assert sent[-1] == (4.75, A.REPLY)
    sent.clear()
    clock.now = 200.0
    stops = iter([False, False, True])
    assert A.repeat_announce(spec, "eth0", plan, lambda: next(stops), t0=200.0) == 2
    clock.now = 300.0
    held[0] = False
    assert A.repeat_announce(spec, "eth0", plan, lambda: False, t0=300.0) == 0


@pytest.mark.parametrize("family,count,interval,want", [
    # Heartbeat's IPaddr: send_arp -i 500 -r 10: 20 frames 250 ms apart, 4.75 s
    (AF_INET, 10, 0.5, (20, 0.25, 4.75)),
    # IPaddr2: send_arp -i 200 -r 5: 10 frames 100 ms apart, 0.9 s
    (AF_INET, 5, 0.2, (10, 0.1, 0.9)),
    (AF_INET, 1, 0.2, (2, 0.1, 0.1)),
    # IPv6: unsolicited advertisements, the same count, interval apart
    (AF_INET6, 5, 0.2, (5, 0.2, 0.8)),
    (AF_INET6, 10, 0.5, (10, 0.5, 4.5)),
])
def test_schedule(family, count, interval, want):
    plan = A.schedule(family, count, interval)
    offsets = [o for o, _k in plan]
    gaps = {round(b - a, 6) for a, b in zip(offsets, offsets[1:])}
    assert (len(plan), gaps.pop(), round(offsets[-1], 6)) == want and not gaps
    kinds = [k for _o, k in plan]
    if family == AF_INET:
        assert kinds == [A.REQUEST, A.REPLY] * count
    else:
        assert kinds == [A.NA] * count
    assert A.schedule(family, 0, interval) == []


def test_announcement_frames_as_send_arp():
    spec = A.parse_spec("198.18.0.100")
    assert A.announcement(A.REQUEST, MAC, spec) == A.garp_frames(MAC, spec.raw)[0]
    assert A.announcement(A.REPLY, MAC, spec) == A.garp_frames(MAC, spec.raw)[1]
    v6 = A.parse_spec("2001:db8::100::router=yes")
    assert A.announcement(A.NA, MAC, v6) == A.na_frame(MAC, v6.raw, router=True)


def test_ns_frame_and_answers():
    vip, gw = raw("2001:db8::100"), raw("2001:db8::1")
    f = A.ns_frame(MAC, vip, gw)
    assert f[:6] == bytes.fromhex("3333ff000001") and f[6:12] == MAC
    assert f[22:38] == vip and f[38:54] == raw("ff02::1:ff00:1")
    assert f[54] == 135 and f[62:78] == gw and f[78:80] == b"\x01\x01" and f[80:86] == MAC
    assert _icmp6_ok(f)
    na = A.na_frame(OTHER, gw)
    assert A.answers(na, AF_INET6, vip, gw)
    assert not A.answers(A.na_frame(OTHER, raw("2001:db8::2")), AF_INET6, vip, gw)
    assert not A.answers(f, AF_INET6, vip, gw)
    ip4, gw4 = raw("198.18.0.100"), raw("198.18.0.254")
    reply = A.arp_frame(2, OTHER, gw4, ip4, MAC)
    assert A.answers(reply, AF_INET, ip4, gw4)
    assert not A.answers(A.arp_frame(1, OTHER, gw4, ip4), AF_INET, ip4, gw4)    # a request
    assert not A.answers(A.arp_frame(2, OTHER, gw4, raw("198.18.0.1"), MAC), AF_INET, ip4, gw4)
    assert not A.answers(b"short", AF_INET, ip4, gw4)


@pytest.mark.parametrize("spec,gws,pings,want", [
    ("198.18.0.100/24/eth0", [("198.18.0.254", "eth0")], ["198.18.0.7"], ["198.18.0.254"]),
    # the default route leaves by another interface: the ping nodes of the subnet
    ("198.18.0.100/24/eth0", [("198.51.100.1", "eth1")], ["198.18.0.7", "203.0.113.1"],
     ["198.18.0.7"]),
    ("198.18.0.100/24/eth0", [], ["203.0.113.1"], []),
    ("198.18.0.100/24/eth0", [("198.18.0.254", "eth0"), ("198.18.0.254", "eth0")], [],
     ["198.18.0.254"]),
    ("2001:db8::100/64/eth0", [("fe80::1", "eth0")], [], ["fe80::1"]),
    ("2001:db8::100/64/eth0", [("2001:db8:1::1", "eth0")], ["2001:db8::7", "198.18.0.7"],
     ["2001:db8::7"]),
])
def test_neighbour_targets(spec, gws, pings, want):
    s = A.parse_spec(spec)
    assert A.neighbour_targets(s, s.iface, s.prefix, gws, pings) == want


def test_neighbour_field(monkeypatch):
    monkeypatch.setattr(A, "neighbours", {})
    assert A.neighbour_field(["198.18.0.100"]) is None
    A.neighbours["198.18.0.100"] = (True, 0.012, "x")
    A.neighbours["198.18.0.101"] = (True, 0.0304, "x")
    assert A.neighbour_field(["198.18.0.100", "198.18.0.101"]) == "ok:30ms"
    A.neighbours["198.18.0.102"] = (None, 0.0, "checking")
    assert A.neighbour_field(["198.18.0.100", "198.18.0.102"]) == "pending"
    A.neighbours["198.18.0.102"] = (False, 1.0, "198.18.0.254 did not answer")
    assert A.neighbour_field(["198.18.0.100", "198.18.0.102"]) == "fail:198.18.0.102"
    A.neighbours["198.18.0.103"] = (False, 0.0, A.NOBODY)
    assert A.neighbour_field(["198.18.0.103"]) == "none"
    assert A.neighbour_field(["198.18.0.103", "198.18.0.100"]) == "ok:12ms"


def test_parse_route_msg():
    body = struct.pack("BBBBBBBBI", AF_INET, 0, 0, 0, A.RT_TABLE_MAIN, 3, 0, 1, 0) \
        + _attr(A.RTA_GATEWAY, raw("198.18.0.254")) + _attr(A.RTA_OIF, struct.pack("I", 1)) \
        + _attr(A.RTA_TABLE, struct.pack("I", A.RT_TABLE_MAIN))
    assert A.parse_route_msg(body) == (AF_INET, 0, "198.18.0.254", 1, A.RT_TABLE_MAIN)


def test_check_neighbour_later_reports_once_and_drops_stale_results(monkeypatch):
    import threading
    monkeypatch.setattr(A, "neighbours", {})
    monkeypatch.setattr(A, "default_gateways", lambda fam: [("198.18.0.254", "eth0")])
    gate = threading.Event()
    asked = []

    def confirm(spec, iface, targets):
        asked.append(targets)
        gate.wait(5)
        return True, 0.004, "198.18.0.254 answered"
    monkeypatch.setattr(A, "confirm_neighbour", confirm)
    got = []
    monkeypatch.setattr(A, "on_neighbour", lambda *a: got.append(a))
    spec = A.parse_spec("198.18.0.100/24/eth0")
    A.check_neighbour_later(spec, "eth0", 24)
    assert A.neighbour_field([spec.ip]) == "pending"
    gate.set()
    assert A.wait_neighbours(5)
    assert asked == [["198.18.0.254"]]
    assert got == [(spec.ip, True, 0.004, "198.18.0.254 answered")]
    assert A.neighbour_field([spec.ip]) == "ok:4ms"
    # a stop while a check runs: its result is dropped
    gate.clear()
    A.check_neighbour_later(spec, "eth0", 24)
    A.neighbours.pop(spec.ip)
    A._nbr_turn.pop(spec.ip)
    gate.set()
    assert A.wait_neighbours(5)
    assert spec.ip not in A.neighbours and len(got) == 1
    assert [t.name for t in threading.enumerate()].count("neighbours") == 1


def test_free_alias_as_heartbeats_ipaddr():
    """IPaddr labels an address IFACE:N, the lowest N free on that interface."""
    addrs = [Addr(AF_INET, raw("198.18.0.1"), 24, 2, "eth0", "eth0"),
             Addr(AF_INET, raw("198.18.0.7"), 24, 2, "eth0", "eth0:0"),
             Addr(AF_INET, raw("198.18.0.8"), 24, 2, "eth0", "eth0:2"),
             Addr(AF_INET, raw("198.51.100.7"), 24, 3, "eth1", "eth1:1")]
    assert A.free_alias("eth0", addrs) == "1"
    assert A.free_alias("eth1", addrs) == "0"
    assert A.free_alias("eth2", []) == "0"
    assert A.free_alias("a-fifteen-chars", []) is None
    assert A.free_alias("fourteen-chars", []) is None
    assert A.free_alias("thirteen-char", []) == "0"
