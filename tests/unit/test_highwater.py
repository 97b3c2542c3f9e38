"""STATEDIR/highwater as hb-beat keeps it (runfiles.Highwater): made safely once,
then overwritten in place with one pwrite; a torn or garbled file loads with its bad
lines skipped; station.Beat.save logs a failure once, retries and recovers."""

from __future__ import annotations

import logging
import os

import pytest

from hb import runfiles, sequence, station, wire
from hb import settings as hs

KEY = "s3cr3tKey"


def files(d) -> list[str]:
    return sorted(os.listdir(d))


def test_made_once_then_overwritten_in_place(tmp_path):
    hw = runfiles.Highwater(str(tmp_path))
    path = tmp_path / "highwater"
    old = os.umask(0o022)
    try:
        hw.save({"beta": (5, 0x1d, 0x6b060ac0), "gamma": (7, 0xffffffffff, 0x6b060ac1)})
    finally:
        os.umask(old)
    st = path.stat()
    assert oct(st.st_mode & 0o777) == "0o600"
    assert st.st_size % runfiles.RECORD == 0
    assert runfiles.load_highwater(str(tmp_path)) == (
        {"beta": (5, 0x1d, 0x6b060ac0), "gamma": (7, 0xffffffffff, 0x6b060ac1)}, [])
    for seq in range(0x1e, 0x30):
        hw.save({"beta": (5, seq, 0x6b060ac0)})      # shorter: no tail of gamma left
        assert runfiles.load_highwater(str(tmp_path)) == ({"beta": (5, seq, 0x6b060ac0)}, [])
        assert path.stat().st_ino == st.st_ino       # the same file, written over
    assert path.stat().st_size == runfiles.RECORD    # cut when it shrank by a record
    assert files(tmp_path) == ["highwater"]
    big = {"n%03d" % i: (i, i, i) for i in range(40)}
    hw.save(big)                                      # grows: several records
    assert path.stat().st_ino == st.st_ino and path.stat().st_size % runfiles.RECORD == 0
    assert runfiles.load_highwater(str(tmp_path)) == (big, [])
    hw.save({})
    assert runfiles.load_highwater(str(tmp_path)) == ({}, [])
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_removed_or_replaced_file_is_made_again(tmp_path):
    hw = runfiles.Highwater(str(tmp_path))
    path = tmp_path / "highwater"
    hw.save({"beta": (5, 1, 1)})
    os.unlink(path)
    hw.save({"beta": (5, 2, 1)})
    assert runfiles.load_highwater(str(tmp_path))[0] == {"beta": (5, 2, 1)}
    os.rename(path, tmp_path / "old")                # moved away: not written through
    hw.save({"beta": (5, 3, 1)})
    assert runfiles.load_highwater(str(tmp_path))[0] == {"beta": (5, 3, 1)}
    assert "beta 5 2 1" in (tmp_path / "old").read_text()
    os.unlink(tmp_path / "old")
    target = tmp_path / "target"
    target.write_text("untouched\n")
    os.unlink(path)
    os.symlink(target, path)                          # a planted symlink is replaced
    hw.save({"beta": (5, 4, 1)})
    assert target.read_text() == "untouched\n" and not path.is_symlink()
    assert runfiles.load_highwater(str(tmp_path))[0] == {"beta": (5, 4, 1)}
    assert files(tmp_path) == ["highwater", "target"]


def test_a_failed_write_raises_and_is_tried_afresh(tmp_path):
    hw = runfiles.Highwater(str(tmp_path))
    path = tmp_path / "highwater"
    hw.save({"beta": (5, 1, 1)})
    os.unlink(path)
    os.mkdir(path)                                    # rename(2) onto it fails
    for _ in range(3):
        with pytest.raises(OSError):
            hw.save({"beta": (5, 2, 1)})
    assert files(tmp_path) == ["highwater"] and os.listdir(path) == []
    os.rmdir(path)
    hw.save({"beta": (5, 3, 1)})
    assert runfiles.load_highwater(str(tmp_path))[0] == {"beta": (5, 3, 1)}
    hw.close()
    hw.close()


@pytest.mark.parametrize("damage", ["cut", "cut-number", "zeros", "garbage"])
def test_a_damaged_file_loads_with_bad_lines_skipped(tmp_path, damage):
    """What a power cut may leave of a write that was never fsync'd, or worse."""
    hw = runfiles.Highwater(str(tmp_path))
    hw.save({"beta": (5, 0x1ff, 0x6b060ac0), "gamma": (6, 0x2ff, 0x6b060ac0)})
    path = tmp_path / "highwater"
    data = path.read_bytes()
    g = data.index(b"gamma")
    if damage == "cut":
        data = data[:g + 9]                                   # "gamma 6 2": 3 words
    elif damage == "cut-number":
        data = data[:g + 16]                                  # "gamma 6 2ff 6b06": no newline
    elif damage == "zeros":
        data = data[:g] + b"\0" * (len(data) - g)            # the size, not the data
    else:
        data = b"\xff\xfe junk\n" + data[:g] + b"\x00\x01\ngamma 1 -1 2\ngamma 6 2ff 6b060a\xc0\n"
    path.write_bytes(data)
    marks, bad = runfiles.load_highwater(str(tmp_path))
    assert bad and all(b.startswith(str(path) + ":") for b in bad)
    want = {"beta": (5, 0x1ff, 0x6b060ac0)}
    assert {n: m for n, m in marks.items() if n in ("beta", "gamma")} == want
    seq = sequence.Sequencer("alpha", ["alpha", "beta", "gamma"], my_gen=9)
    seq.restore(marks)                                        # never a crash either
    assert seq.snapshot() == want
    hw2 = runfiles.Highwater(str(tmp_path))                   # the next run writes it whole
    hw2.save(want)
    assert runfiles.load_highwater(str(tmp_path)) == (want, [])


def test_a_write_torn_between_sectors_leaves_each_line_old_or_new(tmp_path):
    """Many nodes: no line crosses a SECTOR boundary, so a write torn at sectors
    leaves each node's mark either as written before or as written now."""
    before = {"node%02d" % i: (0x6b060ac0 + i, 0xfff + i, 0x6b060ac0) for i in range(60)}
    after = {n: (g, q + 1, t + 1) for n, (g, q, t) in before.items()}
    hw = runfiles.Highwater(str(tmp_path))
    hw.save(before)
    old = (tmp_path / "highwater").read_bytes()
    hw.save(after)
    new = (tmp_path / "highwater").read_bytes()
    S = runfiles.SECTOR
    assert len(old) == len(new) > 3 * S and len(new) % runfiles.RECORD == 0
    for k in range(S, len(new), S):
        assert new[k - 1:k] == b"\n" and old[k - 1:k] == b"\n"
    nsect = -(-len(new) // S)
    for mask in range(1 << nsect):
        torn = b"".join((new if mask >> i & 1 else old)[i * S:(i + 1) * S]
                        for i in range(nsect))
        marks, bad = sequence.parse_highwater(torn.decode())
        assert bad == [] and set(marks) == set(before)
        assert all(marks[n] in (before[n], after[n]) for n in marks)


def beta_status(seq: int, gen: int = 7) -> bytes:
    return wire.render_classic(
        [("t", 0, "status"), ("st", 0, "up"), ("src", 0, "beta"), ("seq", 0, "%x" % seq),
         ("hg", 0, "%x" % gen), ("ts", 0, "6b060ac0"), ("ttl", 0, "3")], 2, "md5", KEY.encode())


def test_beat_saves_once_a_second_logs_a_failure_once_and_recovers(tmp_path, caplog):
    keys = {2: hs.AuthKey(2, "md5", KEY.encode())}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], auth=hs.Auth(2, keys))
    sd = tmp_path / "state"
    sd.mkdir()
    b = station.Beat(cfg, "alpha", str(tmp_path), gen=5, statedir=str(sd))
    path = sd / "highwater"
    assert b.rx.receive(beta_status(1), 0.0)[0] == "ok"
    b.save(0.0)
    ino = path.stat().st_ino
    assert runfiles.load_highwater(str(sd))[0] == {"beta": (7, 1, 0x6b060ac0)}
    assert b.rx.receive(beta_status(2), 0.5)[0] == "ok"
    b.save(0.5)                                               # within PERSIST_EVERY
    assert runfiles.load_highwater(str(sd))[0] == {"beta": (7, 1, 0x6b060ac0)}
    b.save(0.0 + sequence.PERSIST_EVERY)
    assert runfiles.load_highwater(str(sd))[0] == {"beta": (7, 2, 0x6b060ac0)}
    assert path.stat().st_ino == ino
    assert b.rx.receive(beta_status(1, gen=8), 1.2)[0] == "ok"
    b.save(1.2)                                               # a new generation: at once
    assert runfiles.load_highwater(str(sd))[0] == {"beta": (8, 1, 0x6b060ac0)}
    os.unlink(path)
    os.mkdir(path)
    caplog.set_level(logging.INFO, logger="hb")
    t = 3.0
    for s in range(2, 6):
        assert b.rx.receive(beta_status(s, gen=8), t)[0] == "ok"
        b.save(t)
        t += sequence.PERSIST_EVERY
    unable = [r for r in caplog.records if "unable to write %s" % path in r.getMessage()]
    assert len(unable) == 1
    os.rmdir(path)
    b.save(t)                                                 # still owed: written now
    assert runfiles.load_highwater(str(sd))[0] == {"beta": (8, 5, 0x6b060ac0)}
    assert any("%s written again" % path in r.getMessage() for r in caplog.records)
    assert files(sd) == ["highwater"]
