"""The Heartbeat fixture itself: two real Heartbeat 3.0.6 nodes find each other.

This proves tests/lab/heartbeat.py (private namespaces, config, logs, nsenter
helpers, the VIP prober) before any hb node is put next to Heartbeat.
"""

from __future__ import annotations

import time

from lab.heartbeat import hacf, heartbeat, host  # noqa: F401
from lab.probe import Ping
from lab.wait import wait_until

VIP = "198.18.0.100"


def test_two_heartbeat_nodes_hold_one_vip(lab, heartbeat):  # noqa: F811
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    client = host(lab, "client", "198.18.0.10/24")
    cf = hacf(["alpha", "beta"], auto_failback="off")
    res = "alpha IPaddr2::%s/24/eth0\n" % VIP
    alpha = heartbeat(a, "alpha", cf, res)
    beta = heartbeat(b, "beta", cf, res)

    alpha.start()
    alpha.wait_log(r"node beta: is dead", 10)
    wait_until(lambda: a.has_addr(VIP), 10, "the VIP on alpha (alone)")
    assert alpha.nsenter(["uname", "-n"]).stdout.strip() == "alpha"

    beta.start()
    beta.wait_log(r"Status update for node alpha: status active", 10)
    alpha.wait_log(r"Status update for node beta: status active", 10)
    beta.wait_log(r"[Rr]esource (acquisition|transition) completed", 10)
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "active"
    assert beta.cl_status("nodestatus", "alpha").stdout.strip() == "active"
    assert sorted(alpha.cl_status("listnodes").stdout.split()) == ["alpha", "beta"]
    assert alpha.cl_status("hblinkstatus", "beta", "eth0").stdout.strip() == "up"
    assert a.has_addr(VIP) and not b.has_addr(VIP)
    for n in (alpha, beta):
        assert "authentication" not in n.log() and "replay" not in n.log()

    probe = Ping(client, VIP, duration=30)
    wait_until(lambda: probe.replies(), 5, "the client to reach the VIP")
    t0 = time.time()
    alpha.hb_standby("all")
    wait_until(lambda: b.has_addr(VIP) and not a.has_addr(VIP), 15,
               "the VIP to move to beta after hb_standby")
    t1 = time.time()
    wait_until(lambda: probe.replied_since(t1), 5,
               "the client to reach the VIP on beta")
    wait_until(lambda: beta.cl_status("rscstatus").stdout.strip() == "all", 5,
               "beta's cl_status rscstatus to say all")
    assert alpha.cl_status("rscstatus").stdout.strip() == "none"
    probe.stop()
    outage = probe.outage(t0)
    print("hb_standby outage Heartbeat->Heartbeat: %.3fs" % outage)
    assert 0 < outage < 10, outage
    assert probe.duplicates() == 0

    t0 = time.monotonic()
    beta.kill()
    assert beta.pids() == []
    alpha.wait_log(r"node beta: is dead", 5)
    wait_until(lambda: a.has_addr(VIP), 5, "the VIP back on alpha after beta died")
    assert time.monotonic() - t0 < 1 + 2 + 1     # deadtime + check period + scripts

    alpha.stop()
    assert not alpha.running() and alpha.pids() == []
    assert not a.has_addr(VIP)
    assert "shutdown" in alpha.log().lower()
