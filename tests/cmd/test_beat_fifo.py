"""hb-beat reads Heartbeat's message fifo: what shellfuncs' ha_clustermsg writes is sent
to the peer and printed here at once; garbage and floods are logged and dropped."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import time

from hb import lines

from test_beat import BIN, confdir

CLUSTERMSG = ". /etc/ha.d/shellfuncs && ha_clustermsg <<!MSG\nt=admin_note\nnote=%s\n!MSG\n"


def lines_until(p: subprocess.Popen, pred, timeout: float = 10) -> list[dict]:
    """Parsed stdout lines of p until one satisfies pred (fail after timeout)."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    os.set_blocking(fd, False)
    got: list[dict] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        for ln in done:
            m = lines.parse_line(ln.decode())
            got.append(m)
            if pred(m):
                return got
    raise AssertionError("no such line in %.0f s; got %s" % (timeout, [
        g for g in got if g.get("t") != "status"][-10:]))


def test_fifo_message_sent_and_delivered_locally(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    db = confdir(lab.tmp, "beta", "bcast eth0")
    fifo = os.path.join(lab.tmp, "alpha-lib", "fifo")       # its directory made too
    listen = b.popen([BIN, *db["argv"], "--listen"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
    beat = a.popen([BIN, *da["argv"], "--fifo", fifo], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    lines_until(beat, lambda m: m.get("t") == "status")     # running, fifo open
    # the listener hears alpha before the message is sent (it is sent once)
    lines_until(listen, lambda m: m.get("t") == "status" and m.get("src") == "alpha", 30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_IMODE(os.stat(fifo).st_mode) == 0o600

    # shellfuncs' own ha_clustermsg, pointed at this fifo
    r = subprocess.run(["sh", "-c", CLUSTERMSG % "hello"], env=dict(os.environ, HA_FIFO=fifo),
                       timeout=10, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    own = lines_until(beat, lambda m: m.get("t") == "admin_note")[-1]
    assert (own["note"], own["src"], own["_via"], own["_self"]) == ("hello", "alpha",
                                                                    "local", "1")
    assert own["_auth"].startswith("2 ") and "seq" in own
    heard = lines_until(listen, lambda m: m.get("t") == "admin_note")[-1]
    assert (heard["note"], heard["src"], heard["seq"]) == ("hello", "alpha", own["seq"])

    # garbage, a flood and bad messages: dropped with warnings, hb-beat carries on
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        for chunk in (b"junk\n>>>\nno equals\n<<<\n>>>\nx=1\n<<<\n",
                      b">>>\nt=a\nsrc=forged\nv=" + b"y" * 100000 + b"\n<<<\n",
                      b"\x00\xff" * 1000 + b"\n",
                      b">>>\nt=admin_note\nnote=after\n<<<\n"):
            written = 0
            deadline = time.monotonic() + 10
            while written < len(chunk) and time.monotonic() < deadline:
                try:
                    written += os.write(fd, chunk[written:])
                except BlockingIOError:
                    select.select([], [fd], [], 0.1)
    finally:
        os.close(fd)
    after = lines_until(listen, lambda m: m.get("note") == "after")[-1]
    assert after["src"] == "alpha"
    seen = lines_until(beat, lambda m: m.get("note") == "after")
    assert not any(m.get("src") == "forged" for m in seen)
    assert beat.poll() is None
    lab.stop(beat)
    lab.stop(listen)
    err = beat.stderr.read().decode()
    assert "fifo: text outside a message: b'junk'" in err
    assert "fifo: message dropped: bad line 'no equals'" in err
    assert "fifo: message dropped: no t= field" in err
    assert "line longer than 4096 bytes" in err
    assert "Traceback" not in err


def test_fifo_none_and_a_name_taken(lab, tmp_path):
    a = lab.host("a", "198.18.0.1/24")
    da = confdir(lab.tmp, "alpha", "bcast eth0")
    taken = tmp_path / "fifo"
    taken.write_text("a plain file\n")
    for arg, warn in (("none", False), (str(taken), True)):
        beat = a.popen([BIN, *da["argv"], "--fifo", arg], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        lines_until(beat, lambda m: m.get("t") == "status")     # runs without it
        lab.stop(beat)
        err = beat.stderr.read().decode()
        assert ("not read (messages written there are not sent)" in err) == warn, err
    assert taken.read_text() == "a plain file\n"
