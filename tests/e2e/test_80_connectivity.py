"""Connectivity and resource health: ping nodes, carrier, monitor (issue 10).

alpha and beta (tests/lab/pair.py) beat over a serial pty pair and ucast on the bridge;
a ping node ("router", 198.18.0.254) sits on the bridge; the client probes the VIP
every 10 ms.  A ping reply lost on one node only is made with an nftables rule in
that node's namespace dropping ICMP echo replies from the router.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from lab import probe
from lab.pair import VIP, HbPair
from lab.wait import steady, until

ROUTER = "198.18.0.254"
KEEPALIVE, DEADTIME, DEADPING = 0.1, 0.5, 1.0
HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(os.path.dirname(HERE), "data", "config", "seed")

pytestmark = pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft")


def started(lab, extra: str = "", auto_failback: str = "off"):
    router = lab.host("router", ROUTER + "/24")
    pair = HbPair(lab, media=("serial", "ucast"), keepalive="100ms", deadtime="500ms",
                  initdead="1", auto_failback=auto_failback,
                  extra="ping %s\ndeadping %g\n%s" % (ROUTER, DEADPING, extra))
    prober = pair.prober(duration=60)
    pair.holders()
    pair.start("alpha")
    prober.wait_served("alpha", timeout=15)
    pair.start("beta")
    pair.wait_up()
    for n in pair.nodes.values():
        pair.wait(lambda: pings(n) == ["up"], timeout=5, what="ping node up on " + n.name)
    pair.wait(lambda: reach(pair["alpha"], "beta") == "1", timeout=3, what="beta's reach")
    return pair, prober, router


def pings(node) -> list[str]:
    return [p.get("status") for p in node.status().get("ping", [])]


def reach(node, peer: str) -> str | None:
    return next((n.get("reach") for n in node.status()["node"] if n.get("name") == peer),
                None)


def drop_replies(node) -> None:
    """The router's echo replies to node are lost (its uplink broke further up)."""
    node.host.run("nft add table inet hbt && nft add chain inet hbt in '{ type filter hook "
                  "input priority 0; }' && nft add rule inet hbt in ip saddr %s icmp type "
                  "echo-reply drop" % ROUTER)


def pass_replies(node) -> None:
    node.host.run(["nft", "delete", "table", "inet", "hbt"])


def wait_holder(pair, who: str, since: float, timeout: float) -> float:
    """Until who has the VIP and the other not; seconds since `since`."""
    other = pair.peer(who)
    t = pair.wait(lambda: pair[who].has_vip() and not other.has_vip(), timeout=timeout,
                  what="the VIP on %s only" % who)
    return t - since


def served_only_by(probes, who: str, since: float) -> None:
    wrong = [p for p in probe.window(probes, since) if p.who not in (who, None)]
    assert wrong == [], probe.servers(probe.window(probes, since))[:6]


def log_has(node, text: str) -> bool:
    return text in node.log()


def test_carrier_loss_moves_the_vip_within_a_second_and_not_back(lab):
    pair, prober, _ = started(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    t0 = time.monotonic()
    alpha.cut("eth0")
    took = wait_holder(pair, "beta", t0, 1.0 + 1.0)
    assert took <= 1.0, "carrier loss -> takeover %.0f ms" % (took * 1000)
    first = prober.wait_served("beta", timeout=3, since=t0)
    print("carrier loss -> VIP on beta %.0f ms, client served %.0f ms"
          % (took * 1000, (first - t0) * 1000))
    assert log_has(alpha, "interface eth0: carrier lost: connectivity lost")
    assert log_has(alpha, "connectivity: alpha reaches no carrier on eth0, beta reaches "
                   "1 ping node: handing groups 1 to beta")
    for n in (alpha, beta):
        r = subprocess.run(["hb-watch", "--check", "-r", n.run], capture_output=True,
                           text=True)
        assert r.returncode != 2, r.stdout
    alpha.mend("eth0")                       # auto_failback off: nothing comes back
    pair.wait(lambda: reach(beta, "alpha") == "1", timeout=2 * DEADPING + 2,
              what="alpha reaching the ping node again")
    time.sleep(1.0)
    probes = prober.stop()
    served_only_by(probes, "beta", first)
    assert beta.holds() == ["1"] and not alpha.has_vip(), pair.logtail()
    pair.one_holder()                        # an orderly handover: never on both


def test_lost_ping_replies_move_the_vip_within_deadping(lab):
    pair, prober, _ = started(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    t0 = time.monotonic()
    drop_replies(alpha)
    took = wait_holder(pair, "beta", t0, DEADPING + 2.0)
    assert took <= DEADPING + 1.0, "ping loss -> takeover %.0f ms" % (took * 1000)
    first = prober.wait_served("beta", timeout=3, since=t0)
    print("ping loss -> VIP on beta %.0f ms, client served %.0f ms"
          % (took * 1000, (first - t0) * 1000))
    assert log_has(alpha, "ping node %s dead" % ROUTER)
    assert log_has(alpha, "connectivity: alpha reaches 0 ping nodes, beta reaches 1 ping "
                   "node: handing groups 1 to beta")
    r = subprocess.run(["hb-watch", "--check", "-r", alpha.run], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "ping node %s dead" % ROUTER in r.stdout, r.stdout
    pass_replies(alpha)
    pair.wait(lambda: pings(alpha) == ["up"], timeout=DEADPING + 2, what="ping up again")
    time.sleep(1.0)
    probes = prober.stop()
    served_only_by(probes, "beta", first)
    pair.one_holder()
    assert beta.holds() == ["1"], pair.logtail()


def test_the_ping_node_gone_for_both_moves_nothing(lab):
    pair, prober, router = started(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    t0 = time.monotonic()
    lab.cut(router)
    for n in (alpha, beta):
        pair.wait(lambda: pings(n) == ["dead"], timeout=DEADPING + 1, what="ping dead")
    time.sleep(2.0)
    probes = prober.stop()
    served_only_by(probes, "alpha", t0)
    assert probe.max_interruption(probe.window(probes, t0)) == 0
    assert alpha.holds() == ["1"] and not beta.has_vip()
    assert not log_has(alpha, "connectivity:") and not log_has(beta, "connectivity:")
    r = subprocess.run(["hb-watch", "--check", "-r", alpha.run], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "CRITICAL" not in r.stdout, r.stdout


def test_a_dropped_reply_or_two_moves_nothing(lab):
    pair, prober, _ = started(lab)
    alpha = pair["alpha"]
    t0 = time.monotonic()
    for _ in range(3):
        drop_replies(alpha)
        time.sleep(2.5 * KEEPALIVE)
        pass_replies(alpha)
        time.sleep(0.7)
    probes = prober.stop()
    served_only_by(probes, "alpha", t0)
    assert alpha.holds() == ["1"]
    assert not log_has(alpha, "ping node %s dead" % ROUTER), alpha.logtail()


def test_vip_deleted_by_hand_comes_back_then_moves_after_three(lab):
    pair, prober, _ = started(lab, extra="monitor 1s\n")
    alpha, beta = pair["alpha"], pair["beta"]
    backs = []
    for k in range(2):
        t0 = time.monotonic()
        alpha.host.run(["ip", "addr", "del", VIP + "/24", "dev", "eth0"])
        t = pair.wait(lambda: alpha.has_vip(), timeout=2.0, what="the VIP back on alpha")
        backs.append(t - t0)
        time.sleep(0.3)
    print("VIP back after ip addr del: %s ms" % ", ".join("%.0f" % (b * 1000) for b in backs))
    assert not beta.has_vip()
    r = subprocess.run(["hb-watch", "--check", "-r", alpha.run], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "group 1 restarted 2 times in the last hour" in r.stdout, \
        r.stdout
    t0 = time.monotonic()
    alpha.host.run(["ip", "addr", "del", VIP + "/24", "dev", "eth0"])
    took = wait_holder(pair, "beta", t0, 3.0)
    prober.wait_served("beta", timeout=3, since=t0)
    print("third deletion -> VIP on beta %.0f ms" % (took * 1000))
    assert log_has(alpha, "3 failures within 10 s: moving it to beta")
    assert "restarts=2" in open(os.path.join(alpha.run, "status")).read()
    steady(lambda: beta.holds() == ["1"] and not alpha.has_vip(), 1.5, pair.logtail)


def test_the_seed_config_with_ping_lines_runs(lab):
    """The seed article's ha.cf, with ping and ipfail lines added: only the serial
    device's path differs (a pty here)."""
    a, b = lab.serial_pair()
    for name, addr, tty in (("julius", "192.0.2.2/24", a), ("caesar", "192.0.2.3/24", b)):
        h = lab.host(name, addr)
        lab.plug(h, "eth2", "198.51.100.%d/24" % (2 if name == "julius" else 3), bridge="br2")
        conf = os.path.join(lab.tmp, name, "ha.d")
        os.makedirs(conf)
        for f in ("haresources", "authkeys"):
            shutil.copy(os.path.join(SEED, f), conf)
        os.chmod(os.path.join(conf, "authkeys"), 0o600)
        with open(os.path.join(SEED, "ha.cf")) as f:
            cf = f.read().replace("/dev/ttyS0", tty)
        with open(os.path.join(conf, "ha.cf"), "w") as f:
            f.write(cf + "ping 192.0.2.254\nrespawn hacluster /usr/lib/heartbeat/ipfail\n"
                    "apiauth ipfail uid=hacluster\n")
    lab.host("router", "192.0.2.254/24")
    procs = {}
    for name in ("julius", "caesar"):
        d = os.path.join(lab.tmp, name)
        procs[name] = lab.hosts[name].popen(
            ["hb-supervise", "-c", os.path.join(d, "ha.d"), "-r", os.path.join(d, "run"),
             "-s", os.path.join(d, "state"), "--node", name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(d, "stderr"), "w"))

    def status(name):
        try:
            with open(os.path.join(lab.tmp, name, "run", "status")) as f:
                return f.read()
        except FileNotFoundError:
            return ""
    deadline = time.monotonic() + 15
    while not ("ping 192.0.2.254 up" in status("julius") and " reach=1" in
               status("julius").split("node caesar", 1)[-1]):
        assert time.monotonic() < deadline, status("julius") + open(
            os.path.join(lab.tmp, "julius", "stderr")).read()
        time.sleep(0.1)
    assert all(p.poll() is None for p in procs.values())
    r = lab.hosts["julius"].run(["hb-supervise", "--check", "-c",        # its interfaces
                                 os.path.join(lab.tmp, "julius", "ha.d"), "--node", "julius"],
                                check=False)
    assert r.returncode == 0, r.stderr
    assert "respawn ipfail: hb-watch itself moves the groups" in r.stdout + r.stderr


def test_check_is_critical_holding_groups_without_connectivity(lab):
    """In maintenance nothing moves: alpha keeps the VIP though beta reaches more."""
    pair, prober, _ = started(lab)
    alpha = pair["alpha"]
    r = alpha.switch("maintenance", "on", "--for", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    drop_replies(alpha)
    pair.wait(lambda: pings(alpha) == ["dead"], timeout=DEADPING + 1, what="ping dead")
    runs: list = []                     # until the status file says it (next rewrite)

    def check() -> bool:
        runs.append(subprocess.run(["hb-watch", "--check", "-r", alpha.run],
                                   capture_output=True, text=True, timeout=10))
        return runs[-1].returncode == 2
    until(check, 5, lambda: runs[-1].stdout, step=0.1)
    r = runs[-1]
    assert "alpha holds groups 1 with no ping node while beta reaches 1 ping node(s)" \
        in r.stdout, r.stdout
    assert alpha.has_vip()
    prober.stop()
