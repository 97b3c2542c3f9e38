"""The exported configuration runs: Debian's Corosync + Pacemaker on two namespaces.

hb's ha.cf/haresources/authkeys for julius and caesar are exported with
`hb-supervise --export pacemaker`; each node runs `corosync -f` and `pacemakerd` in its own
network, mount and UTS namespaces (private /etc/corosync, /var/lib/pacemaker,
/var/lib/corosync, /run, /dev/shm, /var/log, and /usr/lib/ocf/resource.d with
hb-ipaddr installed as ocf:hb:IPaddr), the CIB is loaded with cibadmin as
README.export says, a client in a third namespace is served through the VIP,
and the active node is killed (its processes and its cable): the VIP moves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hb.export import timing
from lab.wait import readline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIP = "198.18.0.100"
ADDRS = {"julius": "198.18.0.1", "caesar": "198.18.0.2"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("corosync") or not shutil.which("pacemakerd"),
                       reason="needs Debian's corosync and pacemaker (make deps)"),
]

HACF = """\
logfacility none
keepalive 200ms
deadtime 1
warntime 500ms
initdead 2
udpport 694
ucast eth0 198.18.0.1
ucast eth0 198.18.0.2
auto_failback off
node julius caesar
monitor 2
"""
HARESOURCES = "julius IPaddr::%s/24/eth0\n" % VIP
AUTHKEYS = "auth 1\n1 sha1 pacemaker-export-test\n"

NODE = r"""
set -e
hostname "$1"; D="$2"
mount --bind "$D/etc-corosync" /etc/corosync
mount --bind "$D/lib-pacemaker" /var/lib/pacemaker
mount --bind "$D/lib-corosync" /var/lib/corosync
mount --bind "$D/log" /var/log
mount --bind "$D/ocf" /usr/lib/ocf/resource.d
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /run/lock /run/crm /run/resource-agents /run/corosync
chmod 1777 /run/lock
chown hacluster:haclient /run/crm
corosync -f &
i=0
until corosync-cfgtool -s >/dev/null 2>&1; do
  i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1
done
exec pacemakerd
"""

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode() + b"\n"); c.close()
"""

CLIENT = r"""
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        c = socket.create_connection((sys.argv[1], 8080), timeout=0.2)
        who = c.recv(64).decode().strip(); c.close()
        print("%.3f %s" % (time.monotonic(), who), flush=True)
    except OSError:
        pass
    time.sleep(0.02)
"""


def export(tmp: str) -> str:
    conf = os.path.join(tmp, "ha.d")
    os.makedirs(conf)
    for name, text in (("ha.cf", HACF), ("haresources", HARESOURCES),
                       ("authkeys", AUTHKEYS)):
        with open(os.path.join(conf, name), "w") as f:
            f.write(text)
    os.chmod(os.path.join(conf, "authkeys"), 0o600)
    out = os.path.join(tmp, "export")
    r = subprocess.run(["hb-supervise", "--export", "pacemaker", "-c", conf, "--node", "julius",
                        "-o", out, "--addr", "julius=198.18.0.1", "--addr", "caesar=198.18.0.2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [os.path.join(out, f) for f in
                                ("corosync.conf", "authkey", "cib.xml", "README.export")]
    return out


def node_dir(tmp: str, name: str, out: str) -> str:
    d = os.path.join(tmp, name)
    for sub in ("etc-corosync", "lib-corosync", "log/corosync", "log/pacemaker"):
        os.makedirs(os.path.join(d, sub))
    shutil.copy(os.path.join(out, "corosync.conf"), os.path.join(d, "etc-corosync"))
    shutil.copy(os.path.join(out, "authkey"), os.path.join(d, "etc-corosync"))
    os.chmod(os.path.join(d, "etc-corosync", "authkey"), 0o400)
    for sub in ("", "cib", "pengine", "blackbox", "cores"):
        os.makedirs(os.path.join(d, "lib-pacemaker", sub), exist_ok=True)
        shutil.chown(os.path.join(d, "lib-pacemaker", sub), "hacluster", "haclient")
        os.chmod(os.path.join(d, "lib-pacemaker", sub), 0o750)
    shutil.chown(os.path.join(d, "log", "pacemaker"), "hacluster", "haclient")
    os.chmod(os.path.join(d, "log", "pacemaker"), 0o770)
    shutil.copytree("/usr/lib/ocf/resource.d", os.path.join(d, "ocf"), symlinks=True)
    os.makedirs(os.path.join(d, "ocf", "hb"))
    agent = os.path.join(d, "ocf", "hb", "IPaddr")
    with open(agent, "w") as f:         # the launcher, with the source tree's library
        f.write("#!/bin/sh\nPYTHONPATH=%s exec /usr/bin/python3 %s \"$@\"\n"
                % (os.path.join(ROOT, "lib"), os.path.join(ROOT, "bin", "hb-ipaddr")))
    os.chmod(agent, 0o755)
    return d


def in_node(p: subprocess.Popen, argv: list[str], timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["nsenter", "-t", str(p.pid), "-m", "-u", "-n", *argv],
                       capture_output=True, text=True, timeout=timeout)
    assert not check or r.returncode == 0, (argv, r.stdout, r.stderr)
    return r


def wait(cond, timeout: float, what: str, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))


def kill_namespace(ns: str) -> None:
    """SIGKILL every process in the node's namespace (all started by this test)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_exported_cluster_serves_and_fails_over(lab, record_property):
    out = export(lab.tmp)
    hosts, procs = {}, {}

    def boot(name: str) -> None:
        d = os.path.join(lab.tmp, name)
        procs[name] = hosts[name].popen(
            ["unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", NODE, "node", name, d],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "a"))
        hosts[name].popen([sys.executable, "-c", SERVER, name])

    for name, addr in ADDRS.items():
        hosts[name] = lab.host(name, addr + "/24")
        node_dir(lab.tmp, name, out)
        boot(name)
    client = lab.host("client", "198.18.0.9/24")
    julius, caesar = procs["julius"], procs["caesar"]

    def both_online() -> bool:
        r = in_node(caesar, ["crm_mon", "-1", "-r"], check=False)
        return r.returncode == 0 and "Online: [ caesar julius ]" in r.stdout
    wait(both_online, 60, "both nodes online in crm_mon")
    in_node(julius, ["crm_verify", "--xml-file", os.path.join(out, "cib.xml")])
    in_node(julius, ["cibadmin", "--replace", "--xml-file", os.path.join(out, "cib.xml")])
    wait(lambda: hosts["julius"].has_addr(VIP, "eth0"), 60, "the VIP on julius")
    assert not hosts["caesar"].has_addr(VIP)

    cl = client.popen([sys.executable, "-c", CLIENT, VIP, "60"], stdout=subprocess.PIPE,
                      text=True)
    first = readline(cl.stdout, 30).split()
    assert first[1] == "julius", first

    t0 = time.monotonic()
    lab.cut(hosts["julius"])
    kill_namespace(hosts["julius"].ns)
    served = None
    while served is None:
        line = readline(cl.stdout, 60)       # one line per connection; '' at its end
        if not line:
            break
        t, who = line.split()
        if who == "caesar":
            served = float(t) - t0
    lab.stop(cl)
    assert served is not None, "caesar never served the VIP"
    assert hosts["caesar"].has_addr(VIP, "eth0")

    def started_on_caesar() -> str | None:
        out = in_node(caesar, ["crm_mon", "-1"]).stdout
        return out if re.search(r"\(ocf:hb:IPaddr\):\s+Started caesar", out) else None
    assert "OFFLINE: [ julius ]" in wait(started_on_caesar, 30, "Started caesar in crm_mon")
    token, consensus = timing(1.0)
    record_property("pacemaker_failover_s", round(served, 3))
    print("\npacemaker failover (deadtime 1s: token %dms + consensus %dms): client served "
          "by caesar %.2fs after julius died" % (token, consensus, served))
    assert served < 10

    # julius reboots (its addresses are gone) and rejoins: with auto_failback off
    # the group stays on caesar (resource-stickiness outweighs the preference).
    hosts["julius"].run(["ip", "addr", "del", VIP + "/24", "dev", "eth0"])
    lab.mend(hosts["julius"])
    boot("julius")
    wait(both_online, 60, "julius back online")
    time.sleep(3)
    assert started_on_caesar() and not hosts["julius"].has_addr(VIP)
