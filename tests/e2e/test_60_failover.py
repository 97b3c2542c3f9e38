"""Failover scenarios: a real hb pair (tests/lab/pair.py) and a client probing the VIP
every 10 ms (tests/lab/probe.py).

Every scenario asserts that the VIP was never on both nodes (each node's `ip addr`,
sampled every 100 ms: lab.probe.Holders) outside the moments where a node cannot
help it (frozen, crashed, powered off or cut off: until it is back), and bounds the
interruption generously (the benchmark, bench/failover, measures it).  A probe's
"holders" are the nodes that answer a link-layer broadcast request for the VIP:
every node whose kernel has the address, whether the client's ARP entry points at
it or not.

Media: UDP unicast and broadcast on eth0, unicast on a second network (eth1) and a
socat serial pair; no multicast (the lab's address rules allow no group address).
This kernel has no sch_netem, so packet loss on the UDP medium is made with an
nftables `numgen random` rule dropping 10 % of the heartbeats each node receives.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from hb import settings
from lab import probe
from lab.pair import HbPair

KEEPALIVE, DEADTIME = "100ms", "500ms"
UNPLANNED_MS = 2000          # deadtime 500 ms + generous slack for a loaded machine
PLANNED_MS = 1000
HEAL_S = 2.0                 # after links come back, two holders resolve within this
LOSS_SECONDS = 20            # the issue says a minute; the suite keeps it short


def started(lab, media=("ucast",), **kw) -> tuple[HbPair, probe.Prober]:
    kw.setdefault("keepalive", KEEPALIVE)
    kw.setdefault("deadtime", DEADTIME)
    pair = HbPair(lab, media=media, **kw)
    prober = pair.prober(duration=90)
    pair.holders()
    pair.start("alpha")
    prober.wait_served("alpha", timeout=15)
    pair.start("beta")
    pair.wait_up()
    # each node advertises deadtime + 2000 ms for its first 5 s (as Heartbeat): the
    # scenarios measure failover once both are past it
    dt = "%d" % round(settings.parse_time(kw["deadtime"]) * 1000)
    pair.wait(lambda: all(n.get("dt") == dt for x in ("alpha", "beta")
                          for n in pair[x].status()["node"] if n.get("kind") != "self"),
              10, "both nodes past their start-up deadtime")
    return pair, prober


def after(probes: list[probe.Probe], t: float) -> list[probe.Probe]:
    return probe.window(probes, t)


def assert_gap(probes: list[probe.Probe], t: float, bound_ms: float) -> float:
    gap = probe.outage_after(probes, t)
    ms = gap.ms if gap else 0.0
    assert ms <= bound_ms, "interruption %.0f ms > %.0f ms: %s" % (
        ms, bound_ms, probe.servers(after(probes, t - 0.1))[:8])
    return ms


def first_served_by(probes: list[probe.Probe], who: str, t: float) -> float:
    return next(p.t for p in after(probes, t) if p.who == who)


def test_kill9_of_every_hb_process_fails_over(lab):
    pair, prober = started(lab)
    t = time.monotonic()
    pair["alpha"].kill()
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(0.5)
    probes = prober.stop()
    pair.one_holder((0, t))           # then alpha's kernel keeps it: hb is dead there
    assert_gap(probes, t, UNPLANNED_MS)
    took = first_served_by(probes, "beta", t)
    assert [p for p in after(probes, took) if p.who != "beta"] == [], \
        probe.servers(after(probes, took))
    assert pair["beta"].holds() == ["1"], pair.logtail()


def test_kill9_then_restart_leaves_the_vip_with_the_peer(lab):
    """hb crashed (kill -9 of everything) and was restarted, as systemd would: RUNDIR
    and the VIP are still there.  With auto_failback off the peer keeps the group."""
    pair, prober = started(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    t = time.monotonic()
    alpha.kill()
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(0.5)
    t_back = time.monotonic()
    alpha.start()
    pair.wait_up(timeout=10)
    t_up = pair.wait(lambda: not alpha.has_vip(), 5, "alpha to drop the stale VIP")
    time.sleep(1.5)
    probes = prober.stop()
    pair.one_holder((0, t), (t_up, float("inf")))
    back = after(probes, t_back)
    assert [p for p in back if p.who != "beta"] == [], \
        "the restarted node took the VIP back: %s\n%s" % (probe.servers(back), pair.logtail())
    assert beta.holds() == ["1"] and alpha.holds() == [], pair.logtail()
    assert not alpha.has_vip()


def test_sigstop_then_sigcont_steps_down_without_a_fight(lab):
    pair, prober = started(lab)
    alpha, beta = pair["alpha"], pair["beta"]
    time.sleep(1.5)                        # a node hung in steady state
    t = time.monotonic()
    alpha.signal_all(signal.SIGSTOP)
    try:
        prober.wait_served("beta", timeout=5, since=t)
        time.sleep(1.0)                    # hung for a while after the takeover
    finally:
        t_cont = time.monotonic()
        alpha.signal_all(signal.SIGCONT)
    pair.wait(lambda: not alpha.has_vip(), timeout=3,
              what="alpha, resumed, to give up the VIP it held while hung")
    t_gone = time.monotonic()
    time.sleep(1.0)
    probes = prober.stop()
    pair.one_holder((0, t), (t_gone, float("inf")))
    assert_gap(probes, t, UNPLANNED_MS)
    took = first_served_by(probes, "beta", t)
    assert [p for p in after(probes, took) if p.who != "beta"] == [], \
        "the resumed node fought for the VIP: %s\n%s" % (
            probe.servers(after(probes, took)), pair.logtail())
    late = [p for p in after(probes, t_cont + HEAL_S) if set(p.holders) != {"beta"}]
    assert late == [], late[:3]
    assert beta.holds() == ["1"] and alpha.holds() == [], pair.logtail()


def test_sigstop_just_after_a_takeover_sends_no_stale_arp_on_resume(lab):
    """Frozen while its gratuitous ARP repeats (5 x 200 ms) were still due: when it
    resumes it must not announce the VIP that the peer took meanwhile."""
    pair = HbPair(lab, keepalive=KEEPALIVE, deadtime=DEADTIME)
    alpha, beta = pair["alpha"], pair["beta"]
    prober = pair.prober(duration=60)
    pair.holders()
    alpha.start()
    prober.wait_served("alpha", timeout=15, count=1)
    alpha.signal_all(signal.SIGSTOP)
    try:
        beta.start()
        took = prober.wait_served("beta", timeout=10)
        time.sleep(0.5)
    finally:
        alpha.signal_all(signal.SIGCONT)
    t_gone = pair.wait(lambda: not alpha.has_vip(), timeout=3,
                       what="alpha to give up the VIP")
    time.sleep(1.0)
    probes = prober.stop()
    pair.one_holder((t_gone, float("inf")))
    assert [p for p in after(probes, took) if p.who != "beta"] == [], \
        "the resumed node announced the VIP: %s\n%s" % (
            probe.servers(after(probes, took)), pair.logtail())


def test_links_cut_one_by_one_then_restored(lab):
    pair, prober = started(lab, media=("ucast", "eth1", "serial"))
    alpha, beta = pair["alpha"], pair["beta"]
    t0 = time.monotonic()
    for medium in ("serial", "eth1"):
        alpha.cut(medium)
        time.sleep(1.5)                    # three deadtimes: nothing may move
        assert beta.peer_status() == "up", pair.logtail()
    probes = prober.probes()
    assert [p for p in after(probes, t0) if p.who not in ("alpha", None)] == []
    assert probe.max_interruption(after(probes, t0)) <= 100
    t = time.monotonic()
    alpha.cut("eth0")                      # the last link, and the VIP's interface
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(0.5)
    t_mend = time.monotonic()
    for medium in ("eth0", "eth1", "serial"):
        alpha.mend(medium)
    pair.wait_up(timeout=5)
    time.sleep(HEAL_S + 0.5)
    probes = prober.stop()
    pair.one_holder((0, t), (t_mend + HEAL_S, float("inf")))      # serial, eth1 cut: nothing moved
    assert_gap(probes, t, UNPLANNED_MS)
    settled = after(probes, t_mend + HEAL_S)
    assert settled and all(len(p.holders) == 1 for p in settled), \
        probe.servers(after(probes, t_mend))
    assert probe.max_interruption(settled) == 0, probe.servers(settled)
    assert sorted(alpha.holds() + beta.holds()) == ["1"], pair.logtail()


def test_all_links_cut_at_once_then_restored(lab):
    pair, prober = started(lab, media=("ucast", "eth1", "serial"))
    alpha, beta = pair["alpha"], pair["beta"]
    t = time.monotonic()
    for medium in ("eth0", "eth1", "serial"):
        alpha.cut(medium)
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(1.0)
    t_mend = time.monotonic()
    for medium in ("eth0", "eth1", "serial"):
        alpha.mend(medium)
    pair.wait_up(timeout=5)
    time.sleep(HEAL_S + 0.5)
    probes = prober.stop()
    pair.one_holder((0, t), (t_mend + HEAL_S, float("inf")))
    assert_gap(probes, t, UNPLANNED_MS)
    healed = after(probes, t_mend)
    both = probe.multi(healed, "holders")
    assert not both or both[-1].t - t_mend <= HEAL_S, probe.servers(healed)
    settled = after(probes, t_mend + HEAL_S)
    assert settled and all(len(p.holders) == 1 for p in settled), probe.servers(healed)
    assert sorted(alpha.holds() + beta.holds()) == ["1"], pair.logtail()


def test_power_loss_fails_over_and_the_node_rejoins_as_backup(lab):
    pair, prober = started(lab, media=("ucast", "serial"))
    alpha = pair["alpha"]
    t = alpha.power_loss()
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(0.5)
    alpha.reboot()
    shutil.rmtree(alpha.run, ignore_errors=True)        # /run is a tmpfs
    t_back = time.monotonic()                           # reboot() took the VIP off alpha
    alpha.start()
    pair.wait_up(timeout=10)
    time.sleep(1.5)
    probes = prober.stop()
    pair.one_holder((0, t), (t_back, float("inf")))
    assert_gap(probes, t, UNPLANNED_MS)
    back = after(probes, t_back)
    assert [p for p in back if p.who != "beta"] == [], probe.servers(back)
    assert probe.multi(back, "holders") == []
    assert pair["beta"].holds() == ["1"] and alpha.holds() == [], pair.logtail()


def test_planned_standby_then_takeover(lab):
    pair, prober = started(lab, media=("bcast", "serial"))
    alpha, beta = pair["alpha"], pair["beta"]
    time.sleep(0.3)
    t1 = time.monotonic()
    r = alpha.switch("standby")
    assert r.returncode == 0, r.stdout + r.stderr + pair.logtail()
    prober.wait_served("beta", timeout=5, since=t1)
    time.sleep(0.5)
    t2 = time.monotonic()
    r = alpha.switch("takeover")
    assert r.returncode == 0, r.stdout + r.stderr + pair.logtail()
    prober.wait_served("alpha", timeout=5, since=t2)
    time.sleep(0.5)
    probes = prober.stop()
    pair.one_holder()
    assert probe.multi(after(probes, t1), "holders") == []
    assert_gap(probes, t1, PLANNED_MS)
    assert_gap(probes, t2, PLANNED_MS)
    assert alpha.holds() == ["1"] and beta.holds() == [], pair.logtail()


def test_sigterm_hands_over_at_once(lab):
    pair, prober = started(lab)
    t = time.monotonic()
    rc = pair["alpha"].stop()
    prober.wait_served("beta", timeout=5, since=t)
    time.sleep(0.3)
    probes = prober.stop()
    assert rc == 0, pair.logtail()
    pair.one_holder()
    assert probe.multi(after(probes, t), "holders") == []
    assert_gap(probes, t, PLANNED_MS)
    assert not pair["alpha"].has_vip() and pair["beta"].holds() == ["1"]


@pytest.mark.parametrize("failback", ["on", "off"])
def test_auto_failback_when_the_preferred_node_returns(lab, failback):
    pair, prober = started(lab, media=("bcast",), auto_failback=failback)
    alpha = pair["alpha"]
    assert alpha.stop() == 0, pair.logtail()
    prober.wait_served("beta", timeout=5)
    time.sleep(0.3)
    t = time.monotonic()
    alpha.start()
    pair.wait_up(timeout=10)
    want = "alpha" if failback == "on" else "beta"
    if failback == "on":
        prober.wait_served("alpha", timeout=10, since=t)
    time.sleep(1.5)
    probes = prober.stop()
    pair.one_holder()
    back = after(probes, t)
    assert probe.multi(back, "holders") == [], probe.servers(back)
    assert back[-1].who == want, probe.servers(back)
    if failback == "on":
        assert_gap(probes, t, PLANNED_MS)
    else:
        assert [p for p in back if p.who != "beta"] == [], probe.servers(back)
    assert pair[want].holds() == ["1"], pair.logtail()


def test_both_started_at_the_same_instant(lab):
    pair = HbPair(lab, keepalive=KEEPALIVE, deadtime=DEADTIME, initdead="2")
    prober = pair.prober(duration=30)
    pair.holders()
    t = time.monotonic()
    pair.start()
    prober.wait_served("alpha", timeout=10, since=t)
    pair.wait_up()
    time.sleep(1.0)
    probes = prober.stop()
    pair.one_holder()
    assert probe.multi(probes, "holders") == []
    assert [p for p in probes if p.who not in ("alpha", None)] == [], probe.servers(probes)
    took = first_served_by(probes, "alpha", t) - t
    assert took < 3.0, "alpha took %.2f s to start its own group" % took
    assert pair["alpha"].holds() == ["1"] and pair["beta"].holds() == []


NFT_LOSS = """\
table inet hbloss {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "eth0" udp dport 694 numgen random mod 10 == 0 counter drop
  }
}
"""


def test_ten_percent_loss_causes_no_false_failover(lab):
    pair, prober = started(lab, keepalive="200ms", deadtime="1")
    time.sleep(0.5)
    mark = {name: len(n.log()) for name, n in pair.nodes.items()}
    for n in pair.nodes.values():
        n.host.run(["nft", "-f", "-"], input=NFT_LOSS)
    t = time.monotonic()
    time.sleep(LOSS_SECONDS)
    probes = prober.stop()
    dropped = [int(n.host.run(["nft", "list", "table", "inet", "hbloss"]).stdout
                   .split("packets ")[1].split()[0]) for n in pair.nodes.values()]
    sent = LOSS_SECONDS / 0.2                  # heartbeats each node received, at least
    assert all(0.02 * sent < d < 0.25 * sent for d in dropped), (dropped, sent)
    pair.one_holder()
    during = after(probes, t)
    assert [p for p in during if p.who not in ("alpha", None)] == [], probe.servers(during)
    assert probe.multi(during, "holders") == []
    for name, n in pair.nodes.items():
        assert n.peer_status() == "up"
        assert " dead" not in n.log()[mark[name]:], n.logtail()
    assert pair["alpha"].holds() == ["1"]
