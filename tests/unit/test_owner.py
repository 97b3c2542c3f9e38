"""owner.py with a fake clock: two Owners joined by a simulated hb-beat and agents."""

from __future__ import annotations

import re

import pytest

from hb import owner
from hb.actions import Exit, Log, Reboot, Run, Save, Send, Watchdog
from hb.settings import Config, Group, Medium, Resource

J, C = "julius", "caesar"
KEEPALIVE, DEADTIME, INITDEAD = 0.1, 0.5, 1.0
STEP = 0.02


def config(node: str, af: str = "on", groups=((J, "198.18.0.100"), (C, "198.18.0.101"))):
    gs = [Group(i + 1, n, [Resource("IPaddr", [a], a)]) for i, (n, a) in enumerate(groups)]
    return Config(node=node, nodes=[J, C], keepalive=KEEPALIVE, deadtime=DEADTIME,
                  warntime=0.3, initdead=INITDEAD, auto_failback=af,
                  media=[Medium("bcast", "eth0"), Medium("serial", "/dev/ttyS0")], groups=gs)


class Box:
    """One node: its hb-beat (sequencing, heartbeats) and its agents."""

    def __init__(self, sim: "Sim", name: str) -> None:
        self.sim, self.name = sim, name
        self.gen = 0
        self.running: set[int] = set()       # resources really up on this box
        self.fail_start: set[int] = set()
        self.fail_stop: set[int] = set()
        self.agent_time = 0.1
        self.ow: owner.Owner | None = None
        self.beating = False
        self.logs: list[tuple[str, str]] = []
        self.sent: list[dict] = []
        self.runs: list[tuple[int, str]] = []
        self.watchdog = 0
        self.frozen = False
        self.exit: int | None = None
        self.state: dict = {}
        self.jobs: list[tuple[float, int, str]] = []
        self.seq = 0
        self.next_beat = 0.0

    def start(self, af: str = "on", held=(), digest: str = "d1") -> None:
        self.gen += 1
        self.seq = 0
        self.beating = True
        self.exit = None
        self.runs = []
        self.next_beat = self.sim.now
        self.jobs: list[tuple[float, int, str]] = []
        self.ow = owner.Owner(config(self.name, af), self.sim.now, digest, held)
        self.state = self.ow.state_fields()
        self.apply(self.ow.begin(self.sim.now))

    def kill(self) -> None:
        """kill -9 of both daemons: silence; the addresses stay on the dead box."""
        self.ow, self.beating = None, False

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.sent.append(dict(a.fields))
                self.send(dict(a.fields))
            elif isinstance(a, Run):
                self.runs.append((a.group, a.action))
                self.jobs.append((self.sim.now + self.agent_time, a.group, a.action))
            elif isinstance(a, Log):
                self.logs.append((a.level, a.text))
            elif isinstance(a, Save):
                self.state = self.ow.state_fields()
            elif isinstance(a, Watchdog):
                self.watchdog += 1
            elif isinstance(a, Exit):
                self.exit = a.code
        if self.ow and self.exit is not None:
            self.state = self.ow.state_fields()
            self.ow = None

    def send(self, fields: dict) -> None:
        self.seq += 1
        fields.update(src=self.name, seq="%x" % self.seq, hg="%x" % self.gen)
        self.sim.deliver(self, fields)

    def step(self) -> None:
        now = self.sim.now
        if self.frozen:
            return
        if self.beating and now >= self.next_beat:
            self.next_beat = now + KEEPALIVE
            f = {"t": "status", "st": self.state.get("st", "up"),
                 "dt": "%x" % int(DEADTIME * 1000)}
            f.update({k: v for k, v in self.state.items() if k != "st"})
            self.send(f)
            if self.ow:
                local = dict(f, _via="local", _self="1")
                self.apply(self.ow.message(local, now))
        for job in [j for j in self.jobs if j[0] <= now]:
            self.jobs.remove(job)
            _, g, action = job
            rc = 0
            if action == "start":
                if g in self.fail_start:
                    rc = 1
                else:
                    self.running.add(g)
            elif action == "stop":
                if g in self.fail_stop:
                    rc = 1
                else:
                    self.running.discard(g)
            elif action == "status":
                rc = 0 if g in self.running else 3
            if self.ow:
                self.apply(self.ow.agent_done(g, action, rc, now))
        if self.ow:
            self.apply(self.ow.tick(now))

    def log_has(self, text: str, level: str | None = None) -> bool:
        return any(text in t and (level is None or lv == level) for lv, t in self.logs)


class Sim:
    def __init__(self, af: str = "on") -> None:
        self.now = 1000.0
        self.af = af
        self.boxes = {J: Box(self, J), C: Box(self, C)}
        self.media = {"eth0": True, "ttyS0": True}
        self.drop = lambda src, f: False
        self.queue: list[tuple[float, str, dict]] = []
        self.double: list[tuple[float, int]] = []      # (time, group) held twice

    def __getitem__(self, name: str) -> Box:
        return self.boxes[name]

    def deliver(self, box: Box, fields: dict) -> None:
        if self.drop(box.name, fields):
            return
        other = C if box.name == J else J
        first = True
        for m, up in self.media.items():
            if up:
                f = dict(fields, _via=m)
                if not first:
                    f = {"t": fields["t"], "src": box.name, "_via": m, "_dup": "1"}
                self.queue.append((self.now + 0.005, other, f))
                first = False

    def run(self, secs: float) -> None:
        end = self.now + secs
        while self.now < end:
            self.now = round(self.now + STEP, 6)
            due = [q for q in self.queue if q[0] <= self.now and not self.boxes[q[1]].frozen]
            self.queue = [q for q in self.queue if q not in due]
            for _, to, f in due:
                b = self.boxes[to]
                if b.ow and b.beating:
                    b.apply(b.ow.message(f, self.now))
            for b in self.boxes.values():
                b.step()
            for g in (1, 2):
                live = [b for b in self.boxes.values() if b.beating and g in b.running]
                if len(live) > 1:
                    self.double.append((self.now, g))

    def holders(self, g: int) -> list[str]:
        return [b.name for b in self.boxes.values() if b.beating and g in b.running]

    def until(self, cond, limit: float) -> float:
        """Run until cond() holds; the time it took (fails the test past limit)."""
        t0 = self.now
        while not cond():
            assert self.now - t0 <= limit, "condition not met within %g s" % limit
            self.run(STEP)
        return self.now - t0


def both_started(af: str = "on") -> Sim:
    s = Sim(af)
    s[J].start(af)
    s[C].start(af)
    s.run(0.5)
    return s


# ---------------------------------------------------------------- start-up

def test_normal_start_of_both_takes_local_groups_at_once():
    s = Sim()
    s[J].start()
    s[C].start()
    t = s.until(lambda: s.holders(1) == [J] and s.holders(2) == [C], 0.5)
    assert t < 0.4                       # no 10 s delay between hb nodes
    s.run(1)
    assert s.holders(1) == [J] and s.holders(2) == [C] and not s.double
    assert s[J].state["st"] == "active" and s[J].state["rsc_hold"] == "local"
    assert s[J].state["grps"] == "1" and s[C].state["grps"] == "2"
    assert any(f["t"] == "starting" for f in s[J].sent)
    assert s[J].watchdog > 5


@pytest.mark.parametrize("af", ["on", "off", "legacy"])
def test_start_with_silent_peer_takes_all_after_initdead(af):
    s = Sim(af)
    s[J].start(af)
    s.run(INITDEAD - 0.1)
    assert s[J].runs == []
    t = s.until(lambda: s.holders(1) == [J] and s.holders(2) == [J], 0.5)
    assert t < 0.4
    assert s[J].log_has("node caesar: dead (not heard within initdead")
    assert {"t": "stonith", "node": C, "result": "n_stnth"}.items() <= s[J].sent[0].items()


def test_second_node_started_later_takes_nothing_held():
    s = Sim("off")
    s[J].start("off")
    s.run(1.5)
    assert s.holders(2) == [J]
    s[C].start("off")
    s.run(2)
    assert s.holders(1) == [J] and s.holders(2) == [J] and not s.double
    assert s[C].runs == []


# ---------------------------------------------------------------- death, failback

def test_peer_death_takes_over_within_deadtime():
    s = both_started()
    s[C].kill()
    t = s.until(lambda: 2 in s[J].running, DEADTIME + 0.4)
    assert t >= DEADTIME
    assert s[J].log_has("node caesar: dead (no heartbeat")
    assert s[J].log_has("taking groups 2: caesar is dead")
    assert any(f["t"] == "resource" and f.get("info") == "mach_down" for f in s[J].sent)
    st = s[J].ow.status_text(s.now, 1.7e9, 42)
    assert re.search(r"^node caesar dead since=\d+ ", st, re.M)
    assert re.search(r"^group 2 julius running pref=caesar ", st, re.M)


def _die_and_return(af: str) -> Sim:
    s = both_started(af)
    s[C].kill()
    s.until(lambda: 2 in s[J].running, 1)
    s[C].running.clear()                     # the box rebooted
    s[C].start(af)
    s.run(3)
    assert not s.double
    return s


def test_peer_back_with_auto_failback_on_gets_its_group_back():
    s = _die_and_return("on")
    assert s.holders(1) == [J] and s.holders(2) == [C]
    assert any(f["t"] == "ask_resources" and f["info"] == "me" and f["rsc_hold"] == "foreign"
               for f in s[J].sent)
    assert s[J].log_has("node caesar: restarted (generation 1 -> 2)")


def test_peer_back_with_auto_failback_off_stays_empty():
    s = _die_and_return("off")
    assert s.holders(1) == [J] and s.holders(2) == [J]
    assert s[C].runs == []


def test_peer_back_with_auto_failback_legacy_asks_for_its_group():
    s = _die_and_return("legacy")
    assert s.holders(1) == [J] and s.holders(2) == [C]
    assert {"t": "ip-request", "ipaddr": "198.18.0.101"}.items() <= next(
        f for f in s[C].sent if f["t"] == "ip-request").items()
    assert any(f["t"] == "ip-request-resp" and f["weown"] == "yes" for f in s[J].sent)


# ---------------------------------------------------------------- standby / takeover

@pytest.mark.parametrize("af,agent_time", [("on", 0.1), ("off", 0.1), ("legacy", 0.1),
                                           ("off", 0.0), ("on", 0.3)])
def test_standby_all_then_takeover_all(af, agent_time):
    s = both_started(af)
    s[J].agent_time = s[C].agent_time = agent_time
    s[J].apply(s[J].ow.request("standby all", s.now))
    t = s.until(lambda: s.holders(1) == [C] and s.holders(2) == [C], 1)
    assert t < 2 * agent_time + 0.4      # stop + start, no timeout
    s.run(0.5)
    assert s[J].ow.hs is None and s[C].ow.hs is None
    assert not s[J].log_has("split brain") and not s[J].log_has("taking it back")
    s[J].apply(s[J].ow.request("takeover all", s.now))
    s.until(lambda: s.holders(1) == [J] and s.holders(2) == [J], 1)
    assert any(f["t"] == "hb_takeover" and f["rsc_hold"] == "all" for f in s[J].sent)
    s.run(1)
    assert s.holders(1) == [J] and s.holders(2) == [J] and not s.double


def test_standby_local_and_foreign_and_takeover_foreign():
    s = both_started("off")
    s[C].apply(s[C].ow.request("standby local", s.now))     # caesar gives group 2
    s.until(lambda: s.holders(2) == [J], 1)
    assert s.holders(1) == [J]
    s.run(0.3)
    s[J].apply(s[J].ow.request("standby foreign", s.now))   # julius gives caesar's back
    s.until(lambda: s.holders(2) == [C], 1)
    s.run(0.3)
    s[J].apply(s[J].ow.request("takeover foreign", s.now))  # julius takes caesar's group
    s.until(lambda: s.holders(2) == [J], 1)
    assert s.holders(1) == [J] and not s.double


def test_standby_refused_without_live_peer_and_in_maintenance():
    s = Sim()
    s[J].start()
    s.run(1.5)
    s[J].apply(s[J].ow.request("standby all", s.now))
    assert s[J].log_has("standby request refused: no live peer")
    s[J].apply(s[J].ow.request("maintenance on 60", s.now))
    s[J].apply(s[J].ow.request("standby all", s.now))
    assert s[J].log_has("refused: in maintenance mode")
    s[J].apply(s[J].ow.request("standby sideways", s.now))
    assert s[J].log_has("want all, local, foreign or failback")


def test_takeover_with_dead_peer_retries_failed_group():
    s = Sim()
    s[J].fail_start = {2}
    s[J].start()
    s.run(1.6)
    assert s.holders(2) == [] and s[J].ow.gs[2].state == "failed"
    s[J].fail_start = set()
    s[J].apply(s[J].ow.request("takeover all", s.now))
    s.until(lambda: s.holders(2) == [J], 1)


# ---------------------------------------------------------------- partitions

def test_cutting_one_medium_moves_nothing_and_logs_the_link():
    s = both_started()
    s.media["ttyS0"] = False
    s.run(1.5)
    assert s.holders(1) == [J] and s.holders(2) == [C]
    assert s[J].log_has("link caesar ttyS0 dead", "warning")
    assert not s[J].log_has("node caesar: dead")
    s.media["ttyS0"] = True
    s.run(0.3)
    assert s[J].log_has("link caesar ttyS0 up")


def test_partition_heal_with_both_holding():
    s = both_started()
    s.media = {"eth0": False, "ttyS0": False}
    s.run(1.5)
    assert s.holders(1) == [J, C] or sorted(s.holders(1)) == [C, J]
    assert sorted(s.holders(2)) == [C, J]
    runs_before = list(s[J].runs)
    s.media = {"eth0": True, "ttyS0": True}
    t = s.until(lambda: s.holders(1) == [J] and s.holders(2) == [C], 2)
    assert t < s[J].ow.grace() + 0.5     # each waits in case the other just lets go
    assert s[J].log_has("split brain: group 1 held by both julius and caesar: julius "
                        "(preferred) keeps it", "error")
    assert s[J].log_has("split brain: group 2", "error")
    assert s[C].log_has("split brain: group 2 held by both caesar and julius: caesar "
                        "(preferred) keeps it")
    s.run(1)
    new = s[J].runs[len(runs_before):]
    assert (1, "start") in new and (2, "stop") in new     # re-announce 1, release 2
    assert (1, "stop") not in new
    assert s.holders(1) == [J] and s.holders(2) == [C]


# ---------------------------------------------------------------- agents

def test_failed_start_gives_the_group_to_the_peer():
    s = Sim()
    s[C].fail_start = {2}
    s[J].start()
    s[C].start()
    s.until(lambda: s.holders(2) == [J], 1.5)
    assert s[C].log_has("group 2 (198.18.0.101) failed to start here: giving it up", "error")
    assert (2, "stop") in s[C].runs           # what may have started is stopped
    line = r"^group 2 julius running pref=caesar since=\d+ fails=1 key=198.18.0.101$"
    s.until(lambda: re.search(line, s[C].ow.status_text(s.now, 1.7e9, 1), re.M), 0.5)
    s.run(2)
    assert s.holders(2) == [J] and s.holders(1) == [J]


def test_failed_stop_is_retried_and_logged_as_error():
    s = both_started()
    s[J].fail_stop = {1}
    s[J].apply(s[J].ow.request("standby all", s.now))
    s.run(2.5)
    assert s[J].log_has("failed to stop (try 1): retrying", "error")
    assert s.holders(1) == [J]           # never started twice
    s[J].fail_stop = set()
    s.until(lambda: s.holders(1) == [C], 2)
    assert not s.double


def test_failed_stop_gives_up_after_ten_tries():
    s = both_started()
    s[J].fail_stop = {1}
    s[J].apply(s[J].ow.shutdown(s.now))
    s.run(12)
    assert s[J].log_has("failed to stop 10 times", "error")
    assert s[J].exit == 1
    assert not any(f["t"] == "shutdone" for f in s[J].sent)
    assert s.holders(1) == [J]           # caesar never starts what julius may still run


def test_recovery_after_respawn_keeps_running_groups():
    s = both_started()
    s[J].kill()
    s[J].start(held=[1])
    s[J].beating = True
    s.run(1.5)
    assert s[J].runs == [(1, "status")]
    assert s.holders(1) == [J] and s.holders(2) == [C]
    assert s[J].log_has("group 1: still running here: kept")


# ---------------------------------------------------------------- lost messages

@pytest.mark.parametrize("lost", [
    ("julius", "ask_resources", "done"),     # giver's done: the taker starts on grps
    ("caesar", "ask_resources", "done"),     # taker's done: the giver sees it stable
    ("julius", "resource", "standby"),
])
def test_a_lost_standby_message_never_leaves_a_group_unheld(lost):
    s = both_started()
    gone = []

    def drop(src, f):
        if (src, f["t"], f.get("info")) == lost and not gone:
            gone.append(f)
            return True
        return False
    s.drop = drop
    s[J].apply(s[J].ow.request("standby all", s.now))
    s.until(lambda: s.holders(1) == [C] and s.holders(2) == [C], 1)
    s.run(1)
    assert gone and not s.double
    assert s[J].ow.hs is None and s[C].ow.hs is None


def test_lost_ip_request_resp_is_covered_by_the_status_heartbeat():
    s = both_started("legacy")
    s[C].kill()
    s.until(lambda: 2 in s[J].running, 1)
    s[C].running.clear()
    s.drop = lambda src, f: f["t"] == "ip-request-resp"
    s[C].start("legacy")
    s.until(lambda: s.holders(2) == [C], 2)
    assert not s.double


def test_lost_shutdown_notice_still_moves_at_shutdone():
    s = both_started()
    s.drop = lambda src, f: f["t"] == "resource" and f.get("info") == "shutdown"
    s[J].apply(s[J].ow.shutdown(s.now))
    t = s.until(lambda: s.holders(1) == [C], 1)
    assert t < DEADTIME


# ---------------------------------------------------------------- restarts, shutdown

def test_peer_restart_with_new_generation_inside_deadtime():
    s = both_started("off")
    s[C].apply(s[C].ow.request("standby all", s.now))
    s.until(lambda: s.holders(2) == [J] and s.holders(1) == [J], 1)
    s.run(0.3)
    s[J].apply(s[J].ow.request("standby local", s.now))     # caesar now holds group 1
    s.until(lambda: s.holders(1) == [C], 1)
    s[C].kill()
    s[C].running.clear()
    s.run(0.2)
    s[C].start("off")                   # back before deadtime, a new hg, holding nothing
    s.until(lambda: s.holders(1) == [J], 1.5)
    assert s[J].log_has("node caesar: restarted (generation 1 -> 2)")
    assert not s[J].log_has("node caesar: dead")
    s.run(1)
    assert s.holders(2) == [J] and not s.double


def test_sigterm_releases_to_the_peer_at_once():
    s = both_started()
    s[J].apply(s[J].ow.shutdown(s.now))
    t = s.until(lambda: s.holders(1) == [C], 1)
    assert t < DEADTIME / 2
    s.until(lambda: s[J].exit == 0, 1)
    assert s[J].sent[-1] == {"t": "shutdone", "st": "dead"}
    assert s[J].state["st"] == "dead" and s[J].state["rsc_hold"] == "none"
    assert s[C].log_has("received shutdown notice from julius")
    s.run(1)
    assert s.holders(1) == [C] and s.holders(2) == [C]
    assert not any(f["t"] == "stonith" for f in s[C].sent)


def test_sigterm_alone_stops_everything():
    s = Sim()
    s[J].start()
    s.run(1.5)
    s[J].apply(s[J].ow.shutdown(s.now))
    s.until(lambda: s[J].exit == 0, 1)
    assert s[J].running == set()


# ---------------------------------------------------------------- maintenance

def test_maintenance_freezes_then_resumes():
    s = both_started()
    s[J].apply(s[J].ow.request("maintenance on 2", s.now))
    st = s[J].ow.status_text(s.now, 1.7e9, 1)
    assert re.search(r"^self julius st=active rsc_hold=local maintenance=on "
                     r"until=1700000002 stable=1$", st, re.M)
    s[C].kill()
    s.run(1.5)
    assert s.holders(2) == [] and 2 not in s[J].running
    s[J].running.discard(1)              # the admin stopped it by hand
    s.run(0.6)                           # maintenance times out: probe, then act
    s.until(lambda: s.holders(1) == [J] and 2 in s[J].running, 1)
    assert s[J].log_has("maintenance mode off: checking the groups")


def test_maintenance_off_adopts_what_runs():
    s = both_started()
    s[J].apply(s[J].ow.request("maintenance on 100", s.now))
    s[J].running.add(2)                  # the admin started caesar's group here: both hold it
    s[J].apply(s[J].ow.request("maintenance off", s.now))
    s.until(lambda: s.holders(2) == [C], 1)
    assert s[J].log_has("split brain: group 2")


# ---------------------------------------------------------------- liveness details

def test_late_heartbeat_warning_and_worst_lateness():
    s = both_started()
    s[C].next_beat = s.now + 0.4         # one heartbeat 0.4 s late (warntime 0.3)
    s.run(1)
    assert s[J].log_has("node caesar: late heartbeat, 0.", "warning")
    st = s[J].ow.status_text(s.now, 1.7e9, 1)
    late = float(re.search(r"^node caesar up .* late=([\d.]+) ", st, re.M).group(1))
    assert 0.25 < late < 0.45
    assert " lates=1" in st
    assert not s[J].log_has("node caesar: dead")


def test_hourly_summary():
    s = both_started()
    s.run(0.1)
    ow = s[J].ow
    ow.next_summary = s.now
    s[J].apply(ow.tick(s.now))
    assert s[J].log_has("hourly summary: node julius up worst late")
    assert s[J].log_has("node caesar up worst late")


def test_config_digest_mismatch_logged_once():
    s = Sim()
    s[J].start(digest="aaaa")
    s[C].start(digest="bbbb")
    s.run(1)
    errs = [(lv, t) for lv, t in s[J].logs if "configuration differs" in t]
    assert len(errs) == 1 and errs[0][0] == "error"
    errs = [t for _, t in errs]
    assert "digest bbbb there, aaaa here" in errs[0]
    assert "cfd=differs" in s[J].ow.status_text(s.now, 1.7e9, 1)


def test_status_file_lines():
    s = both_started()
    st = s[J].ow.status_text(s.now, 1700000000.0, 77)
    lines = st.splitlines()
    assert lines[0] == "updated 1700000000 pid=77 node=julius"
    assert lines[1] == "self julius st=active rsc_hold=local maintenance=off stable=1"
    assert re.match(r"node julius up since=\d+ late=[\d.e-]+ gen=0 kind=self lates=0 "
                    r"st=active$", lines[2])
    assert re.match(r"node caesar up since=\d+ late=[\d.e-]+ gen=1 kind=hb lates=0 "
                    r"st=active cfd=same stable=1 dt=500$", lines[3])
    assert re.match(r"link caesar eth0 up since=\d+$", lines[4])
    assert re.match(r"link caesar ttyS0 up since=\d+$", lines[5])
    assert re.match(r"group 1 julius running pref=julius since=\d+ fails=0 "
                    r"key=198.18.0.100$", lines[6])
    assert re.match(r"group 2 caesar running pref=caesar since=\d+ fails=0 "
                    r"key=198.18.0.101$", lines[7])
    assert all(re.match(r"why [12] \d+ \w+ \w+ \S", ln) for ln in lines[8:-1])
    assert re.match(r"last \d+ \S", lines[-1])


def test_heartbeat_peer_gets_heartbeats_10s_delay():
    ow = owner.Owner(config(J), 0.0, "d")
    out = ow.message({"t": "status", "st": "up", "src": C, "hg": "5", "seq": "1",
                      "_via": "eth0"}, 0.1)
    assert Send({"t": "starting"}) in out
    assert ow.peer.kind == "heartbeat"
    ow.message({"t": "resource", "rsc_hold": "none", "rtype": "full", "isstable": "0",
                "src": C, "hg": "5", "seq": "2", "_via": "eth0"}, 0.2)
    runs = []
    for i in range(1, 104):
        t = 0.2 + i * 0.1
        ow.message({"t": "status", "st": "active", "src": C, "hg": "5", "seq": "%x" % (i + 2),
                    "_via": "eth0"}, t)
        runs += [(round(t, 1), a) for a in ow.tick(t) if isinstance(a, Run)]
    assert runs == [(10.2, Run(1, "start"))]


def test_heartbeat_peer_stable_means_take_now():
    ow = owner.Owner(config(J), 0.0, "d")
    ow.message({"t": "status", "st": "active", "src": C, "hg": "5", "seq": "1",
                "_via": "eth0"}, 0.1)
    out = ow.message({"t": "resource", "rsc_hold": "local", "rtype": "full", "isstable": "1",
                      "src": C, "hg": "5", "seq": "2", "_via": "eth0"}, 0.2)
    assert Run(1, "start") in out and Run(2, "start") not in out


def test_answers_starting_and_ignores_replays_and_strangers():
    ow = owner.Owner(config(J), 0.0, "d")
    assert ow.message({"t": "status", "src": "brutus", "hg": "1", "seq": "1"}, 0.1) == []
    ow.message({"t": "status", "st": "up", "hbv": "1", "src": C, "hg": "5", "seq": "1",
                "_via": "eth0"}, 0.1)
    out = ow.message({"t": "starting", "src": C, "hg": "5", "seq": "2", "_via": "eth0"}, 0.2)
    res = [a.fields for a in out if isinstance(a, Send) and a.fields["t"] == "resource"]
    assert res and res[0]["rtype"] == "full" and res[0]["rsc_hold"] in ("none", "local")


class Peer:
    """A scripted Heartbeat (or hb) peer talking to one Owner."""

    def __init__(self, ow: owner.Owner, name: str = C, hb: bool = False) -> None:
        self.ow, self.name, self.hb, self.seq, self.t = ow, name, hb, 0, 0.0

    def say(self, when: float, **f) -> list:
        self.seq += 1
        self.t = when
        d = dict(f, src=self.name, hg="5", seq="%x" % self.seq, _via="eth0")
        if self.hb and f.get("t") == "status":
            d.setdefault("hbv", "1")
        return self.ow.message(d, when)

    def beat(self, when: float, st: str = "active") -> list:
        return self.say(when, t="status", st=st) + self.ow.tick(when)


def sends(out, t=None) -> list[dict]:
    return [a.fields for a in out if isinstance(a, Send)
            and (t is None or a.fields["t"] == t)]


def runs(out) -> list[Run]:
    return [a for a in out if isinstance(a, Run)]


def test_heartbeat_giver_standby_is_started_on_done_not_before():
    ow = owner.Owner(config(C, "on"), 0.0, "d")
    hb = Peer(ow, J)
    hb.beat(0.1)
    hb.say(0.2, t="resource", rsc_hold="all", rtype="full", isstable="1")
    out = hb.say(0.3, t="ask_resources", rsc_hold="foreign", info="me")
    assert sends(out, "ask_resources") == [{"t": "ask_resources", "rsc_hold": "foreign",
                                           "info": "other"}]
    out = hb.say(0.4, t="resource", rsc_hold="local", rtype="full", isstable="0", info="standby")
    assert runs(out + hb.beat(0.5)) == []          # Heartbeat has not stopped it yet
    out = hb.say(0.6, t="ask_resources", rsc_hold="foreign", info="done")
    assert runs(out) == [Run(2, "start")]
    out = ow.agent_done(2, "start", 0, 0.7)
    got = sends(out)
    assert {"t": "ask_resources", "rsc_hold": "foreign", "info": "done"} in got
    res = [f for f in got if f["t"] == "resource"]
    assert res[0]["rsc_hold"] == "local" and res[0]["isstable"] == "1"


def test_heartbeat_shutdown_waits_for_shutdone():
    ow = owner.Owner(config(C, "on"), 0.0, "d")
    hb = Peer(ow, J)
    hb.beat(0.1)
    hb.say(0.2, t="resource", rsc_hold="all", rtype="full", isstable="1")
    out = hb.say(0.3, t="resource", rsc_hold="none", rtype="full", isstable="0", info="shutdown")
    assert runs(out + hb.beat(0.4)) == []
    out = hb.say(0.5, t="shutdone", st="dead")
    assert runs(out) == [Run(1, "start")]         # Heartbeat's order: one after another
    out += ow.agent_done(1, "start", 0, 0.6)
    assert runs(out)[1:] == [Run(2, "start")]
    assert "node julius: shut down, gave up its groups" in [
        a.text for a in out if isinstance(a, Log)]


def test_legacy_holder_answers_ip_request_after_stopping():
    ow = owner.Owner(config(J, "legacy"), 0.0, "d")
    peer = Peer(ow, C, hb=True)
    out = peer.beat(0.1)
    assert runs(out) == [Run(1, "start")]
    ow.agent_done(1, "start", 0, 0.2)
    out = peer.say(1.0, t="ip-request", ipaddr="198.18.0.100")     # not ours to give: no
    out = peer.say(1.1, t="ip-request", ipaddr="198.18.0.101")
    assert sends(out, "ip-request-resp") == [{"t": "ip-request-resp", "dest": C,
                                              "ipaddr": "198.18.0.101", "weown": "no",
                                              "ok": "OK"}]


def test_config_digest_names_the_setting():
    from hb import config as cf
    a, b = config(J), config(J)
    b.deadtime = 0.7
    ow = owner.Owner(a, 0.0, cf.digest(a))
    out = ow.message({"t": "status", "st": "up", "hbv": "1", "cfd": cf.digest(b), "src": C,
                      "hg": "1", "seq": "1", "_via": "eth0"}, 0.1)
    errs = [a.text for a in out if isinstance(a, Log) and a.level == "error"]
    assert len(errs) == 1 and "configuration differs: deadtime (digest" in errs[0]


def test_peer_status_without_state_yet_then_hb():
    """An hb peer's first beats come before its state file: Heartbeat rules until hbv."""
    ow = owner.Owner(config(J), 0.0, "d")
    out = ow.message({"t": "status", "st": "up", "src": C, "hg": "5", "seq": "1",
                      "_via": "eth0"}, 0.1)
    assert runs(out) == [] and ow.rqst_at is not None
    out = ow.message({"t": "status", "st": "up", "hbv": "1", "grps": "none", "isstable": "1",
                      "src": C, "hg": "5", "seq": "2", "_via": "eth0"}, 0.2)
    assert runs(out) == []                      # until it answers our `starting`
    out = ow.message({"t": "resource", "rsc_hold": "none", "grps": "none", "isstable": "1",
                      "src": C, "hg": "5", "seq": "3", "_via": "eth0"}, 0.21)
    assert runs(out) == [Run(1, "start")]


def test_reqnodes_is_answered_with_the_node_list():
    ow = owner.Owner(config(C), 0.0, "d")
    out = Peer(ow, J).say(0.1, t="reqnodes", dest=C)
    assert sends(out) == [{"dest": J, "t": "repnodes", "nodelist": "julius caesar ",
                           "delnodelist": ""}]


def test_a_message_filled_in_late_is_still_handled():
    """hb-beat delivers a retransmitted gap after later messages: seq order is not
    delivery order, and only status heartbeats may be stale."""
    ow = owner.Owner(config(J, "on"), 0.0, "d")
    ow.message({"t": "status", "st": "active", "src": C, "hg": "5", "seq": "1",
                "_via": "eth0"}, 0.1)
    ow.message({"t": "resource", "rsc_hold": "local", "rtype": "full", "isstable": "1",
                "src": C, "hg": "5", "seq": "3", "_via": "eth0"}, 0.2)
    out = ow.message({"t": "starting", "src": C, "hg": "5", "seq": "2", "_via": "eth0"}, 0.3)
    assert sends(out, "resource")


def test_a_frozen_node_steps_down_without_a_fight():
    """SIGSTOP of julius's daemons for longer than deadtime: caesar takes group 1; on
    SIGCONT julius sees it slept, and lets caesar keep it (no split brain)."""
    s = both_started("off")
    s[J].frozen = True
    s.until(lambda: 1 in s[C].running, 1.5)
    s.run(0.5)
    s[J].frozen = False
    s.until(lambda: 1 not in s[J].running, 1.0)
    s.run(2)
    assert s.holders(1) == [C] and s.holders(2) == [C]
    assert s[J].log_has("this node did not run for")
    assert s[J].log_has("group 1: caesar took it while this node was frozen: stopping it here")
    assert not s[J].log_has("node caesar: dead")
    assert not s[C].log_has("split brain") and not s[J].log_has("split brain")
    assert s[C].log_has("group 1: julius let go: announcing it again")
    assert s[C].runs[-1] == (1, "start")


def test_restart_after_a_crash_leaves_the_group_with_the_peer():
    """kill -9 of everything on julius, restarted with its old RUNDIR (status says it
    held group 1, and the address is still up): caesar took over and keeps it."""
    s = both_started("off")
    s[J].kill()
    s.until(lambda: 1 in s[C].running, 1.5)
    assert 1 in s[J].running                 # the crash left the address behind
    s[J].start("off", held=[1])
    s.run(3)
    assert s.holders(1) == [C] and 1 not in s[J].running
    assert s[J].log_has("group 1: caesar took it over meanwhile: stopping it here")
    assert not s[C].log_has("split brain")
    assert s[C].log_has("group 1: julius let go: announcing it again")


def test_rsc_hold_counts_an_empty_class_as_Heartbeat_does():
    """One group, preferred by julius: caesar's local class is empty.  Heartbeat says
    'No one owns ...' unless the two rsc_hold values cover both classes."""
    one = ((J, "198.18.0.100"),)
    s = Sim("off")
    for name in (J, C):
        s[name].ow = None
    s[J].start("off")
    s[J].ow = owner.Owner(config(J, "off", one), s.now, "d")
    s[C].start("off")
    s[C].ow = owner.Owner(config(C, "off", one), s.now, "d")
    s.run(1)
    assert (s[J].ow.state_fields()["rsc_hold"], s[C].ow.state_fields()["rsc_hold"]) == \
        ("local", "local")
    s[J].apply(s[J].ow.request("standby all", s.now))
    s.until(lambda: s.holders(1) == [C], 1)
    s.run(0.5)
    assert (s[J].ow.state_fields()["rsc_hold"], s[C].ow.state_fields()["rsc_hold"]) == \
        ("none", "all")
    s[C].kill()
    s.until(lambda: 1 in s[J].running, 1.5)
    assert s[J].ow.state_fields()["rsc_hold"] == "local"


def test_an_empty_class_held_by_the_peer_is_not_claimed_at_start():
    """julius holds everything (caesar was dead); caesar starts: it must not claim its
    own (empty) class, or Heartbeat logs 'Both machines own foreign resources'."""
    ow = owner.Owner(config(C, "off", ((J, "198.18.0.100"),)), 0.0, "d")
    hb = Peer(ow, J)
    hb.beat(0.1)
    hb.say(0.2, t="resource", rsc_hold="all", rtype="full", isstable="1")
    assert ow.state_fields()["rsc_hold"] == "none"


def test_next_due_is_when_the_peer_would_be_declared_dead():
    """hb-watch sleeps until exactly then, so a death costs deadtime and not a tick more."""
    from hb.settings import Config, Group, Medium, Resource
    from hb.owner import Owner
    cfg = Config(node="alpha", nodes=["alpha", "beta"], keepalive=1.0, deadtime=4.0,
                 warntime=2.0, initdead=8.0, media=[Medium("bcast", "eth0")],
                 groups=[Group(1, "alpha", [Resource("IPaddr", ["198.18.0.9"], "198.18.0.9")])])
    ow = Owner(cfg, 100.0, "d", set())
    ow.begin(100.0)
    assert ow.next_due() == float("inf")                 # nobody judged before we hear us
    ow.message(_own(100.2), 100.2)
    assert abs(ow.next_due() - 108.0) < 0.01             # initdead from the start
    ow.message({"t": "status", "st": "active", "src": "beta", "hg": "1", "seq": "1",
                "_via": "eth0", "_rt": "101.0", "hbv": "1", "rsc_hold": "none"}, 101.0)
    assert abs(ow.next_due() - 105.0) < 0.01             # deadtime after the last beat
    for t in (101.2, 102.2, 103.2, 104.2):               # this node hears itself
        ow.message(_own(t), t)
    assert not any("dead" in str(a) for a in ow.tick(105.0 - 0.01))
    assert any("node beta: dead" in str(a) for a in ow.tick(ow.next_due()))


def _own(t):
    """Our own heartbeat as hb-beat reports it, sent at t."""
    return {"t": "status", "st": "active", "src": "alpha", "_via": "local", "_self": "1",
            "_rt": "%.6f" % t}


def _fake_watch(ow, beats, until):
    """hb-watch's loop on a fake clock: a tick after each message and whenever
    Owner.next_wake() says, nothing between; returns [(time, log text)] and the
    number of wake-ups without a message.  Our own heartbeat comes every second."""
    from hb.actions import Log
    beats = beats + [(100.5 + k, _own(100.5 + k)) for k in range(int(until - 100))]
    logs, wakes, now, beats = [], 0, 100.0, sorted(beats, key=lambda b: b[0])
    while now < until:
        wake = ow.next_wake()
        if beats and beats[0][0] <= wake:
            now, f = beats.pop(0)
            acts = ow.message(dict(f, _rt="%.6f" % now), now) + ow.tick(now)
        else:
            now, wakes = max(now, wake), wakes + 1
            acts = ow.tick(now)
        logs += [(now, a.text) for a in acts if isinstance(a, Log)]
    return logs, wakes


def _two_media_owner():
    from hb.settings import Config, Group, Medium, Resource
    from hb.owner import Owner
    cfg = Config(node="alpha", nodes=["alpha", "beta"], keepalive=1.0, deadtime=4.0,
                 warntime=2.0, initdead=8.0,
                 media=[Medium("bcast", "eth0"), Medium("serial", "ttyS0")],
                 groups=[Group(1, "alpha", [Resource("IPaddr", ["198.18.0.9"], "198.18.0.9")])])
    ow = Owner(cfg, 100.0, "d", set())
    ow.begin(100.0)
    return ow


def _beat(t, seq, via="eth0"):
    if via != "eth0":
        return (t, {"src": "beta", "_via": via, "_dup": "1"})
    return (t, {"t": "status", "st": "active", "src": "beta", "hg": "1", "seq": str(seq),
                "_via": via, "hbv": "1", "rsc_hold": "none"})


def test_next_wake_kills_a_silent_link_at_its_deadline():
    """Woken only by messages and next_wake(), a link still dies deadtime after its last
    heartbeat, while the peer stays up on the other medium.  Heard through duplicates
    only, reported at most every lines.dup_every(deadtime), it is given that much more
    (its last packet may be that much later than its last report)."""
    ow = _two_media_owner()
    beats = [_beat(101.0 + k, k + 1) for k in range(20)]
    beats += [_beat(101.0 + k + 0.001, k + 1, "ttyS0") for k in range(5)]    # last 105.001
    logs, _ = _fake_watch(ow, beats, 120.5)
    dead = [t for t, text in logs if text == "link beta ttyS0 dead"]
    assert dead and 109.251 < dead[0] < 109.26, logs
    assert not any("node beta: dead" in text for _, text in logs)


def test_next_wake_late_heartbeat_warned_on_arrival_and_death_on_time():
    """A heartbeat later than warntime is warned about when it comes; then silence
    kills the peer at last + deadtime exactly, with no fixed tick in between."""
    ow = _two_media_owner()
    beats = [_beat(101.0, 1), _beat(102.0, 2), _beat(104.5, 3), _beat(105.5, 4)]
    times = ((101.0, 1), (102.0, 2), (104.5, 3), (105.5, 4))
    beats += [_beat(t + 0.001, i, "ttyS0") for t, i in times]
    logs, wakes = _fake_watch(ow, beats, 110.0)
    late = [t for t, text in logs if text.startswith("node beta: late heartbeat, 2.5 s")]
    assert late == [104.5], logs
    dead = [t for t, text in logs if text.startswith("node beta: dead")]
    assert dead and 109.5 < dead[0] < 109.51, logs
    assert wakes < 12                      # not a tick every 0.1 s or keepalive / 4


def test_next_wake_sleeps_between_steady_heartbeats():
    """A steady peer: nothing to do between its heartbeats once initdead is over."""
    ow = _two_media_owner()
    beats = [_beat(101.0 + k, k + 1) for k in range(30)]
    beats += [_beat(101.0 + k + 0.001, k + 1, "ttyS0") for k in range(30)]
    _, wakes = _fake_watch(ow, beats, 130.0)
    assert wakes <= 3                      # initdead, and the peer's grace


# ---------------------------------------------------------------- safety

def test_a_node_without_its_own_heartbeat_releases_before_the_peer_judges_it():
    """hb-beat of the holder stops (deaf and mute): it judges nobody and stops its
    groups within deadtime/2 of its last heartbeat; the peer takes them at deadtime."""
    s = both_started("off")
    s.run(0.5)
    s[J].beating = False                 # its hb-beat stopped: no beats, no own lines
    t0 = s.now
    s.until(lambda: 1 not in s[J].running, DEADTIME)
    assert s.now - t0 < DEADTIME / 2 + 0.2
    assert s[J].log_has("releasing groups 1", "error")
    s.until(lambda: s.holders(1) == [C], 2)
    assert not any("node caesar: dead" in t for _, t in s[J].logs)
    s[J].beating = True                  # heard again: caesar keeps what it took
    s.run(3)                             # (auto_failback off)
    assert s.holders(1) == [C] and not s.double


def test_a_brief_own_heartbeat_gap_moves_nothing():
    s = both_started()
    s.run(0.5)
    s[J].beating = False
    s.run(DEADTIME / 2 - 0.1)
    s[J].beating = True
    s.run(2)
    assert s.holders(1) == [J] and s.holders(2) == [C] and not s.double
    assert not s[J].log_has("releasing groups")


def test_stdin_end_releases_and_exits():
    s = both_started()
    s[J].apply(s[J].ow.beat_gone(s.now))
    s.until(lambda: s[J].exit is not None, 1)
    assert s[J].exit == 0 and 1 not in s[J].running


def test_failed_rollback_keeps_the_group_held_and_stuck():
    """A failed start whose rollback stop also fails: held (grps) and stuck=, and the
    peer does not start it, even once the holder is gone."""
    s = both_started()
    s[C].fail_start, s[C].fail_stop = {1}, {1}
    s[J].kill()                          # caesar takes group 1: its start fails
    s.until(lambda: s[C].state.get("stuck") == "1", 3)
    assert s[C].state["grps"].split(",").count("1") == 1
    assert s[C].log_has("failed to start here: giving it up", "error")


def test_stuck_group_is_never_started_by_the_peer_even_after_the_holder_dies():
    s = both_started()
    s[J].fail_stop = {1}
    s[J].apply(s[J].ow.shutdown(s.now))
    s.run(13)
    assert s[J].exit == 1
    assert s[J].log_has("resource stop failure: it may still run here; held here", "error")
    assert s[C].log_has("julius says it may still run there", "error")
    s[J].beating = False                 # hb-supervise stops hb-beat: julius is silent
    s.run(3)
    assert s[C].log_has("group 1: not taken: julius said it may still run there", "error")
    assert s.holders(1) == [] and 1 not in s[C].running
    s[C].apply(s[C].ow.request("takeover all", s.now))     # the operator's word
    s.until(lambda: 1 in s[C].running, 2)


def test_stop_failure_reboot_waits_for_a_heartbeat_without_stuck():
    s = Sim()
    for b in (s[J], s[C]):
        b.start()
    s[J].ow.cfg.stop_failure = "reboot"
    s.run(0.5)
    s[J].fail_stop = {1}
    s[J].apply(s[J].ow.request("standby all", s.now))
    reboots = []
    orig = s[J].apply

    def apply(actions):
        reboots.extend(a for a in actions if isinstance(a, Reboot))
        orig(actions)
    s[J].apply = apply
    s.until(lambda: reboots, 14)
    assert "stuck" not in s[J].state     # the peer may take it once julius is gone
    assert s[J].log_has("rebooting this node (stop_failure reboot)", "error")
    s[J].kill()
    s[J].running.discard(1)              # what a reboot does
    s.until(lambda: s.holders(1) == [C], 2)
    assert not s.double


def test_malformed_peer_fields_are_ignored_and_logged():
    ow = owner.Owner(config(J), 0.0, "d")
    ow.message({"t": "status", "src": J, "_via": "local", "_self": "1", "_rt": "0.05"}, 0.05)
    bad = {"t": "status", "st": "active\ngroup 1 caesar", "hbv": "1", "src": C,
           "hg": "1", "seq": "1", "_via": "eth0", "grps": "\u00b2", "dt": "9" * 5000,
           "pings": "\u0663", "pfresh": "9" * 5000, "nolink": "eth0\ngroup",
           "cfd": "zz\n", "stuck": "1,99", "rsc_hold": "most"}
    out = ow.message(bad, 0.1)
    texts = [a.text for a in out if isinstance(a, Log)]
    for name in ("grps", "dt", "pings", "nolink", "cfd", "stuck", "rsc_hold", "st"):
        assert any("malformed %s=" % name in t for t in texts), (name, texts)
    p = ow.peer
    assert p.holds == set() and p.pings is None and p.dt is None and p.stuck == set()
    st = ow.status_text(0.1, 1.7e9, 1)
    assert "\ngroup 1 caesar" not in st and "group\n" not in st
    for f in ({"t": "ask_resources", "info": "me", "grps": "7"}, {"t": "resource", "grps": "x"},
              {"t": "status", "seq": "\u0661"}, {"t": "reach", "pings": "1" * 99}):
        ow.message(dict(f, src=C, _via="eth0"), 0.2)


def test_maintenance_out_of_range_is_refused_in_one_line():
    ow = owner.Owner(config(J), 0.0, "d")
    for arg in ("inf", "nan", "1e400", "-5", "9" * 5000, "400000000"):
        out = ow.request("maintenance on %s" % arg, 1.0)
        logs = [a.text for a in out if isinstance(a, Log)]
        assert ow.maint_until is None and len(logs) == 1, (arg, logs)
        assert logs[0].startswith("bad maintenance request")
    ow.status_text(1.0, 1.7e9, 1)


def test_late_counters_stay_bounded():
    ow = owner.Owner(config(J), 0.0, "d")
    n = ow.peer
    for k in range(200000):              # 10 ms heartbeats for over half an hour
        n.late.add(k * 0.01, 0.001 * (k % 7))
        n.lates.add(k * 0.01)
    assert len(n.late.buckets) <= 62 and len(n.lates.buckets) <= 62
    assert ow.worst_late(n, 2000.0) == 0.006 and len(n.lates) == 200000
    assert ow.worst_late(n, 2000.0 + 2 * 3600) == 0.0 and len(n.lates) == 0


def test_stop_failure_directive():
    from hb import hacf
    from hb.settings import ConfigError
    c = hacf._HaCf(Config(), "ha.cf", ())
    table = c.dispatch()
    table["stop_failure"]("stop_failure", "reboot /usr/local/sbin/fake now",
                          ["reboot", "/usr/local/sbin/fake", "now"])
    assert c.cfg.stop_failure == "reboot" and c.cfg.reboot_command == "/usr/local/sbin/fake now"
    table["stop_failure"]("stop_failure", "hold", ["hold"])
    assert c.cfg.stop_failure == "hold"
    for bad in (["reboot", "fake"], ["maybe"], ["hold", "x"], []):
        with pytest.raises(ConfigError):
            table["stop_failure"]("stop_failure", " ".join(bad), bad)


def test_a_stuck_group_is_critical_in_the_status(tmp_path):
    from hb import status
    s = both_started()
    s[J].fail_stop = {1}
    s[J].apply(s[J].ow.request("standby all", s.now))
    s.run(13)
    st = s[J].ow.status_text(s.now, 1.7e9, 1)
    assert re.search(r"^group 1 julius stuck pref=julius ", st, re.M), st
    text = st.replace("updated 1700000000", "updated 1700000001")
    code, line = status.verdict(text, str(tmp_path / "status"), 1700000002, 10)
    assert code == 2 and "group 1 may still run on julius: its stop failed" in line, line
    assert 1 not in s[C].running and s[C].ow.peer.stuck == {1}


@pytest.mark.parametrize("hb", [False, True])
def test_peer_init_is_up_but_not_stable(hb):
    """A peer's first status says st=init (Heartbeat's, and hb-beat's): it is up, its
    death timer runs, but it is not stable, so no standby is sent to it yet."""
    ow = owner.Owner(config(J, "on"), 0.0, "d")
    p = Peer(ow, C, hb=hb)
    p.say(0.1, t="status", st="init", dt="bb8")
    n = ow.nodes[C]
    assert n.status == "up" and n.st == "init" and n.dt == 3.0
    assert not ow.peer_stable()
    if not hb:                  # Heartbeat says it is stable in its resource report
        p.say(0.15, t="resource", rsc_hold="none", rtype="full", isstable="1")
    assert not ow.peer_stable()
    p.say(0.2, t="status", st="active", isstable="1", dt="1f4")
    assert ow.peer_stable() and n.dt == 0.5


# ---------------------------------------------------------------- repeated statuses

def _scenarios():
    def late(s):
        s[C].next_beat = s.now + 0.4
        s.run(1)

    def death(s):
        s[C].kill()
        s.run(1)

    def back(s):
        s[C].kill()
        s.run(1)
        s[C].running.clear()
        s[C].start("on")
        s.run(3)

    def standby(s):
        s[J].apply(s[J].ow.request("standby all", s.now))
        s.run(2)
        s[J].apply(s[J].ow.request("takeover all", s.now))
        s.run(2)

    def freeze(s):
        s[J].frozen = True
        s.run(0.8)
        s[J].frozen = False
        s.run(2)
    return [late, death, back, standby, freeze]


def _record(scenario, monkeypatch, repeat: bool) -> list:
    with monkeypatch.context() as m:
        if not repeat:
            m.setattr(owner.Owner, "_repeat", lambda self, n, f: False)
        s = both_started()
        s.run(1)
        scenario(s)
        out = []
        for b in s.boxes.values():
            out.append((b.logs, b.runs, b.sent, b.state, b.watchdog, b.running))
            if b.ow is not None:
                out.append(b.ow.status_text(s.now, 1.7e9, 1))
        return out


@pytest.mark.parametrize("i", range(5))
def test_repeated_status_takes_the_short_path_to_the_same_result(monkeypatch, i):
    """A status that repeats the last one but seq/ts/ld is judged only for its
    timing (_same_status): logs, runs, messages, RUNDIR/state and RUNDIR/status
    (late, lates) come out as when every status is judged in full."""
    sc = _scenarios()[i]
    assert _record(sc, monkeypatch, True) == _record(sc, monkeypatch, False)


def test_steady_pair_judges_few_statuses_in_full(monkeypatch):
    calls = []
    full = owner.Owner._status
    monkeypatch.setattr(owner.Owner, "_status",
                        lambda self, n, *a: calls.append(n.name) or full(self, n, *a))
    s = both_started()
    s.run(0.5)
    calls.clear()
    beats = s[C].seq
    s.run(2)
    assert s[C].seq - beats >= 15 and calls.count(C) <= 2
    f = {"t": "status", "src": C, "seq": "%x" % (s[C].seq + 1), "hg": "%x" % s[C].gen,
         "_via": "eth0"}
    f.update({k: v for k, v in s[C].state.items()})
    f["dt"] = "%x" % int(DEADTIME * 1000)
    ow = s[J].ow
    ow.message(f, s.now)
    assert ow.repeated          # hb-watch need not tick for it
    ow.message(dict(f, seq="%x" % (s[C].seq + 2), st="dead"), s.now)
    assert not ow.repeated and ow.peer.status == "dead"
    assert 1 in s[J].running and 2 in s[C].running
