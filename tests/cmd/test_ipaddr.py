"""hb-ipaddr as a command: Heartbeat and OCF conventions, output and exit codes."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = os.path.join(ROOT, "bin", "hb-ipaddr")
VIP = "198.18.0.100"


def transcript(host, steps, env=None):
    """Run each command line in host; return 'cmd\\nstdout$?' blocks like runit's tests."""
    out = []
    for cmd in steps:
        r = host.run(cmd, check=False, env=env)
        out.append("$ %s\n%s$? = %d" % (cmd, r.stdout, r.returncode))
    return "\n".join(out)


def ocf_env(**params):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
    env.update({"OCF_RESKEY_" + k: v for k, v in params.items()})
    env["OCF_ROOT"] = "/usr/lib/ocf"
    return env


def test_help_and_usage():
    r = subprocess.run([AGENT, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("hb-ipaddr: a floating")
    assert "hb-ipaddr [options] ADDRESS ACTION" in r.stdout
    r = subprocess.run([AGENT], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "hb-ipaddr: missing arguments (try 'hb-ipaddr --help')\n"


def test_status_imports_nothing_heavy():
    """hb-ipaddr status must not pay for pyroute2 (200-300 ms): not even imported."""
    r = subprocess.run([sys.executable, "-X", "importtime", AGENT, "127.0.0.1", "status"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "running\n"), r.stderr
    names = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines()
             if ln.startswith("import time:")]
    assert "hb.ipaddr" in names and "hb.netlink" in names
    assert [m for m in names if m.split(".")[0] in
            ("pyroute2", "threading", "ctypes", "dataclasses", "logging", "hashlib")
            or m in ("hb.address", "hb.arp")] == []


def test_meta_data_is_valid_ocf():
    r = subprocess.run([AGENT, "meta-data"], capture_output=True, text=True)
    assert r.returncode == 0
    for name in ("ip", "cidr_netmask", "nic", "broadcast", "iflabel", "arp_count",
                 "arp_interval", "arp_count_refresh", "nodad"):
        assert '<parameter name="%s"' % name in r.stdout
    assert '<content type="integer" default="5" />' in r.stdout
    assert "<version>1.1</version>" in r.stdout
    for check in (["xmllint", "--noout", "--valid", "-"],
                  ["xmllint", "--noout", "--relaxng",
                   "/usr/share/resource-agents/metadata.rng", "-"]):
        v = subprocess.run(check, input=r.stdout, capture_output=True, text=True,
                           cwd="/usr/share/resource-agents")
        assert v.returncode == 0, v.stderr


def test_heartbeat_convention(lab):
    h = lab.host("a", "198.18.0.1/24")
    lab.host("b", "198.18.0.2/24")
    got = transcript(h, [
        "hb-ipaddr %s status" % VIP,
        "hb-ipaddr %s monitor" % VIP,
        "hb-ipaddr %s start" % VIP,
        "hb-ipaddr %s status" % VIP,
        "hb-ipaddr %s/24/eth0 status" % VIP,
        "hb-ipaddr %s/24/lo status" % VIP,
        "hb-ipaddr %s start" % VIP,
        "hb-ipaddr %s stop" % VIP,
        "hb-ipaddr %s stop" % VIP,
        "hb-ipaddr %s status" % VIP,
        "hb-ipaddr 198.18.0.300 start",
        "hb-ipaddr 203.0.113.9 start",
        "hb-ipaddr %s start stop" % VIP,
    ])
    assert got == """\
$ hb-ipaddr 198.18.0.100 status
stopped
$? = 3
$ hb-ipaddr 198.18.0.100 monitor
stopped
$? = 7
$ hb-ipaddr 198.18.0.100 start
$? = 0
$ hb-ipaddr 198.18.0.100 status
running
$? = 0
$ hb-ipaddr 198.18.0.100/24/eth0 status
running
$? = 0
$ hb-ipaddr 198.18.0.100/24/lo status
stopped
$? = 3
$ hb-ipaddr 198.18.0.100 start
$? = 0
$ hb-ipaddr 198.18.0.100 stop
$? = 0
$ hb-ipaddr 198.18.0.100 stop
$? = 0
$ hb-ipaddr 198.18.0.100 status
stopped
$? = 3
$ hb-ipaddr 198.18.0.300 start
$? = 2
$ hb-ipaddr 203.0.113.9 start
$? = 6
$ hb-ipaddr 198.18.0.100 start stop
$? = 2"""
    r = h.run("hb-ipaddr 203.0.113.9 start", check=False)
    assert r.stderr == ("hb-ipaddr: fatal: unable to start 203.0.113.9: no interface has a "
                        "subnet containing 203.0.113.9: give the interface\n")


@pytest.mark.parametrize("spec,shown", [
    ("198.18.0.100", "inet 198.18.0.100/24 brd 198.18.0.255 scope global secondary eth0"),
    ("198.18.0.100/26", "inet 198.18.0.100/26 brd 198.18.0.127 scope global eth0"),
    ("198.18.0.100/24/eth0:web", "198.18.0.100/24 brd 198.18.0.255 scope global secondary "
     "eth0:web"),
    ("198.18.0.100/255.255.255.0/eth0/198.18.0.254", "brd 198.18.0.254"),
    ("198.18.0.100/32/eth0", "inet 198.18.0.100/32 scope global eth0"),
    ("2001:db8::100", "inet6 2001:db8::100/64 scope global nodad"),
    ("2001:db8::100/128/eth0", "inet6 2001:db8::100/128 scope global nodad"),
])
def test_forms_put_the_address_where_asked(lab, spec, shown):
    h = lab.host("a", "198.18.0.1/24")
    h.run(["ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
    ip = spec.split("/")[0]
    r = h.run(["hb-ipaddr", spec, "start"], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert shown in h.addrs(), h.addrs()
    assert h.run(["hb-ipaddr", ip, "status"]).stdout == "running\n"
    assert h.run(["hb-ipaddr", spec, "stop"]).returncode == 0
    assert not h.has_addr(ip)


def test_ocf_convention(lab):
    h = lab.host("a", "198.18.0.1/24")
    steps = ["hb-ipaddr validate-all", "hb-ipaddr monitor", "hb-ipaddr start",
             "hb-ipaddr monitor", "hb-ipaddr start", "hb-ipaddr stop", "hb-ipaddr monitor",
             "hb-ipaddr stop", "hb-ipaddr notify", "hb-ipaddr reload"]
    got = transcript(h, steps, ocf_env(ip=VIP, cidr_netmask="24", nic="eth0"))
    codes = [int(x.split("\n")[0]) for x in got.split("$? = ")[1:]]
    assert codes == [0, 7, 0, 0, 0, 0, 7, 0, 3, 3]
    assert "running" not in got       # OCF monitor says it with the exit code only
    for params, code in [({}, 6), ({"ip": "nonsense"}, 6), ({"ip": VIP, "nic": "eth9"}, 6),
                         ({"ip": "203.0.113.9"}, 6), ({"ip": VIP, "arp_count": "x"}, 6)]:
        r = h.run("hb-ipaddr validate-all", check=False, env=ocf_env(**params))
        assert r.returncode == code, (params, r.stderr)
        assert r.stderr.startswith("hb-ipaddr: fatal: unable to ")
    for params in ({"ip": "203.0.113.9"}, {"ip": VIP, "nic": "eth9", "cidr_netmask": "24"}):
        r = h.run("hb-ipaddr start", check=False, env=ocf_env(**params))
        assert r.returncode == 6, r.stderr
    r = h.run("hb-ipaddr start", check=False, env=ocf_env(ip=VIP, iflabel="vip"))
    assert r.returncode == 0 and "eth0:vip" in h.addrs()
