"""address.py: findif, labels, neighbour targets and the neighbour check's state,
the repeats' stop; warm() in a namespace."""

import os
import socket
import subprocess
import sys

import pytest

from hb import address as A
from hb import addrspec as S
from hb import arp, netlink
from hb.addrspec import AF_INET, AF_INET6, SpecError
from hb.netlink import Addr


def raw(ip):
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


def test_the_grammar_is_addrspec():
    """Specs and OCF parameters are parsed by hb.addrspec (tests/unit/test_addrspec.py)."""
    for m in (A, arp, netlink):     # no grammar of their own, no aliases of addrspec's
        assert not [n for n in ("parse", "parse_spec", "from_ocf") if hasattr(m, n)]
    assert A.Spec is S.Spec and A.SpecError is S.SpecError


def test_subnets_and_broadcast():
    assert S.in_subnet(raw("198.18.0.100"), raw("198.18.0.1"), 24)
    assert not S.in_subnet(raw("198.18.1.100"), raw("198.18.0.1"), 24)
    assert S.in_subnet(raw("2001:db8::100"), raw("2001:db8::1"), 64)
    assert not S.in_subnet(raw("2001:db8:1::100"), raw("2001:db8::1"), 64)
    assert not S.in_subnet(raw("198.18.0.1"), raw("2001:db8::1"), 0)
    assert S.broadcast_of("198.18.0.100", 24) == "198.18.0.255"
    assert S.broadcast_of("198.18.0.100", 15) == "198.19.255.255"
    assert S.broadcast_of("198.18.0.100", 31) is None


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
    assert A.findif(S.parse(spec), ADDRS) == want


@pytest.mark.parametrize("spec,msg", [
    ("203.0.113.5", "no interface has a subnet containing 203.0.113.5"),
    ("198.51.100.250", r"several interfaces .* \(eth1 eth2\)"),
    ("198.18.0.100//eth1", "no subnet on eth1 contains"),
    ("2001:db8:5::1", "no interface"),
])
def test_findif_errors(spec, msg):
    with pytest.raises(SpecError, match=msg):
        A.findif(S.parse(spec), ADDRS)


def test_findif_ignores_the_address_itself():
    held = ADDRS + [Addr(AF_INET, raw("203.0.113.5"), 24, 3, "eth1")]
    with pytest.raises(SpecError, match="no interface"):
        A.findif(S.parse("203.0.113.5"), held)


def test_import_is_light():
    """status/monitor must not pay for pyroute2 (200-300 ms): not even imported."""
    code = ("import sys; from hb import address, netlink; netlink.held('127.0.0.1'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyroute2', 'threading', 'ctypes', 'dataclasses', 'logging')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.strip() == "[]"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-X", "importtime", os.path.join(root, "bin", "hb-ipaddr"),
                        "127.0.0.1", "status"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=os.path.join(root, "lib")))
    assert (r.returncode, r.stdout) == (0, "running\n")
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "hb.netlink" in loaded and not [m for m in loaded if m.split(".")[0] in (
        "pyroute2", "threading", "ctypes", "dataclasses", "logging", "hashlib")], loaded


def test_warm_pays_the_one_time_costs_now(lab):
    """After warm(), pyroute2's netlink core is imported (not its plugins: no NDB,
    no IPDB, no asyncio) and the interface's AF_PACKET socket is open."""
    h = lab.host("w", "198.18.0.1/24")
    code = ("import sys, time\n"
            "from hb import address, arp\n"
            "assert 'pyroute2' not in sys.modules\n"
            "print(address.warm(['198.18.0.100/24', '198.18.0.101/24/eth0', '203.0.113.9']))\n"
            "print('pyroute2.netlink.rtnl.iprsocket' in sys.modules,\n"
            "      [m for m in ('pyroute2.ndb', 'pyroute2.ipdb', 'asyncio') if m in sys.modules],\n"
            "      sorted(k[0] for k in arp._tx))\n")
    out = h.run(["/usr/bin/python3", "-c", code]).stdout.splitlines()
    assert out[0].startswith("['203.0.113.9: ") and len(eval(out[0])) == 1
    assert out[1] == "True [] ['eth0']"


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_repeats_follow_the_schedule_on_a_fake_clock(monkeypatch):
    """Each frame at t0 + its offset; a cancel or the address going away ends them
    (address._gone, the stop that start() gives arp.repeat_announce)."""
    clock = FakeClock()
    monkeypatch.setattr(arp, "time", clock)
    sent = []
    monkeypatch.setattr(arp, "send_announcement",
                        lambda s, i, k: sent.append((round(clock.now - 100, 3), k)) or True)
    held = [True]
    monkeypatch.setattr(netlink, "find_held", lambda *a: object() if held[0] else None)
    spec = S.parse("198.18.0.100/24/eth0", "IPaddr")
    plan = arp.schedule(spec.family, spec.arp_count, spec.arp_interval)
    assert arp.repeat_announce(spec, "eth0", plan, A._gone(spec, "eth0"), t0=100.0) == 19
    assert sent == [(round(o, 3), k) for o, k in plan[1:]]
    assert sent[-1] == (4.75, arp.REPLY)
    sent.clear()
    clock.now = 200.0
    stops = iter([False, False, True])
    assert arp.repeat_announce(spec, "eth0", plan, A._gone(spec, "eth0", lambda: next(stops)),
                               t0=200.0) == 2
    clock.now = 300.0
    held[0] = False
    assert arp.repeat_announce(spec, "eth0", plan, A._gone(spec, "eth0"), t0=300.0) == 0


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
    s = S.parse(spec)
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
    A.neighbours["198.18.0.103"] = (False, 0.0, arp.NOBODY)
    assert A.neighbour_field(["198.18.0.103"]) == "none"
    assert A.neighbour_field(["198.18.0.103", "198.18.0.100"]) == "ok:12ms"


def test_check_neighbour_later_reports_once_and_drops_stale_results(monkeypatch):
    import threading
    monkeypatch.setattr(A, "neighbours", {})
    monkeypatch.setattr(netlink, "default_gateways", lambda fam: [("198.18.0.254", "eth0")])
    gate = threading.Event()
    asked = []

    def confirm(spec, iface, targets):
        asked.append(targets)
        gate.wait(5)
        return True, 0.004, "198.18.0.254 answered"
    monkeypatch.setattr(arp, "confirm_neighbour", confirm)
    got = []
    monkeypatch.setattr(A, "on_neighbour", lambda *a: got.append(a))
    spec = S.parse("198.18.0.100/24/eth0")
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
