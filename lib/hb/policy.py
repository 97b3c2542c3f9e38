"""The group policy: (group state x event) -> (action, next state).  Pure data.

owner.py decides who should run each group (`assign`: split brain, failback,
handover, silence); this table alone then says what runs here.  Each pass of
Owner._reconcile reads one event per idle group (no agent running for it) from
what is true of it now:

    paused            maintenance, or communication not up yet: decide nothing
    unwanted          not to run here (assigned to the peer, shutting down, silent)
    wanted            to run here, and the peer does not advertise it
    wanted_taken      to run here, but the live peer advertises it (or says its
                      stop failed there): never started here meanwhile
    reannounce        wanted, and clients must learn again where it runs (after a
                      split brain, a duplicate, a partial probe); peer free
    reannounce_taken  the same while the peer still advertises it

The state is the group's (groups.STATES), with `stuck` for a group FAILED whose
stop failed for good (it may still run here).  Actions:

    start       run its start (haresources order under resource_order serial)
    stop        run its stop (reverse order); a stop that failed is retried once
                its retry time (STOP_RETRY after each failure) has come
    reannounce  run its start again while it runs (re-sends gratuitous ARP)
    retry       stuck: run its stop again, every STUCK_RETRY s, unless a reboot
                is decided (stop_failure reboot)

The results of the agents (RESULT_TABLE) are the other half: (action, state while
it ran, succeeded) -> next state, before the failure rules of results.py.
"""

from __future__ import annotations

from typing import NamedTuple

from hb.groups import FAILED, PROBING, RUNNING, STARTING, STOPPED, STOPPING, GroupState

STUCK = "stuck"
STATES = (STOPPED, STARTING, RUNNING, STOPPING, FAILED, STUCK, PROBING)
PAUSED, UNWANTED, WANTED, WANTED_TAKEN, REANNOUNCE, REANNOUNCE_TAKEN = (
    "paused", "unwanted", "wanted", "wanted_taken", "reannounce", "reannounce_taken")
EVENTS = (PAUSED, UNWANTED, WANTED, WANTED_TAKEN, REANNOUNCE, REANNOUNCE_TAKEN)
START, STOP, RETRY = "start", "stop", "retry"     # REANNOUNCE is also an action


class Step(NamedTuple):
    action: str | None                 # None: nothing to run
    next: str                          # the group's state once the action is taken


def _same(state: str) -> dict[str, Step]:
    return {e: Step(None, state) for e in EVENTS}


def _row(state: str, **steps: Step) -> dict[tuple[str, str], Step]:
    row = _same(state)
    row.update(steps)
    return {(state, e): s for e, s in row.items()}


TABLE: dict[tuple[str, str], Step] = {
    **_row(STOPPED,
           wanted=Step(START, STARTING),
           reannounce=Step(START, STARTING)),
    **_row(STARTING),                  # the start is running: its result decides
    **_row(RUNNING,
           unwanted=Step(STOP, STOPPING),
           reannounce=Step(REANNOUNCE, RUNNING),
           reannounce_taken=Step(REANNOUNCE, RUNNING)),
    **_row(STOPPING,                   # a failed stop, retried; finish it first
           unwanted=Step(STOP, STOPPING), wanted=Step(STOP, STOPPING),
           wanted_taken=Step(STOP, STOPPING), reannounce=Step(STOP, STOPPING),
           reannounce_taken=Step(STOP, STOPPING)),
    **_row(FAILED),                    # failed to start here: left until reassigned
    **_row(STUCK,
           unwanted=Step(RETRY, STOPPING), wanted=Step(RETRY, STOPPING),
           wanted_taken=Step(RETRY, STOPPING), reannounce=Step(RETRY, STOPPING),
           reannounce_taken=Step(RETRY, STOPPING)),
    **_row(PROBING),                   # the status is running: its result decides
}


def state_of(gs: GroupState) -> str:
    """The policy's state of a group: its own, or `stuck`."""
    return STUCK if gs.state == FAILED and gs.dirty else gs.state


def event(paused: bool, want: bool, peer_has: bool, reannounce: bool) -> str:
    """The event of one idle group in one pass (see the module docstring)."""
    if paused:
        return PAUSED
    if not want:
        return UNWANTED
    if reannounce:
        return REANNOUNCE_TAKEN if peer_has else REANNOUNCE
    return WANTED_TAKEN if peer_has else WANTED


# (action, state while running, succeeded) -> next state; results.agent_done then
# applies the flags: a stop that ends a failed start's rollback leaves FAILED, a
# stop failing for good leaves FAILED and dirty (stuck), or is verified by status.
RESULT_TABLE: dict[tuple[str, str, bool], str] = {
    ("start", STARTING, True): RUNNING,
    ("start", STARTING, False): STOPPING,       # stop what may have started (rollback)
    ("start", RUNNING, True): RUNNING,          # re-announce
    ("start", RUNNING, False): RUNNING,
    ("stop", STOPPING, True): STOPPED,
    ("stop", STOPPING, False): STOPPING,
    ("restart", RUNNING, True): RUNNING,        # monitor: stopped resources started again
    ("restart", RUNNING, False): RUNNING,
}
