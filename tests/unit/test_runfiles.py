"""runfiles: atomic writes, key=value files, fifos; and wire's message lines."""

import os
import threading

import pytest

from hb import runfiles, wire


def test_write_atomic_replaces_whole_file(tmp_path):
    p = str(tmp_path / "status")
    runfiles.write_atomic(p, "a=1\n")
    runfiles.write_atomic(p, "b=2\n")
    assert runfiles.read_kv(p) == {"b": "2"}
    assert os.listdir(tmp_path) == ["status"]


def test_reader_never_sees_a_partial_file(tmp_path):
    p = str(tmp_path / "status")
    big = "x=" + "y" * 200000 + "\n"
    runfiles.write_atomic(p, big)
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            t = runfiles.read_text(p)
            if t not in (big, big.replace("y", "z")):
                bad.append(len(t or ""))

    th = threading.Thread(target=reader)
    th.start()
    for i in range(50):
        runfiles.write_atomic(p, big if i % 2 else big.replace("y", "z"))
    stop.set()
    th.join()
    assert bad == []


def test_parse_kv_skips_comments_and_junk():
    assert runfiles.parse_kv("# c\n\nst=active\njunk\nrsc_hold = local\n") == {
        "st": "active", "rsc_hold": "local"}


def test_read_missing_file():
    assert runfiles.read_text("/nonexistent/hb/x") is None
    assert runfiles.read_kv("/nonexistent/hb/x") == {}


def test_fifo_without_reader_says_not_running(tmp_path):
    p = str(tmp_path / "watch.fifo")
    with pytest.raises(runfiles.NotRunning):
        runfiles.fifo_send(p, "standby all")
    runfiles.make_fifo(p)
    with pytest.raises(runfiles.NotRunning):
        runfiles.fifo_send(p, "standby all")


def test_fifo_reader_gets_whole_lines_and_no_eof(tmp_path):
    p = str(tmp_path / "watch.fifo")
    rfd, keep = runfiles.open_fifo_reader(p)
    try:
        r = runfiles.LineReader(rfd)
        runfiles.fifo_send(p, "standby all")
        runfiles.fifo_send(p, "takeover local\n")
        assert r.read() == ["standby all", "takeover local"]
        assert r.read() == [] and not r.eof
    finally:
        os.close(rfd)
        os.close(keep)


def test_fifo_refuses_over_pipe_buf(tmp_path):
    p = str(tmp_path / "f")
    rfd, keep = runfiles.open_fifo_reader(p)
    try:
        with pytest.raises(ValueError):
            runfiles.fifo_send(p, "x" * 5000)
    finally:
        os.close(rfd)
        os.close(keep)


def test_make_fifo_refuses_a_regular_file(tmp_path):
    p = tmp_path / "f"
    p.write_text("")
    with pytest.raises(OSError):
        runfiles.make_fifo(str(p))


@pytest.mark.parametrize("fields", [
    {"t": "status", "st": "active"},
    {"ld": "0.00 0.02 0.00 1/95 8735", "x": "a=b%c\nd\r\t", "empty": ""},
    {"k%=": "v v"},
])
def test_message_line_round_trip(fields):
    line = wire.format_line(fields)
    assert "\n" not in line and line.count(" ") == len(fields) - 1
    assert wire.parse_line(line) == fields


def test_message_line_tolerates_bad_escapes_and_words():
    assert wire.parse_line("a=%zz b=%4 junk c=%41\n") == {"a": "%zz", "b": "%4", "c": "A"}
