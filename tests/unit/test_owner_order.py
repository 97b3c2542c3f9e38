"""The order of group starts and stops (resource_order), with owner's fake clock.

Heartbeat starts groups one after another in haresources order and stops them in the
reverse order; `resource_order parallel` starts and stops them all at once."""

from __future__ import annotations

import pytest

from hb import actions, owner
from hb.settings import Config, Group, Medium, Resource

J, C = "julius", "caesar"


def config(order: str | None, n: int = 3, af: str = "on") -> Config:
    gs = [Group(i + 1, J, [Resource("IPaddr", ["198.18.0.%d" % (100 + i)], "x")])
          for i in range(n)]
    cfg = Config(node=J, nodes=[J, C], keepalive=0.1, deadtime=0.5, warntime=0.3,
                 initdead=1.0, auto_failback=af, media=[Medium("bcast", "eth0")], groups=gs)
    if order is not None:
        cfg.resource_order = order
    return cfg


class Agents:
    """Runs every Run the owner asks for; each takes `took` seconds (fake clock)."""

    def __init__(self, ow: owner.Owner, took: float = 0.5) -> None:
        self.ow, self.took, self.now = ow, took, 0.0
        self.next_beat, self.seq = 0.0, 0
        self.jobs: list[tuple[float, int, str]] = []
        self.log: list[tuple[float, str, int]] = []    # (time, start|stop|done-..., group)

    def apply(self, out: list) -> None:
        for a in out:
            if isinstance(a, actions.Run) and a.action in ("start", "stop"):
                self.log.append((self.now, a.action, a.group))
                self.jobs.append((self.now + self.took, a.group, a.action))
            elif isinstance(a, actions.Run):
                self.jobs.append((self.now, a.group, a.action))

    def run(self, until: float, step: float = 0.01) -> None:
        while self.now < until:
            self.now = round(self.now + step, 6)
            if self.now >= self.next_beat:            # our own heartbeat, as hb-beat's
                self.next_beat, self.seq = self.now + 0.1, self.seq + 1
                f = {"t": "status", "st": self.ow.state_fields()["st"], "dt": "1f4",
                     "src": J, "seq": "%x" % self.seq, "hg": "1", "_via": "local",
                     "_self": "1"}
                self.apply(self.ow.message(f, self.now))
            for job in sorted(j for j in self.jobs if j[0] <= self.now):
                self.jobs.remove(job)
                _, i, action = job
                rc = 3 if action == "status" else 0       # status: not running
                if action in ("start", "stop"):
                    self.log.append((self.now, "done-" + action, i))
                self.apply(self.ow.agent_done(i, action, rc, self.now))
            self.apply(self.ow.tick(self.now))

    def order(self, action: str) -> list[int]:
        return [g for _, a, g in self.log if a == action]

    def at(self, action: str, i: int) -> float:
        return next(t for t, a, g in self.log if a == action and g == i)


def alone(order: str | None) -> Agents:
    """A node alone: at initdead it takes its three groups."""
    ow = owner.Owner(config(order), 0.0, "d")
    ag = Agents(ow)
    ag.apply(ow.begin(0.0))
    ag.run(3.5)
    return ag


def test_serial_is_the_default_start_in_file_order_one_after_another():
    ag = alone(None)
    assert ag.order("start") == [1, 2, 3]
    for i in (2, 3):                          # the next starts when the previous finished
        assert ag.at("start", i) >= ag.at("done-start", i - 1)
        assert ag.at("start", i) - ag.at("done-start", i - 1) < 0.05
    assert ag.at("start", 1) < 1.1            # the first does not wait: initdead 1 s
    assert set(ag.ow.held()) == {1, 2, 3}


def test_serial_stops_in_reverse_order_one_after_another():
    ag = alone("serial")
    ag.apply(ag.ow.shutdown(ag.now))
    ag.run(ag.now + 3)
    assert ag.order("stop") == [3, 2, 1]
    for i in (2, 1):
        assert ag.at("stop", i) >= ag.at("done-stop", i + 1)
    assert not ag.ow.held()


def test_parallel_starts_and_stops_all_at_once():
    ag = alone("parallel")
    assert sorted(ag.order("start")) == [1, 2, 3]
    assert len({ag.at("start", i) for i in (1, 2, 3)}) == 1
    ag.apply(ag.ow.shutdown(ag.now))
    ag.run(ag.now + 3)
    assert sorted(ag.order("stop")) == [1, 2, 3]
    assert len({ag.at("stop", i) for i in (1, 2, 3)}) == 1


@pytest.mark.parametrize("order", ["serial", "parallel"])
def test_a_failed_start_does_not_block_the_next_group(order):
    ow = owner.Owner(config(order), 0.0, "d")
    ag = Agents(ow)
    real = ow.agent_done

    def done(i, action, rc, now):
        return real(i, action, 1 if (i, action) == (1, "start") else rc, now)

    ow.agent_done = done                 # type: ignore[method-assign]
    ag.apply(ow.begin(0.0))
    ag.run(4.0)
    assert sorted(ag.order("start")) == [1, 2, 3]
    assert {2, 3} <= set(ow.held())
