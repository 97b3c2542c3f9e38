"""Media against real file descriptors: a serial medium on a pty that nobody reads
never blocks and never builds a backlog; frames cross a pty intact; interface
addresses via ioctl; the generation file."""

from __future__ import annotations

import errno
import logging
import os
import select
import subprocess
import time

import pytest

from hb import media, runfiles, serial, settings, wire

KEY = b"k"


def status(seq: int) -> bytes:
    return wire.render_classic([("t", 0, "status"), ("st", 0, "up"), ("src", 0, "alpha"),
                                ("seq", 0, "%x" % seq), ("pad", 0, "x" * 200)], 1, "sha1", KEY)


@pytest.fixture(autouse=True)
def lockdir(tmp_path, monkeypatch):
    """Serial ports opened here are locked in a directory of the test's own, never
    in /var/lock (a port left open would hold a lock there with pytest's PID)."""
    d = tmp_path / "lock"
    d.mkdir()
    monkeypatch.setattr(serial, "LOCKDIR", str(d))
    return d


def lock_of(lockdir, tty: str):
    return lockdir / ("LCK.." + os.path.realpath(tty)[5:].replace("/", "_"))


@pytest.fixture
def pty():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.set_blocking(master, False)
    yield master, path
    os.close(master)
    os.close(slave)


def drain(fd: int, seconds: float = 0.3) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        out += chunk
    return out


def test_serial_unread_port_never_blocks_nor_backlogs(pty):
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path), 19200)
    t = time.monotonic()
    worst = 0.0
    for seq in range(1, 2001):
        t1 = time.monotonic()
        m.send(status(seq), True, t1)
        worst = max(worst, time.monotonic() - t1)
    assert m.failed is None
    assert worst < 1.0 and time.monotonic() - t < 30      # never waits for the port
    assert len(m.queue) <= 1 and m.dropped > 1000
    got = serial.SerialFramer().feed(drain(master))
    for _ in range(20):                 # let what remains go out
        m.flush()
        got += serial.SerialFramer().feed(drain(master, 0.05))
    seqs = [int(wire.parse(f).get("seq") or "0", 16) for f in got]
    assert seqs and seqs[-1] == 2000          # the newest status made it out
    assert len(seqs) < 200                    # the rest were replaced, not queued
    assert all(wire.verify(wire.parse(f), {1: ("sha1", KEY)}) for f in got)


def test_serial_messages_not_replaced_by_status(pty):
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path), 19200)
    m.send(status(1), True, 0.0)
    m.send(b">>>\nt=resource\n<<<\n", False, 0.0)
    m.send(status(2), True, 0.0)
    data = b""
    for _ in range(30):
        m.flush()
        data += drain(master, 0.02)
    frames = serial.SerialFramer().feed(data)
    assert b"t=resource" in b"".join(frames)


def test_serial_reads_frames_through_garbage(pty):
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path), 19200)
    assert m.ensure(0.0)
    os.write(master, b"line noise\r\n" + status(7)[:30])
    os.write(master, status(8) + b"\xff\xfe" + status(9))
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:     # the pty passes them on
        select.select([m.fileno()], [], [], 0.5)
        got += m.recv(0.0)
    assert [wire.parse(f).get("seq") for f in got] == ["8", "9"]


def test_serial_hostile_stream_is_bounded(pty):
    """A megabyte of a frame that never ends, then garbage with high bits, through a
    real pty: the framer's buffer stays within the 64 KiB cap plus one read, and the
    next good frame still arrives."""
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path), 19200)
    assert m.ensure(0.0)
    os.set_blocking(master, True)
    fd = m.fileno()
    sent = 0
    worst = 0
    chunk = b">>>\n" + b"x=" + b"\xff" * 4000 + b"\n"
    while sent < 1 << 20:
        os.write(master, chunk)
        sent += len(chunk)
        while select.select([fd], [], [], 0)[0]:
            assert m.recv(0.0) == []
            worst = max(worst, len(m.framer.buf))
    os.write(master, status(5))
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            got = m.recv(0.0)
    assert [wire.parse(f).get("seq") for f in got] == ["5"]
    assert 0 < worst <= wire.MAXDGRAM + 65536
    assert m.framer.garbage > (1 << 20) - 2 * wire.MAXDGRAM
    m.close()


def test_serial_missing_device_fails_once_and_retries(caplog):
    m = serial.Serial(settings.Medium("serial", "/nonexistent/ttyS7"), 19200)
    for i in range(5):
        m.send(status(i), True, i * 0.3)
    assert m.failed and m.fileno() < 0
    assert len([r for r in caplog.records if "ttyS7 failing" in r.getMessage()]) == 1
    assert m.errors == 2                      # opened at 0.0 and 1.2: once per RETRY


def test_loopback_addresses_by_ioctl():
    assert media.if_ipv4("lo") == "127.0.0.1"
    assert media.if_broadcast("lo") == "127.255.255.255"      # no brd set: from the netmask
    with pytest.raises(OSError):
        media.if_ipv4("nosuchif0")


def test_udp_ucast_over_loopback():
    port = 20000 + os.getpid() % 20000
    a = media.Udp(settings.Medium("ucast", "lo", addr="127.0.0.1", port=port))
    assert a.ensure(0.0)
    a.send(b">>>\nt=x\n<<<\n", False, 0.0)
    assert select.select([a.fileno()], [], [], 5)[0]
    assert a.recv(0.0) == [b">>>\nt=x\n<<<\n"]
    a.close()
    assert a.fileno() < 0


def test_generation_increments_and_survives(tmp_path):
    d = str(tmp_path / "state")
    g1, err = runfiles.next_generation(d)
    assert abs(g1 - time.time()) < 5 and err is None
    g2, _ = runfiles.next_generation(d)
    assert g2 == g1 + 1
    with open(os.path.join(d, "generation"), "rb") as f:
        assert f.read() == b"%15d\n" % g2
    with open(os.path.join(d, "generation"), "w") as f:
        f.write("garbage")
    assert abs(runfiles.next_generation(d)[0] - time.time()) < 5
    assert not (tmp_path / "heartbeat").exists()    # made by Heartbeat's package only


def test_generation_continues_heartbeats_both_ways(tmp_path):
    """From Heartbeat to hb and back: each start is one more than the higher counter,
    and Heartbeat's hb_generation is kept current for the day the node goes back."""
    d = str(tmp_path / "hb")
    hbgen = tmp_path / "heartbeat" / "hb_generation"
    assert runfiles.heartbeat_generation(d) == str(hbgen)
    assert runfiles.heartbeat_generation("/var/lib/hb/") == "/var/lib/heartbeat/hb_generation"
    hbgen.parent.mkdir()
    hbgen.write_bytes(b"%15d\n" % 4000000000)          # Heartbeat ran last
    g, err = runfiles.next_generation(d)
    assert (g, err) == (4000000001, None)
    assert hbgen.read_bytes() == b"%15d\n" % g
    hbgen.write_bytes(b"%15d\n" % (g + 5))              # Heartbeat again, 5 starts
    assert runfiles.next_generation(d)[0] == g + 6
    hbgen.write_bytes(b"%15d\n" % 7)                    # lower: hb's own counter wins
    assert runfiles.next_generation(d)[0] == g + 7
    hbgen.write_bytes(b"9" * 5000)                         # not a counter: ignored
    assert runfiles.next_generation(d)[0] == g + 8


def test_no_heavy_imports():
    import subprocess
    import sys
    code = "import hb.beat, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('pyroute2', 'serial', 'asyncio', 'ctypes', 'docopt')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


class Flaky(media.Medium):
    """A medium whose write raises the errors queued in `errs` (None: sent)."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__("x0")
        self.errs: list[int | None] = []
        self.fd = -1
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        self.fd = 99

    def close(self) -> None:
        self.fd = -1

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes, status: bool) -> None:
        e = self.errs.pop(0) if self.errs else None
        if e is not None:
            raise OSError(e, os.strerror(e))


@pytest.mark.parametrize("err", sorted(media.DATAGRAM_ERRORS))
def test_a_datagram_error_loses_that_datagram_only(err, caplog):
    caplog.set_level(logging.INFO, logger="hb")
    m = Flaky()
    m.errs = [None, err, err, None, err] + [err] * 30 + [None]
    got = [m.send(b"x", True, i * 0.5) for i in range(len(m.errs))]
    assert got == [True, False, False, True] + [False] * 31 + [True]
    assert m.opens == 1 and m.fileno() == 99 and m.failed is None     # never closed
    assert m.lost == 33 and m.sent == 3
    lines = [r.getMessage() for r in caplog.records]
    failing = [ln for ln in lines if "failing" in ln]
    assert len(failing) == 1 and "datagram lost" in failing[0]
    assert "retrying" not in failing[0]
    summary = [ln for ln in lines if "more datagram(s) not sent" in ln]
    assert len(summary) == 1 and summary[0].startswith("medium test x0: ")  # 1 per SUMMARY
    assert [ln for ln in lines if "working again" in ln] == ["medium test x0 working again"]
    assert len(lines) == 3


@pytest.mark.parametrize("err", [errno.EBADF, errno.ENODEV, errno.ENXIO, errno.EIO])
def test_a_socket_or_device_error_reopens_within_retry(err, caplog):
    caplog.set_level(logging.INFO, logger="hb")
    m = Flaky()
    m.retry = 0.1                       # min(RETRY, keepalive) with keepalive 100 ms
    m.errs = [err]
    assert not m.send(b"x", True, 0.0)
    assert m.fileno() < 0 and m.failed and m.lost == 0
    assert not m.send(b"x", True, 0.05)                 # before the retry: not reopened
    assert m.send(b"x", True, 0.1) and m.opens == 2 and m.failed is None
    lines = [r.getMessage() for r in caplog.records]
    assert "retrying every 0.1s" in lines[0] and "working again" in lines[-1]


def test_open_media_retries_within_keepalive():
    cfg = settings.Config(media=[settings.Medium("bcast", "eth0"), settings.Medium("serial", "/x")],
                          keepalive=0.02)
    assert [m.retry for m in media.open_media(cfg)] == [0.02, 0.02]
    cfg.keepalive = 2.0
    assert [m.retry for m in media.open_media(cfg)] == [media.RETRY] * 2


# ---------------------------------------------------------------- UUCP locks

def test_serial_takes_the_uucp_lock_and_gives_it_back(pty, lockdir):
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path), 19200)
    m.open()
    lock = lock_of(lockdir, path)
    assert lock.read_text() == "%10d\n" % os.getpid()          # Heartbeat's, cu's format
    assert sorted(p.name for p in lockdir.iterdir()) == [lock.name]
    m.close()
    assert list(lockdir.iterdir()) == []


def test_serial_locked_by_a_live_process_is_not_opened(pty, lockdir):
    master, path = pty
    other = subprocess.Popen(["sleep", "30"])
    try:
        lock = lock_of(lockdir, path)
        lock.write_text("%10d\n" % other.pid)
        m = serial.Serial(settings.Medium("serial", path), 19200)
        with pytest.raises(OSError) as e:
            m.open()
        assert e.value.errno == errno.EBUSY
        assert "locked by process %d" % other.pid in str(e.value)
        assert m.fileno() == -1 and lock.read_text() == "%10d\n" % other.pid
    finally:
        other.kill()
        other.wait()


def test_a_stale_uucp_lock_is_taken_over(pty, lockdir):
    master, path = pty
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = lock_of(lockdir, path)
    lock.write_text("%10d\n" % gone.pid)
    m = serial.Serial(settings.Medium("serial", path), 19200)
    m.open()
    assert lock.read_text() == "%10d\n" % os.getpid()
    m.close()


def test_uucp_lock_names_and_an_unwritable_lock_directory(tmp_path):
    assert serial.uucp_lock("/dev/null", str(tmp_path)) == str(tmp_path / "LCK..null")
    serial.uucp_unlock(str(tmp_path / "LCK..null"))
    assert serial.uucp_lock("/dev/null", str(tmp_path / "missing")) is None


@pytest.mark.parametrize("baud", [19200, 115200])
def test_serial_writes_paced_512_byte_fragments_as_heartbeat(pty, baud):
    """A message longer than 512 bytes leaves in fragments of at most 512 bytes,
    512 / (baud / 8) s apart (Heartbeat's serial.c), without send() or flush() ever
    blocking; the receiver's framer puts it back together."""
    master, path = pty
    m = serial.Serial(settings.Medium("serial", path, baud=baud), baud)
    pace = serial.frag_delay(baud)
    assert pace == 512 / (baud // 8)
    fields = [("t", 0, "resource"), ("src", 0, "alpha"), ("seq", 0, "7")]
    fields += [("f%02d" % i, 0, "v" * 40) for i in range(30)]
    big = wire.render_classic(fields, 1, "sha1", KEY)
    assert 1024 < len(big) <= 1536                        # three fragments
    t0 = time.monotonic()
    m.send(big, False, t0)
    m.send(status(9), True, t0)                           # waits for the whole message
    assert time.monotonic() - t0 < 0.3     # the whole message takes 0.43 s
    chunks: list[tuple[float, bytes]] = []
    worst = 0.0
    deadline = t0 + 5
    while time.monotonic() < deadline and (m.cur or m.queue or m._outq()):
        wait = m.timeout()
        r, _, _ = select.select([master], [m.fileno()] if m.wants_write() else [], [],
                                0.05 if wait is None else min(wait, 0.05))
        if master in r:
            chunks.append((time.monotonic(), os.read(master, 65536)))
        t1 = time.monotonic()
        m.flush()
        worst = max(worst, time.monotonic() - t1)
    chunks += [(time.monotonic(), drain(master, 0.1))]
    chunks = [(t, c) for t, c in chunks if c]
    data = b"".join(c for _, c in chunks)
    assert data.startswith(big) and worst < 0.02
    # where each fragment starts: at 0, 512, 1024 of the message; each arrived after
    # the pause (a pty delivers a write at once, in one read here)
    starts, pos = [], 0
    for t, c in chunks:
        if pos in (512, 1024) or pos == 0:
            starts.append(t)
        assert min(len(c), max(0, len(big) - pos)) <= 512, [len(c) for _, c in chunks]
        pos += len(c)
    assert len(starts) >= 3, [len(c) for _, c in chunks]
    gaps = [y - x for x, y in zip(starts[:3], starts[1:3])]
    assert all(pace * 0.9 <= g < pace + 0.15 for g in gaps), (gaps, pace)
    frames = serial.SerialFramer().feed(data)
    assert frames[0] == big and wire.verify(wire.parse(frames[0]), {1: ("sha1", KEY)})
    assert wire.parse(frames[1]).get("seq") == "9"


def test_fragments_and_pace():
    assert serial.fragments(b"x" * 1100) == [b"x" * 512, b"x" * 512, b"x" * 76]
    assert serial.fragments(b"x" * 512) == [b"x" * 512]
    assert round(serial.frag_delay(19200), 4) == 0.2133       # 512 / 2400
    assert round(serial.frag_delay(9600), 4) == 0.4267
