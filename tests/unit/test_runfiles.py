"""runfiles: atomic writes, key=value files, fifos; the message lines; UUCP locks."""

import os
import threading

import pytest

from hb import lines, runfiles


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
    line = lines.format_line(fields)
    assert "\n" not in line and line.count(" ") == len(fields) - 1
    assert lines.parse_line(line) == fields


def test_message_line_tolerates_bad_escapes_and_words():
    assert lines.parse_line("a=%zz b=%4 junk c=%41\n") == {"a": "%zz", "b": "%4", "c": "A"}


# ---------------------------------------------------------------- files others read, safely

def test_temp_names_are_unpredictable_and_planted_names_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    names = iter(["planted", "planted", "fresh"])
    monkeypatch.setattr(runfiles, "token_hex", lambda n: next(names))
    os.symlink(victim, tmp_path / ".status.new.planted")
    p = str(tmp_path / "status")
    runfiles.write_atomic(p, "a=1\n", 0o640)
    assert victim.read_text() == "precious\n"
    assert runfiles.read_text(p) == "a=1\n"
    assert os.stat(p).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == [".status.new.planted", "status", "victim"]
    monkeypatch.undo()
    seen = set()
    for _ in range(3):
        fd, path = runfiles.create_excl(str(tmp_path), "x.")
        os.close(fd)
        seen.add(path)
    assert len(seen) == 3 and all(len(os.path.basename(s)) == 18 for s in seen)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    p = str(tmp_path / "status")
    runfiles.write_atomic(p, "old\n")

    def full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runfiles.os, "write", full)
    with pytest.raises(OSError):
        runfiles.write_atomic(p, "new\n")
    monkeypatch.undo()
    assert runfiles.read_text(p) == "old\n" and os.listdir(tmp_path) == ["status"]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_files_logs_once_retries_and_recovers(tmp_path, caplog):
    import logging
    d = tmp_path / "gone"                 # a directory that is not there (yet)
    clock = Clock()
    files = runfiles.Files(logging.getLogger("test"), every=1.0, clock=clock)
    p = str(d / "state")
    with caplog.at_level(logging.INFO, "test"):
        assert files.write(p, "st=1\n") is False
        assert files.write(p, "st=2\n") is False          # newest text owed, logged once
        assert files.next_due() == 101.0
        assert files.retry() is False                       # not due yet: not even tried
        clock.t = 101.0
        assert files.retry() is False                       # due, still failing
        d.mkdir()
        assert files.retry() is False and files.next_due() == 102.0
        clock.t = 102.0
        assert files.retry() is True and files.next_due() is None
    assert runfiles.read_text(p) == "st=2\n"
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert msgs == [("ERROR", "cannot write %s: No such file or directory; trying again "
                     "every 1 s" % p), ("WARNING", "%s written again" % p)]


def test_open_owned_refuses_symlinks_and_other_users_files(tmp_path):
    mine = tmp_path / "lock"
    fd = runfiles.open_owned(str(mine), os.O_RDWR | os.O_CREAT)
    os.close(fd)
    os.symlink(mine, tmp_path / "link")
    with pytest.raises(OSError):
        runfiles.open_owned(str(tmp_path / "link"), os.O_RDWR | os.O_CREAT)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.write_text("")
        os.chown(theirs, 65534, 65534)
        with pytest.raises(OSError) as e:
            runfiles.open_owned(str(theirs), os.O_RDWR | os.O_CREAT)
        assert "not a regular file of uid 0" in str(e.value)
        os.mkfifo(tmp_path / "fifo")
        os.chown(tmp_path / "fifo", 65534, 65534)
        with pytest.raises(OSError):
            runfiles.make_fifo(str(tmp_path / "fifo"))


# ---------------------------------------------------------------- UUCP locks in /run/lock

def _lockdir(tmp_path):
    d = tmp_path / "lock"
    d.mkdir()
    os.chmod(d, 0o1777)                    # as /run/lock: world-writable, sticky
    return d


@pytest.fixture
def tty(tmp_path):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield path
    os.close(master)


def _lock(d, tty, pid, uid=0, age=0.0):
    from hb import serial
    p = d / ("LCK.." + os.path.realpath(tty)[5:].replace("/", "_"))
    p.write_text("%10d\n" % pid)
    os.chown(p, uid, uid)
    t = os.stat(p).st_mtime - age
    os.utime(p, (t, t))
    assert serial.lock_owner(str(p)) == pid
    return p


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@root_only
def test_uucp_temp_file_never_follows_a_planted_symlink(tmp_path, tty, monkeypatch):
    from hb import serial
    d = _lockdir(tmp_path)
    victim = tmp_path / "shadow"
    victim.write_text("precious\n")
    os.symlink(victim, d / "LTMP.planted")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(runfiles, "token_hex", lambda n: next(names))
    lock = serial.uucp_lock(tty, str(d))
    assert victim.read_text() == "precious\n"
    assert open(lock).read() == "%10d\n" % os.getpid()
    assert sorted(os.listdir(d)) == sorted(["LTMP.planted", os.path.basename(lock)])
    serial.uucp_unlock(lock)


@root_only
@pytest.mark.parametrize("uid,age", [(65534, 0.0), (0, 60.0), (65534, 60.0)])
def test_a_fake_lock_naming_pid_1_does_not_disable_the_port(tmp_path, tty, uid, age):
    """PID 1 lives but does not use the port: a lock naming it written by another
    user (forged) or older than the grace (a PID reused after a reboot) is taken over."""
    from hb import serial
    d = _lockdir(tmp_path)
    p = _lock(d, tty, 1, uid, age)
    assert serial.lock_in_use(str(p), os.path.realpath(tty)) is None
    assert serial.uucp_lock(tty, str(d)) == str(p)
    assert p.read_text() == "%10d\n" % os.getpid() and os.stat(p).st_uid == 0
    serial.uucp_unlock(str(p))


@root_only
def test_a_fresh_root_lock_of_a_live_process_waits_for_the_grace_only(tmp_path, tty):
    from hb import serial
    d = _lockdir(tmp_path)
    p = _lock(d, tty, 1, 0, 0.0)
    with pytest.raises(OSError) as e:
        serial.uucp_lock(tty, str(d))
    assert "locked by process 1" in str(e.value)
    assert serial.lock_in_use(str(p), tty, now=os.stat(p).st_mtime + serial.LOCK_GRACE) is None


@root_only
def test_a_process_that_has_the_port_open_keeps_its_lock(tmp_path, tty):
    import subprocess
    from hb import serial
    d = _lockdir(tmp_path)
    with open(tty, "rb", buffering=0) as port:
        user = subprocess.Popen(["sleep", "30"], stdin=port, user=65534)
    try:
        p = _lock(d, tty, user.pid, 65534, 3600.0)          # old, a user's: still in use
        with pytest.raises(OSError) as e:
            serial.uucp_lock(tty, str(d))
        assert "locked by process %d" % user.pid in str(e.value)
        assert p.read_text() == "%10d\n" % user.pid
    finally:
        user.kill()
        user.wait()
    assert serial.uucp_lock(tty, str(d)) == str(p)            # its process gone: stale
    serial.uucp_unlock(str(p))


@root_only
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_lock_that_is_no_regular_file_is_neither_followed_nor_blocks(tmp_path, tty, kind):
    from hb import serial
    d = _lockdir(tmp_path)
    p = d / ("LCK.." + os.path.realpath(tty)[5:].replace("/", "_"))
    victim = tmp_path / "victim"
    victim.write_text("%10d\n" % os.getppid())
    if kind == "fifo":
        os.mkfifo(p)
    else:
        os.symlink(victim, p)
    assert serial.uucp_lock(tty, str(d)) == str(p)
    assert p.read_text() == "%10d\n" % os.getpid() and not p.is_symlink()
    assert victim.read_text() == "%10d\n" % os.getppid()
    serial.uucp_unlock(str(p))


def test_fifo_writer_keeps_lines_until_read_then_drops_them_late(tmp_path, caplog):
    """beat.fifo while hb-beat restarts: lines wait, in order, then arrive; a line
    nobody reads within `keep` seconds is dropped with an error."""
    import logging
    path = str(tmp_path / "beat.fifo")
    runfiles.make_fifo(path)
    w = runfiles.FifoWriter(path, "hb-beat", logging.getLogger("hb"), keep=5.0)
    w.send("t=one", 0.0)
    w.send("t=two", 1.0)
    assert [d for _, d in w.pending] == [b"t=one\n", b"t=two\n"]       # no reader yet
    rfd, keep = runfiles.open_fifo_reader(path)
    try:
        w.flush(2.0)
        assert w.pending == [] and os.read(rfd, 4096) == b"t=one\nt=two\n"
        w.close()
        os.close(rfd)
        os.close(keep)
        rfd = keep = -1
        with caplog.at_level(logging.ERROR, logger="hb"):
            w.send("t=three", 3.0)
            w.flush(7.9)
            assert w.pending and not caplog.records
            w.flush(8.1)
        assert w.pending == []
        assert caplog.records[-1].getMessage() == \
            "hb-beat is not reading beat.fifo: message lost: t=three"
    finally:
        for fd in (rfd, keep):
            if fd >= 0:
                os.close(fd)


def test_write_in_place_pads_to_the_old_length(tmp_path):
    p = str(tmp_path / "state")
    runfiles.write_atomic(p, "st=active\nrsc_hold=all\n")
    assert runfiles.write_in_place(p, "st=up\n")
    assert len(open(p).read()) == len("st=active\nrsc_hold=all\n")
    assert runfiles.read_kv(p) == {"st": "up"}
    assert not runfiles.write_in_place(str(tmp_path / "none"), "x=1\n")
    assert not runfiles.write_in_place(p, "x" * (runfiles.PIPE_BUF + 1))


def test_read_peer_stuck_only_for_the_peer_it_names(tmp_path):
    p = str(tmp_path / "peer-stuck")
    runfiles.write_atomic(p, "node=caesar\nstuck=1,3,x,1234567\n")
    assert runfiles.read_peer_stuck(p, "caesar") == [1, 3]
    assert runfiles.read_peer_stuck(p, "brutus") == []
    assert runfiles.read_peer_stuck(p, None) == []
    assert runfiles.read_peer_stuck(str(tmp_path / "none"), "caesar") == []
