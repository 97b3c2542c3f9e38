"""hb-ipaddr on a real link: announcements seen by a third host, caches updated,
duplicates refused, ocf-tester, the in-process agent and the netlink watcher."""

from __future__ import annotations

import json
import os
import subprocess
import time

from lab.wait import readline, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIP, VIP6 = "198.18.0.100", "2001:db8::100"

# Runs in the observer: prints "ready", then one JSON line per ARP or NA frame seen.
CAPTURE = r"""
import json, select, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    if not select.select([s], [], [], 0.05)[0]:
        continue
    f, addr = s.recvfrom(2048)
    t = time.monotonic()
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0806:
        print(json.dumps({"t": t, "kind": "arp", "op": f[21], "mac": f[6:12].hex(),
                          "sha": f[22:28].hex(), "spa": socket.inet_ntoa(f[28:32]),
                          "tha": f[32:38].hex(), "tpa": socket.inet_ntoa(f[38:42])}), flush=True)
    elif et == 0x86DD and f[20] == 58 and f[54] in (135, 136):
        print(json.dumps({"t": t, "kind": "na" if f[54] == 136 else "ns", "mac": f[6:12].hex(),
                          "flags": f[58], "dst": socket.inet_ntop(socket.AF_INET6, f[38:54]),
                          "src": socket.inet_ntop(socket.AF_INET6, f[22:38]),
                          "target": socket.inet_ntop(socket.AF_INET6, f[62:78])}), flush=True)
"""


def capture(host, seconds):
    p = host.popen(["/usr/bin/python3", "-c", CAPTURE, str(seconds)], stdout=subprocess.PIPE,
                   text=True)
    assert readline(p.stdout) == "ready\n"
    return p


def frames(p):
    out, _ = p.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines()]


def mac(host):
    return host.run(["cat", "/sys/class/net/eth0/address"]).stdout.strip().replace(":", "")


def neigh_mac(host, ip):
    out = host.run(["ip", "neigh", "show", ip, "dev", "eth0"]).stdout.split()
    return out[out.index("lladdr") + 1].replace(":", "") if "lladdr" in out else None


def pair(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    c = lab.host("c", "198.18.0.3/24")
    for i, h in enumerate((a, b, c), 1):
        h.run(["ip", "addr", "add", "2001:db8::%d/64" % i, "dev", "eth0", "nodad"])
    return a, b, c


def test_gratuitous_arp_seen_and_caches_follow_the_address(lab):
    a, b, c = pair(lab)
    assert a.run(["hb-ipaddr", VIP, "start"]).returncode == 0
    assert c.run(["ping", "-c1", "-W2", VIP]).returncode == 0
    assert neigh_mac(c, VIP) == mac(a)
    assert a.run(["hb-ipaddr", VIP, "stop"]).returncode == 0

    cap = capture(c, 1.6)
    t0 = time.monotonic()
    r = b.run(["hb-ipaddr", VIP, "start"], check=False)
    t1 = time.monotonic()
    assert r.returncode == 0, r.stderr
    assert t1 - t0 < 1.0           # the repeats run in a detached child
    # c never asked: the announcement alone moved its cache entry to b
    wait_until(lambda: neigh_mac(c, VIP) == mac(b), 1, "c's neighbour entry to follow")
    got = [f for f in frames(cap) if f.get("spa") == VIP and f["op"] in (1, 2)
           and f["mac"] == mac(b)]
    reqs = [f for f in got if f["op"] == 1 and f["tpa"] == VIP]
    reps = [f for f in got if f["op"] == 2 and f["tpa"] == VIP and f["tha"] == mac(b)]
    assert len(reqs) == 5 and len(reps) == 5, got
    assert all(f["sha"] == mac(b) for f in got)
    assert reqs[0]["t"] <= t1         # the first before the command returned
    gaps = [y["t"] - x["t"] for x, y in zip(reqs, reqs[1:])]
    assert all(0.15 < g < 0.6 for g in gaps), gaps


def test_dad_probe_precedes_and_options_count_interval(lab):
    a, b, c = pair(lab)
    cap = capture(c, 1.0)
    r = a.run(["hb-ipaddr", "--arp-count", "3", "--arp-interval", "100", VIP, "start"],
              check=False)
    assert r.returncode == 0, r.stderr
    got = [f for f in frames(cap) if f["kind"] == "arp" and f["tpa"] == VIP]
    probes = [f for f in got if f["spa"] == "0.0.0.0"]
    announce = [f for f in got if f["spa"] == VIP]
    assert 1 <= len(probes) <= 2 and len(announce) == 6
    assert max(p["t"] for p in probes) < announce[0]["t"]
    gaps = [y["t"] - x["t"] for x, y in zip(announce[::2], announce[2::2])]
    assert all(0.07 < g < 0.5 for g in gaps), gaps


def test_unsolicited_na_seen_and_cache_follows(lab):
    a, b, c = pair(lab)
    assert a.run(["hb-ipaddr", VIP6, "start"]).returncode == 0
    assert c.run(["ping", "-6", "-c1", "-W2", VIP6]).returncode == 0
    assert neigh_mac(c, VIP6) == mac(a)
    assert a.run(["hb-ipaddr", VIP6, "stop"]).returncode == 0

    cap = capture(c, 1.5)
    r = b.run(["hb-ipaddr", "--router", VIP6 + "/64/eth0", "start"], check=False)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: neigh_mac(c, VIP6) == mac(b), 1, "c's IPv6 neighbour entry to follow")
    got = frames(cap)
    nas = [f for f in got if f["kind"] == "na" and f["target"] == VIP6]
    assert len(nas) == 5, got
    assert all(f["mac"] == mac(b) and f["dst"] == "ff02::1" and f["src"] == VIP6
               and f["flags"] == 0xA0 for f in nas)       # router + override
    dad = [f for f in got if f["kind"] == "ns" and f["target"] == VIP6]
    assert dad and dad[0]["src"] == "::" and dad[0]["t"] < nas[0]["t"]
    assert "2001:db8::100/64 scope global nodad" in b.addrs()


def test_duplicate_address_refused(lab):
    a, b, c = pair(lab)
    for ip in (VIP, VIP6):
        assert b.run(["hb-ipaddr", "--no-dad", ip, "start"]).returncode == 0
        r = a.run(["hb-ipaddr", ip, "start"], check=False)
        assert r.returncode == 1
        assert r.stderr == ("hb-ipaddr: fatal: unable to start %s: %s answers from another "
                            "host on eth0\n" % (ip, ip))
        assert not a.has_addr(ip)
        env = dict(os.environ, OCF_RESKEY_ip=ip)
        assert a.run(["hb-ipaddr", "start"], check=False, env=env).returncode == 1
        env["OCF_RESKEY_nodad"] = "true"
        assert a.run(["hb-ipaddr", "start"], check=False, env=env).returncode == 0
        assert a.has_addr(ip)


def test_ocf_tester_passes(lab):
    a, _b, _c = pair(lab)
    for ip in (VIP, VIP6):
        env = dict(os.environ, OCF_ROOT="/usr/lib/ocf")
        r = a.run(["ocf-tester", "-n", "vip", "-o", "ip=" + ip,
                   os.path.join(ROOT, "bin", "hb-ipaddr")], check=False, env=env, cwd="/tmp")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "passed all tests" in r.stdout
        assert not a.has_addr(ip)


def test_monitor_refresh_reannounces(lab):
    a, b, c = pair(lab)
    env = dict(os.environ, OCF_RESKEY_ip=VIP, OCF_RESKEY_arp_count_refresh="2",
               OCF_RESKEY_arp_interval="50")
    # started unannounced: every frame captured is the monitor's
    assert a.run(["hb-ipaddr", "start"], env=dict(env, OCF_RESKEY_arp_count="0")
                 ).returncode == 0
    cap = capture(c, 0.6)
    assert a.run(["hb-ipaddr", "monitor"], env=env).returncode == 0
    got = [f for f in frames(cap) if f["kind"] == "arp" and f["spa"] == VIP]
    assert len(got) == 4       # two pairs


IN_PROCESS = r"""
import json, sys, time
from hb import address
out = {}
for step, args, action in json.loads(sys.argv[1]):
    t = time.monotonic()
    out[step] = list(address.run_agent(args, action)) + [time.monotonic() - t]
    if step == "start":
        time.sleep(0.1)
print(json.dumps(out))
"""


def test_run_agent_in_process(lab):
    a, b, c = pair(lab)
    steps = [["status0", [VIP + "/24/eth0"], "status"],
             ["warm", ["198.18.0.99"], "start"],        # pays for the pyroute2 import
             ["start", [VIP + "/24/eth0"], "start"],
             ["status1", [VIP + "/24/eth0"], "status"],
             ["monitor1", [VIP + "/24/eth0"], "monitor"],
             ["again", [VIP + "/24/eth0"], "start"],
             ["stop", [VIP + "/24/eth0"], "stop"],
             ["stop2", [VIP + "/24/eth0"], "stop"],
             ["status2", [VIP + "/24/eth0"], "status"],
             ["monitor2", [VIP + "/24/eth0"], "monitor"],
             ["bad", ["198.18.0.300"], "start"],
             ["two", ["a", "b"], "start"]]
    cap = capture(c, 1.5)
    r = a.run(["/usr/bin/python3", "-c", IN_PROCESS, json.dumps(steps)],
              env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))
    res = json.loads(r.stdout)
    assert res["status0"][:2] == [3, "stopped"]
    assert res["start"][:2] == [0, "added 198.18.0.100/24 on eth0"]
    assert res["status1"][:2] == [0, "running"] and res["monitor1"][:2] == [0, "running"]
    assert res["again"][:2] == [0, "re-announced 198.18.0.100 on eth0"]
    assert res["stop"][:2] == [0, "removed 198.18.0.100/24 from eth0"]
    assert res["stop2"][:2] == [0, "198.18.0.100 not held"]
    assert res["status2"][:2] == [3, "stopped"] and res["monitor2"][:2] == [7, "stopped"]
    assert res["bad"][0] == 1 and "'198.18.0.300' is not an IP address" in res["bad"][1]
    assert res["two"][0] == 1
    # in-process, no call waits for anything but the DAD probe (100 ms) of start;
    # the costs are bench/agents' figures ("address status", "address start...")
    assert res["start"][2] >= 0.1 and all(r[2] < 3 for r in res.values()), res
    got = [f for f in frames(cap) if f["kind"] == "arp" and f["spa"] == VIP]
    # start: a request at once, its reply due 100 ms later racing the re-announce at
    # ~100 ms, whose request went out at once and whose repeats stopped with the address
    assert 2 <= len(got) <= 3, got
    assert got[0]["op"] == 1 and got[-1]["op"] == 1, got


WATCH = r"""
import json, select, sys, time
from hb import netlink
w = netlink.LinkWatcher()
print(json.dumps(["carrier", w.carrier("eth0")]), flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    if select.select([w], [], [], 0.05)[0]:
        for ev in w.read():
            print(json.dumps(list(ev)), flush=True)
"""


def test_link_watcher_events(lab):
    a, b, c = pair(lab)
    p = a.popen(["/usr/bin/python3", "-c", WATCH, "3"], stdout=subprocess.PIPE, text=True,
                env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))
    assert json.loads(readline(p.stdout)) == ["carrier", True]
    a.run(["hb-ipaddr", VIP, "start"])
    a.run(["ip", "addr", "del", VIP + "/24", "dev", "eth0"])
    lab.cut(a)
    seen = []
    while not seen or seen[-1] != ["link", "eth0", False]:
        seen.append(json.loads(readline(p.stdout)))
    lab.mend(a)
    while seen[-1] != ["link", "eth0", True]:
        seen.append(json.loads(readline(p.stdout)))
    lab.stop(p)
    assert ["addr", "eth0", VIP, True] in seen
    assert ["addr", "eth0", VIP, False] in seen
    assert seen.index(["addr", "eth0", VIP, True]) < seen.index(["addr", "eth0", VIP, False])
    assert seen[-2:] == [["link", "eth0", False], ["link", "eth0", True]] or \
        seen.index(["link", "eth0", False]) < seen.index(["link", "eth0", True])


def test_status_is_quick(lab):
    """status is one netlink dump: it loads neither pyroute2 nor the takeover's
    modules (the time it takes is bench/agents' figure, against IPaddr2 monitor)."""
    a, _b, _c = pair(lab)
    a.run(["hb-ipaddr", VIP, "start"])
    for _ in range(5):
        r = a.run(["hb-ipaddr", VIP, "status"])
        assert r.stdout == "running\n"
    r = a.run(["/usr/bin/python3", "-X", "importtime", os.path.join(ROOT, "bin", "hb-ipaddr"),
               VIP, "status"], env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))
    assert r.stdout == "running\n"
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "hb.netlink" in loaded
    assert not [m for m in loaded if m.split(".")[0] in (
        "pyroute2", "hashlib", "threading", "ctypes", "logging")
        or m in ("hb.address", "hb.arp")], loaded


def test_start_on_a_down_interface_adds_without_announcing(lab):
    a, _b, _c = pair(lab)
    a.link_down("eth0")
    r = a.run(["hb-ipaddr", VIP + "/24/eth0", "start"], check=False)
    assert r.returncode == 0, r.stderr
    assert "not announced" in r.stderr and a.has_addr(VIP)
    assert a.run(["hb-ipaddr", VIP, "stop"]).returncode == 0 and not a.has_addr(VIP)


THREADS = r"""
import json, threading
from hb import address
ips = ["198.18.0.100", "198.18.0.101", "198.18.0.102", "2001:db8::100", "2001:db8::101"]
out = {}
def go(ip):
    out[ip] = address.run_agent([ip], "start")[0]
ts = [threading.Thread(target=go, args=(ip,)) for ip in ips]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
"""


def test_run_agent_from_several_threads_at_once(lab):
    """hb-watch starts groups from worker threads: probes must not steal each other's
    answers, and the one address another host holds is refused."""
    a, b, _c = pair(lab)
    b.run(["hb-ipaddr", "--no-dad", "198.18.0.101", "start"])
    b.run(["hb-ipaddr", "--no-dad", "2001:db8::101", "start"])
    r = a.run(["/usr/bin/python3", "-c", THREADS],
              env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))
    assert json.loads(r.stdout) == {"198.18.0.100": 0, "198.18.0.101": 1, "198.18.0.102": 0,
                                    "2001:db8::100": 0, "2001:db8::101": 1}
    assert a.has_addr("198.18.0.102") and not a.has_addr("198.18.0.101")
    assert a.has_addr("2001:db8::100") and not a.has_addr("2001:db8::101")


STEPWISE = r"""
import sys
from hb import address
for line in sys.stdin:
    print(address.run_agent(line.split()[:1], line.split()[1]), flush=True)
"""


def test_in_process_survives_a_recreated_interface(lab):
    """hb-watch keeps its AF_PACKET sockets: an interface deleted and made again
    (a new index) must get new ones, or its announcements would go nowhere."""
    a, _b, c = pair(lab)
    p = a.popen(["/usr/bin/python3", "-c", STEPWISE], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True,
                env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))

    def step(line):
        p.stdin.write(line + "\n")
        p.stdin.flush()
        return readline(p.stdout).strip()
    assert step(VIP + "/24/eth0 start") == "(0, 'added 198.18.0.100/24 on eth0')"
    a.run(["ip", "link", "del", "eth0"])
    lab.plug(a, "eth0", "198.18.0.1/24")
    cap = capture(c, 1.5)
    assert step(VIP + "/24/eth0 start") == "(0, 'added 198.18.0.100/24 on eth0')"
    got = [f for f in frames(cap) if f["kind"] == "arp" and f["spa"] == VIP]
    assert len(got) == 10 and all(f["mac"] == mac(a) for f in got)
    p.stdin.close()
    p.wait(5)
