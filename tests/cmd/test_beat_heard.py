"""hb-beat's RUNDIR/heard as hb-watch uses it, driven by hand: two hb-beats on a
bridge (bcast); alpha's output is read here and its offer answered on beat.fifo.
Repeated statuses stop being lines and move their slots instead; a change, a gap
(SIGSTOP) and a new hb-watch in RUNDIR/state bring lines back."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from hb import heard, lines, runfiles
from lab.wait import until
from test_beat import BIN, confdir


class Out:
    """alpha's hb-beat and every line it prints, with the time it was read."""

    def __init__(self, p: subprocess.Popen) -> None:
        self.p, self.got, self.lock = p, [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.p.stdout:
            with self.lock:
                self.got.append((time.monotonic(), lines.parse_line(raw)))

    def since(self, after: float, **kw: str) -> list[dict]:
        with self.lock:
            return [d for at, d in self.got if at >= after
                    and all(d.get(k) == v for k, v in kw.items())]


def got(pred, timeout: float, what: str):
    """pred()'s first true value, within timeout."""
    box: list = []
    until(lambda: box.append(pred()) or box[-1], timeout=timeout, what=what)
    return box[-1]


def start(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    db = confdir(lab.tmp, "beta", "bcast eth0")
    pb = b.popen([BIN, *db["argv"], "--fifo", "none"], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    pa = a.popen([BIN, *da["argv"], "--fifo", "none"], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    return Out(pa), pb, da


def answer(out: Out, da: dict, t0: float = 0.0) -> tuple[dict, heard.Sheet]:
    offer = got(lambda: (out.since(t0, t="heard") or [None])[-1], timeout=10,
                what="an offer of RUNDIR/heard")
    slots = lines.heard_slots(offer)
    sheet = heard.Sheet(offer["file"], offer["token"], len(slots))
    with open(os.path.join(da["r"], runfiles.BEAT_FIFO), "w") as f:
        f.write("!heard %s\n" % offer["token"])
    return offer, sheet


def test_repeats_go_to_the_board_changes_and_gaps_stay_lines(lab):
    out, pb, da = start(lab)
    until(lambda: out.since(0, src="beta", t="status"), timeout=10, what="beta heard")
    offer, sheet = answer(out, da)
    slots = lines.heard_slots(offer)
    assert slots == [("alpha", "local"), ("alpha", "eth0"), ("beta", "eth0")], slots
    assert offer["file"] == os.path.join(da["r"], heard.HEARD)
    time.sleep(0.5)                       # the answer read; one line of each after it
    t1 = time.monotonic()
    counts = [sheet.read(i)[1] for i in range(3)]
    time.sleep(1.5)                       # 15 beats of each
    # a beat later than 1.25 keepalives is a line (a late beat); this machine may be busy
    assert len(out.since(t1, t="status")) <= 15, out.since(t1)     # of 45
    after = [sheet.read(i) for i in range(3)]
    for i in range(3):
        assert after[i][1] - counts[i] >= 10, (slots[i], counts[i], after[i])
        assert time.monotonic() - after[i][0] < 0.5, (slots[i], after[i])

    # a change of our own status: a line with it, then quiet again
    with open(os.path.join(da["r"], "state"), "w") as f:
        f.write("st=active\nrsc_hold=local\n")
    t2 = time.monotonic()
    mine = got(lambda: out.since(t2, src="alpha", _via="local"), timeout=3,
               what="alpha's changed status as a line")
    assert mine[0]["st"] == "active" and mine[0]["rsc_hold"] == "local", mine
    time.sleep(1.0)
    assert len(out.since(t2, src="alpha", _via="local")) <= 5     # of 10

    # a gap longer than 1.25 keepalives (hb-beat stopped): both sides are lines again
    os.kill(out.p.pid, signal.SIGSTOP)
    time.sleep(0.5)
    t3 = time.monotonic()
    os.kill(out.p.pid, signal.SIGCONT)
    until(lambda: out.since(t3, src="alpha", _via="local")
          and out.since(t3, src="beta", t="status"), timeout=3,
          what="our status and beta's as lines after the gap")
    time.sleep(0.5)
    assert len(out.since(t3, src="alpha", _via="local")) <= 3     # of 5

    # a new hb-watch writes RUNDIR/state: offered again, every status a line until answered
    t4 = time.monotonic()
    with open(os.path.join(da["r"], "state"), "w") as f:
        f.write("st=active\nrsc_hold=local\nwatch=%s\n" % runfiles.writer_id())
    again = got(lambda: out.since(t4, t="heard"), timeout=3, what="a new offer")
    assert again[0]["token"] == offer["token"]
    until(lambda: len(out.since(t4, src="beta", t="status")) >= 3, timeout=3,
          what="beta's statuses as lines again")
    t5 = time.monotonic()
    answer(out, da, t4)
    time.sleep(0.5)
    t6 = time.monotonic()
    time.sleep(1.0)
    assert len(out.since(t6, t="status")) <= 10, (t5, out.since(t6))     # of 30
    out.p.send_signal(signal.SIGTERM)
    assert out.p.wait(5) == 0
    pb.terminate()
    pb.wait(5)


def test_a_wrong_token_or_an_unknown_control_line_changes_nothing(lab):
    out, pb, da = start(lab)
    until(lambda: out.since(0, t="heard"), timeout=10, what="the offer")
    with open(os.path.join(da["r"], runfiles.BEAT_FIFO), "w") as f:
        f.write("!heard 0000000000000000\n!hello\n")
    time.sleep(0.5)
    t1 = time.monotonic()
    until(lambda: len(out.since(t1, src="beta", t="status")) >= 5
          and len(out.since(t1, src="alpha", _via="local")) >= 5, timeout=5,
          what="every status still a line")
    out.p.send_signal(signal.SIGTERM)
    _, err = out.p.communicate(timeout=5)
    assert "beat.fifo: unknown control line: !hello" in err
    assert "message not sent" not in err           # not taken for messages
    pb.terminate()
    pb.wait(5)
