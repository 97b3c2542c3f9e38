"""The group policy table (policy.TABLE), walked pair by pair through a real Owner.

For every (state, event) pair: the table's entry is the one written below, and an
Owner whose one group is in that state, with the facts that make that event, runs
exactly the entry's action on its next tick and leaves the group in the entry's
next state.  Fake clock, no sockets."""

from __future__ import annotations

import itertools

import pytest

from hb import groups, owner, policy
from hb.actions import Run
from hb.settings import Config, Group, Medium, Resource

J, C = "julius", "caesar"
S, E = policy.STATES, policy.EVENTS

# state: actions for paused, unwanted, wanted, wanted_taken, reannounce, reannounce_taken
EXPECTED = {
    "stopped": (None, None, "start", None, "start", None),
    "starting": (None, None, None, None, None, None),
    "running": (None, "stop", None, None, "reannounce", "reannounce"),
    "stopping": (None, "stop", "stop", "stop", "stop", "stop"),
    "failed": (None, None, None, None, None, None),
    "stuck": (None, "retry", "retry", "retry", "retry", "retry"),
    "probing": (None, None, None, None, None, None),
}
NEXT = {"start": "starting", "stop": "stopping", "reannounce": "running", "retry": "stopping"}
RUNS = {"start": "start", "stop": "stop", "reannounce": "start", "retry": "stop"}


def config(order: str = "serial") -> Config:
    g = Group(1, J, [Resource("IPaddr", ["198.18.0.100"], "x")])
    cfg = Config(node=J, nodes=[J, C], keepalive=0.1, deadtime=1.0, warntime=0.5,
                 initdead=2.0, auto_failback="on", media=[Medium("bcast", "eth0")],
                 groups=[g])
    cfg.resource_order = order
    return cfg


def owner_in(state: str, event: str, due: bool = True, order: str = "serial") -> owner.Owner:
    """An Owner, communication up, peer not heard, its group in `state` (idle), with
    the facts that make `event`."""
    ow = owner.Owner(config(order), 0.0, "d")
    ow.comm_up = True
    gs = ow.gs[1]
    gs.state = groups.FAILED if state == policy.STUCK else state
    gs.dirty = state == policy.STUCK
    gs.retry_at = -1.0 if due else 100.0
    taken = event in (policy.WANTED_TAKEN, policy.REANNOUNCE_TAKEN)
    gs.assign = groups.PEER if event == policy.UNWANTED else groups.ME
    gs.reannounce = event in (policy.REANNOUNCE, policy.REANNOUNCE_TAKEN)
    gs.split = gs.dup = taken            # split brain and duplicates: handled already
    if taken:
        ow.peer.stuck = {1}              # the peer says it may run there
    if event == policy.PAUSED:
        ow.maint_until = 100.0
    return ow


def test_every_pair_is_in_the_table():
    assert set(policy.TABLE) == set(itertools.product(S, E))
    assert set(EXPECTED) == set(S)


@pytest.mark.parametrize("order", ["serial", "parallel"])
@pytest.mark.parametrize("state,event", list(itertools.product(S, E)))
def test_pair(state, event, order):
    want = EXPECTED[state][E.index(event)]
    step = policy.TABLE[state, event]
    assert step.action == want
    assert step.next == (NEXT[want] if want else state)
    ow = owner_in(state, event, order=order)
    out = ow.tick(0.1)
    runs = [a for a in out if isinstance(a, Run)]
    assert runs == ([Run(1, RUNS[want])] if want else [])
    gs = ow.gs[1]
    assert policy.state_of(gs) == step.next
    assert gs.busy == (RUNS[want] if want else None)
    if want == "reannounce":
        assert not gs.reannounce


@pytest.mark.parametrize("state", [policy.STOPPING, policy.STUCK])
def test_retries_wait_for_their_time(state):
    ow = owner_in(state, policy.WANTED, due=False)
    assert not [a for a in ow.tick(0.1) if isinstance(a, Run)]
    assert policy.state_of(ow.gs[1]) == state


def test_stuck_not_retried_once_a_reboot_is_decided():
    ow = owner_in(policy.STUCK, policy.UNWANTED)
    ow.rebooting = True
    assert not [a for a in ow.tick(0.1) if isinstance(a, Run)]
    assert policy.state_of(ow.gs[1]) == policy.STUCK


@pytest.mark.parametrize("paused,want,peer_has,reannounce",
                         list(itertools.product((False, True), repeat=4)))
def test_event(paused, want, peer_has, reannounce):
    ev = policy.event(paused, want, peer_has, reannounce)
    if paused:
        assert ev == policy.PAUSED
    elif not want:
        assert ev == policy.UNWANTED
    else:
        assert ev == {(False, False): policy.WANTED, (True, False): policy.WANTED_TAKEN,
                      (False, True): policy.REANNOUNCE,
                      (True, True): policy.REANNOUNCE_TAKEN}[peer_has, reannounce]


RESULTS = {        # (action, state while it ran, succeeded) -> next state, flags clear
    ("start", "starting", True): "running",
    ("start", "starting", False): "stopping",
    ("start", "running", True): "running",
    ("start", "running", False): "running",
    ("stop", "stopping", True): "stopped",
    ("stop", "stopping", False): "stopping",
    ("restart", "running", True): "running",
    ("restart", "running", False): "running",
}


@pytest.mark.parametrize("action,state,ok", list(RESULTS))
def test_result(action, state, ok):
    """Each agent result moves the group as RESULT_TABLE says (maintenance on, so
    that no new decision follows in the same pass)."""
    assert policy.RESULT_TABLE == RESULTS
    ow = owner_in(state, policy.PAUSED)
    ow.gs[1].busy = action
    ow.agent_done(1, action, 0 if ok else 1, 0.1)
    assert ow.gs[1].state == RESULTS[action, state, ok]
    assert ow.gs[1].busy is None


def test_result_flags():
    """The flags after the table: a failed start is rolled back (FAILED once its stop
    succeeds); a stop failing for good after STOP_RETRIES tries is verified by status,
    and a group whose status then says running is stuck."""
    ow = owner_in("starting", policy.PAUSED)
    ow.agent_done(1, "start", 1, 0.1)
    assert (ow.gs[1].state, ow.gs[1].rollback) == ("stopping", True)
    ow.agent_done(1, "stop", 0, 0.2)
    assert (ow.gs[1].state, ow.gs[1].rollback) == ("failed", False)
    ow = owner_in("stopping", policy.PAUSED)
    ow.gs[1].stop_tries = groups.STOP_RETRIES - 1
    out = ow.agent_done(1, "stop", 1, 0.1)
    assert Run(1, "status") in out and ow.gs[1].verify
    ow.agent_done(1, "status", 0, 0.2)
    assert policy.state_of(ow.gs[1]) == policy.STUCK
