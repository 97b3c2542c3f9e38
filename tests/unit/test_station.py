"""station.Beat, hb-beat's library part, with a fake clock: the packets it builds are
the codec's, its receive path never raises, the status words and dt of a start,
RUNDIR/state of a dead hb-watch not advertised."""

from __future__ import annotations

import os

from hb import lines, runfiles, station, wire
from hb import settings as hs

KEY = "s3cr3tKey"


def beta_status(seq: int, gen: int = 7) -> bytes:
    return wire.render_classic(
        [("t", 0, "status"), ("st", 0, "up"), ("src", 0, "beta"), ("seq", 0, "%x" % seq),
         ("hg", 0, "%x" % gen), ("ts", 0, "6b060ac0"), ("ttl", 0, "3")], 2, "md5", KEY.encode())


def test_built_packets_are_the_codecs(tmp_path):
    """The sender's cached rendering is byte for byte wire.render_classic."""
    keys = {1: hs.AuthKey(1, "sha1", b"k1"), 2: hs.AuthKey(2, "crc", b"")}
    for use in (1, 2):
        cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], deadtime=2.0,
                        auth=hs.Auth(use, keys))
        b = station.Beat(cfg, "alpha", str(tmp_path), gen=0x6b06)
        for fields in (wire.status_fields({"st": "active", "rsc_hold": "local"}, 2.0),
                       [("info", "a b\nc"), ("t", "resource"), ("seq", "99")],
                       wire.status_fields({}, 2.0),
                       [("t", "NS_rexmit"), ("dest", "beta"), ("firstseq", "5")]):
            data, line = b.build(fields, 0.0)
            p = wire.parse(data)
            assert wire.verify(p, {n: (k.method, k.key) for n, k in keys.items()})
            assert wire.render_classic(p.fields, use, keys[use].method, keys[use].key) == data
            assert lines.parse_line(line) == p.strings()
            assert p.fields[0][:3:2] == ("t", dict(fields)["t"])
            names = [n for n, _, _ in p.fields]
            std = [n for n in names if n in wire.STANDARD]
            assert names[-len(std):] == std
    assert std == ["src", "hg", "ts", "ttl", "auth"]


def test_handle_survives_any_authenticated_message(tmp_path):
    """Whatever an authenticated peer sends, hb-beat's receive path never raises."""
    from hypothesis import given, settings, strategies as st
    keys = {1: hs.AuthKey(1, "sha1", b"k")}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], auth=hs.Auth(1, keys))
    b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)
    b.out_fd = os.open(os.devnull, os.O_WRONLY)
    names = st.sampled_from(["t", "src", "seq", "hg", "ts", "dest", "firstseq", "lastseq",
                             "info", "st", "x"])
    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
    values = st.one_of(st.sampled_from(["NS_rexmit", "NS_nak_rexmit", "status", "alpha",
                                        "beta", "0", "1", "-1", "ffffffffffffffff", ""]),
                       text.filter(lambda v: "\r" not in v and "\x13" not in v))
    fieldlists = st.lists(st.tuples(names, st.just(0), values), max_size=10)

    @settings(max_examples=400, deadline=None)
    @given(fieldlists, st.sampled_from(["classic", "netstring"]))
    def run(fields, framing):
        render = wire.render_classic if framing == "classic" else wire.render_netstring
        b.handle(render(fields, 1, "sha1", b"k"), "eth0", 1.0)
        b.ask_rexmit(100.0)

    run()
    os.close(b.out_fd)


def test_a_bug_on_the_receive_path_is_a_counted_drop(tmp_path, caplog):
    """Should anything after authentication raise, the datagram is counted as
    malformed, the error logged once, and hb-beat goes on."""
    keys = {2: hs.AuthKey(2, "md5", KEY.encode())}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], auth=hs.Auth(2, keys))
    b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)

    def boom(*a):
        raise KeyError("bug")
    b.deliver = boom
    for s in (1, 2):
        b.handle(beta_status(s), "eth0", 1.0)
    c = b.rx.counts
    assert (c["received"], c["accepted"], c["malformed"]) == (2, 0, 2)
    b.log_events(2.0, force=True)
    b.log_events(3.0, force=True)
    assert len([r for r in caplog.records if "KeyError" in r.getMessage()]) == 1


def test_status_words_and_dt_as_heartbeat_while_starting(tmp_path):
    """Heartbeat's start: the first status says st=init, the next ones RUNDIR/state's
    word (up, then active once comm is up); dt = deadtime + 2000 ms during the first
    5 s, then deadtime.  Fake clock: send_status is given the time."""
    keys = {1: hs.AuthKey(1, "sha1", b"k1")}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], deadtime=6.0,
                    auth=hs.Auth(1, keys))
    b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)
    state = tmp_path / "state"

    def sent(now: float) -> tuple[str, int]:
        b.send_status(now)
        d = lines.parse_line(b.out.pop())
        assert d["_self"] == "1" and d["t"] == "status"
        return d["st"], int(d["dt"], 16)

    t0 = 1000.0
    assert sent(t0) == ("init", 8000)             # lab: dt=1f40 for deadtime 6
    assert sent(t0 + 1) == ("up", 8000)           # no state file yet: up
    state.write_text("st=up\nhbv=1\n")
    assert sent(t0 + 2) == ("up", 8000)
    os.replace(str(state), str(tmp_path / "x"))
    (tmp_path / "x").write_text("st=active\nhbv=1\n")
    os.replace(str(tmp_path / "x"), str(state))
    assert sent(t0 + 4.9) == ("active", 8000)
    assert sent(t0 + 5.0) == ("active", 6000)     # lab: then dt=1770
    assert sent(t0 + 60) == ("active", 6000)
    assert wire.status_fields({"st": "active"}, 6.0, first=True, early=True)[:3] == [
        ("t", "status"), ("st", "init"), ("dt", "1f40")]


def test_state_left_by_a_dead_hb_watch_is_not_advertised(tmp_path):
    """RUNDIR survives a daemon restart (and a reboot that keeps /run): the state file
    of an hb-watch no longer running (its watch=PID:START) is not advertised, so the
    peer does not take a starting node for an active, stable one.  A file without
    watch= (written by hand) is trusted as before."""
    import subprocess as sp
    keys = {1: hs.AuthKey(1, "sha1", b"k1")}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], deadtime=6.0,
                    auth=hs.Auth(1, keys))
    b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)
    state = tmp_path / "state"
    child = sp.Popen(["sleep", "30"])
    try:
        ident = "%d:%s" % (child.pid, runfiles.proc_start(child.pid))
        assert runfiles.writer_alive(ident) is True
        assert runfiles.writer_alive("%d:1" % child.pid) is False      # the PID reused
        assert runfiles.writer_alive(None) is None and runfiles.writer_alive("x") is None
        assert runfiles.writer_id() == "%d:%s" % (os.getpid(), runfiles.proc_start(os.getpid()))
        state.write_text("st=active\nisstable=1\ngrps=1\nhbv=1\nwatch=%s\n" % ident)

        def sent(now: float) -> dict:
            b.send_status(now)
            return lines.parse_line(b.out.pop())

        sent(100.0)                                              # the init one
        d = sent(110.0)
        assert (d["st"], d.get("grps"), "watch" in d) == ("active", "1", False)
        assert b.statefile.pidfd >= 0       # then a poll a beat, not /proc/PID/stat
    finally:
        child.kill()
        child.wait()
    assert runfiles.writer_alive(ident) is False
    d = sent(111.0)
    assert d["st"] == "up" and "grps" not in d and "isstable" not in d
    state.write_text("st=active\nhbv=1\n")                      # no watch=: trusted
    os.utime(str(state), (1, 1))
    assert sent(112.0)["st"] == "active"


def test_restarted_hb_beat_of_a_running_node_sends_no_init(tmp_path):
    """hb-beat restarted (a crash respawned, an upgrade's re-exec) while the node's
    hb-watch runs with communication up: the node is not starting, so its first
    status says the state's word and dt has no start-up slack.  The same file left by
    an hb-watch killed a moment ago (an upgrade replaces hb-beat, then hb-watch, and the
    old hb-watch may be gone before the new hb-beat's first status) is no start either:
    no slack, and the dead writer's state is not advertised.  A file left by an
    hb-watch that shut down (st=dead) or never had communication up is a start."""
    import subprocess as sp
    keys = {1: hs.AuthKey(1, "sha1", b"k1")}
    cfg = hs.Config(node="alpha", nodes=["alpha", "beta"], deadtime=6.0,
                    auth=hs.Auth(1, keys))
    state = tmp_path / "state"
    child = sp.Popen(["sleep", "30"])
    try:
        ident = "%d:%s" % (child.pid, runfiles.proc_start(child.pid))
        state.write_text("st=active\nisstable=1\ngrps=1\nhbv=1\nwatch=%s\n" % ident)
        b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)
        b.send_status(100.0)
        d = lines.parse_line(b.out.pop())
        assert (d["st"], int(d["dt"], 16)) == ("active", 6000)
        for st, want in (("active", ("up", 6000)), ("dead", ("init", 8000)),
                         ("up", ("init", 8000))):
            state.write_text("st=%s\nisstable=1\ngrps=1\nhbv=1\nwatch=%d:1\n"
                             % (st, child.pid))
            b = station.Beat(cfg, "alpha", str(tmp_path), gen=5)
            b.send_status(100.0)
            d = lines.parse_line(b.out.pop())
            assert (d["st"], int(d["dt"], 16)) == want, st
            assert "grps" not in d
    finally:
        child.kill()
        child.wait()
