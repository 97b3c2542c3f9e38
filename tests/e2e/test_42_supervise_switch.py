"""hb-switch against a real pair: standby and takeover move every group both ways,
each VIP held by exactly one node at every sampled instant; standby with a dead peer
is refused; status and the cl_status queries tell the truth."""

from __future__ import annotations

import time

from lab import probe

from lab.pair import VIP, Pair

VIP2 = "198.18.0.101"
TWO = "julius %s/24/eth0\ncaesar %s/24/eth0\n" % (VIP, VIP2)


def test_standby_and_takeover_move_every_group_both_ways(lab):
    pair = Pair(lab, haresources=TWO)          # with a responder for VIP on each node
    for name in pair.nodes:
        probe.responder(pair[name].host, VIP2, name, port=probe.PORT + 1)
    pair.holders()
    pair.start()
    p1 = probe.Prober(pair.client, VIP, duration=60, tag="a")
    p2 = probe.Prober(pair.client, VIP2, port=probe.PORT + 1, duration=60, tag="b")
    julius, caesar = pair["julius"], pair["caesar"]
    pair.wait(lambda: julius.holds() == ["1"] and caesar.holds() == ["2"], what="start")
    p1.wait_served("julius")
    p2.wait_served("caesar")
    steps = [
        (julius, ["standby"], "ok: standby: groups 1,2 now on caesar", [], ["1", "2"]),
        (julius, ["takeover"], "ok: takeover: groups 1,2 now on julius", ["1", "2"], []),
        (caesar, ["takeover", "local"], "ok: takeover: group 2 now on caesar", ["1"], ["2"]),
        (caesar, ["standby", "all"], "ok: standby: groups 1,2 now on julius", ["1", "2"], []),
        (julius, ["standby", "foreign"], "ok: standby: group 2 now on caesar", ["1"], ["2"]),
    ]
    for node, args, said, on_julius, on_caesar in steps:
        t0 = time.monotonic()
        r = node.switch(*args, "--wait", "10")
        assert r.returncode == 0, (args, r.stdout, pair["julius"].logtail())
        assert r.stdout.startswith(said + " ("), r.stdout
        assert julius.holds() == on_julius
        pair.wait(lambda: caesar.holds() == on_caesar and julius.holds() == on_julius,
                  timeout=3, what="both nodes agree after %s" % args)
        p1.wait_served("julius" if "1" in on_julius else "caesar", since=t0, timeout=5)
        p2.wait_served("julius" if "2" in on_julius else "caesar", since=t0, timeout=5)
    for p in (p1, p2):
        probes = p.stop()
        assert len(probes) > 50
        assert probe.multi(probes, "holders") == [], probe.servers(probe.multi(probes))
    pair.one_holder()                           # VIP, by each node's `ip addr`
    for name, node in pair.nodes.items():
        r = node.switch("status")
        assert r.returncode == 0 and r.stdout.startswith("ok: hb-watch on %s" % name)


def test_standby_with_a_dead_peer_is_refused(lab):
    pair = Pair(lab)                            # with a responder for VIP on each node
    pair.start()
    julius, caesar = pair["julius"], pair["caesar"]
    # caesar is "up" to julius's liveness as soon as it beats, but says "init" until
    # its hb-watch has judged: cl_status answers with what the node says of itself
    pair.wait(lambda: julius.holds() == ["1"]
              and julius.node("caesar").get("status") == "up"
              and julius.node("caesar").get("st") in ("up", "active"), what="start")
    r = julius.switch("cl_status", "nodestatus", "caesar")
    assert (r.returncode, r.stdout) == (0, "up\n") or (r.returncode, r.stdout) == (
        0, "active\n")
    caesar.kill()
    pair.wait(lambda: julius.node("caesar").get("status") == "dead", timeout=5,
              what="caesar dead")
    prober = probe.Prober(pair.client, VIP, duration=30)
    r = julius.switch("standby")
    assert r.returncode == 1
    assert r.stdout.startswith("fail: standby refused: peer caesar is dead"), r.stdout
    time.sleep(0.5)
    probes = prober.stop()
    assert probes and not [p for p in probes if (set(p.served) | set(p.holders)) - {"julius"}]
    assert sum(p.who == "julius" for p in probes) >= 0.9 * len(probes), probe.servers(probes)
    assert julius.holds() == ["1"]
    assert julius.switch("cl_status", "nodestatus", "caesar").returncode == 1
    assert julius.switch("cl_status", "rscstatus").stdout == "all\n"     # as Heartbeat
    r = julius.switch("status", "--format=shell")
    assert "HB_NODE_CAESAR='dead'" in r.stdout.splitlines()
    r = julius.switch("standby", "--force", "--wait", "5")
    assert (r.returncode, r.stdout[:40]) in (
        (1, "fail: standby: refused by hb-watch: stan"),
        (0, "ok: standby: group 1 stopped; nothing ru")), r.stdout
