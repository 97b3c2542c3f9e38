"""The group policy: (group state x event) -> (agent action, next state).  Pure data.

owner.py decides who should run a group (`assign`) and feeds each group's events
here; this table alone says what then runs and which state follows.
"""

from __future__ import annotations

from hb.groups import FAILED, RUNNING, STARTING, STOPPED, STOPPING

# (group state, wanted here) -> (agent action, next state); the peer gate and
# split brain are decided before this table is consulted.
GROUP_TABLE: dict[tuple[str, bool], tuple[str, str]] = {
    (STOPPED, True): ("start", STARTING),
    (RUNNING, False): ("stop", STOPPING),
    (STOPPING, False): ("stop", STOPPING),      # a failed stop, retried
    (STOPPING, True): ("stop", STOPPING),       # finish the stop first
}

# (action, state while running, succeeded) -> next state
RESULT_TABLE: dict[tuple[str, str, bool], str] = {
    ("start", STARTING, True): RUNNING,
    ("start", STARTING, False): FAILED,
    ("start", RUNNING, True): RUNNING,          # re-announce
    ("start", RUNNING, False): RUNNING,
    ("stop", STOPPING, True): STOPPED,
    ("stop", STOPPING, False): STOPPING,
    ("restart", RUNNING, True): RUNNING,        # monitor: stopped resources started again
    ("restart", RUNNING, False): RUNNING,
}
