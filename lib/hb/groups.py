"""A resource group as this node sees it: its states and its record.  Pure.

`state` is what runs here (stopped, starting, running, stopping, failed, probing);
`assign` who should run it (ME, PEER, or None: not yet decided); `busy` the agent
action under way.  The flags below record what the policy (owner.py) must still
honour: a stop that failed, a split brain, a failback owed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hb.settings import Group

ME, PEER = "me", "peer"
STOPPED, STARTING, RUNNING, STOPPING, FAILED, PROBING = (
    "stopped", "starting", "running", "stopping", "failed", "probing")
STATES = (STOPPED, STARTING, RUNNING, STOPPING, FAILED, PROBING)
HELD = (STARTING, RUNNING, STOPPING, PROBING)
STOP_RETRY = 1.0
STOP_RETRIES = 10
STUCK_RETRY = 60.0        # s: a group that failed to stop for good is tried again (hold)


@dataclass
class GroupState:
    group: Group
    state: str = STOPPED
    assign: str | None = None
    busy: str | None = None          # agent action running
    since: float = 0.0
    fails: int = 0
    stop_tries: int = 0
    retry_at: float = 0.0
    dirty: bool = False              # a stop failed for good: may still run here
    rollback: bool = False           # stopping what a failed start left: FAILED when done
    verify: bool = False             # status after the last failed stop: is it still up?
    needs_failback: bool = False     # taken because its preferred node died
    split: bool = False              # held on both sides: waiting for the peer to let go
    reannounce: bool = False
    recovered: bool = False          # held by this node's previous hb-watch
    dup: bool = False                # the peer advertises it too, while it runs here
    yield_: bool = False             # held while this node was frozen
