"""The one address grammar: a table of accepted and refused specs and OCF parameters,
and the proof that --check (config), hb-ipaddr and hb-watch's agent all use it."""

import socket
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from hb import address, addrspec as S, config, exits
from hb.addrspec import AF_INET, AF_INET6, SpecError

F = ("ip", "family", "prefix", "iface", "label", "broadcast", "arp_count", "arp_interval")
V4, V6 = AF_INET, AF_INET6

ACCEPTED = [
    # spec, agent -> ip, family, prefix, iface, label, broadcast, arp_count, arp_interval
    ("192.0.2.7", "IPaddr", ("192.0.2.7", V4, None, None, None, None, 10, 0.5)),
    ("192.0.2.7", "IPaddr2", ("192.0.2.7", V4, None, None, None, None, 5, 0.2)),
    ("192.0.2.7/24", "IPaddr2", ("192.0.2.7", V4, 24, None, None, None, 5, 0.2)),
    ("192.0.2.7/32/eth0", "IPaddr2", ("192.0.2.7", V4, 32, "eth0", None, None, 5, 0.2)),
    ("192.0.2.7/1", "IPaddr2", ("192.0.2.7", V4, 1, None, None, None, 5, 0.2)),
    ("192.0.2.7/255.255.255.0/eth0", "IPaddr",
     ("192.0.2.7", V4, 24, "eth0", None, None, 10, 0.5)),
    ("192.0.2.7/255.255.255.252", "IPaddr", ("192.0.2.7", V4, 30, None, None, None, 10, 0.5)),
    ("192.0.2.7/24/eth0", "IPaddr2", ("192.0.2.7", V4, 24, "eth0", None, None, 5, 0.2)),
    ("192.0.2.7/24/eth0:1", "IPaddr2", ("192.0.2.7", V4, 24, "eth0", "1", None, 5, 0.2)),
    # IPaddr2 makes the label of everything after the first ':' (and the kernel takes it)
    ("192.0.2.7/24/eth0:1:2", "IPaddr2", ("192.0.2.7", V4, 24, "eth0", "1:2", None, 5, 0.2)),
    ("192.0.2.7/24/br-lan.10:vip", "IPaddr2",
     ("192.0.2.7", V4, 24, "br-lan.10", "vip", None, 5, 0.2)),
    ("192.0.2.7/24/eth0/192.0.2.255", "IPaddr2",
     ("192.0.2.7", V4, 24, "eth0", None, "192.0.2.255", 5, 0.2)),
    # IPaddr's old form: a third part starting with a digit is the broadcast address
    ("192.0.2.7/24/192.0.2.255", "IPaddr",
     ("192.0.2.7", V4, 24, None, None, "192.0.2.255", 10, 0.5)),
    ("192.0.2.7/24/eth0/+", "IPaddr2", ("192.0.2.7", V4, 24, "eth0", None, None, 5, 0.2)),
    ("192.0.2.7/24/eth0/-", "IPaddr2", ("192.0.2.7", V4, 24, "eth0", None, "-", 5, 0.2)),
    ("192.0.2.7//eth0", "IPaddr2", ("192.0.2.7", V4, None, "eth0", None, None, 5, 0.2)),
    ("192.0.2.7/", "IPaddr2", ("192.0.2.7", V4, None, None, None, None, 5, 0.2)),
    ("  192.0.2.7/24  ", "IPaddr2", ("192.0.2.7", V4, 24, None, None, None, 5, 0.2)),
    ("127.0.0.2/8/lo", "IPaddr2", ("127.0.0.2", V4, 8, "lo", None, None, 5, 0.2)),
    ("2001:db8::7", "IPaddr2", ("2001:db8::7", V6, None, None, None, None, 5, 0.2)),
    ("2001:DB8:0::7/64/eth0", "IPaddr2", ("2001:db8::7", V6, 64, "eth0", None, None, 5, 0.2)),
    ("2001:db8::7/128", "IPaddr", ("2001:db8::7", V6, 128, None, None, None, 10, 0.5)),
    ("fe80::7/64/eth0", "IPaddr2", ("fe80::7", V6, 64, "eth0", None, None, 5, 0.2)),
    # hb's parameters after the spec, with the agents' OCF names
    ("192.0.2.7/24/eth0::arp_count=3::arp_interval=100", "IPaddr",
     ("192.0.2.7", V4, 24, "eth0", None, None, 3, 0.1)),
    ("192.0.2.7::ARP_REPEAT=20::ARP_INTERVAL_MS=1000", "IPaddr2",
     ("192.0.2.7", V4, None, None, None, None, 20, 1.0)),
    ("2001:db8::7::arp_count=0", "IPaddr2", ("2001:db8::7", V6, None, None, None, None, 0, 0.2)),
    ("2001:db8::7/64/eth0::arp_interval=60000", "IPaddr2",
     ("2001:db8::7", V6, 64, "eth0", None, None, 5, 60.0)),
    ("192.0.2.7", "Unknown", ("192.0.2.7", V4, None, None, None, None, 5, 0.2)),
]


@pytest.mark.parametrize("text,agent,want", ACCEPTED)
def test_accepted(text, agent, want):
    s = S.parse(text, agent)
    assert tuple(getattr(s, f) for f in F) == want
    assert s.raw == socket.inet_pton(s.family, s.ip)


def test_the_other_parameters():
    s = S.parse("192.0.2.7/24/eth0::nodad=yes::dad_timeout=0::noprefixroute=1"
                "::arp_count_refresh=2")
    assert (s.dad, s.dad_timeout, s.noprefixroute, s.arp_count_refresh) == (False, 0, True, 2)
    s = S.parse("2001:db8::7/64/eth0::router=on")
    assert s.router and str(s) == "2001:db8::7/64 on eth0" and s.device == "eth0"
    assert S.parse("192.0.2.7/24/eth0:1:2").device == "eth0:1:2"
    assert S.split_params("2001:db8::7::a=1::b=2") == ("2001:db8::7", ["a=1", "b=2"])
    assert S.split_params("2001:db8::") == ("2001:db8::", [])


REFUSED = [
    ("", "bad address '': no IP address"),
    ("/24", "bad address '/24': no IP address before the first '/'"),
    ("198.18.0.1000", "bad address '198.18.0.1000': '198.18.0.1000' is not an IP address"),
    ("julius", "bad address 'julius': 'julius' is not an IP address"),
    ("192.0.2.07", "bad address '192.0.2.07': '192.0.2.07' is not an IP address"),
    ("2001:db8::7%eth0", "bad address '2001:db8::7%eth0': '2001:db8::7%eth0' is not an IP address"),
    ("0.1.2.3", "bad address '0.1.2.3': 0.1.2.3 is in 0.0.0.0/8, which no host may use"),
    ("224.0.0.5", "bad address '224.0.0.5': 224.0.0.5 is a multicast or reserved address "
     "(224.0.0.0/3)"),
    ("240.0.0.1", "bad address '240.0.0.1': 240.0.0.1 is a multicast or reserved address "
     "(224.0.0.0/3)"),
    ("255.255.255.255", "bad address '255.255.255.255': 255.255.255.255 is the limited "
     "broadcast address"),
    ("::", "bad address '::': :: is the unspecified address"),
    ("ff02::1", "bad address 'ff02::1': ff02::1 is a multicast address (ff00::/8)"),
    ("::ffff:192.0.2.1", "bad address '::ffff:192.0.2.1': ::ffff:192.0.2.1 is an IPv4-mapped "
     "address: write 192.0.2.1"),
    ("fe80::1/64", "bad address 'fe80::1/64': a link-local address needs its interface: "
     "fe80::1/64/eth0"),
    ("192.0.2.7/33", "bad netmask in '192.0.2.7/33': /33 is more than 32 bits"),
    ("192.0.2.7/0", "bad netmask in '192.0.2.7/0': /0 would make every address local"),
    # Heartbeat's IPaddr2 hands /024 to ip(8), which reads octal and adds a /20
    ("192.0.2.7/024", "bad netmask in '192.0.2.7/024': /024 has a leading zero: write /24"),
    ("2001:db8::1/129", "bad netmask in '2001:db8::1/129': /129 is more than 128 bits"),
    ("192.0.2.7/255.0.255.0", "bad netmask in '192.0.2.7/255.0.255.0': '255.0.255.0' is "
     "neither a prefix length nor a netmask like 255.255.255.0"),
    ("192.0.2.7/0.0.0.0", "bad netmask in '192.0.2.7/0.0.0.0': 0.0.0.0 would make every "
     "address local"),
    ("192.0.2.7/2x", "bad netmask in '192.0.2.7/2x': '2x' is neither a prefix length nor a "
     "netmask like 255.255.255.0"),
    ("192.0.2.7/\u00b24", "bad netmask in '192.0.2.7/\u00b24': '\u00b24' is neither a prefix "
     "length nor a netmask like 255.255.255.0"),
    ("2001:db8::1/ffff::", "bad netmask in '2001:db8::1/ffff::': 'ffff::' is not a prefix "
     "length (IPv6 takes bits: /64)"),
    ("192.0.2.7/24/eth0/192.0.2.255/x", "bad address '192.0.2.7/24/eth0/192.0.2.255/x': "
     "IP[/NETMASK[/IFACE[/BROADCAST]]]"),
    ("192.0.2.7/24/192.0.2.255/eth0", "bad address '192.0.2.7/24/192.0.2.255/eth0': the "
     "interface comes before the broadcast address"),
    ("192.0.2.7/24/averyveryverylongname0", "bad interface 'averyveryverylongname0' in "
     "'192.0.2.7/24/averyveryverylongname0': longer than 15 characters"),
    ("192.0.2.7/24/eth0:", "bad interface 'eth0:' in '192.0.2.7/24/eth0:': empty label "
     "after ':'"),
    ("192.0.2.7/24/eth0:labellabellabel", "bad interface 'eth0:labellabellabel' in "
     "'192.0.2.7/24/eth0:labellabellabel': IFACE:LABEL is longer than 15 characters"),
    ("192.0.2.7/24/.", "bad interface '.' in '192.0.2.7/24/.': '.' is not an interface name"),
    ("192.0.2.7/24/:1", "bad interface ':1' in '192.0.2.7/24/:1': no interface name"),
    ("192.0.2.7/24/eth\u00a00", "bad interface 'eth\\xa00' in '192.0.2.7/24/eth\\xa00': "
     "'eth\\xa00' is not an interface name"),
    ("2001:db8::5/64/eth0:1", "bad interface 'eth0:1' in '2001:db8::5/64/eth0:1': IPv6 "
     "addresses take no label"),
    ("2001:db8::5/64/eth0/2001:db8::ff", "bad address '2001:db8::5/64/eth0/2001:db8::ff': "
     "IPv6 has no broadcast address"),
    ("192.0.2.7/24/eth0/julius", "bad broadcast address in '192.0.2.7/24/eth0/julius': "
     "'julius' is not an IPv4 address"),
    ("192.0.2.7/24/eth0/2001:db8::1", "bad broadcast address in "
     "'192.0.2.7/24/eth0/2001:db8::1': '2001:db8::1' is not an IPv4 address"),
    ("192.0.2.7/24/eth0::arp_count=x", "bad address '192.0.2.7/24/eth0::arp_count=x': "
     "arp_count: 'x' is not a count 0-1000"),
    ("192.0.2.7::arp_count=1001", "bad address '192.0.2.7::arp_count=1001': arp_count: "
     "'1001' is not a count 0-1000"),
    ("192.0.2.7::arp_interval=0", "bad address '192.0.2.7::arp_interval=0': arp_interval: "
     "'0' is not milliseconds 1-60000"),
    ("192.0.2.7::ARP_INTERVAL_MS=-5", "bad address '192.0.2.7::ARP_INTERVAL_MS=-5': "
     "ARP_INTERVAL_MS: '-5' is not milliseconds 1-60000"),
    ("192.0.2.7::arp_cont=3", "bad address '192.0.2.7::arp_cont=3': unknown parameter "
     "arp_cont (did you mean arp_count?)"),
    ("192.0.2.7::nic=eth1", "bad address '192.0.2.7::nic=eth1': nic belongs in the address "
     "itself: IP[/NETMASK[/IFACE[/BROADCAST]]]"),
    ("192.0.2.7::arp_count=3::ARP_REPEAT=4", "bad address "
     "'192.0.2.7::arp_count=3::ARP_REPEAT=4': arp_count given twice"),
    ("192.0.2.7::nodad=perhaps", "bad address '192.0.2.7::nodad=perhaps': nodad: 'perhaps' "
     "is not yes or no"),
    ("192.0.2.7::=3", "bad address '192.0.2.7::=3': '=3' is not NAME=VALUE"),
]


@pytest.mark.parametrize("text,msg", REFUSED)
def test_refused(text, msg):
    with pytest.raises(SpecError) as e:
        S.parse(text)
    assert str(e.value) == msg
    assert "\n" not in str(e.value)


def test_table_is_large():
    assert len(ACCEPTED) + len(REFUSED) >= 60


def hb_ipaddr(*args):
    """The hb-ipaddr command (bin/ is on PATH)."""
    return subprocess.run(["hb-ipaddr", *args], capture_output=True, text=True, timeout=30)


def haresources(spec, agent="IPaddr2"):
    return "alpha %s::%s\n" % (agent, spec)


@pytest.mark.parametrize("text,msg", [(t, m) for t, m in REFUSED
                                      if t and not any(c.isspace() for c in t)])
def test_check_hb_ipaddr_and_hb_watch_refuse_alike(text, msg):
    """--check (config), hb-ipaddr and hb-watch's in-process agent give the same message."""
    with pytest.raises(config.ConfigError) as e:
        config.parse_haresources(haresources(text), "har", ["alpha", "beta"])
    assert str(e.value) == "har:1: " + msg
    rc, out = address.run_agent([text], "start", "IPaddr2")
    assert (rc, out) == (exits.FAIL, "start %s: %s" % (text, msg))
    rc, out = address.run_agent([text], "status", "IPaddr2")
    assert rc == exits.LSB_UNKNOWN and out.endswith(msg)
    r = hb_ipaddr(text, "status")
    assert r.returncode == exits.LSB_UNKNOWN and r.stderr.rstrip().endswith(msg)


@pytest.mark.parametrize("text,agent,want", ACCEPTED[:-1])
def test_check_hb_ipaddr_and_hb_watch_accept_alike(text, agent, want):
    """What --check accepts, hb-watch's agent can act on: status of an address that
    nobody holds says stopped (3) rather than a parse error."""
    text = text.strip()
    if text.startswith("127."):
        return          # held here (lo is 127.0.0.1/8, not .2): nothing to compare
    g, = config.parse_haresources(haresources(text, agent), "har", ["alpha", "beta"])
    assert (g.resources[0].name, "::".join(g.resources[0].args)) == (agent, text)
    assert address.run_agent(g.resources[0].args, "status", agent) == (3, "stopped")
    r = hb_ipaddr("--agent", agent, text, "status")
    assert r.returncode == exits.LSB_NOT_RUNNING
    assert r.stdout == "stopped\n"


def test_the_issue_example_no_longer_splits():
    """192.0.2.7/24/eth0:1:2 used to pass --check and fail at every takeover."""
    g, = config.parse_haresources(haresources("192.0.2.7/24/eth0:1:2"), "h", ["alpha"])
    spec = address.parse_spec(g.resources[0].args[0])
    assert spec.device == "eth0:1:2"


OCF_ACCEPTED = [
    ({"ip": "198.18.0.9"}, ("198.18.0.9", V4, None, None, None, None, 5, 0.2)),
    ({"ip": "198.18.0.9", "cidr_netmask": "255.255.0.0", "nic": "eth1", "iflabel": "web",
      "broadcast": "198.18.255.255"},
     ("198.18.0.9", V4, 16, "eth1", "web", "198.18.255.255", 5, 0.2)),
    # IPaddr2: NIC:LABEL in nic, and the label in nic wins over iflabel
    ({"ip": "198.18.0.9", "nic": "eth0:1", "iflabel": "x"},
     ("198.18.0.9", V4, None, "eth0", "1", None, 5, 0.2)),
    ({"ip": "198.18.0.9", "netmask": "24"}, ("198.18.0.9", V4, 24, None, None, None, 5, 0.2)),
    ({"ip": "198.18.0.9", "broadcast": "+"}, ("198.18.0.9", V4, None, None, None, None, 5, 0.2)),
    ({"ip": "198.18.0.9", "ARP_REPEAT": "10", "ARP_INTERVAL_MS": "500"},
     ("198.18.0.9", V4, None, None, None, None, 10, 0.5)),
    ({"ip": "198.18.0.9", "arp_count": "7", "ARP_REPEAT": "10"},
     ("198.18.0.9", V4, None, None, None, None, 7, 0.2)),
    ({"ip": " 2001:db8::7 ", "cidr_netmask": "64"},
     ("2001:db8::7", V6, 64, None, None, None, 5, 0.2)),
]


@pytest.mark.parametrize("params,want", OCF_ACCEPTED)
def test_ocf_accepted(params, want):
    s = S.from_ocf({"OCF_RESKEY_" + k: v for k, v in params.items()})
    assert tuple(getattr(s, f) for f in F) == want


def test_ocf_values_and_agent_defaults():
    env = {"OCF_RESKEY_ip": "198.18.0.9", "OCF_RESKEY_arp_count_refresh": "2",
           "OCF_RESKEY_nodad": "true", "OCF_RESKEY_dad_timeout": "30",
           "OCF_RESKEY_router": "no", "OCF_RESKEY_CRM_meta_timeout": "20000"}
    s = S.from_ocf(env)
    assert (s.arp_count_refresh, s.dad, s.dad_timeout, s.router) == (2, False, 0.03, False)
    assert (S.from_ocf(env, "IPaddr").arp_count, S.from_ocf(env, "IPaddr").arp_interval) == \
        (10, 0.5)


OCF_REFUSED = [
    ({}, "OCF_RESKEY_ip is required"),
    ({"ip": "nowhere"}, "OCF_RESKEY_ip=nowhere: 'nowhere' is not an IP address"),
    ({"ip": "224.0.0.1"}, "OCF_RESKEY_ip=224.0.0.1: 224.0.0.1 is a multicast or reserved "
     "address (224.0.0.0/3)"),
    ({"ip": "fe80::1"}, "OCF_RESKEY_ip=fe80::1: a link-local address needs OCF_RESKEY_nic"),
    ({"ip": "198.18.0.9", "cidr_netmask": "33"},
     "OCF_RESKEY_cidr_netmask=33: /33 is more than 32 bits"),
    ({"ip": "198.18.0.9", "netmask": "255.0.255.0"}, "OCF_RESKEY_cidr_netmask=255.0.255.0: "
     "'255.0.255.0' is neither a prefix length nor a netmask like 255.255.255.0"),
    ({"ip": "198.18.0.9", "nic": "averyveryverylongname0"},
     "OCF_RESKEY_nic=averyveryverylongname0: longer than 15 characters"),
    ({"ip": "198.18.0.9", "nic": "eth0", "iflabel": "labellabellabel"},
     "OCF_RESKEY_iflabel=labellabellabel: IFACE:LABEL is longer than 15 characters"),
    ({"ip": "2001:db8::9", "iflabel": "x"}, "OCF_RESKEY_iflabel=x: IPv6 addresses take no label"),
    ({"ip": "2001:db8::9", "broadcast": "198.18.0.255"},
     "OCF_RESKEY_broadcast=198.18.0.255: IPv6 has no broadcast address"),
    ({"ip": "198.18.0.9", "broadcast": "x"}, "OCF_RESKEY_broadcast=x: 'x' is not an IPv4 address"),
    ({"ip": "198.18.0.9", "arp_count": "many"},
     "OCF_RESKEY_arp_count=many: 'many' is not a count 0-1000"),
    ({"ip": "198.18.0.9", "ARP_REPEAT": "many"},
     "OCF_RESKEY_arp_count=many: 'many' is not a count 0-1000"),
    ({"ip": "198.18.0.9", "arp_interval": "0"},
     "OCF_RESKEY_arp_interval=0: '0' is not milliseconds 1-60000"),
    ({"ip": "198.18.0.9", "nodad": "perhaps"}, "OCF_RESKEY_nodad=perhaps: 'perhaps' is not yes "
     "or no"),
]


@pytest.mark.parametrize("params,msg", OCF_REFUSED)
def test_ocf_refused(params, msg):
    with pytest.raises(SpecError) as e:
        S.from_ocf({"OCF_RESKEY_" + k: v for k, v in params.items()})
    assert str(e.value) == msg


@pytest.mark.parametrize("text,agent,_want", ACCEPTED)
def test_ocf_params_round_trip(text, agent, _want):
    """The OCF parameters of a spec (for the Pacemaker export) give it back."""
    s = S.parse(text, agent)
    back = S.from_ocf({"OCF_RESKEY_" + k: v for k, v in S.ocf_params(s)})
    assert [getattr(back, f) for f in F + ("dad", "router")] == \
        [getattr(s, f) for f in F + ("dad", "router")]


def test_set_param():
    s = S.parse("192.0.2.7")
    S.set_param(s, "ARP_INTERVAL_MS", "300", "--arp-interval")
    assert s.arp_interval == 0.3
    with pytest.raises(SpecError, match=r"^--arp-count: 'x' is not a count 0-1000$"):
        S.set_param(s, "arp_count", "x", "--arp-count")


def test_broadcast_of():
    assert S.broadcast_of("198.18.0.100", 24) == "198.18.0.255"
    assert S.broadcast_of("198.18.0.100", 24, "-") == "198.18.0.0"
    assert S.broadcast_of("198.18.0.100", 15) == "198.19.255.255"
    assert S.broadcast_of("198.18.0.100", 31) is None


@given(st.text(alphabet="0123456789abcdef.:/eth=_x%\u00b2 ", max_size=40))
@settings(max_examples=500, deadline=None)
def test_only_spec_errors(text):
    try:
        s = S.parse(text)
    except SpecError as e:
        assert "\n" not in str(e)
        return
    assert s.family in (V4, V6) and (s.prefix is None or 1 <= s.prefix <= 128)


@given(st.dictionaries(st.sampled_from(["ip", "cidr_netmask", "nic", "iflabel", "broadcast",
                                        "arp_count", "ARP_INTERVAL_MS", "nodad"]),
                       st.text(alphabet="0123456789abcdef.:/eth+-", max_size=20)))
@settings(max_examples=300, deadline=None)
def test_ocf_only_spec_errors(params):
    try:
        S.from_ocf({"OCF_RESKEY_" + k: v for k, v in params.items()})
    except SpecError as e:
        assert "\n" not in str(e)
