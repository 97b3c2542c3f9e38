"""What the pure core asks hb-watch to do: the actions its events return.

Owner's events (message, request, tick, agent_done, ...) each return a list of
these; hb-watch carries them out in order.  Pure: plain frozen records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Send:
    """A message for hb-beat to send now (beat.fifo)."""
    fields: dict


@dataclass(frozen=True)
class Run:
    """Run a group's agents: start (left to right), stop (right to left), status."""
    group: int
    action: str


@dataclass(frozen=True)
class Check:
    """Check a running group's resources (monitor), off the loop; answer check_done."""
    group: int
    token: int


@dataclass(frozen=True)
class Log:
    level: str          # debug | info | warning | error
    text: str


@dataclass(frozen=True)
class Save:
    """state and status changed: rewrite them."""


@dataclass(frozen=True)
class Watchdog:
    """Our own heartbeat went out: feed the watchdog."""


@dataclass(frozen=True)
class Exit:
    code: int


@dataclass(frozen=True)
class Reboot:
    """stop_failure reboot: a group could not be stopped; run the reboot command."""
    group: int


@dataclass(frozen=True)
class Alert:
    """A group is held because its stop failed: tell the admins (the group's MailTo)."""
    group: int
    text: str


Action = Union[Send, Run, Check, Log, Save, Watchdog, Exit, Reboot, Alert]
