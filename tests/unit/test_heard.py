"""RUNDIR/heard: the shared file (heard.Board, heard.Sheet), its offer line, and the
owner's side (Owner.heard): a status written to the board is judged as its line."""

from __future__ import annotations

import os

import pytest

import test_owner as to
from hb import heard, lines
from test_owner import C, DEADTIME, J, Sim

NAMES = [("julius", "local"), ("caesar", "eth0"), ("caesar", "ttyS0")]


def test_board_and_sheet_share_times_and_counts(tmp_path):
    path = str(tmp_path / heard.HEARD)
    b = heard.Board(path, NAMES)
    s = heard.Sheet(path, b.token, len(NAMES))
    assert [s.read(i) for i in range(3)] == [(0.0, 0)] * 3
    b.mark(1, 1234.5)
    b.mark(1, 1234.75)
    b.mark(0, 99.0)
    assert s.read(1) == (1234.75, 2) and s.read(0) == (99.0, 1) and s.read(2) == (0.0, 0)
    assert os.stat(path).st_size == heard.HEADER + heard.SLOT * 3
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [f for f in os.listdir(tmp_path)] == [heard.HEARD]      # no temp file left
    s.close()
    b.close()


def test_a_new_board_replaces_the_file_and_an_old_sheet_keeps_the_old_one(tmp_path):
    path = str(tmp_path / heard.HEARD)
    old = heard.Board(path, NAMES)
    sheet = heard.Sheet(path, old.token, 3)
    new = heard.Board(path, NAMES)
    new.mark(0, 5.0)
    assert sheet.read(0) == (0.0, 0)            # a restarted hb-beat's file is another
    with pytest.raises(ValueError, match="not the file offered"):
        heard.Sheet(path, old.token, 3)
    assert heard.Sheet(path, new.token, 3).read(0) == (5.0, 1)


@pytest.mark.parametrize("n", [2, 4])
def test_a_sheet_of_another_size_is_refused(tmp_path, n):
    path = str(tmp_path / heard.HEARD)
    b = heard.Board(path, NAMES)
    with pytest.raises(ValueError, match="bytes, not"):
        heard.Sheet(path, b.token, n)


def test_a_symlink_is_not_followed(tmp_path):
    b = heard.Board(str(tmp_path / "real"), NAMES)
    os.symlink(str(tmp_path / "real"), str(tmp_path / heard.HEARD))
    with pytest.raises(OSError):
        heard.Sheet(str(tmp_path / heard.HEARD), b.token, 3)


def test_offer_line_round_trip_and_what_is_not_an_offer():
    text = lines.heard_offer("/run/hb dir/heard", NAMES, "00ff", 12.5)
    f = lines.parse_line(text)
    assert text.endswith("\n") and f["file"] == "/run/hb dir/heard" and f["token"] == "00ff"
    assert lines.heard_slots(f) == NAMES
    # a peer's message (another _via), a message of ours heard back or from
    # Heartbeat's fifo (_self=1), a malformed list: not offers
    assert lines.heard_slots(dict(f, _via="eth0")) is None
    assert lines.heard_slots(dict(f, _self="1")) is None
    assert lines.heard_slots(dict(f, t="status")) is None
    for bad in ("", "julius", "julius/", "/eth0", "julius/local,,caesar/eth0"):
        assert lines.heard_slots(dict(f, slots=bad)) is None, bad


# -- the owner's side ---------------------------------------------------------------

class BoardSim(Sim):
    """The simulated pair with hb-beat's board: a peer's status that repeats the last
    one delivered for its node and medium, within 1.25 keepalives of the one before,
    is told through Owner.heard (as hb-watch does after reading RUNDIR/heard), or made
    a line again when the owner wants it whole."""

    def __init__(self, af: str = "on") -> None:
        super().__init__(af)
        self.said: dict[tuple, tuple] = {}
        self.told = self.whole = 0

    def tell(self, b, f: dict) -> list:
        key = (b.name, f.get("src"), f.get("_via"))
        said = tuple(sorted((k, v) for k, v in f.items() if k not in ("seq", "_via")))
        last = self.said.get(key)
        self.said[key] = (said, self.now)
        if f.get("t") == "status" and "_dup" not in f and last is not None \
                and last[0] == said and self.now - last[1] <= 1.25 * to.KEEPALIVE:
            self.told += 1
            if b.ow.heard(f["src"], f["_via"], self.now, 1):
                return []
            self.whole += 1
        return b.ow.message(f, self.now)

    def run(self, secs: float) -> None:
        end = self.now + secs
        while self.now < end:
            self.now = round(self.now + to.STEP, 6)
            due = [q for q in self.queue if q[0] <= self.now and not self.boxes[q[1]].frozen]
            self.queue = [q for q in self.queue if q not in due]
            for _, name, f in due:
                b = self.boxes[name]
                if b.ow and b.beating:
                    b.apply(self.tell(b, f))
            for b in self.boxes.values():
                b.step()
            for g in (1, 2):
                if len(self.holders(g)) > 1:
                    self.double.append((self.now, g))


def started(cls, af: str = "on") -> Sim:
    s = cls(af)
    s[J].start(af)
    s[C].start(af)
    s.run(0.5)
    return s


@pytest.mark.parametrize("event", ["kill", "freeze", "cut"])
def test_the_board_judges_as_the_lines_do(event):
    """The same failures, with and without the board: the same holders, at the same
    times, never two."""
    seen = {}
    for cls in (Sim, BoardSim):
        s = started(cls)
        s.run(2.0)
        if event == "kill":
            s[J].kill()
        elif event == "freeze":
            s[J].frozen = True
        else:
            s.media = {"eth0": False, "ttyS0": False}
        took = s.until(lambda: s.holders(1) == [C] or len(s.holders(1)) > 1, 3 * DEADTIME)
        s.run(1.0)
        if event == "freeze":
            s[J].frozen = False
        elif event == "cut":
            s.media = {"eth0": True, "ttyS0": True}
        s.run(3.0)
        seen[cls.__name__] = (round(took, 3), s.holders(1), s.holders(2),
                              s.double if event == "kill" else None)
        if cls is BoardSim:
            assert s.told > 30, s.told          # most statuses went through the board
    assert seen["Sim"] == seen["BoardSim"], seen
    assert seen["Sim"][0] <= DEADTIME + 0.1


def test_heard_moves_only_clocks_and_wants_whole_statuses_when_not_up():
    s = to.both_started()
    s.run(1.0)
    ow = s[C].ow
    n, ln = ow.nodes[J], ow.links[(J, "eth0")]
    t = s.now + 0.05
    assert ow.heard(J, "eth0", t, 3) is True
    assert n.last == t and ln.last == t
    assert ow.heard(C, "local", t, 1) is True and ow.nodes[C].last == t
    assert ow.heard(C, "eth0", t, 1) is True            # our own, heard back: nothing
    assert ow.heard("nobody", "eth0", t, 1) is True
    assert ow.heard(J, "ttyS9", t, 1) is False          # a link not up: a whole status
    n.status = "init"
    assert ow.heard(J, "eth0", t + 0.1, 1) is False and n.last == t
    n.status = "up"
    ow.hush_from = t
    assert ow.heard(J, "eth0", t + 0.1, 1) is False
    ow.hush_from = None
    ow.silent = True
    assert ow.heard(C, "local", t + 0.1, 1) is False


def test_a_clock_told_late_never_goes_back():
    s = to.both_started()
    ow = s[C].ow
    ow.awake(s.now)
    before = ow.last_event
    assert ow.awake(s.now - 0.2) == [] and ow.last_event == before


def test_awake_sees_a_freeze_longer_than_deadtime():
    s = to.both_started()
    s.run(1.0)
    ow = s[C].ow
    out = ow.awake(s.now + 2 * DEADTIME)
    assert any("did not run" in getattr(a, "text", "") for a in out)
