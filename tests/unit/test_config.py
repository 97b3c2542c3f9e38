"""config: ha.cf, haresources, authkeys parsing; load(), describe(), digest()."""

import os
import re
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st

from hb import addrspec, config
from hb.authkeys import parse_authkeys
from hb.hacf import NO_EFFECT, _HaCf, parse_hacf
from hb.haresources import parse_haresources
from hb.settings import DIGEST_PARTS, MAX_TIME, AuthKey, Config, ConfigError, Respawn, \
    digest_diff, parse_time
from lab.heartbeat import heartbeat  # noqa: F401 (the fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hacf(text, node="alpha", local=frozenset()):
    return parse_hacf(text, "ha.cf", node, local)


BASE = "node alpha beta\nbcast eth1\nauto_failback on\n"


def test_shipped_example_loads():
    cfg = config.load(os.path.join(ROOT, "etc/ha.d"), "julius", check_devices=False)
    assert cfg.nodes == ["julius", "caesar"]
    assert [m.kind for m in cfg.media] == ["serial", "bcast"]
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (5, 15, 10, 30)
    assert cfg.auto_failback == "off"
    assert cfg.auth.signing.method == "sha1"
    g = cfg.groups[0]
    assert g.node == "julius"
    assert [r.name for r in g.resources] == ["IPaddr", "IPaddr", "MailTo"]


def test_defaults():
    cfg = hacf(BASE)
    assert cfg.keepalive == 1.0 and cfg.deadtime == 30.0
    assert cfg.warntime == 15.0 and cfg.initdead == 30.0 and cfg.deadping == 30.0
    assert cfg.udpport == 694 and cfg.baud == 19200 and cfg.realtime
    assert cfg.monitor is None
    assert {"keepalive", "deadtime", "warntime", "initdead", "udpport"} <= cfg.defaulted
    assert "auto_failback" not in cfg.defaulted


BROKEN = os.path.join(ROOT, "tests/data/config/broken")


@pytest.mark.parametrize("name", sorted(os.listdir(BROKEN)))
def test_broken_corpus(name):
    path = os.path.join(BROKEN, name)
    with open(path) as f:
        text = f.read()
    expect = text.split("\n", 1)[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as e:
        if name.endswith(".ha.cf"):
            parse_hacf(text, path, "alpha")
        elif name.endswith(".haresources"):
            parse_haresources(text, path, ["alpha", "beta"])
        else:
            parse_authkeys(text, path)
    assert str(e.value) == "%s:%s" % (path, expect)
    assert "\n" not in str(e.value)


DATA = os.path.join(ROOT, "tests/data/config")


def read(*parts):
    with open(os.path.join(DATA, *parts)) as f:
        return f.read()


def confdir(tmp_path, hacf, haresources, authkeys, mode=0o600):
    d = tmp_path / "ha.d"
    d.mkdir(parents=True)
    (d / "ha.cf").write_text(hacf)
    (d / "haresources").write_text(haresources)
    (d / "authkeys").write_text(authkeys)
    os.chmod(d / "authkeys", mode)
    return str(d)


# ---------------------------------------------------------------- real-world files

def test_seed_configuration(tmp_path):
    d = confdir(tmp_path, read("seed/ha.cf"), read("seed/haresources"), read("seed/authkeys"))
    cfg = config.load(d, "Caesar", check_devices=False)
    assert cfg.node == "caesar" and cfg.peers == ["julius"]
    assert [(m.kind, m.dev, m.name, m.baud) for m in cfg.media] == \
        [("serial", "/dev/ttyS0", "ttyS0", 19200)]
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (5, 15, 10, 30)
    assert cfg.deadping == 15 and "deadping" in cfg.defaulted
    assert cfg.auto_failback == "off"
    (g,) = cfg.groups
    assert (g.index, g.node, g.key) == (1, "julius", "IPaddr::192.0.2.1")
    assert [(r.name, r.args) for r in g.resources] == [
        ("IPaddr", ["192.0.2.1"]), ("IPaddr", ["198.51.100.1"]),
        ("MailTo", ["alerts@example.org", "JuliusCaesar"])]
    assert cfg.auth.use == 1 and cfg.auth.signing.key == b"JuliusCaesarSecret"
    text = config.describe(cfg)
    assert "keepalive 5s\n" in text and "deadping 15s (default)\n" in text


def test_heartbeat_sample_as_shipped_has_no_nodes():
    text = read("heartbeat-sample/ha.cf")
    with pytest.raises(ConfigError) as e:
        hacf(text)
    last = [n for n, line in enumerate(text.split("\n"), 1)
            if line.split("#")[0].strip()][-1]
    assert str(e.value) == "ha.cf:%d: no node lines: list both nodes, e.g. node alpha PEER" % last


def test_heartbeat_sample_with_nodes_and_medium():
    cfg = hacf(read("heartbeat-sample/ha.cf") + "node alpha beta\nbcast eth0\n")
    assert cfg.logfacility == "local0" and cfg.auto_failback == "on"
    assert cfg.warnings == [] and cfg.infos == []


def _sample_directive_lines():
    out = []
    for n, line in enumerate(read("heartbeat-sample/ha.cf").split("\n"), 1):
        if line.startswith("#") and len(line) > 1 and line[1].isalpha():
            word = line[1:].split()[0]
            if word.islower() and word not in ("node",):
                out.append((n, line[1:]))
    return out


REFUSED = {"stonith", "stonith_host", "hbaping"}


@pytest.mark.parametrize("n,line", _sample_directive_lines())
def test_heartbeat_sample_each_commented_directive(n, line):
    """Uncommenting any directive of Heartbeat's sample: accepted, or refused by name."""
    word = line.split()[0]
    text = "node alpha beta\nbcast eth0\nauto_failback on\n" + line + "\n"
    if word in REFUSED:
        with pytest.raises(ConfigError, match=r"^ha.cf:4: %s" % word):
            hacf(text)
        return
    cfg = hacf(text)
    if word in NO_EFFECT:
        assert any("has no effect in hb" in i and i.startswith("ha.cf:4: " + word)
                   for i in cfg.infos)


def test_heartbeat_sample_directives_cover_the_table():
    words = {line.split()[0] for _, line in _sample_directive_lines()}
    assert {"keepalive", "deadtime", "warntime", "initdead", "udpport", "baud", "serial",
            "bcast", "mcast", "ucast", "stonith", "stonith_host", "watchdog", "ping",
            "ping_group", "hbaping", "respawn", "apiauth", "hopfudge", "deadping",
            "hbgenmethod", "realtime", "debug", "msgfmt", "conn_logd_time", "compression",
            "compression_threshold"} <= words


def test_heartbeat_sample_all_uncommented_at_once():
    lines = []
    for line in read("heartbeat-sample/ha.cf").split("\n"):
        if line.startswith("#") and line[1:2].isalpha() and line[1:].split()[0] in \
                _ALL_OK and not line.startswith("#node\tnodename"):
            line = line[1:]
        lines.append(line)
    cfg = parse_hacf("\n".join(lines), "ha.cf", "ken3")
    assert cfg.nodes == ["ken3", "kathy"]
    assert [m.name for m in cfg.media] == ["ttyS0", "cuaa0", "cuad0", "a", "eth0", "eth1",
                                           "eth2", "le0", "le1", "le2", "eth0", "eth0"]
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (2, 30, 10, 120)
    assert [p.name for p in cfg.pings] == ["198.51.100.254", "group1"]
    assert cfg.pings[1].addrs == ["198.51.100.254", "198.51.100.253"] and cfg.pings[1].group
    assert cfg.ipfail and cfg.respawns == [Respawn("userid", "/path/name/to/run",
                                                   cfg.respawns[0].line)]
    assert cfg.realtime is False and cfg.debug == 1 and cfg.watchdog == "/dev/watchdog"
    assert cfg.logfile == "/var/log/ha-log" and cfg.debugfile == "/var/log/ha-debug"


_ALL_OK = {"debugfile", "logfile", "keepalive", "deadtime", "warntime", "initdead", "udpport",
           "baud", "serial", "bcast", "mcast", "ucast", "watchdog", "node", "ping",
           "ping_group", "respawn", "apiauth", "hopfudge", "deadping", "hbgenmethod",
           "realtime", "debug", "msgfmt", "conn_logd_time", "compression",
           "compression_threshold"}


def test_heartbeat_sample_haresources_examples():
    nodes = ["just.linux-ha.org", "node1"]
    assert parse_haresources(read("heartbeat-sample/haresources"), "har", nodes) == []
    examples = [line[1:] for line in read("heartbeat-sample/haresources").split("\n")
                if line.startswith("#just") or line.startswith("#node1")]
    assert len(examples) == 5
    got = [parse_haresources(e, "har", nodes)[0] for e in examples]
    assert [r.text for r in got[2].resources] == [
        "198.51.100.110", "203.0.113.111", "198.51.100.112", "httpd"]
    assert [(r.name, r.args) for r in got[3].resources] == [
        ("IPaddr", ["198.51.100.3/28/eth0/198.51.100.12"]), ("httpd", [])]
    assert [(r.name, r.args) for r in got[4].resources] == [
        ("IPaddr", ["192.0.2.170"]), ("Filesystem", ["/dev/sda1", "/data1", "ext2"])]
    assert addrspec.parse("203.0.113.7/24/203.0.113.210", "IPaddr").broadcast == "203.0.113.210"


def test_heartbeat_sample_authkeys():
    text = read("heartbeat-sample/authkeys")
    with pytest.raises(ConfigError, match="no auth line"):
        parse_authkeys(text, "authkeys")
    text = text.replace("#auth 1", "auth 1").replace("#1 crc", "1 crc")
    text = text.replace("#2 sha1", "2 sha1").replace("#3 md5", "3 md5")
    w = []
    auth = parse_authkeys(text, "authkeys", w)
    assert auth.use == 1 and auth.signing.method == "crc"
    assert {k: (a.method, a.key) for k, a in auth.keys.items()} == {
        1: ("crc", b""), 2: ("sha1", b"HI!"), 3: ("md5", b"Hello!")}
    assert len(w) == 1 and "authenticates nothing" in w[0]


# ---------------------------------------------------------------- ha.cf rules

@pytest.mark.parametrize("text,secs", [
    ("2", 2.0), ("1.5", 1.5), ("500ms", 0.5), ("1700ms", 1.7), ("1500 msec", 1.5),
    ("500us", 0.001), ("400usec", 0.0), (".25", 0.25), ("  3  ", 3.0), ("100ms", 0.1)])
def test_parse_time(text, secs):
    assert parse_time(text) == secs


@pytest.mark.parametrize("text", ["2x", "", "ms", "-1", "1s", "1,5", "1e3", "\u0663",
                                  "\u00b2"])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("word,value", [
    (w, True) for w in ("yes", "Yes", "TRUE", "on", "y", "1")] + [
    (w, False) for w in ("no", "False", "OFF", "n", "0")])
def test_booleans_any_spelling(word, value):
    assert hacf(BASE + "realtime %s\n" % word).realtime is value


def test_messy_real_file():
    text = ("# comment\n\n   \t  \nnode\tAlpha   # trailing comment\r\n"
            "bcast eth1\t \r\nkeepalive 200ms\r\ndeadtime 2  # seconds\r\n"
            "node Beta\r\nwarntime 1500ms\r\ninitdead 4\r\nauto_failback off")
    cfg = hacf(text)
    assert cfg.nodes == ["alpha", "beta"]
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (0.2, 2, 1.5, 4)
    assert cfg.warnings[0] == "ha.cf:4: CRLF (DOS) line ends: accepted"
    assert "ha.cf:10: initdead 4s is under 10s" in cfg.warnings[1]
    assert len(cfg.warnings) == 2


def test_nodes_split_on_blanks_and_commas():
    assert hacf("node alpha,beta\nbcast eth1\n").nodes == ["alpha", "beta"]
    assert hacf("node ALPHA , beta\nbcast eth1\n").nodes == ["alpha", "beta"]
    cfg = hacf("bcast eth1\nnode alpha\nserial /dev/ttyS0\nnode beta\n")
    assert cfg.nodes == ["alpha", "beta"] and [m.name for m in cfg.media] == ["eth1", "ttyS0"]


def test_token_lists_make_several_media():
    cfg = hacf("node alpha beta\nbcast eth1 eth2,eth3\nserial /dev/ttyS0 /dev/ttyS1\n")
    assert [(m.kind, m.name) for m in cfg.media] == [
        ("bcast", "eth1"), ("bcast", "eth2"), ("bcast", "eth3"),
        ("serial", "ttyS0"), ("serial", "ttyS1")]


def test_repeated_medium_is_ignored_with_a_warning():
    cfg = hacf(BASE + "bcast eth1\n")
    assert len(cfg.media) == 1
    assert cfg.warnings == ["ha.cf:4: bcast eth1  repeats line 2: ignored"]


def test_legacy_udp_is_bcast():
    cfg = hacf("node alpha beta\nudp eth1\nauto_failback on\n")
    assert [(m.kind, m.dev) for m in cfg.media] == [("bcast", "eth1")]
    assert cfg.infos == ["ha.cf:2: udp is the old name of bcast",
                         "ha.cf:3: no logfile, debugfile or logfacility: hb logs to stderr "
                         "only (Heartbeat would use ha_logd)"]


@pytest.mark.parametrize("value,result", [("on", "off"), ("yes", "off"), ("off", "legacy")])
def test_nice_failback_is_the_old_name(value, result):
    cfg = hacf("node alpha beta\nbcast eth1\nnice_failback %s\n" % value)
    assert cfg.auto_failback == result
    assert cfg.warnings == ["ha.cf:3: nice_failback is obsolete: write auto_failback %s"
                            % result]


@pytest.mark.parametrize("value,result", [("on", "on"), ("true", "on"), ("0", "off"),
                                          ("Legacy", "legacy")])
def test_auto_failback(value, result):
    assert hacf("node alpha beta\nbcast eth1\nauto_failback %s\n" % value).auto_failback == \
        result


def test_auto_failback_default_is_legacy_with_a_warning():
    cfg = hacf("node alpha beta\nbcast eth1\n")
    assert cfg.auto_failback == "legacy" and "auto_failback" in cfg.defaulted
    assert cfg.warnings == ["ha.cf:2: auto_failback not set: legacy, as in Heartbeat; set it "
                            "to on or off"]


def test_ucast_to_host_names_and_own_address():
    text = BASE + ("ucast eth0 192.0.2.1\nucast eth0 192.0.2.2\nucast eth0 beta.example.org\n"
                   "ucast eth0 alpha\n")
    cfg = hacf(text, local={"192.0.2.1", "127.0.0.1"})
    assert [(m.kind, m.dev, m.addr, m.port) for m in cfg.media[1:]] == [
        ("ucast", "eth0", "192.0.2.2", 694), ("ucast", "eth0", "beta.example.org", 694)]
    assert "ha.cf:4: ucast to this node's own address 192.0.2.1: ignored" in cfg.infos
    assert "ha.cf:7: ucast to this node's own address alpha: ignored" in cfg.infos


def test_ucast_extra_peers_are_ignored_with_a_warning():
    cfg = hacf(BASE + "ucast eth0 192.0.2.2 192.0.2.3\n")
    assert cfg.media[-1].addr == "192.0.2.2"
    assert cfg.warnings == ["ha.cf:4: ucast takes one peer per line: 192.0.2.3 ignored "
                            "(repeat the line for more peers)"]


def test_ipv6_media():
    cfg = hacf("node alpha beta\nucast6 eth0 2001:DB8::2\nmcast6 eth1 ff02::694 700 1 0\n"
               "auto_failback on\n", local={"2001:db8::1"})
    assert [(m.kind, m.dev, m.addr, m.port) for m in cfg.media] == [
        ("ucast6", "eth0", "2001:db8::2", 694), ("mcast6", "eth1", "ff02::694", 700)]
    own = hacf("node alpha beta\nbcast eth1\nucast6 eth0 2001:db8::1\n",
               local={"2001:db8::1"})
    assert [m.kind for m in own.media] == ["bcast"]


def test_mcast_fields():
    cfg = hacf("node alpha beta\nudpport 700\nmcast eth1 225.0.0.1 6940 2 1\n")
    (m,) = cfg.media
    assert (m.kind, m.dev, m.addr, m.port, m.ttl, m.loop, m.name) == \
        ("mcast", "eth1", "225.0.0.1", 6940, 2, 1, "eth1")


def test_udpport_and_baud_apply_to_later_media():
    cfg = hacf("node alpha beta\nbcast eth1\nbaud 115200\nserial /dev/ttyS0\n"
               "udpport 700\nbcast eth2\nbaud 9600\nauto_failback on\n")
    assert [(m.name, m.port, m.baud) for m in cfg.media] == [
        ("eth1", 694, 19200), ("ttyS0", 694, 115200), ("eth2", 700, 19200)]
    assert cfg.udpport == 700 and cfg.baud == 9600
    assert cfg.warnings[0].startswith("ha.cf:5: udpport after a bcast or ucast line")
    assert cfg.warnings[1] == "ha.cf:7: baud set again (line 3): this value wins"
    assert cfg.warnings[2] == ("ha.cf:7: baud after a serial line: those ports keep 115200 "
                               "bps; move baud before serial")


def test_derived_defaults():
    c = hacf(BASE + "deadtime 5\n")
    assert (c.warntime, c.initdead, c.deadping) == (2.5, 12, 5)
    c = hacf(BASE + "deadtime 8\n")
    assert c.initdead == 16
    c = hacf(BASE + "deadtime 20\nkeepalive 2\n")
    assert (c.warntime, c.initdead, c.deadping) == (10, 20, 20)
    assert {"warntime", "initdead", "deadping"} <= c.defaulted
    assert not {"deadtime", "keepalive"} & c.defaulted


def test_test_timings_are_accepted():
    c = hacf(BASE + "keepalive 100ms\nwarntime 300ms\ndeadtime 500ms\ninitdead 1\n")
    assert (c.keepalive, c.warntime, c.deadtime, c.initdead) == (0.1, 0.3, 0.5, 1)
    assert c.warnings == ["ha.cf:7: initdead 1s is under 10s: a peer booting at the same "
                          "time may not be heard yet"]


def test_later_value_wins_with_a_warning():
    c = hacf(BASE + "keepalive 2\nkeepalive 3\n")
    assert c.keepalive == 3
    assert c.warnings == ["ha.cf:5: keepalive set again (line 4): this value wins"]


def test_ping_and_ping_group():
    c = hacf(BASE + "ping 192.0.2.254 gw.example.org\nping_group uplinks 192.0.2.5,192.0.2.6\n"
             "deadping 10\n")
    assert [(p.name, p.addrs, p.group) for p in c.pings] == [
        ("192.0.2.254", ["192.0.2.254"], False), ("gw.example.org", ["gw.example.org"], False),
        ("uplinks", ["192.0.2.5", "192.0.2.6"], True)]
    assert c.deadping == 10


def test_ping_ipv6_and_ping6():
    c = hacf(BASE + "ping 2001:db8::fe\nping6 2001:db8::fd\nping_group g 192.0.2.1 2001:db8::1\n")
    assert [p.addrs for p in c.pings] == [["2001:db8::fe"], ["2001:db8::fd"],
                                          ["192.0.2.1", "2001:db8::1"]]
    with pytest.raises(ConfigError, match="^ha.cf:4: ping6 takes an IPv6 address: 192.0.2.1 is "
                       "IPv4; use ping$"):
        hacf(BASE + "ping6 192.0.2.1\n")


def test_respawn_ipfail_and_others():
    c = hacf(BASE + "ping 192.0.2.254\nrespawn hacluster /usr/lib/heartbeat/ipfail\n"
             "respawn root /usr/local/bin/mon  -f  /etc/mon.cf\n")
    assert c.ipfail
    assert c.respawns == [Respawn("root", "/usr/local/bin/mon  -f  /etc/mon.cf", 6)]
    assert any(i.startswith("ha.cf:5: respawn ipfail: hb-watch itself") for i in c.infos)


def test_ipfail_without_ping_warns():
    c = hacf(BASE + "respawn hacluster /usr/libexec/heartbeat/ipfail\n")
    assert c.ipfail and c.warnings == [
        "ha.cf:4: respawn ipfail without ping or ping_group: nothing to judge connectivity by"]


@pytest.mark.parametrize("value,secs", [("10", 10.0), ("500ms", 0.5), ("off", None),
                                        ("no", None), ("5s", 5.0), ("1.5 sec", 1.5)])
def test_monitor_extension(value, secs):
    c = hacf(BASE + "monitor %s\n" % value)
    assert c.monitor == secs and "monitor" not in c.defaulted
    assert hacf(BASE).monitor is None


def test_logging_and_misc_settings():
    c = hacf(BASE + "logfile /var/log/ha-log\ndebugfile /var/log/ha-debug\nlogfacility "
             "LOCAL3\ndebug 2\nrealtime off\nrtprio 5\nwatchdog /dev/watchdog\n"
             "env OPT=a b=c\n")
    assert (c.logfile, c.debugfile, c.logfacility, c.debug, c.realtime, c.rtprio,
            c.watchdog) == ("/var/log/ha-log", "/var/log/ha-debug", "local3", 2, False, 5,
                            "/dev/watchdog")
    assert c.env == {"OPT": "a b=c"}
    assert hacf(BASE + "logfacility none\n").logfacility == "none"


@pytest.mark.parametrize("word", sorted(NO_EFFECT))
def test_no_effect_directives_say_so(word):
    c = hacf(BASE + "%s whatever 1\n" % word)
    assert c.infos[0] == "ha.cf:4: %s has no effect in hb: %s" % (word, NO_EFFECT[word])


@pytest.mark.parametrize("line", ["crm off", "crm no", "pacemaker false", "autojoin none"])
def test_harmless_crm_and_autojoin_values(line):
    assert hacf(BASE + line + "\n").infos == [
        "ha.cf:4: no logfile, debugfile or logfacility: hb logs to stderr only (Heartbeat "
        "would use ha_logd)"]


def test_every_heartbeat_directive_is_known():
    words = """node keepalive deadtime warntime initdead deadping udpport bcast ucast
    mcast mcast6 ucast6 serial baud auto_failback nice_failback ping ping6 ping_group hbaping
    respawn failfast apiauth logfile debugfile logfacility use_logd conn_logd_time debug
    realtime rtprio hopfudge hbgenmethod msgfmt watchdog stonith stonith_host crm pacemaker
    autojoin uuidfrom cluster quorum_server coredumps coreroot compression
    compression_threshold traditional_compression max_rexmit_delay memreserve log_badpack
    syslogmsgfmt use_apphbd env crm_daemon_dir crmd_spawns_pengine record_config_changes
    record_pengine_inputs enable_config_writes udp""".split()
    table = _HaCf(Config(), "ha.cf", ()).dispatch()
    assert set(words) | {"monitor", "stop_failure", "resource_order"} == set(table)


def test_single_node_warns():
    c = hacf("node alpha\nbcast eth1\nauto_failback on\n")
    assert c.peers == [] and c.warnings == [
        "ha.cf:1: only one node listed: there is no peer to fail over to"]


# ---------------------------------------------------------------- addresses

@pytest.mark.parametrize("spec,want", [
    ("192.0.2.10", ("192.0.2.10", 4, None, None, None, None)),
    ("192.0.2.10/24", ("192.0.2.10", 4, 24, None, None, None)),
    ("192.0.2.10/255.255.255.0", ("192.0.2.10", 4, 24, None, None, None)),
    ("192.0.2.10/24/eth0", ("192.0.2.10", 4, 24, "eth0", None, None)),
    ("192.0.2.10/24/eth0:1", ("192.0.2.10", 4, 24, "eth0", "1", None)),
    ("192.0.2.10/24/eth0/192.0.2.255", ("192.0.2.10", 4, 24, "eth0", None, "192.0.2.255")),
    ("192.0.2.10/24/192.0.2.255", ("192.0.2.10", 4, 24, None, None, "192.0.2.255")),
    ("192.0.2.10//eth0", ("192.0.2.10", 4, None, "eth0", None, None)),
    ("198.51.100.7/28/br-lan:vip/198.51.100.15",
     ("198.51.100.7", 4, 28, "br-lan", "vip", "198.51.100.15")),
    ("2001:db8::5/64/eth0", ("2001:db8::5", 6, 64, "eth0", None, None)),
    ("2001:DB8:0::5", ("2001:db8::5", 6, None, None, None, None)),
])
def test_parse_address(spec, want):
    a = addrspec.parse(spec, "IPaddr")
    assert (a.ip, a.version, a.prefix, a.iface, a.label, a.broadcast) == want
    assert a.device == (want[3] + ":" + want[4] if want[4] else want[3])


# ---------------------------------------------------------------- haresources

def test_haresources_grammar():
    text = ("# groups\n\nAlpha 192.0.2.10/24/eth0 \\\n   httpd \\ # web\n"
            "\tMailTo::root@example.org,ops@example.org::Web\t\n"
            "beta IPaddr2::2001:db8::5/64/eth0 Filesystem::/dev/sda1::/data::ext4 \\\r\n"
            "  2001:db8::6/64\r\n"
            "beta 198.51.100.9 SendArp::198.51.100.9/eth1")
    w = []
    groups = parse_haresources(text, "har", ["alpha", "beta"], w)
    assert [(g.index, g.node, g.line, g.key) for g in groups] == [
        (1, "alpha", 3, "192.0.2.10/24/eth0"), (2, "beta", 6, "IPaddr2::2001:db8::5/64/eth0"),
        (3, "beta", 8, "198.51.100.9")]
    assert [(r.name, r.args, r.line) for r in groups[0].resources] == [
        ("IPaddr", ["192.0.2.10/24/eth0"], 3), ("httpd", [], 4),
        ("MailTo", ["root@example.org,ops@example.org", "Web"], 5)]
    assert [(r.name, r.args) for r in groups[1].resources] == [
        ("IPaddr2", ["2001:db8::5/64/eth0"]), ("Filesystem", ["/dev/sda1", "/data", "ext4"]),
        ("IPaddr", ["2001:db8::6/64"])]
    assert groups[2].resources[1].args == ["198.51.100.9/eth1"]
    assert w == ["har:6: CRLF (DOS) line ends: accepted"]


def test_haresources_comment_hides_continuation():
    groups = parse_haresources("alpha 192.0.2.10 # more \\\nbeta 192.0.2.11\n", "h",
                               ["alpha", "beta"])
    assert [g.node for g in groups] == ["alpha", "beta"]


# ---------------------------------------------------------------- authkeys

def test_authkeys_several_keys_rotation():
    w = []
    a = parse_authkeys("  # keys\n\nauth 2\n1 sha1 old#secret\n 2  md5  NewSecret trailing\n",
                       "ak", w)
    assert a.use == 2 and a.signing == AuthKey(2, "md5", b"NewSecret", 5)
    assert a.keys[1].key == b"old#secret"
    assert w == ["ak:5: a key is one word: trailing ignored"]


def test_authkeys_sha256_extension_warns():
    w = []
    a = parse_authkeys("auth 3\n3 SHA256 k\n", "ak", w)
    assert a.signing.method == "sha256"
    assert w == ["ak:2: sha256 is an hb extension: a Heartbeat peer cannot verify it "
                 "(use sha1 while Heartbeat nodes remain)"]


def test_authkeys_crc_warns_loudly():
    w = []
    parse_authkeys("auth 1\n1 crc\n", "ak", w)
    assert w == ["ak:2: key 1 is crc: it authenticates nothing; anyone on the link can take "
                 "the resources (use sha1)"]


# ---------------------------------------------------------------- load(): the file system

GOOD_HACF = "node alpha beta\nbcast lo\nauto_failback on\n"
GOOD_HAR = "alpha 192.0.2.10/24/lo\n"
GOOD_AK = "auth 1\n1 sha1 secret\n"


def test_load_reads_all_three(tmp_path):
    d = confdir(tmp_path, GOOD_HACF, GOOD_HAR, GOOD_AK)
    cfg = config.load(d, "alpha")
    assert cfg.confdir == d and cfg.groups[0].key == "192.0.2.10/24/lo"
    assert cfg.auth.signing.key == b"secret" and cfg.warnings == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o700])
def test_authkeys_mode_refused_at_start_warned_in_check(tmp_path, mode):
    d = confdir(tmp_path, GOOD_HACF, GOOD_HAR, GOOD_AK, mode=mode)
    ak = os.path.join(d, "authkeys")
    msg = "%s:0: mode %03o: the keys must be readable by root only: chmod 600 %s" % (ak, mode, ak)
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == msg
    assert config.load(d, "alpha", check_devices=False).warnings == [msg]


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o200, 0o000])
def test_authkeys_mode_600_or_stricter(tmp_path, mode):
    d = confdir(tmp_path, GOOD_HACF, GOOD_HAR, GOOD_AK, mode=mode)
    assert config.load(d, "alpha").auth.use == 1


def test_authkeys_must_be_owned_by_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    d = confdir(tmp_path, GOOD_HACF, GOOD_HAR, GOOD_AK)
    ak = os.path.join(d, "authkeys")
    os.chown(ak, 65534, -1)
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == ("%s:0: owned by uid 65534: the keys must be owned by root: "
                            "chown root %s" % (ak, ak))


@pytest.mark.parametrize("missing", ["ha.cf", "haresources", "authkeys"])
def test_missing_file(tmp_path, missing):
    d = confdir(tmp_path, GOOD_HACF, GOOD_HAR, GOOD_AK)
    os.unlink(os.path.join(d, missing))
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == "%s/%s:0: cannot read: No such file or directory" % (d, missing)


def test_devices_error_at_start_warning_in_check(tmp_path):
    d = confdir(tmp_path, "node alpha beta\nserial /dev/hb-no-such-tty\nbcast hbnosuch0\n"
                "watchdog /dev/hb-no-such-watchdog\nauto_failback on\n", GOOD_HAR, GOOD_AK)
    hf = os.path.join(d, "ha.cf")
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == "%s:2: serial device /dev/hb-no-such-tty: No such file or " \
        "directory" % hf
    cfg = config.load(d, "alpha", check_devices=False)
    assert cfg.warnings == [
        "%s:2: serial device /dev/hb-no-such-tty: No such file or directory" % hf,
        "%s:3: bcast: no interface hbnosuch0 on this machine" % hf,
        "%s:4: watchdog /dev/hb-no-such-watchdog: No such file or directory" % hf]


def test_every_error_is_reported(tmp_path):
    d = confdir(tmp_path, "node alpha beta\nkeepalive 2x\nbcast eth1\nundport 9\n",
                "alpha 192.0.2.10\n", "auth 1\n1 sha secret\n2 md5\n", mode=0o644)
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == e.value.errors[0]
    assert [x.split(": ", 1)[0] for x in e.value.errors] == [
        d + "/ha.cf:2", d + "/ha.cf:4", d + "/authkeys:0", d + "/authkeys:2", d + "/authkeys:3"]
    d2 = confdir(tmp_path / "x", GOOD_HACF, "gamma 192.0.2.10\nalpha\nbeta 192.0.2.300\n",
                 GOOD_AK)
    with pytest.raises(ConfigError) as e:
        config.load(d2, "alpha")
    assert [x.split(": ", 1)[0] for x in e.value.errors] == [
        d2 + "/haresources:1", d2 + "/haresources:2", d2 + "/haresources:3"]
    d3 = confdir(tmp_path / "y", "node alpha beta\nserial /dev/hb-no-tty\nbcast hbnosuch0\n",
                 GOOD_HAR, GOOD_AK)
    with pytest.raises(ConfigError) as e:
        config.load(d3, "alpha")
    assert len(e.value.errors) == 2


def test_real_pty_and_interface_pass(tmp_path):
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        d = confdir(tmp_path, "node alpha beta\nserial %s\nbcast lo\nauto_failback on\n" % tty,
                    GOOD_HAR, GOOD_AK)
        cfg = config.load(d, "alpha")
        assert cfg.media[0].dev == tty and cfg.warnings == []
    finally:
        os.close(master)
        os.close(slave)


def test_watchdog_may_be_a_fifo_stand_in(tmp_path):
    os.mkfifo(tmp_path / "wd")
    d = confdir(tmp_path, GOOD_HACF + "watchdog %s/wd\n" % tmp_path, GOOD_HAR, GOOD_AK)
    assert config.load(d, "alpha").watchdog == "%s/wd" % tmp_path


def test_serial_must_be_a_character_device(tmp_path):
    d = confdir(tmp_path, "node alpha beta\nserial %s/plain\nbcast lo\nauto_failback on\n"
                % tmp_path, GOOD_HAR, GOOD_AK)
    (tmp_path / "plain").write_text("")
    with pytest.raises(ConfigError, match=r"ha.cf:2: serial device .*/plain: not a character"):
        config.load(d, "alpha")


def test_haresources_interface_and_respawn_checked(tmp_path):
    d = confdir(tmp_path, GOOD_HACF + "respawn root /nonexistent/prog -x\n",
                "alpha IPaddr2::192.0.2.10/24/hbnosuch1:0\n", GOOD_AK)
    with pytest.raises(ConfigError) as e:
        config.load(d, "alpha")
    assert str(e.value) == "%s/ha.cf:4: respawn: /nonexistent/prog is not an executable file" % d
    cfg = config.load(d, "alpha", check_devices=False)
    assert cfg.warnings == [
        "%s/ha.cf:4: respawn: /nonexistent/prog is not an executable file" % d,
        "%s/haresources:1: IPaddr2::192.0.2.10/24/hbnosuch1:0: no interface hbnosuch1 on "
        "this machine" % d]


def test_local_addresses_and_ucast_to_self(tmp_path):
    addrs = config.local_addresses()
    assert "127.0.0.1" in addrs
    d = confdir(tmp_path, "node alpha beta\nucast lo 127.0.0.1\nucast lo 192.0.2.99\n"
                "auto_failback on\n", GOOD_HAR, GOOD_AK)
    cfg = config.load(d, "alpha")
    assert [m.addr for m in cfg.media] == ["192.0.2.99"]
    assert cfg.infos[0] == "%s/ha.cf:2: ucast to this node's own address 127.0.0.1: " \
        "ignored" % d


def test_node_defaults_to_nodeinfo_then_uname(tmp_path):
    d = confdir(tmp_path, "node %s beta\nbcast lo\nauto_failback on\n"
                % os.uname().nodename.lower(), GOOD_HAR.replace("alpha", "beta"), GOOD_AK)
    assert config.load(d).node == os.uname().nodename.lower()
    with open(os.path.join(d, "nodeinfo"), "w") as f:
        f.write("BETA\n")
    assert config.default_node(d) == "beta" and config.load(d).node == "beta"


def test_local_addresses_in_a_namespace(lab, tmp_path):
    """ucast lines naming the namespace's own address are dropped, the peer's kept."""
    h = lab.host("a", "198.18.0.1/24")
    h.run(["ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
    d = confdir(tmp_path, "node alpha beta\nucast eth0 198.18.0.1\nucast eth0 198.18.0.2\n"
                "ucast6 eth0 2001:db8::1\nucast6 eth0 2001:db8::2\nauto_failback on\n",
                "alpha 198.18.0.100/24/eth0\n", GOOD_AK)
    code = ("import sys; sys.path.insert(0, %r); from hb import config; "
            "c = config.load(%r, 'alpha'); print(' '.join(m.addr for m in c.media)); "
            "print(sorted(config.local_addresses()))" % (os.path.join(ROOT, "lib"), d))
    out = h.run(["/usr/bin/python3", "-c", code]).stdout.split("\n")
    assert out[0] == "198.18.0.2 2001:db8::2"
    assert "198.18.0.1" in out[1] and "2001:db8::1" in out[1] and "192.0.2.1" not in out[1]


# ---------------------------------------------------------------- describe, digest

def test_describe_every_value_with_unit_and_default(tmp_path):
    d = confdir(tmp_path, "node alpha beta\nkeepalive 500ms\ndeadtime 2\nbcast lo\n"
                "auto_failback off\nping 192.0.2.254\nmonitor 10\n", GOOD_HAR, GOOD_AK)
    cfg = config.load(d, "alpha")
    text = config.describe(cfg)
    lines = text.splitlines()
    for want in ["node alpha (this node)", "node beta", "medium lo bcast port 694",
                 "keepalive 500ms", "deadtime 2s",
                 "warntime 1s (default)", "initdead 12s (default)", "deadping 2s (default)",
                 "udpport 694 (default)", "baud 19200 bps (default)", "auto_failback off",
                 "monitor every 10s", "ping 192.0.2.254", "ipfail no (default)",
                 "logfile none (default)", "realtime on (default)", "debug 0 (default)",
                 "group 1 alpha 192.0.2.10/24/lo", "auth 1 sha1 (keys 1)",
                 "digest " + config.digest(cfg)]:
        assert want in lines
    assert "secret" not in text
    assert "info: %s/ha.cf:7: no logfile, debugfile or logfacility: hb logs to stderr only " \
        "(Heartbeat would use ha_logd)" % d in lines


def test_describe_lists_warnings():
    cfg = hacf("node alpha beta\nbcast eth1\n")
    assert "warning: ha.cf:2: auto_failback not set: legacy, as in Heartbeat; set it to on " \
        "or off" in config.describe(cfg).splitlines()


def test_digest_covers_what_both_nodes_must_agree_on():
    base = hacf(BASE + "keepalive 2\n")
    base.groups = parse_haresources("alpha 192.0.2.10\n", "h", ["alpha", "beta"])
    d0 = config.digest(base)
    assert len(d0) == 20 and int(d0, 16) >= 0
    # the other node, other comments, logging, media: same digest
    other = hacf("# peer\nnode alpha,beta\nserial /dev/ttyS0\nauto_failback on\n"
                 "keepalive 2000ms\nlogfacility daemon\n", node="beta")
    other.groups = parse_haresources("# x\nALPHA   192.0.2.10  # y\n", "h", ["alpha", "beta"])
    assert config.digest(other) == d0
    assert digest_diff(d0, config.digest(other)) == []
    for change in ["keepalive 3", "deadtime 25\nwarntime 15\ninitdead 30", "warntime 9",
                   "initdead 60", "auto_failback off"]:
        c = hacf(BASE + "keepalive 2\n" + change + "\n")
        c.groups = base.groups
        assert config.digest(c) != d0, change
        assert digest_diff(d0, config.digest(c)) == [change.split()[0]]
    c = hacf(BASE + "keepalive 2\n")
    c.groups = parse_haresources("beta 192.0.2.10\n", "h", ["alpha", "beta"])
    assert digest_diff(config.digest(c), d0) == ["haresources"]
    c = hacf(BASE + "keepalive 2\ndeadtime 20\n")
    assert digest_diff(config.digest(c), d0) == ["haresources", "deadtime",
                                                 "warntime", "initdead"]
    assert digest_diff("abc", d0) == [k for k, _ in DIGEST_PARTS]


# ---------------------------------------------------------------- man pages say what is parsed

def man(name):
    with open(os.path.join(ROOT, "man", name)) as f:
        return f.read()


def man_examples(page):
    ex = page.split(".SH EXAMPLES", 1)[1].split(".SH SEE ALSO", 1)[0]
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi$", ex, re.M | re.S)
    return [b.replace("\\e", "\\").replace("\\-", "-") for b in blocks]


@pytest.mark.parametrize("name", ["ha.cf.5", "haresources.5", "authkeys.5"])
def test_man_page_sections_in_order(name):
    heads = re.findall(r"^\.SH (.+)$", man(name), re.M)
    assert heads == ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"]


def test_ha_cf_man_names_every_directive():
    page = man("ha.cf.5")
    table = _HaCf(Config(), "ha.cf", ()).dispatch()
    named = set(re.findall(r"^\.BR? \"?([a-z_0-9]+)", page, re.M))
    noeffect = page.split(".SS Accepted without effect")[1].split(".SS")[0]
    assert set(NO_EFFECT) <= set(re.findall(r"^\.BR? ([a-z_]+)", noeffect, re.M))
    named |= set(re.findall(r"^\.BI ([a-z_0-9]+) ", page, re.M))
    named |= set(re.findall(r'^\.BR [a-z_]+ ", " ([a-z_]+)', page, re.M))
    assert set(table) - named == set()
    for sub in ["Syntax", "Nodes and timing", "Heartbeat media", "Resources", "Connectivity",
                "Processes and logging", "Accepted without effect", "Refused",
                "Outgrowing two nodes"]:
        assert ".SS %s\n" % sub in page
    assert "hb extension" in page and "hb\\-supervise \\-\\-export pacemaker" in page


def test_ha_cf_man_examples_parse():
    first, second, _ = man_examples(man("ha.cf.5"))
    cfg = parse_hacf(first, "ha.cf", "julius")
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (2, 10, 5, 30)
    assert cfg.warnings == []
    cfg = parse_hacf(second, "ha.cf", "caesar", {"198.51.100.2"})
    assert [m.addr for m in cfg.media] == ["198.51.100.1"]


def test_haresources_man_examples_parse():
    a, b = man_examples(man("haresources.5"))
    assert parse_haresources(a, "h", ["julius", "caesar"])[0].key == "IPaddr::192.0.2.1/24/eth0"
    groups = parse_haresources(b, "h", ["alpha", "beta"])
    addr = addrspec.parse(groups[1].resources[1].args[0], "IPaddr")
    assert (addr.prefix, addr.iface, addr.label, addr.broadcast) == \
        (28, "eth1", "vip", "198.51.100.15")


def test_authkeys_man_examples_parse():
    a, b, _ = man_examples(man("authkeys.5"))
    assert parse_authkeys(a, "ak").signing.method == "sha1"
    assert sorted(parse_authkeys(b, "ak").keys) == [1, 2]


def test_man_pages_are_clean_roff():
    for name in ["ha.cf.5", "haresources.5", "authkeys.5"]:
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(ROOT, "man", name)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)


# ---------------------------------------------------------------- robustness

_WORDS = ["node", "alpha", "beta", "bcast", "ucast", "mcast", "serial", "/dev/ttyS0", "eth1",
          "keepalive", "deadtime", "500ms", "2", "auto_failback", "on", "ping", "ping_group",
          "respawn", "crm", "#", ",", "\\", "::", "IPaddr::", "192.0.2.10/24/eth0", "1",
          "sha1", "auth", "crc", "monitor", "udpport", "x" * 20, "2001:db8::1", "\t", "\r",
          "\u00b2", "\u0663", "15", "0x1f"]


@given(st.lists(st.lists(st.sampled_from(_WORDS) | st.text(max_size=6), max_size=6),
                max_size=8))
@settings(max_examples=300, deadline=None)
def test_parsers_raise_only_config_errors(lines):
    text = "\n".join(" ".join(words) for words in lines)
    for parse in (lambda: parse_hacf(text, "f", "alpha", {"192.0.2.1"}),
                  lambda: parse_haresources(text, "f", ["alpha", "beta"]),
                  lambda: parse_authkeys(text, "f")):
        try:
            parse()
        except ConfigError as e:
            assert all(re.match(r"^f:\d+: \S", x) and "\n" not in x for x in e.errors)


@given(st.text(alphabet="0123456789abcdef.:/eth", max_size=30))
@settings(max_examples=300, deadline=None)
def test_parse_address_raises_only_value_errors(spec):
    try:
        a = addrspec.parse(spec, "IPaddr")
    except ValueError:
        return
    assert a.version in (4, 6)


# ---------------------------------------------------------------- against real Heartbeat 3.0.6

B3 = "node ME peer\nbcast eth0\nauto_failback on\n"
# (ha.cf with ME for the node's name, Heartbeat 3.0.6 starts with it, hb accepts it)
AGAINST_HEARTBEAT = [
    (B3, True, True),
    (B3 + "keepalive 500ms\ndeadtime 2\nwarntime 1\ninitdead 12\n", True, True),
    ("node ME,peer\nbcast eth0\nauto_failback on\n", True, True),
    ("# c\n\n\tnode\tME   # me\nudp eth0\t\nnode peer\nnice_failback on", True, True),
    (B3.replace("\n", "\r\n"), True, True),
    (B3 + "ucast eth0 198.18.0.2 198.18.0.3\n", True, True),    # (no mcast: never sent to)
    (B3 + "auto_failback YES\nauto_failback legacy\nrealtime n\ncrm off\n", True, True),
    (B3 + "pacemaker no\n", True, True),
    (B3 + "crm off\npacemaker no\n", False, False),
    (B3 + "ping 198.18.0.254\nping_group g 198.18.0.253 198.18.0.252\ndeadping 20\n"
     "respawn hacluster /usr/libexec/heartbeat/ipfail\napiauth ipfail uid=hacluster\n", True,
     True),
    (B3 + "respawn root /bin/true\n", True, True),
    (B3 + "debug 1\nhopfudge 1\ncompression bz2\ncompression_threshold 2\ncoredumps true\n"
     "msgfmt netstring\nconn_logd_time 60\nmax_rexmit_delay 250\nuuidfrom nodename\n"
     "cluster linux-ha\nmemreserve 6500\nlog_badpack false\nsyslogmsgfmt true\n"
     "hbgenmethod file\ntraditional_compression no\nrtprio 5\nenv FOO=bar\nautojoin none\n",
     True, True),
    (B3 + "undport 694\n", False, False),
    ("Node ME peer\nbcast eth0\n", False, False),
    (B3 + "deadtime 10s\n", False, False),
    (B3 + "deadtime 10\ninitdead 5\n", False, False),
    (B3 + "keepalive 2\ndeadtime 3\n", False, False),
    (B3 + "keepalive 2\ndeadtime 10\ndeadping 3\n", False, False),
    (B3 + "mcast eth0 192.0.2.7 694 1 0\n", False, False),
    (B3 + "mcast eth0 239.0.0.1 694 5 0\n", False, False),
    (B3 + "baud 14400\n", False, False),
    (B3 + "autojoin any\n", False, False),
    (B3 + "hbaping qlogic-qla2200-0\n", False, False),
    ("node peer other\nbcast eth0\n", False, False),
    # hb is stricter on purpose (ha.cf(5) says why and what to do instead)
    (B3 + "keepalive 1\nwarntime 12\ndeadtime 10\n", True, False),
    (B3 + "stonith_host * baytech 192.0.2.3 mylogin mysecretpassword\n", True, False),
    (B3 + "node third\n", True, False),
    # hb is more lenient: a blank between a number and its unit
    (B3 + "keepalive 1500 msec\ndeadtime 10\n", False, True),
]


@pytest.mark.slow
def test_heartbeat_3_agrees(lab, heartbeat):  # noqa: F811
    """Each ha.cf: does real Heartbeat 3.0.6 start with it, does hb accept it?"""
    nodes = []
    for i, (text, _, _) in enumerate(AGAINST_HEARTBEAT):
        me = "c%02d" % i
        h = lab.host(me, "198.18.0.1/24")
        nodes.append(heartbeat(h, me, text.replace("ME", me), "%s 198.18.0.100\n" % me))
    for n in nodes:
        try:
            n.start()
        except RuntimeError:
            pass                        # exited at once: a configuration error
    verdicts = {}
    deadline = time.monotonic() + 20
    while len(verdicts) < len(nodes) and time.monotonic() < deadline:
        for i, n in enumerate(nodes):
            text = n.log() + n.stdio_text()
            if i not in verdicts and "Configuration validated" in text:
                verdicts[i] = True
            elif i not in verdicts and "onfiguration error" in text:
                verdicts[i] = False
        time.sleep(0.1)
    for n in nodes:
        n.close()
    for i, (text, heartbeat_starts, hb_accepts) in enumerate(AGAINST_HEARTBEAT):
        me = "c%02d" % i
        errors = [x for x in nodes[i].log().splitlines() if "ERROR" in x]
        assert verdicts.get(i) == heartbeat_starts, (text, errors)
        full = "logfile /x\ndebugfile /y\nuse_logd no\n" + text.replace("ME", me)
        try:
            parse_hacf(full, "ha.cf", me)
            accepted = True
        except ConfigError:
            accepted = False
        assert accepted == hb_accepts, text


# ---------------------------------------------------------------- numbers out of any range

_HACF_WORDS = sorted(_HaCf(Config(node="alpha"), "f", ()).dispatch())
_NUMBERS = st.sampled_from(["1e400", "99999999999999999999", "9" * 400, "1" + "0" * 5000,
                            "inf", "nan", "-1", "0x10", "1_000", "\u00b2", "\u0663", "1.5e3",
                            "18446744073709551616", "99999999999999999999ms", "1." + "9" * 400,
                            "0" * 30 + "1", "86401", "86400001ms", "4294967296"]) | \
    st.integers(min_value=-2 ** 70, max_value=2 ** 70).map(str) | \
    st.text(alphabet="0123456789.e+-_msu ", min_size=1, max_size=40)
_BASE = "keepalive 1\ndeadtime 10\nbcast eth0\nnode alpha beta\nauto_failback off\n"


def _one_line(e: ConfigError, fname: str) -> None:
    for x in e.errors:
        assert re.match(r"^%s:\d+: \S" % re.escape(fname), x) and "\n" not in x, x
        assert len(x) < 400, x


@given(st.sampled_from(_HACF_WORDS), st.lists(st.sampled_from(
    ["eth0", "239.0.0.1", "192.0.2.9", "alpha", "/dev/ttyS0", "g"]) | _NUMBERS,
    min_size=1, max_size=5))
@settings(max_examples=1500, deadline=None)
def test_any_directive_with_any_number_is_a_one_line_error_or_accepted(word, args):
    text = _BASE + "%s %s\n" % (word, " ".join(args))
    try:
        cfg = parse_hacf(text, "ha.cf", "alpha", {"192.0.2.1"})
    except ConfigError as e:
        _one_line(e, "ha.cf")
        return
    for name in ("keepalive", "deadtime", "warntime", "initdead", "deadping"):
        assert 0 < getattr(cfg, name) <= MAX_TIME * 2
    assert 1 <= cfg.udpport <= 65535


@given(_NUMBERS, _NUMBERS)
@settings(max_examples=500, deadline=None)
def test_authkeys_and_haresources_numbers_are_one_line_errors(a, b):
    for text in ("auth %s\n1 sha1 k\n" % a, "auth 1\n%s sha1 k\n1 md5 x\n" % a,
                 "auth %s\n%s sha1 k\n" % (a, b)):
        try:
            auth = parse_authkeys(text, "authkeys")
            assert 1 <= auth.use <= 15
        except ConfigError as e:
            _one_line(e, "authkeys")
    for text in ("alpha 198.18.0.1/%s/eth0\n" % a, "alpha IPaddr::198.18.0.1/%s\n" % a,
                 "alpha %s::%s\n" % (a, b)):
        try:
            parse_haresources(text, "haresources", ["alpha", "beta"])
        except ConfigError as e:
            _one_line(e, "haresources")


@pytest.mark.parametrize("fname,line,says", [
    ("ha.cf", "keepalive 1e400", "bad time '1e400'"),
    ("ha.cf", "deadtime 99999999999999999999", "at most 86400 s"),
    ("ha.cf", "udpport " + "9" * 5000, "a whole number from 1 to 65535"),
    ("ha.cf", "baud 18446744073709551616", "bad rate"),
    ("authkeys", "auth 99999999999", "the key number is from 1 to 15"),
])
def test_numbers_too_large_for_their_field(tmp_path, fname, line, says):
    texts = {"ha.cf": _BASE, "haresources": "alpha 192.0.2.10/24/eth0\n",
             "authkeys": "auth 1\n1 sha1 secret\n"}
    texts[fname] = (line + "\n" + texts[fname]) if fname == "authkeys" else texts[fname] + line
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "authkeys").chmod(0o600)
    with pytest.raises(ConfigError) as e:
        config.load(str(tmp_path), "alpha", check_devices=False)
    first = e.value.errors[0]
    assert first.startswith(str(tmp_path / fname) + ":") and says in first, first
    assert "\n" not in first and len(first) < 300 + len(str(tmp_path))


def test_resource_order_directive():
    assert hacf(BASE).resource_order == "serial"             # Heartbeat's order by default
    assert hacf(BASE + "resource_order parallel\n").resource_order == "parallel"
    assert hacf(BASE + "resource_order Serial\n").resource_order == "serial"
    for bad in ("resource_order fast", "resource_order", "resource_order serial parallel"):
        with pytest.raises(ConfigError) as e:
            hacf(BASE + bad + "\n")
        assert str(e.value).startswith("ha.cf:4: resource_order: want serial"), e.value
