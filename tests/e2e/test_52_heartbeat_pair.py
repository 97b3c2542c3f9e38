"""A mixed pair (issue 9): Debian's Heartbeat 3.0.6 on alpha, hb (hb-supervise) on beta.

Both read byte-identical ha.cf, haresources and authkeys (each logs to its own /var/log).
A client probes the VIP every 10 ms; every scenario checks where the VIP is (on
exactly one node), how long it took, and that neither side complains about the
other.  Measured interruptions are printed (`pytest -s`) as lines
`interruption: CASE: N ms`.

A crash is modelled as a dead box: kill -9 of every process of the node, and its
addresses gone (`ip addr del` of the VIP), so the survivor's takeover is what the
client sees.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from lab import probe as holders
from lab.heartbeat import (HeartbeatNode, HbNode, WireTap, hacf,  # noqa: F401
                           hbnode, heartbeat, host)
from lab.probe import Ping
from lab.wait import steady, wait_until

VIP = "198.18.0.100"
VIP2 = "198.18.0.101"
NAMES = ("alpha", "beta")            # alpha runs Heartbeat, beta runs hb
COMPLAINTS = re.compile(r"authentication|authtoken|replay attack|bad node|"
                        r"[Ii]rretrievably|returning after partition|"
                        r"Resource STOP failure|Giving up resources|Cannot locate|"
                        r"No one owns|Both machines own")
CHECKMK = r"""
echo '<<<heartbeat_rscstatus>>>'
cl_status rscstatus
echo '<<<heartbeat_nodes>>>'
for NODE in $(cl_status listnodes); do
  if [ "$NODE" != "$ME" ]; then
    printf '%s %s' "$NODE" "$(cl_status nodestatus "$NODE")"
    for LINK in $(cl_status listhblinks "$NODE" 2>/dev/null); do
      printf ' %s %s' "$LINK" "$(cl_status hblinkstatus "$NODE" "$LINK")"
    done
    echo
  fi
done
"""


def say(case: str, seconds: float) -> None:
    print("\ninterruption: %s: %d ms" % (case, round(seconds * 1000)))


class Pair:
    """alpha (Heartbeat) and beta (hb) on one bridge, a client, and their config."""

    def __init__(self, lab, heartbeat, hbnode, haresources: str,  # noqa: F811
                 auto_failback: str = "on", deadtime: str = "1", initdead: str = "3"
                 ) -> None:
        self.lab = lab
        self.hosts = {"alpha": host(lab, "alpha", "198.18.0.1/24"),
                      "beta": host(lab, "beta", "198.18.0.2/24")}
        self.client = host(lab, "client", "198.18.0.10/24")
        self.deadtime = float(deadtime)
        cf = hacf(NAMES, keepalive="200ms", warntime="600ms", deadtime=deadtime,
                  initdead=initdead, auto_failback=auto_failback, extra="realtime off\n")
        self.alpha: HeartbeatNode = heartbeat(self.hosts["alpha"], "alpha", cf, haresources)
        self.beta: HbNode = hbnode(self.hosts["beta"], "beta", cf, haresources)
        for name in ("ha.cf", "haresources", "authkeys"):     # the very same files
            with open(os.path.join(self.alpha.dir, "ha.d", name), "rb") as fa, \
                    open(os.path.join(self.beta.conf, name), "rb") as fb:
                assert fa.read() == fb.read(), name
        self.probe: Ping | None = None
        self.tap = WireTap(lab, self.client, self.beta.conf, "beta")
        # who holds each VIP, every 10 ms, by link-layer broadcast (tests/lab/probe.py)
        vips = [v for v in (VIP, VIP2) if v + "/" in haresources]
        for name in NAMES:
            for vip in vips:
                holders.responder(self.hosts[name], vip, name)
        self.watch = {vip: holders.Prober(self.client, vip, duration=110, tag="hold")
                      for vip in vips}

    def node(self, name: str):
        return self.alpha if name == "alpha" else self.beta

    def where(self, vip: str = VIP) -> list[str]:
        """The nodes whose eth0 holds vip (one retry: a test run in parallel may
        have its helpers killed from under it)."""
        for _ in range(2):
            try:
                return [n for n in NAMES if self.hosts[n].has_addr(vip)]
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        return [n for n in NAMES if self.hosts[n].has_addr(vip)]

    def wait_vip(self, on: str, vip: str = VIP, timeout: float = 15, what: str = "") -> float:
        return wait_until(lambda: self.where(vip) == [on], timeout,
                          lambda: "%s only on %s%s; it is on %s\n%s"
                          % (vip, on, " (%s)" % what if what else "", self.where(vip),
                             self.show()))

    def show(self) -> str:
        return ("--- Heartbeat alpha log:\n%s\n--- hb beta log:\n%s\n--- hb status:\n%s"
                "--- on the wire (status heartbeats left out):\n%s"
                % (self.alpha.log()[-4000:], self.beta.log()[-4000:], self.beta.status_text(),
                   "\n".join(self.tap.messages()[-40:])))

    def peer_seen(self) -> None:
        """Each side sees the other active (Heartbeat's log, hb's status)."""
        self.alpha.wait_log(r"Status update for node beta: status active", 15)
        wait_until(lambda: re.search(r"^node alpha up .*kind=heartbeat", self.beta.status_text(),
                                     re.M), 10,
                   lambda: "hb to show alpha up, kind=heartbeat\n" + self.show())

    def rscstatus(self) -> tuple[str, str]:
        """cl_status rscstatus on alpha (Heartbeat's) and on beta (hb-switch's);
        `down` for a node that is not running."""
        return (self.alpha.cl_status("rscstatus").stdout.strip()
                if self.alpha.running() else "down",
                self.beta.switch("cl_status", "rscstatus").stdout.strip()
                if self.beta.running() else "down")

    def stable(self) -> None:
        """The running sides are done with resource transitions (Heartbeat refuses
        standby requests while either side is in flux)."""
        def calm() -> bool:
            return not {"transition", ""} & set(self.rscstatus())
        wait_until(calm, 20, lambda: "both sides stable (rscstatus alpha, beta: %s)\n%s"
                   % (self.rscstatus(), self.show()))
        steady(calm, 0.5, lambda: "stable for 0.5 s: %s\n%s" % (self.rscstatus(), self.show()))

    def start_probe(self, vip: str = VIP) -> Ping:
        self.probe = Ping(self.client, vip, duration=120)
        wait_until(lambda: self.probe.replies(), 5, "the client to reach %s" % vip)
        return self.probe

    def crash(self, name: str) -> None:
        """kill -9 of the node's every process, and its VIPs gone with the box."""
        self.node(name).kill()
        for vip in (VIP, VIP2):
            self.hosts[name].run(["ip", "addr", "del", vip + "/24", "dev", "eth0"],
                                 check=False)

    def clean(self) -> None:
        """Neither side complained, and no VIP was ever held by both at once."""
        bad = COMPLAINTS.findall(self.alpha.log()) + COMPLAINTS.findall(self.beta.log())
        assert not bad, "%r\n%s" % (bad, self.show())
        for vip, prober in self.watch.items():
            probes = prober.stop()
            assert len([p for p in probes if p.holders]) > 10, (vip, "the holder probe saw "
                                                                "nobody")
            both = holders.multi(probes, "holders")
            assert not both, "%s held by both nodes %d times, first at %.3f (%s)\n%s" % (
                vip, len(both), both[0].t, both[0].holders, self.show())


def running_pair(lab, heartbeat, hbnode, pref: str, **kw) -> Pair:  # noqa: F811
    """The VIP preferred by `pref`; pref starts first, then the other joins."""
    p = Pair(lab, heartbeat, hbnode, "%s IPaddr2::%s/24/eth0\n" % (pref, VIP), **kw)
    first, second = (p.alpha, p.beta) if pref == "alpha" else (p.beta, p.alpha)
    first.start()
    p.wait_vip(pref, timeout=15, what="%s alone" % pref)
    second.start()
    p.peer_seen()
    p.stable()
    assert p.where() == [pref]
    return p


# ---------------------------------------------------------------- start orders

@pytest.mark.parametrize("order", ["heartbeat_first", "hb_first", "together"])
def test_each_start_order_ends_with_each_vip_on_its_preferred_node(
        lab, heartbeat, hbnode, order):  # noqa: F811
    """alpha prefers VIP, beta prefers VIP2; auto_failback on."""
    p = Pair(lab, heartbeat, hbnode, "alpha IPaddr2::%s/24/eth0\nbeta IPaddr2::%s/24/eth0\n"
             % (VIP, VIP2))
    if order == "heartbeat_first":
        p.alpha.start()
        p.wait_vip("alpha", VIP, what="Heartbeat alone")
        p.wait_vip("alpha", VIP2, what="Heartbeat alone")
        p.beta.start()
    elif order == "hb_first":
        p.beta.start()
        p.wait_vip("beta", VIP, what="hb alone")
        p.wait_vip("beta", VIP2, what="hb alone")
        p.alpha.start()
    else:
        p.alpha.start()
        p.beta.start()
    t0 = time.monotonic()
    p.peer_seen()
    p.wait_vip("alpha", VIP, timeout=25, what=order)
    p.wait_vip("beta", VIP2, timeout=25, what=order)
    print("\nsettled: %s: %.1f s after both ran" % (order, time.monotonic() - t0))
    for _ in range(10):                  # and it stays that way
        assert p.where(VIP) == ["alpha"] and p.where(VIP2) == ["beta"], p.show()
        time.sleep(0.1)
    p.stable()
    assert p.alpha.cl_status("rscstatus").stdout.strip() == "local"
    assert p.beta.switch("cl_status", "rscstatus").stdout.strip() == "local"
    assert "flow control disabled due to different version heartbeat" in p.alpha.log()
    p.clean()
    if order == "heartbeat_first":        # one settled pair is enough for this
        monitoring_plugins_read_the_same_on_both_kinds(p)


def monitoring_plugins_read_the_same_on_both_kinds(p: Pair) -> None:
    """A Checkmk-style agent section (what its heartbeat_rscstatus and heartbeat_nodes
    checks read), run with Heartbeat's cl_status on alpha and with the `cl_status`
    wrapper of hb(7) (hb-switch cl_status) on beta: the same text, mirrored; and each
    query a Nagios plugin runs, with the same output and exit code."""
    wrapper = os.path.join(p.lab.tmp, "bin")
    os.makedirs(wrapper, exist_ok=True)
    with open(os.path.join(wrapper, "cl_status"), "w") as f:
        f.write('#!/bin/sh\nexec hb-switch cl_status "$@" -r %s\n' % p.beta.run)
    os.chmod(os.path.join(wrapper, "cl_status"), 0o755)
    on_alpha = p.alpha.nsenter(["env", "ME=alpha", "sh", "-c", CHECKMK]).stdout
    on_beta = p.hosts["beta"].run(["env", "ME=beta", "PATH=%s:%s" % (wrapper, os.environ[
        "PATH"]), "sh", "-c", CHECKMK]).stdout
    sect = "<<<heartbeat_rscstatus>>>\nlocal\n<<<heartbeat_nodes>>>\n%s active eth0 up\n"
    assert on_alpha == sect % "beta", on_alpha
    assert on_beta == sect % "alpha", on_beta
    # each query a Nagios plugin runs: the same output and exit code, mirrored
    queries = [["hbstatus"], ["listnodes"], ["nodestatus", "{peer}"], ["nodestatus", "nosuch"],
               ["listhblinks", "{peer}"], ["hblinkstatus", "{peer}", "eth0"],
               ["hblinkstatus", "{peer}", "eth9"], ["rscstatus"]]
    for q in queries:
        ra = p.alpha.cl_status(*[w.format(peer="beta") for w in q])
        rb = p.beta.switch("cl_status", *[w.format(peer="alpha") for w in q])
        if q == ["listnodes"]:      # the same two nodes, in any order
            a_out, b_out = sorted(ra.stdout.split()), sorted(rb.stdout.split())
        else:
            a_out, b_out = ra.stdout.replace("beta", "alpha"), rb.stdout
        assert (b_out, rb.returncode) == (a_out, ra.returncode), (q, ra, rb)


# ---------------------------------------------------------------- switch-over by hand

def test_standby_and_takeover_both_ways(lab, heartbeat, hbnode):  # noqa: F811
    p = running_pair(lab, heartbeat, hbnode, "alpha", auto_failback="off")
    probe = p.start_probe()
    steps = [
        ("hb_standby on Heartbeat", lambda: p.alpha.hb_standby("all"), "beta"),
        ("hb-switch standby on hb", lambda: p.beta.switch("standby"), "alpha"),
        ("hb-switch takeover on hb", lambda: p.beta.switch("takeover"), "beta"),
        ("hb_takeover on Heartbeat", lambda: p.alpha.hb_takeover("all"), "alpha"),
    ]
    marks = []
    for case, act, to in steps:
        t0 = time.time()
        r = act()
        assert r.returncode == 0, (case, r.stdout, r.stderr, p.show())
        p.wait_vip(to, timeout=15, what=case)
        t1 = time.time()
        wait_until(lambda: probe.replied_since(t1), 5, "the client to reach the VIP")
        p.stable()
        marks.append((case, t0, time.time()))
    probe.stop()
    for case, t0, t1 in marks:
        out = probe.outage(t0, t1)
        say(case, out)
        assert out < 2.0, (case, out)
    p.clean()


# ---------------------------------------------------------------- failures

@pytest.mark.parametrize("victim", ["alpha", "beta"])
def test_sigterm_of_the_holder_hands_over_at_once(lab, heartbeat, hbnode, victim):  # noqa: F811
    """deadtime 2 s here: a handover well under it was not a death timeout."""
    p = running_pair(lab, heartbeat, hbnode, victim, auto_failback="off", deadtime="2",
                     initdead="4")
    other = "beta" if victim == "alpha" else "alpha"
    probe = p.start_probe()
    t0 = time.time()
    p.node(victim).proc.send_signal(signal.SIGTERM)
    took = p.wait_vip(other, timeout=10, what="after SIGTERM to %s" % victim)
    wait_until(lambda: probe.replied_since(t0 + took), 5, "the client to reach the VIP")
    probe.stop()
    out = probe.outage(t0)
    say("SIGTERM of %s (%s)" % ("Heartbeat" if victim == "alpha" else "hb", victim), out)
    assert took < 1.5, (took, p.show())
    assert out < 1.5
    p.node(victim).proc.wait(30)
    if victim == "alpha":
        assert p.alpha.pids() == []
    else:
        assert p.beta.proc.returncode == 0, p.show()
        p.alpha.wait_log(r"Received shutdown notice from 'beta'", 5)
    p.clean()


@pytest.mark.parametrize("victim", ["alpha", "beta"])
def test_kill9_of_the_holder_then_auto_failback_when_it_returns(
        lab, heartbeat, hbnode, victim):  # noqa: F811
    """kill -9 of the node holding the VIP (its preferred node): the other takes over
    within deadtime + 1 s; restarted, the preferred node gets it back (auto_failback
    on), whichever kind either is."""
    p = running_pair(lab, heartbeat, hbnode, victim, auto_failback="on")
    other = "beta" if victim == "alpha" else "alpha"
    kind = "Heartbeat" if victim == "alpha" else "hb"
    probe = p.start_probe()

    def plain_dt() -> bool:         # its first 5 s are over: dt = deadtime (no +2000 ms)
        from hb import lines
        dts = [lines.parse_line(m).get("dt") for m in p.tap.messages(skip_status=False)
               if " src=%s " % victim in " %s " % m and m.startswith("t=status")]
        return bool(dts) and dts[-1] == "%x" % int(p.deadtime * 1000)

    wait_until(plain_dt, 10, "%s to advertise its deadtime, not the start-up one" % victim)
    t0 = time.time()
    p.crash(victim)
    took = p.wait_vip(other, timeout=10, what="after kill -9 of %s" % victim)
    wait_until(lambda: probe.replied_since(t0 + took), 5, "the client to reach the VIP")
    out = probe.outage(t0)
    say("kill -9 of %s (%s)" % (kind, victim), out)
    assert took < p.deadtime + 1.0, (took, p.show())
    assert out < p.deadtime + 1.0
    p.stable()
    t1 = time.time()
    p.node(victim).start()
    back = p.wait_vip(victim, timeout=25, what="auto_failback to %s" % victim)
    wait_until(lambda: probe.replied_since(t1 + back), 5, "the client to reach the VIP")
    probe.stop()
    out = probe.outage(t1)
    say("auto_failback to %s (%s), %.1f s after its restart" % (kind, victim, back), out)
    assert out < 2.0
    for _ in range(10):
        assert p.where() == [victim], p.show()
        time.sleep(0.1)
    p.clean()


@pytest.mark.parametrize("order", ["heartbeat_first", "hb_first"])
def test_legacy_auto_failback_asks_for_groups_with_ip_request(
        lab, heartbeat, hbnode, order):  # noqa: F811
    """auto_failback legacy: the node that joins asks for each of its groups with
    `ip-request`; the holder stops it and answers `ip-request-resp`; each VIP ends on
    its preferred node, on one node only."""
    p = Pair(lab, heartbeat, hbnode, "alpha IPaddr2::%s/24/eth0\nbeta IPaddr2::%s/24/eth0\n"
             % (VIP, VIP2), auto_failback="legacy")
    first, second, joiner = ((p.alpha, p.beta, "beta") if order == "heartbeat_first"
                             else (p.beta, p.alpha, "alpha"))
    alone = "alpha" if first is p.alpha else "beta"

    def both_alone() -> None:
        p.wait_vip(alone, VIP2, timeout=30, what="alone")
        p.wait_vip(alone, VIP, timeout=30, what="alone")
    first.start()
    try:
        both_alone()
    except AssertionError:
        # Heartbeat 3.0.6 alone, before hb runs: under load two of its children can
        # write to its own FIFO at once, and the master drops the torn message
        # ("NV failure (msgfromsteam)"); a local group then never starts.  Not what
        # this test is about: Heartbeat once more, from a clean stop.
        if first is not p.alpha or "NV failure (msgfromsteam)" not in p.alpha.log():
            raise
        first.stop()
        first.start()
        both_alone()
    second.start()
    p.wait_vip("alpha", VIP, timeout=20, what="legacy failback, %s" % order)
    p.wait_vip("beta", VIP2, timeout=20, what="legacy failback, %s" % order)
    for _ in range(10):
        assert p.where(VIP) == ["alpha"] and p.where(VIP2) == ["beta"], p.show()
        time.sleep(0.1)
    asked = [m for m in p.tap.messages() if m.startswith("t=ip-request ")]
    answered = [m for m in p.tap.messages() if "t=ip-request-resp" in m
                and "dest=%s" % joiner in m]
    assert any("src=%s" % joiner in m for m in asked), p.show()
    assert answered, p.show()
    p.clean()


def test_partition_heals_to_one_holder(lab, heartbeat, hbnode):  # noqa: F811
    """All heartbeat links cut for 3 s (deadtime 1 s): both sides hold the VIP, as
    Heartbeat would.  Once mended, Heartbeat gives up everything and restarts (its own
    rule, reference §4.15) and hb lets the preferred node keep it: within 20 s the VIP
    is on alpha, and on alpha only."""
    p = running_pair(lab, heartbeat, hbnode, "alpha", auto_failback="on")
    for prober in p.watch.values():       # both holding it during the cut is the point
        prober.stop()
    lab.cut(p.hosts["beta"])
    wait_until(lambda: p.where() == ["alpha", "beta"], 5,
               lambda: "both to hold the VIP while cut off\n" + p.show())
    time.sleep(2)
    lab.mend(p.hosts["beta"])
    t0 = time.monotonic()
    p.alpha.wait_log(r"Cluster node beta returning after partition", 5)
    wait_until(lambda: p.alpha.log().count("Comm_now_up()") >= 2, 20,
               lambda: "Heartbeat to restart after the partition\n" + p.show())
    p.wait_vip("alpha", timeout=15, what="after the partition healed")
    healed = time.monotonic() - t0
    for _ in range(20):                   # and it stays there
        assert p.where() == ["alpha"], p.show()
        time.sleep(0.1)
    print("\npartition healed: the VIP only on alpha %.1f s after the links came back"
          % healed)
    bad = re.findall(r"authentication|authtoken|replay attack|bad node",   # (both did
                     p.alpha.log() + p.beta.log())                        # own it: no audit)
    assert not bad, (bad, p.show())
