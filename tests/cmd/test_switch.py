"""hb-switch as a user runs it: status in three formats, cl_status answers, requests.

The requests are answered by a small reader of watch.fifo in the test that rewrites
status the way hb-watch does; the real pair is exercised in tests/e2e/test_4*.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from hb import hbapi, runfiles, statusview, switching

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin", "hb-switch")

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
PID = os.getpid()              # the status's writer must be alive to be current
STATUS = open(os.path.join(DATA, "status", "julius.status")).read() % PID


def write(rundir, now=None, peer="up", g1="julius", text=None):
    text = text or STATUS.format(now=now if now is not None else time.time(), peer=peer, g1=g1)
    runfiles.write_atomic(os.path.join(str(rundir), "status"), text)


def hbswitch(rundir, *args, timeout=20):
    r = subprocess.run([BIN, "-r", str(rundir), *args], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def test_status_text_is_current_and_readable(tmp_path):
    write(tmp_path)
    rc, out, _ = hbswitch(tmp_path, "status")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("ok: hb-watch on julius, pid %d" % PID)
    assert any(ln.split()[:3] == ["node", "caesar", "up"] for ln in lines)
    assert any(ln.split()[:4] == ["link", "caesar", "ttyS0", "dead"] for ln in lines)
    assert any(ln.split()[:5] == ["group", "1", "running", "on", "julius"] for ln in lines)
    assert lines[-1].endswith("took group 2: caesar is dead")


def test_status_of_a_gone_hb_watch_is_stale_at_once(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write(tmp_path, text=STATUS.format(now=time.time(), peer="up", g1="julius").replace(
        "pid=%d" % PID, "pid=%d" % gone.pid))
    rc, out, _ = hbswitch(tmp_path, "status")
    assert rc == 1 and "stale" in out.splitlines()[0], out
    assert hbswitch(tmp_path, "cl_status", "hbstatus")[:2] == (
        1, "Heartbeat is stopped on this machine.\n")


def test_stale_status_is_said_so(tmp_path):
    write(tmp_path, now=time.time() - 42)
    rc, out, _ = hbswitch(tmp_path, "status")
    assert rc == 1
    assert out.startswith("stale: status of julius written 42 s ago by pid %d" % PID)
    rc, out, _ = hbswitch(tmp_path, "status", "--format=shell")
    assert rc == 1 and "HB_STATUS='stale'" in out.splitlines()


def test_missing_status(tmp_path):
    rc, out, _ = hbswitch(tmp_path, "status")
    assert (rc, out) == (1, "fail: no status file: hb-watch is not running\n")


def test_status_shell_evaluates_in_sh(tmp_path):
    write(tmp_path)
    rc, out, _ = hbswitch(tmp_path, "status", "--format=shell")
    assert rc == 0
    sh = subprocess.run(["sh", "-c", out + 'echo "$HB_GROUP_1_HOLDER $HB_LINK_CAESAR_TTYS0 '
                         '$HB_NODES $HB_GROUP_1_KEY $HB_LAST"'],
                        capture_output=True, text=True, check=True)
    assert sh.stdout == ("julius dead julius caesar IPaddr::198.18.0.100/24/eth0 "
                         "took group 2: caesar is dead\n")


def test_status_json(tmp_path):
    write(tmp_path)
    rc, out, _ = hbswitch(tmp_path, "status", "--format=json")
    assert rc == 0
    d = json.loads(out)
    assert d["stale"] is False and d["self"]["rsc_hold"] == "all"
    assert [g["holder"] for g in d["groups"]] == ["julius", "julius"]
    assert [(g["index"], g["fails"], g["since"]) for g in d["groups"]] == [
        (1, 0, 1700000000), (2, 0, 1700000000)]
    assert d["last"] == {"time": 1700000000, "text": "took group 2: caesar is dead"}
    assert hbswitch(tmp_path, "status", "--format=xml")[0] == 2
    write(tmp_path, text=STATUS.format(now=time.time(), peer="up", g1="julius").replace(
        "maintenance=off", "maintenance=on until=1700000600"))
    d = json.loads(hbswitch(tmp_path, "status", "--format=json")[1])
    assert d["self"]["maintenance"] is True and d["self"]["maintenance_until"] == 1700000600


@pytest.mark.parametrize("args,rc,out", [
    (["hbstatus"], 0, "Heartbeat is running on this machine.\n"),
    (["listnodes"], 0, "julius\ncaesar\n198.18.0.254\n"),
    (["listnodes", "-p"], 0, "198.18.0.254\n"),
    (["listnodes", "-n"], 0, "julius\ncaesar\n"),
    (["nodestatus", "caesar"], 0, "up\n"),
    (["nodestatus", "julius"], 0, "active\n"),
    (["nodestatus", "198.18.0.254"], 0, "ping\n"),
    (["nodestatus", "brutus"], 11, ""),
    (["listhblinks", "caesar"], 0, "\teth0\n\tttyS0\n"),
    (["hblinkstatus", "caesar", "eth0"], 0, "up\n"),
    (["hblinkstatus", "caesar", "ttyS0"], 1, "dead\n"),
    (["hblinkstatus", "caesar", "eth9"], 13, ""),
    (["rscstatus"], 0, "all\n"),
])
def test_cl_status_answers(tmp_path, args, rc, out):
    write(tmp_path)
    assert hbswitch(tmp_path, "cl_status", *args)[:2] == (rc, out)


def test_cl_status_when_stopped(tmp_path):
    assert hbswitch(tmp_path, "cl_status", "hbstatus")[:2] == (
        1, "Heartbeat is stopped on this machine.\n")
    rc, out, err = hbswitch(tmp_path, "cl_status", "nodestatus", "caesar")
    assert (rc, out) == (1, "") and "Cannot signon" in err
    write(tmp_path, peer="dead")
    assert hbswitch(tmp_path, "cl_status", "nodestatus", "caesar")[:2] == (1, "dead\n")


def test_request_without_hb_watch_fails_at_once(tmp_path):
    write(tmp_path)
    os.mkfifo(str(tmp_path / "watch.fifo"))
    t = time.monotonic()
    assert hbswitch(tmp_path, "takeover")[:2] == (1, "fail: takeover: hb-watch is not running\n")
    assert time.monotonic() - t < 2


def test_standby_refused_when_peer_dead(tmp_path):
    write(tmp_path, peer="dead")
    rc, out, _ = hbswitch(tmp_path, "standby")
    assert rc == 1 and out.startswith("fail: standby refused: peer caesar is dead")


class FakeWatch(threading.Thread):
    """Reads watch.fifo like hb-watch and rewrites status after `delay` seconds."""

    def __init__(self, rundir, answer, delay=0.1, count=1):
        super().__init__(daemon=True)
        self.rundir, self.answer, self.delay = str(rundir), answer, delay
        self.count = count          # requests answered
        self.rfd, self.wfd = runfiles.open_fifo_reader(os.path.join(self.rundir, "watch.fifo"))
        self.got = []
        self.start()

    def run(self):
        reader = runfiles.LineReader(self.rfd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(self.got) < self.count:
            new = reader.read()
            if not new:
                time.sleep(0.005)
                continue
            self.got += new
            time.sleep(self.delay)
            if self.answer:
                write(self.rundir, text=self.answer(new[0]))

    def close(self):
        self.join(12)
        os.close(self.rfd)
        os.close(self.wfd)


def test_standby_waits_for_the_groups_to_move(tmp_path):
    write(tmp_path)
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="caesar")
                  .replace("2 julius running", "2 caesar running"))
    rc, out, _ = hbswitch(tmp_path, "standby", "all")
    w.close()
    assert w.got == ["standby all"]
    assert rc == 0 and out.startswith("ok: standby: groups 1,2 now on caesar (0.")


def test_standby_local_moves_only_group_1(tmp_path):
    write(tmp_path)
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="caesar"))
    rc, out, _ = hbswitch(tmp_path, "standby", "local")
    w.close()
    assert w.got == ["standby local"]
    assert rc == 0 and out.startswith("ok: standby: group 1 now on caesar (")


def test_standby_says_which_group_is_stuck_and_why(tmp_path):
    """Group 1's stop failed here (state stuck): it stays, group 2 moves, and hb-switch
    says so at once instead of waiting for a move that will not come."""
    write(tmp_path)
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="julius")
                  .replace("1 julius running", "1 julius stuck")
                  .replace("2 julius running", "2 caesar running"))
    rc, out, _ = hbswitch(tmp_path, "standby", "all", "--wait", "10")
    w.close()
    assert rc == 1, out
    assert out.startswith("fail: standby: group 1 stuck on julius: a stop failed there and "
                          "it may still run, so it does not move; stop it by hand"), out


def test_takeover_times_out(tmp_path):
    write(tmp_path, g1="caesar")
    w = FakeWatch(tmp_path, None)
    rc, out, _ = hbswitch(tmp_path, "takeover", "local", "--wait", "0.5")
    w.close()
    assert w.got == ["takeover local"]
    assert rc == 124
    assert out == "timeout: takeover local: group 1 running on caesar after 0.5 s\n"


def test_refusal_written_by_hb_watch(tmp_path):
    write(tmp_path, g1="caesar")
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="caesar")
                  .replace("last 1700000000 took group 2: caesar is dead",
                           "last %f refused takeover local: no live peer" % time.time()))
    rc, out, _ = hbswitch(tmp_path, "takeover", "local")
    w.close()
    assert rc == 1 and out.startswith("fail: takeover: refused by hb-watch: refused takeover")


def test_no_wait_and_maintenance(tmp_path):
    write(tmp_path)
    w = FakeWatch(tmp_path, None)
    assert hbswitch(tmp_path, "standby", "--no-wait")[:2] == (0, "ok: standby all requested\n")
    w.close()
    until = time.time() + 1800
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="julius")
                  .replace("maintenance=off", "maintenance=until=%d" % until))
    rc, out, _ = hbswitch(tmp_path, "maintenance", "on", "--for", "30m")
    w.close()
    assert w.got == ["maintenance on 1800"]
    assert rc == 0 and out.startswith("ok: maintenance on until %s (" % statusview.clock(until))
    rc, out, err = hbswitch(tmp_path, "maintenance", "on", "--for", "soon")
    assert (rc, out) == (2, "")
    assert err == ("hb-switch: --for wants a duration such as 600, 90s, 30m, 2h or 1d, not "
                   "'soon' (try 'hb-switch --help')\n")


def test_standby_waits_out_in_flux(tmp_path):
    """Refused 'in flux' twice (the peer still settling after a start): hb-switch says
    so on stderr, asks again, and the third request moves the groups within --wait."""
    write(tmp_path)
    flux = STATUS.replace("last 1700000000 took group 2: caesar is dead",
                          "last {t} standby request refused: other side is in flux")
    answers = [lambda: flux.format(now=time.time(), peer="up", g1="julius", t=int(time.time())),
               lambda: flux.format(now=time.time(), peer="up", g1="julius",
                                   t=int(time.time())),
               lambda: STATUS.format(now=time.time(), peer="up", g1="caesar")
               .replace("2 julius running", "2 caesar running")]
    w = FakeWatch(tmp_path, lambda req: answers[len(w.got) - 1](), count=3)
    rc, out, err = hbswitch(tmp_path, "standby", "all", "--wait", "15")
    w.close()
    assert w.got == ["standby all"] * 3
    assert err == ("hb-switch: standby: standby request refused: other side is in flux: "
                   "waiting (at most 15 s)\n")
    assert rc == 0 and out.startswith("ok: standby: groups 1,2 now on caesar ("), out


def test_in_flux_past_wait_times_out(tmp_path):
    write(tmp_path)
    flux = STATUS.replace("last 1700000000 took group 2: caesar is dead",
                          "last {t} standby request refused: local resources in flux")
    w = FakeWatch(tmp_path, lambda req: flux.format(now=time.time(), peer="up", g1="julius",
                                                    t=int(time.time())), count=3)
    rc, out, err = hbswitch(tmp_path, "standby", "all", "--wait", "3")
    w.close()
    assert "in flux: waiting (at most 3 s)" in err
    assert 2 <= len(w.got) <= 3
    assert (rc, out.split(":")[0]) in ((124, "timeout"), (1, "fail")), out


@pytest.mark.parametrize("args,msg", [
    (["standby", "--wait", "x"], "--wait wants seconds (0 to 999999), not 'x'"),
    (["takeover", "--wait", "-1"], "--wait wants seconds (0 to 999999), not '-1'"),
    (["maintenance", "on", "--for", "10x"], "--for wants a duration such as 600, 90s, 30m, "
     "2h or 1d, not '10x'"),
    (["status", "--format=yaml"], "--format is one of text, shell, json, prometheus, "
     "not 'yaml'"),
])
def test_bad_values_are_usage_errors(tmp_path, args, msg):
    write(tmp_path)
    rc, out, err = hbswitch(tmp_path, *args)
    assert (rc, out, err) == (2, "", "hb-switch: %s (try 'hb-switch --help')\n" % msg)


def test_cl_status_answers_without_waiting(tmp_path):
    """A monitoring poll is answered from the status file at once (no wait for
    hb-watch); how fast is bench/agents' figure (hb-switch cl_status rscstatus)."""
    write(tmp_path)
    t = time.monotonic()
    assert hbswitch(tmp_path, "cl_status", "rscstatus")[:2] == (0, "all\n")
    assert time.monotonic() - t < 3


def test_moves_refused_in_maintenance(tmp_path):
    until = int(time.time()) + 600
    write(tmp_path, text=STATUS.format(now=time.time(), peer="up", g1="julius")
          .replace("maintenance=off", "maintenance=until=%d" % until))
    rc, out, _ = hbswitch(tmp_path, "takeover")
    assert rc == 1
    assert out == "fail: takeover refused: maintenance mode is on until %s " \
        "(hb-switch maintenance off)\n" % statusview.clock(until)


def test_standby_of_groups_not_held_here_is_not_refused(tmp_path):
    write(tmp_path, text=STATUS.format(now=time.time(), peer="dead", g1="julius")
          .replace("2 julius running", "2 none stopped"))
    rc, out, _ = hbswitch(tmp_path, "standby", "foreign")
    assert (rc, out) == (1, "fail: standby: hb-watch is not running\n")
    rc, out, _ = hbswitch(tmp_path, "standby", "local")
    assert rc == 1 and out.startswith("fail: standby refused: peer caesar is dead")


# ---------------------------------------------------------------- failback

def test_standby_failback_is_standby_foreign(tmp_path):
    """hb_standby failback = foreign: the peer's own groups go back to it; hb-watch
    gets the word itself."""
    write(tmp_path)
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="julius")
                  .replace("2 julius running", "2 caesar running"))
    rc, out, _ = hbswitch(tmp_path, "standby", "failback")
    w.close()
    assert w.got == ["standby failback"]
    assert rc == 0 and out.startswith("ok: standby: group 2 now on caesar ("), out


def test_takeover_failback_takes_all(tmp_path):
    """hb_takeover failback: the peer gives up all (its rc.d runs hb_standby bare)."""
    write(tmp_path, g1="caesar", text=STATUS.format(now=time.time(), peer="up", g1="caesar")
          .replace("2 julius running", "2 caesar running"))
    w = FakeWatch(tmp_path, lambda req: STATUS.format(now=time.time(), peer="up", g1="julius"))
    rc, out, _ = hbswitch(tmp_path, "takeover", "failback")
    w.close()
    assert w.got == ["takeover failback"]
    assert rc == 0 and out.startswith("ok: takeover: groups 1,2 now on julius ("), out
    assert switching.failback("standby", "failback") == "foreign"
    assert switching.failback("takeover", "failback") == "all"
    assert switching.failback("takeover", "local") == "local"


# ---------------------------------------------------------------- Heartbeat's names

COMPAT = os.path.join(ROOT, "bin")
HEARTBEAT = "/usr/share/heartbeat"


def names(rundir, name, *args, stdin=subprocess.DEVNULL):
    env = dict(os.environ, HB_RUNDIR=str(rundir), HB_CONFDIR=str(rundir))
    r = subprocess.run([os.path.join(COMPAT, name), *args], capture_output=True, text=True,
                       timeout=20, env=env, stdin=stdin)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("name", ["hb_standby", "hb_takeover"])
@pytest.mark.parametrize("args", [["sideways"], ["all", "local"], ["--help"], ["ALL"],
                                  ["local", "x", "y"]])
def test_bad_arguments_as_heartbeats_scripts(tmp_path, name, args):
    """Every refused argument: Heartbeat's script's output, stream for stream, and exit 1
    (the program's name is the one it was called by, as $0)."""
    real = os.path.join(HEARTBEAT, name)
    if not os.access(real, os.X_OK) or os.path.realpath(real).startswith(COMPAT):
        pytest.skip("Debian's heartbeat package is not installed")
    ours = os.path.join(COMPAT, name)
    r = subprocess.run([real, *args], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    want = (r.returncode, r.stdout.replace(real, ours), r.stderr.replace(real, ours))
    assert want[0] == 1
    assert names(tmp_path, name, *args) == want


@pytest.mark.parametrize("name,args,line", [
    ("hb_standby", [], "standby all"), ("hb_standby", ["local"], "standby local"),
    ("hb_standby", ["foreign"], "standby foreign"),
    ("hb_standby", ["failback"], "standby failback"),
    ("hb_takeover", [], "takeover all"), ("hb_takeover", ["local"], "takeover local"),
    ("hb_takeover", ["foreign"], "takeover foreign"),
    ("hb_takeover", ["failback"], "takeover failback"),
])
def test_names_send_one_request_and_return_at_once(tmp_path, name, args, line):
    write(tmp_path)
    w = FakeWatch(tmp_path, None)
    t = time.monotonic()
    rc, out, err = names(tmp_path, name, *args)
    assert time.monotonic() - t < 3
    w.close()
    assert w.got == [line]
    assert (rc, out) == (0, "")
    if name == "hb_standby":        # Heartbeat's ha_log line, dated when not on a tty
        what = {"failback": "foreign"}.get(line.split()[1], line.split()[1])
        assert err[:16] == time.strftime("%b %d %H:%M:", time.localtime())[:13] + err[13:16]
        assert err[16:] == "Going standby [%s].\n" % what, err
    else:
        assert err == ""


def test_names_without_hb_watch_fail_at_once(tmp_path):
    os.mkfifo(str(tmp_path / "watch.fifo"))
    rc, out, err = names(tmp_path, "hb_standby")
    assert (rc, out) == (1, "")
    assert err == "%s: hb-watch is not running\n" % os.path.join(COMPAT, "hb_standby")
    assert names(tmp_path, "hb_takeover", "local")[0] == 1


HACF = open(os.path.join(DATA, "status", "julius.ha.cf")).read()


def cl(tmp_path, *args, hacf=HACF):
    with open(os.path.join(str(tmp_path), "ha.cf"), "w") as f:
        f.write(hacf)
    return names(tmp_path, "cl_status", *args)


def plain(err):
    import re
    return re.sub(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ cl_status: \[\d+\]: ", "",
                  err, flags=re.M)


@pytest.mark.parametrize("args,rc,out,err", [
    (["hbstatus"], 0, "Heartbeat is running on this machine.\n", ""),
    (["listnodes"], 0, "198.18.0.254\ncaesar\njulius\n", ""),    # ha.cf's order, reversed
    (["listnodes", "-n"], 0, "caesar\njulius\n", ""),
    (["listnodes", "-p", "-n"], 0, "198.18.0.254\ncaesar\njulius\n", ""),
    (["nodestatus", "CAESAR"], 0, "up\n", ""),
    (["nodestatus", "-m", "caesar"], 0, "The cluster node caesar is up\n", ""),
    (["nodestatus", "caesar", "-m"], 0, "The cluster node caesar is up\n", ""),  # GNU getopt
    (["nodestatus", "brutus"], 11, "", "Error. May be due to incorrect node name\n"),
    (["nodestatus"], 11, "", "Not enough parameters.\n"),
    (["nodestatus", "-q", "caesar"], 11, "", "nodestatus: invalid option -- 'q'\n"
     "ERROR: Error: getopt returnedcharacter ?.\n"),
    (["nodetype", "198.18.0.254"], 0, "ping\n", ""),
    (["nodetype", "julius"], 0, "normal\n", ""),
    (["nodeweight", "caesar"], 0, "100\n", ""),
    (["nodeweight", "brutus"], 11, "", "Error. Maybe due to incorrect node name.\n"),
    (["nodesite", "caesar"], 0, "\n", ""),
    (["listhblinks", "caesar"], 0, "\tttyS0\n\teth0\n", ""),
    (["listhblinks", "-v", "caesar"], 0, "\tttyS0\tdead\n\teth0\tup\n", ""),
    (["listhblinks", "198.18.0.254"], 0, "\t198.18.0.254\n", ""),
    (["listhblinks", "brutus"], 13, "", "ERROR: Cannot start heartbeat link interface walk.\n"
     "ERROR: REASON: EINVAL\n"),
    (["hblinkstatus", "caesar", "ttyS0"], 1, "dead\n", ""),
    (["hblinkstatus", "caesar", "eth9"], 13, "", "ERROR: Cannot get heartbeat link status\n"
     "ERROR: REASON: \n"),
    (["clientstatus", "caesar", "ipfail", "10"], 13, "", "ERROR: Cannot get heartbeat client "
     "ipfail's status\nERROR: REASON: No timely response.\n"),
    (["rscstatus"], 0, "all\n", ""),
    (["rscstatus", "-m"], 0, "This node is holding all resources.\n", ""),
    (["hbparameter", "-p", "keepalive"], 0, "200ms\n", ""),
    (["hbparameter", "-p", "warntime"], 0, "500ms\n", ""),      # deadtime/2, Heartbeat's
    (["hbparameter", "-p", "deadping"], 0, "1000ms\n", ""),
    (["hbparameter", "-p", "baud"], 0, "19200\n", ""),
    (["hbparameter", "-p", "auto_failback"], 0, "off\n", ""),
    (["hbparameter", "-pudpport"], 0, "694\n", ""),
    (["hbparameter", "-p", "crm"], 0, "false\n", ""),
    (["hbparameter", "-p", "node"], 1, "", "ERROR: Cannot get parameter node's value\n"
     "ERROR: REASON: \n"),
    (["hbparameter"], 11, "", "ERROR: parameter name required\n"),
    (["hbparameter", "-p"], 11, "", "hbparameter: option requires an argument -- 'p'\n"
     "ERROR: Error: getopt returnedcharacter code ?.\n"),
    (["bogus"], 11, "", "ERROR: bogus: invalid sub-command.\n"),
    (["-h", "x"], 11, "", "ERROR: -h: invalid sub-command.\n"),
])
def test_cl_status_under_its_name(tmp_path, args, rc, out, err):
    write(tmp_path)
    got = cl(tmp_path, *args)
    assert (got[0], got[1], plain(got[2])) == (rc, out, err)


def test_cl_status_help_and_stopped(tmp_path):
    assert cl(tmp_path) == (0, hbapi.HELP, "")
    assert cl(tmp_path, "-h") == (0, hbapi.HELP, "")
    assert cl(tmp_path, "hbstatus") == (1, "Heartbeat is stopped on this machine.\n", "")
    rc, out, err = cl(tmp_path, "rscstatus")
    assert (rc, out, plain(err)) == (1, "", "ERROR: Cannot signon with heartbeat\nERROR: "
                                     "REASON: hb_api_signon: Can't initiate connection to "
                                     "heartbeat\n")
    write(tmp_path, now=time.time() - 60)      # stale: hb-watch is gone
    assert cl(tmp_path, "hbstatus")[0] == 1


def test_rscstatus_after_the_peer_died_is_all(tmp_path):
    """Heartbeat holds the dead peer's class too (mach_down): all, even when the peer
    prefers no group; transition while a group moves."""
    text = STATUS.format(now=time.time(), peer="dead", g1="julius").replace(
        "rsc_hold=all", "rsc_hold=local").replace("pref=caesar", "pref=julius")
    write(tmp_path, text=text)
    assert cl(tmp_path, "rscstatus")[:2] == (0, "all\n")
    assert hbswitch(tmp_path, "cl_status", "rscstatus")[:2] == (0, "all\n")
    write(tmp_path, text=text.replace("dead since", "up since"))
    assert cl(tmp_path, "rscstatus")[:2] == (0, "local\n")
    write(tmp_path, text=text.replace("1 julius running", "1 julius starting"))
    assert cl(tmp_path, "rscstatus")[:2] == (0, "transition\n")
