"""health.py with a fake clock: ping reach, carrier, ipfail's decision, monitor bookkeeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from hb import health
from hb.settings import PingNode

KA, DEADPING, INITDEAD = 0.1, 1.0, 2.0
P1, P2 = "192.0.2.254", "198.51.100.254"
G = "uplinks"


def reach(now=0.0, ifaces=("eth0",), pings=None):
    pings = pings if pings is not None else [
        PingNode(P1, [P1]), PingNode(G, ["203.0.113.1", "203.0.113.2"], group=True)]
    return health.Reach(pings, DEADPING, INITDEAD, KA, now, ifaces)


def run(r, t0, t1, replies=(), step=KA):
    """Tick r from t0 to t1; replies: names answering at every keepalive."""
    changes = []
    t = t0
    while t <= t1 + 1e-9:
        for name in replies:
            changes += r.reply(name, "", t)
        changes += r.tick(t)
        t = round(t + step, 6)
    return changes


# ---------------------------------------------------------------- ping reach

def test_first_reply_is_up_at_once():
    r = reach()
    assert r.score() is None and not r.judged()
    ch = r.reply(P1, P1, 0.3)
    assert [(c.kind, c.name, c.status) for c in ch] == [("ping", P1, "up")]
    assert r.pings[P1].since == 0.3
    assert r.count() == 1 and r.score() is None        # the group is not judged yet
    r.reply(G, "203.0.113.2", 0.4)
    assert r.judged() and r.score() == 2


def test_never_answering_is_dead_after_initdead_or_deadping():
    r = reach()
    assert r.tick(INITDEAD) == []
    ch = r.tick(INITDEAD + 0.01)
    assert {c.name for c in ch} == {P1, G} and all(c.status == "dead" for c in ch)
    assert r.score() == 0 and r.judged()
    r2 = health.Reach([PingNode(P1, [P1])], 3.0, 1.0, KA, 0.0)
    assert r2.tick(2.9) == [] and r2.tick(3.01)[0].status == "dead"


def test_dead_after_deadping_of_silence():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    assert r.score() == 2
    fresh = run(r, 1.1, 1.0 + DEADPING, [G])       # silent for deadping - 2 keepalives:
    assert [(c.kind, c.name, c.status, c.text) for c in fresh] == [("fresh", P1, "dead", "")]
    assert r.fresh() == 1 and r.score() == 2 and r.fields()["pfresh"] == "1"
    ch = r.tick(1.0 + DEADPING + 0.02)
    assert [(c.name, c.status) for c in ch] == [(P1, "dead")]
    assert "no reply for 1.02 s" in ch[0].text
    assert r.score() == 1 and r.pings[P1].since == pytest.approx(2.02)


@pytest.mark.parametrize("lost", [1, 2, 5])
def test_lost_replies_change_nothing(lost):
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    t = 1.0 + lost * KA
    assert run(r, 1.1, t, [G]) == []
    assert run(r, t + KA, 3.0, [P1, G]) == []
    assert r.score() == 2


def test_dead_counts_up_again_only_after_answering_deadping():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    run(r, 1.1, 2.5, [G])
    assert r.pings[P1].status == "dead"
    assert run(r, 2.6, 2.6 + DEADPING - KA, [P1, G]) == []
    assert r.pings[P1].status == "dead" and r.score() == 1
    ch = run(r, 2.6 + DEADPING, 2.6 + DEADPING, [P1, G])
    assert [(c.name, c.status) for c in ch] == [(P1, "up")]
    assert "answering for 1.00 s" in ch[0].text
    assert r.score() == 2


def test_a_flapping_node_stays_dead():
    """Answering half a deadping, silent a whole one, and again: never counted up."""
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    run(r, 1.1, 2.5, [G])
    t = 2.6
    for _ in range(4):
        assert not [c for c in run(r, t, t + 0.5, [P1, G]) if c.name == P1]
        assert not [c for c in run(r, t + 0.6, t + 1.7, [G]) if c.name == P1]
        t += 1.8
    assert r.pings[P1].status == "dead"


def test_two_lost_replies_keep_the_run_three_break_it():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    run(r, 1.1, 2.5, [G])
    run(r, 2.6, 2.9, [P1, G])
    run(r, 3.0, 3.1, [G])                 # two replies lost: the run goes on
    ch = run(r, 3.2, 3.6, [P1, G])
    assert [(c.name, c.status) for c in ch] == [(P1, "up")]
    assert r.pings[P1].since == pytest.approx(3.6)
    r2 = reach()
    run(r2, 0.0, 1.0, [P1, G])
    run(r2, 1.1, 2.5, [G])
    run(r2, 2.6, 2.9, [P1, G])
    run(r2, 3.0, 3.2, [G])                # three lost: it starts again at 3.3
    assert run(r2, 3.3, 4.2, [P1, G]) == []
    assert [c.status for c in run(r2, 4.3, 4.3, [P1, G])] == ["up"]


def test_group_is_up_while_any_member_answers():
    r = reach()
    r.reply(P1, P1, 0.0)
    for i in range(30):
        addr = "203.0.113.1" if i < 15 else "203.0.113.2"
        r.reply("", addr, i * KA)           # found by its member address
        r.tick(i * KA)
    assert r.pings[G].status == "up"
    r.tick(2.9 + DEADPING + 0.01)
    assert r.pings[G].status == "dead"


def test_unknown_replies_are_ignored():
    r = reach()
    assert r.reply("192.0.2.99", "192.0.2.99", 0.1) == []
    assert r.count() == 0


def test_an_address_in_two_entries_counts_for_both():
    r = health.Reach([PingNode(P1, [P1]), PingNode(G, [P1, P2], group=True)],
                     DEADPING, INITDEAD, KA, 0.0)
    assert {c.name for c in r.reply("", P1, 0.1)} == {P1, G}
    assert r.score() == 2


def test_fields_and_reconfigure():
    r = reach()
    assert r.fields() == {"pings": "0", "pfresh": "0"}
    r.reply(P1, P1, 0.1)
    assert r.fields() == {"pings": "1", "pfresh": "1"}
    r.reconfigure([PingNode(P1, [P1]), PingNode(P2, [P2])], 2.0, INITDEAD, KA, 0.5, ["eth1"])
    assert r.pings[P1].status == "up" and r.pings[P2].status == "init"
    assert r.deadping == 2.0 and r.ifaces == ["eth1"]
    assert health.Reach([], DEADPING, INITDEAD, KA, 0.0).fields() == {}
    assert health.Reach([], DEADPING, INITDEAD, KA, 0.0).score() == 0


# ---------------------------------------------------------------- carrier

def test_carrier_loss_counts_at_once():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    ch = r.link("eth0", False, 1.05)
    assert [(c.kind, c.name, c.status) for c in ch] == [("link", "eth0", "dead")]
    assert r.score() == -1 and r.nolink() == "eth0"
    assert r.fields() == {"pings": "2", "pfresh": "2", "nolink": "eth0"}
    assert r.link("eth0", False, 1.1) == []


def test_carrier_back_counts_after_deadping():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    r.link("eth0", False, 1.0)
    assert r.link("eth0", True, 2.0) == []
    links = [c for c in r.tick(2.0 + DEADPING - 0.01) if c.kind == "link"]
    assert links == [] and r.score() == -1
    ch = [c for c in r.tick(2.0 + DEADPING) if c.kind == "link"]
    assert [(c.kind, c.name, c.status) for c in ch] == [("link", "eth0", "up")]
    assert r.nolink() == "" and r.score() == 0        # the pings died meanwhile


def test_carrier_flapping_stays_lost():
    r = reach()
    r.link("eth0", False, 0.0)
    for k in range(5):
        r.link("eth0", True, 1 + k)
        assert [c for c in r.tick(1 + k + 0.5) if c.kind == "link"] == []
        r.link("eth0", False, 1 + k + 0.6)
    assert r.nolink() == "eth0"


def test_other_interfaces_do_not_count():
    r = reach(ifaces=("eth0", "eth0", "eth2"))
    assert r.ifaces == ["eth0", "eth2"]
    assert r.link("eth1", False, 0.1) == [] and r.nolink() == ""
    r.link("eth2", False, 0.2)
    r.link("eth0", False, 0.3)
    assert r.nolink() == "eth0,eth2"
    r.reconfigure([], DEADPING, INITDEAD, KA, 0.4, ["eth0"])
    assert r.nolink() == "eth0"


# ---------------------------------------------------------------- the decision

def test_peer_score():
    assert health.peer_score({"pings": "2"}, "hb") == 2
    assert health.peer_score({"pings": "2", "nolink": "eth0"}, "hb") == -1
    assert health.peer_score({}, "hb") == 0
    assert health.peer_score({}, "heartbeat") is None
    assert health.peer_score({"pings": "x"}, "heartbeat") is None


def test_describe():
    assert health.describe(None) == "not judged yet"
    assert health.describe(-1, "eth0") == "no carrier on eth0"
    assert health.describe(1) == "1 ping node"
    assert health.describe(0) == "0 ping nodes"


def test_fewer_than_the_peer_gives_after_the_grace():
    d = health.Decider(KA)
    g = KA + min(0.02, KA / 4)
    assert d.grace == pytest.approx(g)
    assert not d.judge(10.0, 0, 1, True, True)
    assert d.due() == pytest.approx(10.0 + g)
    assert not d.judge(10.0 + g - 0.01, 0, 1, True, True)
    assert d.judge(10.0 + g, 0, 1, True, True)
    assert d.judge(10.4, -1, 0, True, True)          # still worse: still true


def test_carrier_loss_waits_only_for_the_peers_word():
    d = health.Decider(KA)
    g = min(health.CARRIER_GRACE, KA)
    assert not d.judge(5.0, -1, 0, True, True)
    assert d.due() == pytest.approx(5.0 + g)
    assert not d.judge(5.0 + g - 0.005, -1, 1, True, True)
    assert d.judge(5.0 + g, -1, 1, True, True)
    assert not d.judge(5.2, -1, -1, True, True)      # the peer lost it too


@pytest.mark.parametrize("mine,peer,alive,holding", [
    (1, 1, True, True),          # equal
    (0, 0, True, True),          # all lost on both sides
    (-1, -1, True, True),        # both without carrier
    (2, 1, True, True),          # better
    (0, 1, False, True),         # peer dead
    (0, 1, True, False),         # holding nothing
    (None, 1, True, True),       # not judged yet
    (0, None, True, True),       # peer's count unknown (Heartbeat peer)
])
def test_nothing_moves(mine, peer, alive, holding):
    d = health.Decider(KA)
    for k in range(50):
        assert not d.judge(k * KA, mine, peer, alive, holding)
    assert d.due() is None


def test_balance_during_the_grace_aborts():
    d = health.Decider(KA)
    assert not d.judge(0.0, 0, 1, True, True)
    assert not d.judge(0.1 * KA, 0, 0, True, True)    # the peer lost it too
    t = 0.35
    assert not d.judge(t, 0, 1, True, True)           # a new episode
    assert not d.judge(t + d.giveup() - 0.01, 0, 1, True, True)
    assert d.judge(t + d.giveup(), 0, 1, True, True)


def test_may_fail_back():
    assert health.may_fail_back(1, 1)
    assert health.may_fail_back(1, 2)
    assert not health.may_fail_back(2, 1)
    assert not health.may_fail_back(0, -1)
    assert health.may_fail_back(None, 0)
    assert health.may_fail_back(1, None)


class Side:
    """One node: its Reach, pinging with a phase, advertising at its own heartbeats."""

    def __init__(self, phase: float, beat_phase: float) -> None:
        self.r = health.Reach([PingNode(P1, [P1])], DEADPING, INITDEAD, KA, 0.0)
        self.phase, self.beat_phase = phase, beat_phase
        self.advertised: tuple | None = None
        self.d = health.Decider(KA)


def simulate(phases, lose_a: float, lose_b: float | None, until: float = 8.0,
             transit: float = 0.002, tick: float = 0.025, use_fresh: bool = True):
    """Two nodes; the ping node stops answering A at lose_a and B at lose_b.
    Returns the first time A (which holds the groups) decides to give, or None."""
    a, b = Side(phases[0], phases[1]), Side(phases[2], phases[3])
    t = 0.0
    ka_steps = {id(a): a.phase, id(b): b.phase}
    next_ping = dict(ka_steps)
    next_beat = {id(a): a.beat_phase, id(b): b.beat_phase}
    inbox = []                                      # (arrival, (pings, pfresh)) for A
    told = None                                     # B's counts as last sent in t=reach
    while t < until:
        for s, lose in ((a, lose_a), (b, lose_b)):
            if t >= next_ping[id(s)]:
                next_ping[id(s)] += KA
                if lose is None or t < lose:
                    s.r.reply(P1, P1, t + transit)
            s.r.tick(t)
            if t >= next_beat[id(s)]:
                next_beat[id(s)] += KA
                if s is b:
                    inbox.append((t + transit, (b.r.score(), b.r.fresh())))
            if s is b and (b.r.score(), b.r.fresh()) != told:   # t=reach: at once
                told = (b.r.score(), b.r.fresh())
                inbox.append((t + transit, told))
        while inbox and inbox[0][0] <= t:
            a.advertised = inbox.pop(0)[1]
        peer, fresh = a.advertised or (None, None)
        if a.d.judge(t, a.r.score(), peer, True, True, fresh if use_fresh else None):
            return t
        t = round(t + tick, 6)
    return None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, KA - 0.001), min_size=4, max_size=4), st.floats(3.0, 4.0))
def test_losing_the_ping_node_on_both_sides_moves_nothing(phases, lose):
    assert simulate(phases, lose, lose) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, KA - 0.001), min_size=4, max_size=4), st.floats(3.0, 4.0))
def test_losing_it_alone_gives_at_deadping_without_the_grace(phases, lose):
    """The peer still hears the ping node lately (pfresh): no grace to wait."""
    t = simulate(phases, lose, None)
    assert t is not None
    assert lose + DEADPING - KA <= t <= lose + DEADPING + 0.025 + 1e-6


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, KA - 0.001), min_size=4, max_size=4), st.floats(3.0, 4.0))
def test_without_pfresh_losing_it_alone_gives_after_the_grace(phases, lose):
    """A peer that does not say pfresh (an older hb): the grace is waited."""
    t = simulate(phases, lose, None, use_fresh=False)
    assert t is not None
    assert lose + DEADPING - KA + KA <= t + 1e-6
    assert t <= lose + DEADPING + KA + 0.02 + 2 * 0.025 + 1e-6     # two ticks late at most


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, KA - 0.001), min_size=4, max_size=4), st.floats(3.0, 4.0),
       st.floats(0.0, 0.005))
def test_the_peer_losing_it_a_little_later_moves_nothing(phases, lose, later):
    """The ping node goes silent for A, then a few ms later for B (one ping node
    dying, its last replies a little slower to one of them)."""
    t = simulate(phases, lose, lose + later)
    assert t is None


def test_no_pfresh_when_deadping_is_short():
    r = health.Reach([PingNode(P1, [P1])], 3 * KA, INITDEAD, KA, 0.0)
    r.reply(P1, P1, 0.1)
    assert r.fresh_for is None and r.fields() == {"pings": "1"}


def test_a_stale_ping_node_is_fresh_again_on_its_next_reply():
    r = reach()
    run(r, 0.0, 1.0, [P1, G])
    run(r, 1.1, 1.0 + DEADPING - KA, [G])
    assert r.fresh() == 1
    ch = r.reply(P1, P1, 1.0 + DEADPING - KA / 2)
    assert [(c.kind, c.status) for c in ch] == [("fresh", "up")]
    assert r.fresh() == 2 and r.score() == 2


def test_the_peers_fresh_count_skips_the_grace():
    d = health.Decider(KA)
    assert d.judge(1.0, 0, 1, True, True, peer_fresh=1)          # the loss is ours alone
    d = health.Decider(KA)
    assert not d.judge(1.0, 0, 1, True, True, peer_fresh=0)      # it may be dying for both
    assert d.judge(1.0 + d.giveup(), 0, 1, True, True, peer_fresh=0)
    d = health.Decider(KA)
    assert not d.judge(1.0, -1, 1, True, True, peer_fresh=1)     # carrier: its own grace


# ---------------------------------------------------------------- monitor

def test_monitor_off_checks_nothing():
    m = health.Monitor(None)
    m.track(1, 0.0)
    assert not m.on and m.due(100.0) == [] and m.next_due() is None
    assert m.recent_fails(1, 0.0) == []


def test_monitor_due_times_and_results():
    m = health.Monitor(1.0)
    assert m.timeout == 2.0
    m.track(1, 0.0)
    m.track(2, 0.5)
    assert m.next_due() == 1.0
    assert m.due(0.9) == []
    [(g, tok)] = m.due(1.0)
    assert g == 1 and m.due(1.2) == []               # in flight: not again
    assert m.next_due() == pytest.approx(1.5)
    assert [g for g, _ in m.due(1.5)] == [2]
    assert m.result(1, tok, True, 1.01) == health.OK
    assert m.groups[1].due == pytest.approx(2.01)
    assert m.result(1, tok, True, 1.02) is None      # once only


def test_monitor_failures_restart_then_move():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    verdicts = []
    t = 1.0
    for _ in range(3):
        [(g, tok)] = m.due(t)
        verdicts.append(m.result(g, tok, False, t))
        m.restarted(1, t)
        m.track(1, t + 0.1)
        t += 1.1
    assert verdicts == [health.RESTART, health.RESTART, health.MOVE]
    assert len(m.recent_fails(1, t)) == 3 and m.restarts(1, t) == 3


def test_failures_spread_over_more_than_ten_intervals_only_restart():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    for k in range(6):
        assert m.removed(1, k * 5.1) == health.RESTART
    assert len(m.recent_fails(1, 30.0)) == 2


def test_stale_results_are_ignored():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    [(g, tok)] = m.due(1.0)
    m.untrack(1)
    assert not m.tracked(1)
    assert m.result(1, tok, False, 1.1) is None
    m.track(1, 2.0)
    assert m.result(1, tok, False, 2.1) is None       # an old token
    assert m.result(1, 0, False, 2.1) is None
    assert m.result(7, 1, False, 2.1) is None
    assert m.removed(7, 2.1) is None


def test_a_check_past_its_timeout_is_a_failure():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    [(g, tok)] = m.due(1.0)
    assert m.expired(2.9) == []
    assert m.expired(3.0) == [(1, health.RESTART)]
    assert m.result(1, tok, True, 3.5) is None         # came back too late
    assert m.groups[1].due == pytest.approx(4.0)


def test_removed_address_is_a_failure_at_once():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    [(g, tok)] = m.due(1.0)
    assert m.removed(1, 1.2) == health.RESTART
    assert m.result(1, tok, True, 1.3) is None         # the check in flight is void
    assert m.removed(1, 1.5) == health.RESTART
    assert m.removed(1, 1.9) == health.MOVE


def test_history_survives_untrack_and_forget():
    m = health.Monitor(1.0)
    m.track(1, 0.0)
    m.removed(1, 0.5)
    m.restarted(1, 0.5)
    m.untrack(1)
    m.untrack(1)
    assert m.restarts(1, 10.0) == 1 and len(m.recent_fails(1, 1.0)) == 1
    m.track(1, 20.0)
    assert m.restarts(1, 20.0) == 1
    m.forget_fails(1)
    assert m.recent_fails(1, 20.0) == []
    assert m.restarts(1, 0.5 + 3600.0) == 1 and m.restarts(1, 0.5 + 3600.1) == 0
    assert m.restarts(9, 0.0) == 0


def test_restarts_are_kept_an_hour():
    m = health.Monitor(5.0)
    m.track(1, 0.0)
    for k in range(10):
        m.restarted(1, k * 600.0)
    assert m.restarts(1, 5400.0) == 7            # 1800 ... 5400
    assert len(m.groups[1].restarts) == 7


def test_set_interval_brings_due_times_forward():
    m = health.Monitor(30.0)
    m.track(1, 0.0)
    m.set_interval(1.0, 5.0)
    assert m.due(6.0) != []
    m.set_interval(None, 7.0)
    assert not m.on and m.due(100.0) == []


@pytest.mark.parametrize("interval,timeout", [
    (None, 2.0), (0.5, 2.0), (1.0, 2.0), (5.0, 10.0), (30.0, 60.0), (120.0, 60.0)])
def test_monitor_timeout(interval, timeout):
    assert health.monitor_timeout(interval) == timeout
