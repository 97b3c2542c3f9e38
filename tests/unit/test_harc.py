"""harc.py: which messages reach rc.d, the hooks' environment, Heartbeat's fifo parser;
harc.Hooks running real scripts one at a time with a timeout."""

from __future__ import annotations

import os
import random
import time

from hypothesis import given, settings, strategies as st

from hb import hafifo, harc
from hb.settings import Config

SHIPPED = "/etc/ha.d/rc.d"


def cfg(**kw) -> Config:
    c = Config(node="alpha", nodes=["alpha", "beta"], confdir="/etc/ha.d")
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_base_env_as_heartbeat_sets_it(tmp_path):
    d = str(tmp_path)
    e = harc.base_env(cfg(confdir=d, auto_failback="on", logfile="/var/log/ha-log",
                          debugfile="/var/log/ha-debug", debug=0, env={"X": "1"}))
    assert e == {"HA_DIR": d + "/", "HA_FUNCS": d + "//shellfuncs",
                 "HA_DATEFMT": "%Y/%m/%d_%T\t", "HA_LOGD": "no", "OCF_ROOT": "/usr/lib/ocf",
                 "HA_LOGFILE": "/var/log/ha-log", "HA_DEBUGLOG": "/var/log/ha-debug",
                 "HA_NICEFAILBACK": "yes", "HA_X": "1"}
    e = harc.base_env(cfg(confdir=d, auto_failback="legacy", debug=2, logfacility="local0"))
    assert "HA_NICEFAILBACK" not in e and e["HA_debug"] == "2"
    assert e["HA_LOGFACILITY"] == "local0" and "HA_LOGFILE" not in e


def test_ha_cf_parameters_with_heartbeats_defaults(tmp_path):
    (tmp_path / "ha.cf").write_text("keepalive 200ms\ndeadtime 1\nbcast eth0\n"
                                    "auto_failback on\nnode alpha beta\n")
    e = harc.base_env(cfg(confdir=str(tmp_path), auto_failback="on"))
    assert (e["HA_keepalive"], e["HA_deadtime"], e["HA_warntime"]) == ("200ms", "1", "500ms")
    assert (e["HA_baud"], e["HA_udpport"], e["HA_COMPRESSION"]) == ("19200", "694", "zlib")
    assert e["HA_auto_failback"] == "on" and "HA_hbversion" not in e
    a = harc.agent_env(cfg(confdir=str(tmp_path) + "/", auto_failback="on"))
    assert (a["HA_DIR"], a["HA_FUNCS"]) == (str(tmp_path), str(tmp_path) + "/shellfuncs")
    assert a["HA_RCDIR"] == str(tmp_path) + "//rc.d" and a["HA_keepalive"] == "200ms"
    assert a["HA_FIFO"] == "/var/lib/heartbeat/fifo"


def test_message_env_every_field_but_hb_beats_own():
    f = {"t": "ip-request", "src": "beta", "ipaddr": "198.18.0.100", "_via": "eth0",
         "_rt": "1.0", "_self": "1", "bad-name": "x"}
    assert harc.message_env(f, "alpha", "active") == {
        "HA_t": "ip-request", "HA_src": "beta", "HA_ipaddr": "198.18.0.100",
        "HA_CURHOST": "alpha", "HA_OSTATUS": "active"}


def test_status_only_on_change_with_old_status():
    ev = harc.Events("alpha", ["status", "ip-request", "hb_takeover", "mine"])
    s = {"t": "status", "src": "beta", "st": "up"}
    assert ev.message(s) == ("status", s, "init")
    assert ev.message(s) is None
    a = dict(s, st="active")
    assert ev.message(a) == ("status", a, "up")
    assert ev.message(dict(a, _dup="1")) is None
    assert ev.message({"t": "status", "src": "alpha", "st": "active", "_self": "1"})[2] == "init"
    d = ev.dead("beta", now=0x5000)
    assert d == ("status", {"t": "status", "seq": "1", "ts": "5000", "src": "beta",
                            "st": "dead"}, "active")
    assert ev.dead("beta") is None                    # once
    assert ev.message(dict(a, st="active"))[2] == "dead"


def test_types_heartbeat_keeps_to_itself_and_own_ip_request():
    ev = harc.Events("alpha", ["ask_resources", "resource", "starting", "ip-request",
                               "ip-request-resp", "hb_takeover", "shutdone"])
    for t in ("ask_resources", "resource", "starting", "shutdone", "NS_ackmsg"):
        assert ev.message({"t": t, "src": "beta"}) is None, t
    assert ev.message({"t": "ip-request", "src": "alpha", "ipaddr": "x"}) is None
    ev.message({"t": "status", "src": "alpha", "st": "active"})
    r = ev.message({"t": "ip-request", "src": "beta", "ipaddr": "x"})
    assert r is not None and r[0] == "ip-request" and r[2] == "active"   # our own status
    assert ev.message({"t": "IP-Request-Resp", "src": "alpha"})[0] == "ip-request-resp"
    assert ev.message({"t": "nohook", "src": "beta"}) is None


def test_scan_skips_heartbeats_own_scripts(tmp_path):
    rc = tmp_path / "rc.d"
    rc.mkdir()
    if os.path.isdir(SHIPPED):          # Debian's files as installed by heartbeat
        for name in os.listdir(SHIPPED):
            (rc / name).write_bytes(open(os.path.join(SHIPPED, name), "rb").read())
            os.chmod(rc / name, 0o755)
    (rc / "mine").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(rc / "mine", 0o755)
    (rc / "status").write_text("#!/bin/sh\nip route replace 192.0.2.0/24 dev eth1\n")
    os.chmod(rc / "status", 0o755)
    (rc / "noexec").write_text("#!/bin/sh\n")
    hooks, skipped = harc.scan(str(tmp_path))
    assert hooks == {"mine": str(rc / "mine"), "status": str(rc / "status")}
    assert any("noexec: not executable" in s for s in skipped)
    if os.path.isdir(SHIPPED):
        for name in ("ip-request", "ip-request-resp", "hb_takeover", "ask_resources"):
            assert any(s.startswith(str(rc / name) + ": Heartbeat's own") for s in skipped)


MSG = b">>>\nt=hb_takeover\nrsc_hold=all\n<<<\n"


def test_fifo_as_ha_clustermsg_writes():
    p = hafifo.FifoParser()
    assert p.feed(MSG) == ([[("t", "hb_takeover"), ("rsc_hold", "all")]], [])
    msgs, probs = p.feed(b">>>\nt=x\ndest=beta\nval=a b=c\n")      # split across reads
    assert msgs == [] and probs == []
    msgs, probs = p.feed(b"<<<\n")
    assert msgs == [[("t", "x"), ("dest", "beta"), ("val", "a b=c")]]


def test_fifo_bad_input_dropped_with_reason():
    p = hafifo.FifoParser()
    msgs, probs = p.feed(b"junk\n>>>\nno equals\nt=a\n<<<\n>>>\nx=1\n<<<\n<<<\n" + MSG)
    assert msgs == [[("t", "hb_takeover"), ("rsc_hold", "all")]]
    assert probs == ["text outside a message: b'junk'", "message dropped: bad line 'no equals'",
                     "message dropped: no t= field", "<<< outside a message: ignored"]
    msgs, probs = p.feed(b">>>\nt=a\n>>>\nt=b\n<<<\n")       # a block never closed
    assert msgs == [[("t", "b")]] and probs == ["message dropped: no <<< before the next >>>"]
    msgs, probs = p.feed(b">>>\nt=a\nx=" + b"y" * 10000)     # over-long line, in pieces
    msgs, probs2 = p.feed(b"y" * 10000 + b"\n<<<\n" + MSG)
    assert msgs == [[("t", "hb_takeover"), ("rsc_hold", "all")]]
    assert probs2 == ["message dropped: line longer than 4096 bytes"]
    fields = b"".join(b"f%d=1\n" % i for i in range(100))
    msgs, probs = p.feed(b">>>\nt=a\n" + fields + b"<<<\n")
    assert msgs == [] and probs == ["message dropped: more than 64 fields"]
    msgs, probs = p.feed(b">>>\nt=\xff\n<<<\n>>>\nt=a\r\nx=\x13\n<<<\n")
    assert msgs == [] and len(probs) == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300),
                          st.sampled_from([b">>>\n", b"<<<\n", b"t=x\n", b"a=b\n", b"\n",
                                           b"=\n", b"y" * 5000])), max_size=40))
def test_fifo_fuzz_never_raises_and_stays_bounded(chunks):
    p = hafifo.FifoParser()
    for c in chunks:
        msgs, probs = p.feed(c)
        assert len(p.buf) <= hafifo.FIFO_MAX_LINE
        for m in msgs:
            assert m[0][0] == "t" or any(k == "t" for k, _ in m)
            assert len(m) <= hafifo.FIFO_MAX_FIELDS
            assert all("\n" not in k + v and "=" not in k for k, v in m)
    # after any garbage, a well-formed message after a fresh >>> still passes
    msgs, _ = p.feed(b"\n" + MSG)
    assert msgs[-1] == [("t", "hb_takeover"), ("rsc_hold", "all")]


def test_fifo_random_bytes():
    rnd = random.Random(16)
    p = hafifo.FifoParser()
    for _ in range(2000):
        p.feed(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(64))))
    assert len(p.buf) <= hafifo.FIFO_MAX_LINE


def test_hooks_run_one_at_a_time_in_order_with_env(tmp_path):
    out = tmp_path / "out"
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\necho start $1 $HA_t $HA_X $HA_OSTATUS >> %s\nsleep 0.2\n"
                    "echo end $1 >> %s\n" % (out, out))
    os.chmod(hook, 0o755)
    h = harc.Hooks({"HA_X": "base"})
    t0 = time.monotonic()
    for t in ("one", "two", "three"):
        assert h.queue(str(hook), t, {"HA_t": t, "HA_OSTATUS": "up"})
    assert time.monotonic() - t0 < 0.5   # queueing never waits for the hooks (0.6 s)
    assert h.wait_idle(10)
    assert out.read_text().splitlines() == [
        "start one one base up", "end one", "start two two base up", "end two",
        "start three three base up", "end three"]
    h.close()


def test_hook_timeout_kills_its_process_group(tmp_path):
    pidf = tmp_path / "pid"
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\nsleep 60 &\necho $! > %s\nwait\n" % pidf)
    os.chmod(hook, 0o755)
    h = harc.Hooks({}, timeout=0.5)
    t0 = time.monotonic()
    assert h.run_one(str(hook), "status", {}) is None
    assert time.monotonic() - t0 < 5
    pid = int(pidf.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        st_ = open("/proc/%d/stat" % pid).read().split()[2]
        if st_ == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the hook's child survived")


def test_hooks_queue_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(harc, "HOOK_QUEUE", 2)
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\nsleep 0.3\n")
    os.chmod(hook, 0o755)
    h = harc.Hooks({})
    ok = [h.queue(str(hook), "x", {}) for _ in range(5)]
    assert ok[:2] == [True, True] and ok.count(False) >= 2
    assert h.wait_idle(10)
    h.close()
