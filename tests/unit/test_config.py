"""config: ha.cf, haresources, authkeys parsing; load(), describe(), digest()."""

import os

import pytest

from hb import config
from hb.config import ConfigError, parse_authkeys, parse_hacf, parse_haresources

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
    d.mkdir()
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
    if word in config.NO_EFFECT:
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
    assert [p.name for p in cfg.pings] == ["10.10.10.254", "group1"]
    assert cfg.pings[1].addrs == ["10.10.10.254", "10.10.10.253"] and cfg.pings[1].group
    assert cfg.ipfail and cfg.respawns == [config.Respawn("userid", "/path/name/to/run",
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
        "135.9.216.110", "135.9.215.111", "135.9.216.112", "httpd"]
    assert [(r.name, r.args) for r in got[3].resources] == [
        ("IPaddr", ["135.9.216.3/28/eth0/135.9.216.12"]), ("httpd", [])]
    assert [(r.name, r.args) for r in got[4].resources] == [
        ("IPaddr", ["10.0.0.170"]), ("Filesystem", ["/dev/sda1", "/data1", "ext2"])]
    assert config.parse_address("135.9.8.7/24/135.9.8.210").broadcast == "135.9.8.210"


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
