"""hb -> Corosync + Pacemaker export: the corpus verifies with crm_verify and corosync -t,
the mapping is what ha.cf(5) promises, and what cannot be expressed is refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from hb import config, exits, export
from hb.settings import Config, ConfigError, Group, Medium, Resource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "export")
INIT_D = {"ssh", "postfix", "cron"}
ADDRS = {"alpha": "198.18.0.1", "beta": "198.18.0.2"}
CORPUS = {
    # case: (confdir, node, --addr)
    "seed": (os.path.join(ROOT, "etc", "ha.d"), "julius",
             {"julius": "198.18.0.1", "caesar": "198.18.0.2"}),
    "addresses": (os.path.join(DATA, "addresses"), "alpha",
                  {"alpha": "198.18.0.1,192.0.2.1", "beta": "198.18.0.2,192.0.2.2"}),
    "services": (os.path.join(DATA, "services"), "alpha", ADDRS),
    "wrappers": (os.path.join(DATA, "wrappers"), "alpha", ADDRS),
}
needs_crm_verify = pytest.mark.skipif(not shutil.which("crm_verify"),
                                      reason="needs pacemaker-cli-utils (make deps)")
needs_corosync = pytest.mark.skipif(not shutil.which("corosync"),
                                    reason="needs corosync (make deps)")


def run_case(case: str) -> tuple[Config, export.Export]:
    confdir, node, addrs = CORPUS[case]
    cfg = config.load(confdir, node=node, check_devices=False)
    sys_ = export.System(resource_d=export._names(os.path.join(confdir, "resource.d")),
                         init_d=INIT_D)
    return cfg, export.export(cfg, addrs, sys_)


def cib(ex: export.Export) -> ET.Element:
    return ET.fromstring(ex.files["cib.xml"].encode())


def crm_verify(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["crm_verify", "--xml-file", path, "-V"], capture_output=True,
                          text=True, timeout=60)


@needs_crm_verify
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_cib_passes_crm_verify(case, tmp_path):
    _, ex = run_case(case)
    path = tmp_path / "cib.xml"
    path.write_text(ex.files["cib.xml"])
    r = crm_verify(str(path))
    assert r.returncode == 0, r.stderr
    assert "error" not in (r.stdout + r.stderr).lower(), r.stderr


@needs_crm_verify
def test_crm_verify_does_reject_a_broken_cib(tmp_path):
    _, ex = run_case("services")
    path = tmp_path / "cib.xml"
    path.write_text(ex.files["cib.xml"].replace('class="lsb"', 'class="nonsense"', 1))
    assert crm_verify(str(path)).returncode != 0


def corosync_check(lab, conf: str, authkey: bytes, addr: str, tmp: str):
    """`corosync -t` in a namespace where addr is this node's address."""
    key = os.path.join(tmp, "authkey")
    with open(key, "wb") as f:
        f.write(authkey)
    path = os.path.join(tmp, "corosync.conf")
    with open(path, "w") as f:
        f.write(conf.replace("totem {", "totem {\n    keyfile: %s" % key, 1))
    h = lab.host("n%d" % len(lab.hosts), addr + "/24")
    return h.run(["corosync", "-t", "-c", path], check=False, timeout=30)


@needs_corosync
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_corosync_conf_parses(case, lab, tmp_path):
    _, ex = run_case(case)
    r = corosync_check(lab, ex.files["corosync.conf"], ex.files["authkey"], "198.18.0.1",
                       str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in (r.stdout + r.stderr).lower(), r.stderr


@needs_corosync
def test_corosync_t_does_reject_a_broken_conf(lab, tmp_path):
    _, ex = run_case("wrappers")
    bad = ex.files["corosync.conf"].replace("transport: knet", "transport: pigeon")
    r = corosync_check(lab, bad, ex.files["authkey"], "198.18.0.1", str(tmp_path))
    assert r.returncode != 0


# ---------------------------------------------------------------- mapping


def prims(root: ET.Element, gid: str) -> list[tuple[str, str | None, str]]:
    g = root.find(".//group[@id='%s']" % gid)
    return [(p.get("class"), p.get("provider"), p.get("type")) for p in g.findall("primitive")]


def params(root: ET.Element, pid: str) -> dict[str, str]:
    p = root.find(".//primitive[@id='%s']" % pid)
    return {nv.get("name"): nv.get("value") for nv in p.iter("nvpair")}


def meta(root: ET.Element) -> dict[str, str]:
    return {nv.get("name"): nv.get("value") for nv in root.iter("nvpair")
            if nv.get("id", "").startswith("rsc-options")}


def test_seed_groups_in_order_with_preference_and_stickiness():
    cfg, ex = run_case("seed")
    root = cib(ex)
    assert [g.get("id") for g in root.iter("group")] == ["g1-julius"]
    assert prims(root, "g1-julius") == [("ocf", "hb", "IPaddr"), ("ocf", "hb", "IPaddr"),
                                        ("ocf", "hb", "MailTo")]
    assert params(root, "g1-julius-ip-192.0.2.1") == {
        "ip": "192.0.2.1", "cidr_netmask": "24", "nic": "eth0"}
    assert params(root, "g1-julius-mailto") == {"email": "alerts@example.org",
                                                "subject": "JuliusCaesar"}
    loc = root.find(".//rsc_location[@rsc='g1-julius']")
    assert (loc.get("node"), loc.get("score")) == ("julius", "100")
    assert cfg.auto_failback == "off"
    assert int(meta(root)["resource-stickiness"]) > 100
    assert root.find(".//op") is None                 # no `monitor` line in the seed
    props = {nv.get("name"): nv.get("value")
             for nv in root.find(".//cluster_property_set").iter("nvpair")}
    assert props["stonith-enabled"] == "false" and props["no-quorum-policy"] == "stop"
    assert "FENCING" in ex.files["cib.xml"] and "stonith-enabled=true" in ex.files["cib.xml"]


def test_seed_serial_link_is_said_not_dropped():
    _, ex = run_case("seed")
    conf = ex.files["corosync.conf"]
    assert re.search(r"# ha\.cf:\d+ serial /dev/ttyS0: Corosync has no serial", conf)
    assert any("serial medium /dev/ttyS0 has no Corosync equivalent" in n for n in ex.notes)
    assert "ring0_addr: 198.18.0.1" in conf and "ring0_addr: 198.18.0.2" in conf
    assert "two_node: 1" in conf and "provider: corosync_votequorum" in conf


def test_addresses_every_form_and_failback_on():
    _, ex = run_case("addresses")
    root = cib(ex)
    assert params(root, "g1-alpha-ip-198.18.0.100") == {"ip": "198.18.0.100"}
    assert params(root, "g1-alpha-ip-198.18.0.102")["cidr_netmask"] == "24"
    assert params(root, "g2-beta-ip-198.18.0.110") == {
        "ip": "198.18.0.110", "cidr_netmask": "24", "nic": "eth0", "iflabel": "web",
        "broadcast": "198.18.0.255"}
    assert params(root, "g2-beta-ip-2001-db8-110")["ip"] == "2001:db8::110"
    assert [g.get("id") for g in root.iter("group")] == ["g1-alpha", "g2-beta", "g3-alpha"]
    assert meta(root)["resource-stickiness"] == "0"
    conf = ex.files["corosync.conf"]
    assert "ring0_addr: 198.18.0.1" in conf and "ring1_addr: 192.0.2.1" in conf
    assert conf.count("linknumber:") == 2


def test_services_lsb_mailto_monitor_and_crc():
    cfg, ex = run_case("services")
    root = cib(ex)
    assert prims(root, "g1-alpha") == [("ocf", "hb", "IPaddr"), ("ocf", "hb", "MailTo"),
                                       ("lsb", None, "ssh"), ("lsb", None, "postfix")]
    assert params(root, "g1-alpha-mailto")["email"] == "ops@example.org,oncall@example.org"
    assert cfg.auto_failback == "legacy" and meta(root)["resource-stickiness"] == "0"
    ops = root.findall(".//primitive[@id='g1-alpha-ssh']/operations/op")
    assert [(o.get("name"), o.get("interval")) for o in ops] == [("monitor", "5s")]
    assert meta(root)["migration-threshold"] == "3"
    assert meta(root)["failure-timeout"] == "50s"
    assert "crypto_cipher: none" in ex.files["corosync.conf"]


def test_wrappers_map_to_heartbeat_agents_pings_and_respawn():
    _, ex = run_case("wrappers")
    root = cib(ex)
    assert prims(root, "g1-alpha") == [
        ("ocf", "hb", "IPaddr"), ("ocf", "heartbeat", "Filesystem"),
        ("ocf", "heartbeat", "apache"), ("ocf", "heartbeat", "portblock"),
        ("ocf", "heartbeat", "IPsrcaddr"), ("lsb", None, "tracker")]
    assert params(root, "g1-alpha-filesystem") == {"device": "/dev/vdb1", "directory": "/srv",
                                                   "fstype": "ext4"}
    assert params(root, "g1-alpha-portblock") == {"protocol": "tcp", "portno": "80",
                                                  "action": "unblock"}
    assert params(root, "g2-beta-sendarp") == {"ip": "198.18.0.200", "nic": "eth0"}
    assert params(root, "g2-beta-delay") == {"startdelay": "1", "stopdelay": "2"}
    assert any("copy it to /etc/init.d/tracker" in n for n in ex.notes)
    assert params(root, "ping1")["host_list"] == "198.18.0.254"
    assert params(root, "ping2")["host_list"] == "203.0.113.1 203.0.113.2"
    rules = root.findall(".//rsc_location[@rsc='g1-alpha']/rule")
    assert [r.get("score") for r in rules] == ["1000", "1000"]
    anything = root.findall(".//primitive[@type='anything']")
    assert [params(root, a.get("id"))["binfile"] for a in anything] == ["/usr/sbin/conntrackd"]
    assert any("ipfail" in n for n in ex.notes)


def test_timing_follows_deadtime():
    token, consensus = export.timing(15)
    assert token + consensus == 15000 and consensus >= 1.2 * token - 1
    _, ex = run_case("seed")
    assert "token: %d" % token in ex.files["corosync.conf"]


def test_authkey_derived_from_authkeys():
    cfg, ex = run_case("seed")
    assert len(ex.files["authkey"]) == 256
    assert export.authkey(cfg) == ex.files["authkey"]
    other, _ = run_case("wrappers")
    assert export.authkey(other) != ex.files["authkey"]


# ---------------------------------------------------------------- addresses


def two(media: list[Medium], node: str = "alpha") -> Config:
    return Config(confdir="/c", node=node, nodes=["alpha", "beta"], media=media,
                  deadtime=10, auto_failback="on")


def test_addresses_from_local_interface_and_ucast():
    cfg = two([Medium("ucast", "eth0", "198.18.0.2", line=3)])
    ls, _ = export.links(cfg, {}, export.System(local={"eth0": ["198.18.0.1/24"]}))
    assert ls[0].addrs == {"alpha": "198.18.0.1", "beta": "198.18.0.2"}


def test_addresses_from_resolution_in_the_link_subnet():
    cfg = two([Medium("bcast", "eth1", line=2), Medium("bcast", "eth0", line=3)])
    sys_ = export.System(local={"eth0": ["198.18.0.1/24"], "eth1": ["192.0.2.1/24"]},
                         resolve=lambda n: {"beta": ["198.18.0.2", "192.0.2.2"]}.get(n, []))
    ls, _ = export.links(cfg, {}, sys_)
    assert [k.addrs for k in ls] == [{"alpha": "192.0.2.1", "beta": "192.0.2.2"},
                                     {"alpha": "198.18.0.1", "beta": "198.18.0.2"}]


def test_addr_option_wins_and_picks_by_subnet():
    cfg = two([Medium("bcast", "eth0", line=2)])
    sys_ = export.System(local={"eth0": ["198.18.0.1/24"]},
                         resolve=lambda n: ["203.0.113.9"])
    ls, _ = export.links(cfg, {"beta": "192.0.2.7,198.18.0.7"}, sys_)
    assert ls[0].addrs["beta"] == "198.18.0.7"


def test_addr_option_names_resolve_and_are_taken_as_given():
    cfg = two([Medium("bcast", "eth0", line=2)])
    sys_ = export.System(local={"eth0": ["198.18.0.1/24"]},
                         resolve=lambda n: {"beta-ring0": ["203.0.113.2"]}.get(n, []))
    ls, _ = export.links(cfg, {"beta": "beta-ring0"}, sys_)
    assert ls[0].addrs == {"alpha": "198.18.0.1", "beta": "203.0.113.2"}
    with pytest.raises(ConfigError, match="--addr beta=nowhere: not an address"):
        export.links(cfg, {"beta": "nowhere"}, sys_)


def test_no_address_is_a_file_line_error():
    cfg = two([Medium("bcast", "eth1", line=7)])
    with pytest.raises(ConfigError, match=r"^/c/ha\.cf:7: no address for node alpha .*"
                                          r"--addr alpha=ADDRESS"):
        export.links(cfg, {}, export.System())


def test_two_links_need_two_addresses_each():
    cfg = two([Medium("bcast", "eth0", line=2), Medium("bcast", "eth1", line=3)])
    with pytest.raises(ConfigError, match=r"^/c/ha\.cf:3: no address for node alpha on link 1"):
        export.links(cfg, {"alpha": "198.18.0.1", "beta": "198.18.0.2"}, export.System())


# ---------------------------------------------------------------- refusals


def one_group(*resources: Resource, **kw) -> Config:
    cfg = two([Medium("bcast", "eth0", line=2)])
    cfg.groups = [Group(1, "alpha", list(resources), line=4)]
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def refuse(cfg: Config, sys_: export.System | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        export.export(cfg, ADDRS, sys_ or export.System())
    return str(e.value)


def test_refuses_lsb_script_with_arguments():
    msg = refuse(one_group(Resource("myscript", ["a", "b"], "myscript::a::b", line=4)))
    assert msg.startswith("/c/haresources:4: myscript::a::b has arguments")


def test_refuses_resource_d_script_hiding_an_init_script():
    msg = refuse(one_group(Resource("ssh", [], "ssh", line=4)),
                 export.System(resource_d={"ssh"}, init_d={"ssh"}))
    assert msg.startswith("/c/haresources:4: resource.d/ssh hides /etc/init.d/ssh")


def test_refuses_watchdog():
    cfg = one_group(Resource("IPaddr", ["198.18.0.9"], "198.18.0.9", line=4),
                    watchdog="/dev/watchdog")
    cfg.lines["watchdog"] = 9
    assert refuse(cfg).startswith("/c/ha.cf:9: watchdog has no Corosync 3 equivalent")


def test_refuses_bad_address_and_too_many_wrapper_args():
    assert refuse(one_group(Resource("IPaddr", ["nonsense/24"], "x", line=5))) \
        .startswith("/c/haresources:5: bad address")
    assert refuse(one_group(Resource("Xinetd", ["a", "b"], "x", line=6))) \
        .startswith("/c/haresources:6: Xinetd takes at most 1 arguments")


def test_refuses_addr_for_unknown_node():
    cfg = one_group(Resource("IPaddr", ["198.18.0.9"], "198.18.0.9", line=4))
    with pytest.raises(ConfigError, match="--addr names gamma, not a node"):
        export.export(cfg, {"gamma": "198.18.0.3"}, export.System())


# ---------------------------------------------------------------- writing


def test_main_export_writes_files(tmp_path, capsys):
    confdir, node, addrs = CORPUS["seed"]
    cfg = config.load(confdir, node=node, check_devices=False)
    out = tmp_path / "out"
    assert export.main_export(cfg, str(out), addrs) == exits.OK
    o = capsys.readouterr()
    assert sorted(os.listdir(out)) == ["README.export", "authkey", "cib.xml", "corosync.conf"]
    assert o.out.split() == [str(out / n) for n in
                             ("corosync.conf", "authkey", "cib.xml", "README.export")]
    assert "serial medium /dev/ttyS0" in o.err
    assert os.stat(out / "authkey").st_mode & 0o777 == 0o400
    readme = (out / "README.export").read_text()
    for step in ("apt-get install corosync pacemaker", "crm_verify --xml-file cib.xml",
                 "systemctl start corosync pacemaker", "hb-switch standby all",
                 "systemctl stop hb", "cibadmin --replace --xml-file cib.xml"):
        assert step in readme
    assert readme.index("hb-switch standby") < readme.index("systemctl stop hb")


def test_main_export_refusal_is_one_line_and_writes_nothing(tmp_path, capsys):
    cfg = one_group(Resource("myscript", ["a"], "myscript::a", line=4))
    out = tmp_path / "out"
    assert export.main_export(cfg, str(out), ADDRS, export.System()) == exits.CONFIG_INVALID
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("/c/haresources:4: ")
    assert not out.exists()


def test_local_addresses_of_a_namespace(lab):
    h = lab.host("a", "198.18.0.1/24")
    h.run(["ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
    r = h.run([sys.executable, "-c", "from hb import export; print(export._local_addrs())"])
    local = eval(r.stdout)
    assert local["eth0"] == ["198.18.0.1/24", "2001:db8::1/64"]
    assert local["lo"] == ["127.0.0.1/8", "::1/128"]
