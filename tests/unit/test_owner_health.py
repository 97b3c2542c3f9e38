"""owner.py's connectivity and monitor decisions, two Owners with a fake clock.

Each Box plays its node's hb-beat (status heartbeats with the state fields, ping
replies from the ping nodes it reaches), its netlink (carrier, addresses) and its
agents (start/stop/status/restart and monitor checks, each taking a little time).
"""

from __future__ import annotations

import pytest

from hb import health, owner
from hb.actions import Check, Log, Run, Save, Send
from hb.settings import Config, Group, Medium, PingNode, Resource

J, C = "julius", "caesar"
KA, DEADTIME, DEADPING, INITDEAD = 0.1, 0.5, 1.0, 1.0
STEP = 0.02
P1, P2 = "192.0.2.254", "198.51.100.254"


def config(node, af="off", pings=(P1,), monitor=None, groups=((J, "198.18.0.100"),)):
    gs = [Group(i + 1, n, [Resource("IPaddr", [a + "/24/eth0"], a + "/24/eth0")])
          for i, (n, a) in enumerate(groups)]
    return Config(node=node, nodes=[J, C], keepalive=KA, deadtime=DEADTIME, warntime=0.3,
                  initdead=INITDEAD, deadping=DEADPING, auto_failback=af, monitor=monitor,
                  pings=[PingNode(p, [p]) for p in pings],
                  media=[Medium("serial", "/dev/ttyS0")], groups=gs)


class Box:
    def __init__(self, sim, name):
        self.sim, self.name = sim, name
        self.ow = None
        self.reaches = set()            # ping nodes answering this box
        self.running: set[int] = set()  # groups really running here
        self.broken: set[int] = set()   # a check of these fails
        self.hung: set[int] = set()     # a check of these never answers
        self.jobs: list = []
        self.logs: list = []
        self.sent: list = []
        self.runs: list = []
        self.checks = 0
        self.state: dict = {}
        self.seq = 0
        self.next_beat = 0.0
        self.next_ping = 0.0

    def start(self, **kw):
        self.ow = owner.Owner(config(self.name, **kw), self.sim.now, "d", (), ["eth0"])
        self.state = self.ow.state_fields()
        self.next_beat = self.next_ping = self.sim.now
        self.apply(self.ow.begin(self.sim.now))

    def apply(self, actions):
        for a in actions:
            if isinstance(a, Send):
                self.sent.append(dict(a.fields))
                self.send(dict(a.fields))
            elif isinstance(a, Run):
                self.runs.append((a.group, a.action))
                self.jobs.append((self.sim.now + 0.05, "run", a.group, a.action))
            elif isinstance(a, Check):
                self.checks += 1
                if a.group not in self.hung:
                    self.jobs.append((self.sim.now + 0.01, "check", a.group, a.token))
            elif isinstance(a, Log):
                self.logs.append((a.level, a.text))
            elif isinstance(a, Save):
                self.state = self.ow.state_fields()

    def send(self, f):
        self.seq += 1
        f.update(src=self.name, seq="%x" % self.seq, hg="1")
        self.sim.deliver(self, f)

    def step(self):
        now = self.sim.now
        if now >= self.next_beat:
            self.next_beat = now + KA
            f = {"t": "status", "st": self.state.get("st", "up"), "dt": "1f4"}
            f.update({k: v for k, v in self.state.items() if k != "st"})
            self.send(f)
            self.apply(self.ow.message(dict(f, _via="local", _self="1"), now))
        if now >= self.next_ping:
            self.next_ping = now + KA
            for p in sorted(self.reaches):
                self.apply(self.ow.message({"t": "ping", "src": p, "addr": p, "_via": "ping"},
                                           now))
        for job in [j for j in self.jobs if j[0] <= now]:
            self.jobs.remove(job)
            _, kind, g, x = job
            if kind == "check":
                ok = g in self.running and g not in self.broken
                self.apply(self.ow.check_done(g, x, ok, "" if ok else "stopped", now))
                continue
            if x in ("start", "restart"):
                self.running.add(g)
                self.broken.discard(g)
            elif x == "stop":
                self.running.discard(g)
            rc = 0 if x != "status" or g in self.running else 3
            self.apply(self.ow.agent_done(g, x, rc, now))
        self.apply(self.ow.tick(now))

    def log_has(self, text, level=None):
        return any(text in t and (level is None or lv == level) for lv, t in self.logs)

    def remove_addr(self, g):
        """`ip addr del` of group g's address by hand: netlink tells hb-watch."""
        self.running.discard(g)
        self.apply(self.ow.addr_gone(g, "198.18.0.100", self.sim.now))


class Sim:
    def __init__(self, **kw):
        self.now = 1000.0
        self.boxes = {J: Box(self, J), C: Box(self, C)}
        self.queue = []
        self.double = 0
        for b in self.boxes.values():
            b.reaches = {P1}
        for b in self.boxes.values():
            b.start(**kw)

    def __getitem__(self, name):
        return self.boxes[name]

    def deliver(self, box, f):
        other = C if box.name == J else J
        self.queue.append((self.now + 0.005, other, dict(f, _via="ttyS0")))

    def run(self, secs):
        end = self.now + secs
        while self.now < end - 1e-9:
            self.now = round(self.now + STEP, 6)
            due = [q for q in self.queue if q[0] <= self.now]
            self.queue = [q for q in self.queue if q[0] > self.now]
            for _, to, f in due:
                b = self.boxes[to]
                b.apply(b.ow.message(f, self.now))
            for b in self.boxes.values():
                b.step()
            if all(1 in b.running for b in self.boxes.values()):
                self.double += 1

    def holders(self, g=1):
        return [b.name for b in self.boxes.values() if g in b.running]

    def until(self, cond, limit):
        t0 = self.now
        while not cond():
            assert self.now - t0 <= limit, "not within %g s" % limit
            self.run(STEP)
        return self.now - t0


def settled(**kw) -> Sim:
    s = Sim(**kw)
    s.until(lambda: s.holders() == [J], 2.0)
    s.run(1.5)
    assert s.holders() == [J]
    return s


# ---------------------------------------------------------------- connectivity

def test_state_advertises_the_count_and_status_shows_it():
    s = settled()
    assert s[J].state["pings"] == "1"
    st = s[J].ow.status_text(s.now, 1.7e9, 1)
    assert "self julius st=active rsc_hold=local maintenance=off reach=1" in st
    assert "kind=hb lates=0 st=active cfd=same reach=1" in st
    assert "\nping 192.0.2.254 up since=" in st


def test_losing_the_ping_node_alone_hands_the_groups_over():
    s = settled()
    s[J].reaches = set()
    t = s.until(lambda: s.holders() == [C], DEADPING + 1.0)
    assert DEADPING <= t <= DEADPING + 3 * KA + 0.4
    assert s[J].log_has("ping node 192.0.2.254 dead", "warning")
    assert s[J].log_has("connectivity: julius reaches 0 ping nodes, caesar reaches "
                        "1 ping node: handing groups 1 to caesar", "warning")
    assert any(f["t"] == "reach" and f["pings"] == "0" for f in s[J].sent)
    assert s.double == 0
    s.run(3)                                          # and it stays there
    assert s.holders() == [C]
    assert "CRITICAL" not in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_carrier_loss_hands_over_at_once():
    s = settled()
    s[J].apply(s[J].ow.link("eth0", False, s.now))
    t = s.until(lambda: s.holders() == [C], 1.0)
    assert t <= 3 * KA + 0.3
    assert s[J].log_has("interface eth0: carrier lost")
    assert s[J].log_has("julius reaches no carrier on eth0, caesar reaches 1 ping node")
    assert s[J].state["nolink"] == "eth0"
    assert " reach=-1 nolink=eth0" in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_without_ping_nodes_carrier_does_not_count():
    """As in Heartbeat without ipfail: connectivity is judged only with ping nodes."""
    s = settled(pings=())
    assert "pings" not in s[J].state
    s[J].apply(s[J].ow.link("eth0", False, s.now))
    s.run(2)
    assert s.holders() == [J] and "nolink" not in s[J].state
    assert "reach=" not in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_other_interfaces_do_not_count():
    s = settled()
    s[J].apply(s[J].ow.link("eth1", False, s.now))
    s.run(2)
    assert s.holders() == [J]


@pytest.mark.parametrize("af", ["off", "legacy"])
def test_restored_with_auto_failback_off_nothing_moves_back(af):
    s = settled(af=af)
    s[J].reaches = set()
    s.until(lambda: s.holders() == [C], 2.5)
    s[J].reaches = {P1}
    s.run(2 * DEADPING + 1)
    assert s[J].state["pings"] == "1"
    assert s.holders() == [C]


def test_restored_with_auto_failback_on_it_comes_back_when_even():
    s = settled(af="on")
    s[J].reaches = set()
    s.until(lambda: s.holders() == [C], 2.5)
    s.run(1)
    assert s.holders() == [C]                         # julius still reaches less
    s[J].reaches = {P1}
    t = s.until(lambda: s.holders() == [J], DEADPING + 1.5)
    assert t >= DEADPING                              # counted up after answering deadping
    assert s[C].log_has("auto_failback to julius")
    assert s.double == 0


def test_ping_node_lost_for_both_moves_nothing():
    s = settled()
    s[J].reaches = set()
    s.run(0.07)
    s[C].reaches = set()
    s.run(4)
    assert s.holders() == [J]
    assert s[J].state["pings"] == "0" and s[C].state["pings"] == "0"
    assert not s[J].log_has("connectivity:")


def test_dropped_replies_move_nothing():
    s = settled()
    for _ in range(5):
        s[J].reaches = set()
        s.run(2 * KA + 0.01)
        s[J].reaches = {P1}
        s.run(1.0)
    assert s.holders() == [J] and not s[J].log_has("ping node 192.0.2.254 dead")


def test_equal_counts_of_two_move_nothing():
    s = Sim(pings=(P1, P2))
    for b in s.boxes.values():
        b.reaches = {P1, P2}
    s.until(lambda: s.holders() == [J], 2.0)
    s.run(2)
    s[J].reaches = {P1}
    s[C].reaches = {P2}
    s.run(4)
    assert s.holders() == [J]
    s[C].reaches = set()
    s.until(lambda: s.holders() == [J], 0.1)
    s.run(3)
    assert s.holders() == [J]                         # caesar is the worse one now


def test_no_decision_before_the_ping_nodes_are_judged():
    s = Sim()
    s[J].reaches = set()                              # julius never hears the ping node
    s.until(lambda: s.holders() == [J], 2.0)
    assert s[J].ow.reach.score() is None or s.now - 1000.0 > INITDEAD
    s.until(lambda: s.holders() == [C], max(INITDEAD, DEADPING) + 1.5)


def test_a_dead_peer_is_not_handed_anything():
    s = settled()
    s.queue.clear()
    s[C].ow = None
    s.boxes[C].step = lambda: None
    s.deliver = lambda box, f: None
    s[J].reaches = set()
    s.run(3)
    assert 1 in s[J].running


def test_maintenance_freezes_connectivity_decisions():
    s = settled()
    s[J].apply(s[J].ow.request("maintenance on 60", s.now))
    s[J].reaches = set()
    s.run(3)
    assert s.holders() == [J]


# ---------------------------------------------------------------- monitor

def test_monitor_checks_every_interval_and_status_shows_restarts():
    s = settled(monitor=0.5)
    n = s[J].checks
    s.run(2.0)
    assert 3 <= s[J].checks - n <= 5
    assert s[C].checks == 0                            # it holds nothing
    assert "fails=0 restarts=0 key=" in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_a_stopped_resource_is_restarted_in_place():
    s = settled(monitor=0.5)
    s[J].broken.add(1)
    t = s.until(lambda: (1, "restart") in s[J].runs, 0.7)
    assert t <= 0.6
    s.run(0.2)
    assert s.holders() == [J]
    assert s[J].log_has("group 1 (198.18.0.100/24/eth0): stopped: restarting it here "
                        "(failure 1 within 5 s)", "warning")
    assert s[J].log_has("restarted here")
    assert "fails=1 restarts=1 key=" in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_a_removed_address_is_restarted_at_once():
    s = settled(monitor=1.0)
    s[J].remove_addr(1)
    assert (1, "restart") in s[J].runs
    s.run(0.1)
    assert s.holders() == [J]
    assert s[J].log_has("address 198.18.0.100 removed: restarting it here")


def test_three_removals_move_the_group():
    s = settled(monitor=1.0)
    for k in range(3):
        s.until(lambda: 1 in s[J].running and not s[J].ow.gs[1].busy, 1.0)
        s[J].remove_addr(1)
    t = s.until(lambda: s.holders() == [C], 1.0)
    assert t < 0.5
    assert s[J].log_has("3 failures within 10 s: moving it to caesar", "error")
    s.run(2)
    assert s.holders() == [C]


def test_without_monitor_a_removed_address_is_only_logged():
    s = settled()
    s[J].remove_addr(1)
    s.run(1)
    assert (1, "restart") not in s[J].runs
    assert s[J].log_has("removed under hb; not restarted")


def test_removal_during_a_stop_is_ours():
    s = settled(monitor=1.0)
    s[J].apply(s[J].ow.request("standby", s.now))
    s.until(lambda: s[J].ow.gs[1].busy == "stop", 1.0)
    s[J].remove_addr(1)
    s.until(lambda: s.holders() == [C], 1.0)
    assert (1, "restart") not in s[J].runs


def test_a_hung_check_is_a_failure():
    s = settled(monitor=0.5)
    s[J].hung.add(1)
    s.run(0.5 + health.monitor_timeout(0.5) + 0.1)
    assert s[J].log_has("no answer within 2 s: restarting it here")


def test_alone_it_keeps_restarting():
    s = settled(monitor=0.5)
    s.queue.clear()
    s[C].ow = None
    s.boxes[C].step = lambda: None
    s.deliver = lambda box, f: None
    s.run(1)
    for _ in range(4):
        s[J].remove_addr(1)
        s.until(lambda: 1 in s[J].running and not s[J].ow.gs[1].busy, 1.0)
    assert s.holders() == [J] and s[J].ow.mon.restarts(1, s.now) == 4


def test_next_due_wakes_the_loop_for_checks_and_the_grace():
    s = settled(monitor=0.5)
    ow = s[J].ow
    assert ow.next_due() <= ow.mon.next_due() + 0.001
    s[J].reaches = set()
    s.until(lambda: ow.decider.worse_since is not None, DEADPING + 0.5)
    assert ow.next_due() <= ow.decider.due() + 0.001
