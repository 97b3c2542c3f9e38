"""address.py's pure parts: specs, OCF parameters, findif, frames, netlink parsing."""

import socket
import struct
import subprocess
import sys

import pytest

from hb import address as A
from hb.address import AF_INET, AF_INET6, Addr, SpecError


def raw(ip):
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


@pytest.mark.parametrize("text,want", [
    ("198.18.0.100", ("198.18.0.100", None, None, None, None)),
    ("198.18.0.100/24", ("198.18.0.100", 24, None, None, None)),
    ("198.18.0.100/255.255.255.0/eth0", ("198.18.0.100", 24, "eth0", None, None)),
    ("198.18.0.100/24/hb0", ("198.18.0.100", 24, "hb0", None, None)),
    ("198.18.0.100/24/eth0:vip", ("198.18.0.100", 24, "eth0", "vip", None)),
    ("198.18.0.100/24/eth0/198.18.0.255", ("198.18.0.100", 24, "eth0", None, "198.18.0.255")),
    # IPaddr: a third part starting with a digit is the broadcast address
    ("198.18.0.100/24/198.18.0.255", ("198.18.0.100", 24, None, None, "198.18.0.255")),
    ("198.18.0.100//eth1", ("198.18.0.100", None, "eth1", None, None)),
    ("2001:db8::10", ("2001:db8::10", None, None, None, None)),
    ("2001:DB8:0::10/64/eth0", ("2001:db8::10", 64, "eth0", None, None)),
])
def test_parse_spec(text, want):
    s = A.parse_spec(text)
    assert (s.ip, s.prefix, s.iface, s.label, s.broadcast) == want
    assert s.family == (AF_INET6 if ":" in want[0] else AF_INET)


@pytest.mark.parametrize("text,msg", [
    ("198.18.0.1000", "not an IPv4 or IPv6 address"),
    ("julius", "not an IPv4 or IPv6 address"),
    ("198.18.0.1/33", "out of range"),
    ("2001:db8::1/129", "out of range"),
    ("198.18.0.1/255.0.255.0", "bad netmask"),
    ("2001:db8::1/ffff::", "bad netmask"),
    ("198.18.0.1/24/eth0/198.18.0.255/x", "too many"),
    ("198.18.0.1/24/198.18.0.255/198.18.0.255", "broadcast given twice"),
    ("198.18.0.1/24/averyveryverylongname", "bad interface name"),
    ("198.18.0.1/24/eth0:", "bad interface label"),
    ("198.18.0.1/24/eth0:labellabellabel", "bad interface label"),
    ("2001:db8::1/64/eth0:x", "IPv4 addresses only"),
    ("2001:db8::1/64/eth0/2001:db8::ff", "no broadcast"),
    ("198.18.0.1/24/eth0/julius", "not an IPv4 or IPv6"),
])
def test_parse_spec_errors(text, msg):
    with pytest.raises(SpecError, match=msg):
        A.parse_spec(text)


def test_from_ocf_defaults_and_values():
    s = A.from_ocf({"OCF_RESKEY_ip": "198.18.0.9"})
    assert (s.ip, s.prefix, s.iface, s.arp_count, s.arp_interval, s.dad) == \
        ("198.18.0.9", None, None, 5, 0.2, True)
    s = A.from_ocf({"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_cidr_netmask": "255.255.0.0",
                    "OCF_RESKEY_nic": "eth1", "OCF_RESKEY_iflabel": "web",
                    "OCF_RESKEY_broadcast": "198.18.255.255", "OCF_RESKEY_arp_count": "3",
                    "OCF_RESKEY_arp_interval": "50", "OCF_RESKEY_arp_count_refresh": "2",
                    "OCF_RESKEY_nodad": "true", "OCF_RESKEY_dad_timeout": "30",
                    "OCF_RESKEY_CRM_meta_timeout": "20000"})
    assert (s.prefix, s.iface, s.label, s.broadcast, s.arp_count, s.arp_interval,
            s.arp_count_refresh, s.dad, s.dad_timeout) == \
        (16, "eth1", "web", "198.18.255.255", 3, 0.05, 2, False, 0.03)
    s = A.from_ocf({"OCF_RESKEY_ip": "2001:db8::7", "OCF_RESKEY_cidr_netmask": "64",
                    "OCF_RESKEY_router": "yes"})
    assert (s.family, s.prefix, s.router) == (AF_INET6, 64, True)


@pytest.mark.parametrize("env,msg", [
    ({}, "ip is required"),
    ({"OCF_RESKEY_ip": "nowhere"}, "not an IPv4"),
    ({"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_arp_count": "many"}, "arp_count"),
    ({"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_arp_interval": "0"}, "arp_interval"),
    ({"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_nodad": "perhaps"}, "nodad"),
    ({"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_nic": "eth0:1"}, "iflabel"),
    ({"OCF_RESKEY_ip": "2001:db8::9", "OCF_RESKEY_iflabel": "x"}, "IPv4 addresses only"),
])
def test_from_ocf_errors(env, msg):
    with pytest.raises(SpecError, match=msg):
        A.from_ocf(env)


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
    """status/monitor must not pay for pyroute2 (200-300 ms): not even imported."""
    code = ("import sys; from hb import address, ipaddr; address.held('127.0.0.1'); "
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
    spec = A.parse_spec("198.18.0.100/24/eth0")
    spec.arp_interval = 0.01
    sent = []
    monkeypatch.setattr(A, "announce", lambda s, i: sent.append(i) or True)
    monkeypatch.setattr(A, "find_held", lambda *a: object())
    assert A.repeat_announce(spec, "eth0", 3, lambda: False) == 3
    real_sleep = A.time.sleep
    monkeypatch.setattr(A.time, "sleep",
                        lambda s: real_sleep(s + A.FROZEN + 0.05))
    assert A.repeat_announce(spec, "eth0", 3, lambda: False) == 0
    assert len(sent) == 3
