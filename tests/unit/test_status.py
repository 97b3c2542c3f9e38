"""RUNDIR/status: escaping, the reader, the history of transitions, and a fuzz of
peer-supplied fields through Owner.status_text: no value forges or breaks a record."""

from __future__ import annotations

import os

from hypothesis import given, settings, strategies as st_

from hb import access, exits, fields, owner, status
from hb.settings import Config, Group, Medium, Resource

J, C = "julius", "caesar"

# every character class that could end or split a record, and then some
nasty = st_.lists(st_.sampled_from(
    list("\n\r\t \x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029%=#\\'\"") + [
        "é", "€", "\x00", "a", "Z", "1", "%0A", "%", "group 1 caesar running", "last 1 x"]),
    max_size=12).map("".join) | st_.text(max_size=40)


def config(pings=()):
    gs = [Group(1, J, [Resource("IPaddr", ["198.18.0.100"], "198.18.0.100")]),
          Group(2, C, [Resource("IPaddr", ["198.18.0.101"], "198.18.0.101")])]
    return Config(node=J, nodes=[J, C], keepalive=0.1, deadtime=0.5, warntime=0.3,
                  initdead=1.0, auto_failback="on", media=[Medium("bcast", "eth0")],
                  groups=gs)


@given(nasty)
def test_esc_round_trips_and_leaves_no_separator(s):
    e = status.esc(s)
    assert status.unesc(e) == s
    assert all(0x21 <= ord(c) < 0x7f and c != "=" for c in e)
    t = status.esc_text(s)
    assert status.unesc(t) == s
    assert all(0x20 <= ord(c) < 0x7f for c in t)


@given(st_.lists(nasty, min_size=1, max_size=4), st_.dictionaries(
    st_.sampled_from(["st", "nolink", "cfd", "key", "x"]), nasty, max_size=4), nasty)
def test_record_parses_back_to_its_values(pos, kv, text):
    line = status.record("group", *pos[:3], **kv)
    parsed = status.parse(line + "\n" + status.record("last", 5, text=text) + "\n")
    assert "\n" not in line
    if len(pos) >= 3:
        assert len(parsed["group"]) == 1
        rec = parsed["group"][0]
        assert [rec["index"], rec["holder"], rec["state"]] == [p or "-" for p in pos[:3]]
        for k, v in kv.items():
            assert rec[k] == v
    else:
        assert parsed["group"] == []              # too short: skipped, not raised on
    assert parsed["last"] == {"time": 5.0, "text": text}


@settings(max_examples=400, deadline=None)
@given(st=nasty, nolink=nasty, cfd=nasty, via=nasty, request=nasty)
def test_peer_fields_never_forge_a_record(st, nolink, cfd, via, request):
    """A peer's st, nolink and cfd, a medium's name and a request line, whatever their
    bytes, come out of the status file as they went in, one record each."""
    ow = owner.Owner(config(), 0.0, "d1")
    ow.begin(0.0)
    f = {"t": "status", "st": st, "src": C, "hg": "5", "seq": "1", "_via": via or "eth0",
         "nolink": nolink, "cfd": cfd, "hbv": "1", "rsc_hold": "local", "grps": "2"}
    ow.message(f, 0.1)
    ow.request(request, 0.2)
    text = ow.status_text(0.3, 1.7e9, 42)
    lines = text.split("\n")
    assert lines[-1] == "" and all(ln and ln.isascii() for ln in lines[:-1])
    kinds = [ln.split(" ")[0] for ln in lines[:-1]]
    assert kinds.count("updated") == 1 and kinds.count("self") == 1
    assert kinds.count("node") == 2 and kinds.count("group") == 2 and kinds.count("last") == 1
    assert set(kinds) <= set(status.FIXED)
    parsed = status.parse(text)
    peer = [n for n in parsed["node"] if n["name"] == C]
    assert len(peer) == 1
    if st in fields.ST_WORDS and st != "dead":
        assert peer[0]["st"] == st
    else:                                       # refused by hb-watch: never shown
        assert peer[0]["st"] in fields.ST_WORDS
    assert peer[0].get("nolink", "") in ("", nolink, "?")     # "?": refused as malformed
    assert [g["index"] for g in parsed["group"]] == ["1", "2"]
    assert parsed["updated"] == {"time": "1700000000", "pid": "42", "node": J}
    assert parsed["last"]["text"] == ow.last[1]
    assert [ln["medium"] for ln in parsed["link"]] == [via or "eth0"]
    held = status.held_before(text, J)          # what a restarted hb-watch takes back
    assert held == [int(g["index"]) for g in parsed["group"]
                    if g["holder"] in (J, "both") and g["state"] != "stopped"]


def test_a_newline_in_st_is_refused_and_would_be_escaped():
    """Two defences: hb-watch refuses an st that is not one of its words, and the
    status file escapes whatever a record carries."""
    forged = "active\ngroup 1 caesar running pref=x"
    ow = owner.Owner(config(), 0.0, "d1")
    ow.begin(0.0)
    ow.message({"t": "status", "st": forged, "src": C,
                "hg": "5", "seq": "1", "_via": "eth0", "hbv": "1"}, 0.1)
    text = ow.status_text(0.2, 1.7e9, 1)
    parsed = status.parse(text)
    assert len(parsed["group"]) == 2 and all(g["pref"] != "x" for g in parsed["group"])
    assert parsed["node"][1]["st"] in fields.ST_WORDS and "pref=x" not in text
    line = status.record("node", C, "up", st=forged)
    assert line == "node %s up st=active%%0Agroup%%201%%20caesar%%20running%%20pref%%3Dx" % C
    assert status.parse(line + "\n")["node"][0]["st"] == forged


def test_reader_ignores_garbage_and_old_unescaped_files():
    old = ("updated 1700000000 pid=1 node=julius\nself julius st=active rsc_hold=all "
           "maintenance=until=1700000600\nnode\ngroup 1\ngroup 1 julius running key=a\n"
           "bogus line here\nwhy 1 2 x\nlast 1700000000 took group 2: caesar is dead\n")
    p = status.parse(old)
    assert [g["index"] for g in p["group"]] == ["1"] and p["node"] == [] and p["why"] == []
    assert p["last"]["text"] == "took group 2: caesar is dead"
    assert status.maintenance(p) == (True, 1700000600.0)


def test_history_keeps_the_last_n_per_group_and_the_cause():
    h = status.History(keep=3)
    h.heard("node caesar: dead (no heartbeat)")
    h.heard("link caesar eth0 dead")                 # news of a link is not a cause
    h.note(2, 1.0, "stopped", "starting")
    h.heard("group 2: starting here")
    h.note(2, 2.0, "starting", "running")           # finishing keeps the cause
    h.heard("standby request: asking caesar to take all groups")
    for t in range(3, 8):
        h.note(2, float(t), "running", "stopping")
    h.note(1, 9.0, "stopped", "failed", "fallback")
    recs = list(h.items())
    assert recs[0] == (1, 9.0, "stopped", "failed",
                       "standby request: asking caesar to take all groups")
    assert [r[1] for r in recs if r[0] == 2] == [5.0, 6.0, 7.0]
    h2 = status.History()
    h2.heard("node caesar: dead (no heartbeat)")
    h2.note(2, 1.0, "stopped", "starting")
    h2.heard("link caesar eth0 up")
    h2.note(2, 2.0, "starting", "running")
    assert [r[4] for r in h2.items()] == ["node caesar: dead (no heartbeat)"] * 2


def test_status_and_rundir_modes(tmp_path):
    assert access.file_mode(None) == 0o644 and access.file_mode(118) == 0o640
    assert access.rundir_mode(None) == 0o755 and access.rundir_mode(118) == 0o2755
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    access.prepare_rundir(str(d))
    gid = access.group_id()
    assert os.stat(d).st_mode & 0o7777 == access.rundir_mode(gid)
    if gid is not None:
        assert os.stat(d).st_gid == gid


STATUS = ("updated 1700000000 pid=42 node=julius\n"
          "self julius st=active rsc_hold=all maintenance=off\n"
          "node julius up kind=self\n"
          "node caesar up kind=normal late=0.2 lates=0\n"
          "link caesar eth0 up\n"
          "group 1 julius running pref=julius\n"
          "group 2 caesar running pref=caesar\n"
          "last 1700000000 node caesar: up\n")


def test_the_parsed_status_answers_who_what_and_whether_stale():
    from hb import runfiles
    assert status.STALE == 2 * runfiles.STATUS_EVERY      # two rewrites missed
    st = status.parse(STATUS)
    assert status.me(st) == J and status.peer(st)["name"] == C
    assert status.age(st, 1700000003.5) == 3.5
    assert not status.is_stale(st, 1700000000 + status.STALE, lambda pid: True)
    assert status.is_stale(st, 1700000001 + status.STALE, lambda pid: True)
    assert status.is_stale(st, 1700000001, lambda pid: pid != 42)     # its writer is gone
    assert status.maintenance(st) == (False, None)
    assert status.held_before(STATUS, J) == [1]
    assert status.held_before(STATUS, C) == []            # another node's file
    assert status.held_before(STATUS.replace("1 julius running", "1 julius stopped"), J) == []
    assert status.held_before("", J) == []


def test_verdict_ok_warning_critical_unknown():
    def verdict(text, now=1700000002, alive=lambda pid: True):
        return status.verdict(text, "/run/hb/status", now, 30, 10, alive)
    code, line = verdict(STATUS)
    assert (code, line) == (exits.NAGIOS_OK, "HB OK - julius: groups 1 on julius, 2 on caesar"
                            " | age=2s;10;30;0 late=0.200s;;;0 links_up=1;;;0;1")
    assert verdict(STATUS, now=1700000015)[1].startswith(
        "HB WARNING - status is 15 s old (pid 42) |")
    assert verdict(STATUS, now=1700000040)[0] == exits.NAGIOS_CRITICAL
    assert verdict(STATUS, alive=lambda pid: False)[1].startswith(
        "HB CRITICAL - hb-watch (pid 42) is not running: its status is 2 s old |")
    assert verdict(STATUS.replace("caesar eth0 up", "caesar eth0 dead"))[1].startswith(
        "HB WARNING - link caesar eth0 dead |")
    assert verdict(STATUS.replace("2 caesar running", "2 none stopped"))[1].startswith(
        "HB CRITICAL - group 2 held by nobody (stopped) |")
    lost = STATUS.replace("maintenance=off", "maintenance=off reach=0").replace(
        "lates=0", "lates=0 reach=2")
    assert verdict(lost)[1].startswith("HB CRITICAL - julius holds groups 1 with no ping node "
                                       "while caesar reaches 2 ping node(s) |")
    assert verdict("") == (exits.NAGIOS_UNKNOWN, "HB UNKNOWN - no status in /run/hb/status: "
                           "is hb-watch running?")
    assert verdict(STATUS.replace("updated 1700000000", "updated soon"))[0] == \
        exits.NAGIOS_UNKNOWN
