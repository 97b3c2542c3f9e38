"""agents.py for real: scripts in a resource.d, the built-in IPaddr, worker threads."""

from __future__ import annotations

import os
import sys
import time

from hb import agents
from hb.settings import Group, Resource

SCRIPT = """#!/bin/sh
# a Heartbeat-style resource script that records its calls
echo "$0 $*" | sed 's|.*/||' >> {log}
name=$(basename $0)
last=$(eval echo \\${{$#}})
case "$last" in
  status) if [ -e {dir}/$name.$1.up ]; then echo "$name is running"
          else echo "$name is stopped"; fi
          exit 3 ;;
  start) [ -e {dir}/$name.fail ] && {{ echo "cannot start"; exit 1; }}
         [ -e {dir}/$name.slow ] && sleep 2
         touch {dir}/$name.$1.up; echo started ;;
  stop) [ -e {dir}/$name.failstop ] && exit 1
        rm -f {dir}/$name.$1.up ;;
esac
exit 0
"""


def make(tmp_path, names=("A", "B", "C")):
    conf = tmp_path / "conf"
    (conf / "resource.d").mkdir(parents=True)
    logf = tmp_path / "calls"
    for n in names:
        p = conf / "resource.d" / n
        p.write_text(SCRIPT.format(log=logf, dir=tmp_path))
        p.chmod(0o755)
    caller = agents.Caller(str(conf), "julius", str(tmp_path), str(tmp_path), timeout=1.0,
                           initd=str(tmp_path / "initd"))
    return conf, logf, caller


def calls(logf) -> list[str]:
    return logf.read_text().splitlines() if logf.exists() else []


def group(*names, index=1) -> Group:
    return Group(index, "julius", [Resource(n, ["x%d" % i], "%s::x%d" % (n, i))
                                   for i, n in enumerate(names)])


def test_judge_status_is_heartbeats_text_rule():
    assert agents.judge_status("INFO: Running OK")
    assert agents.judge_status("apache is running")
    assert agents.judge_status("OK")
    assert not agents.judge_status("INFO: Resource is stopped")
    assert not agents.judge_status("apache is NOT running")
    assert not agents.judge_status("not  running")
    assert not agents.judge_status("")


def test_lookup_order(tmp_path):
    conf, _, _ = make(tmp_path, ("IPaddr", "A"))
    initd = tmp_path / "initd"
    initd.mkdir()
    (initd / "apache2").write_text("#!/bin/sh\necho running\n")
    (initd / "apache2").chmod(0o755)
    (initd / "noexec").write_text("#!/bin/sh\n")
    assert agents.lookup("IPaddr", str(conf), str(initd)).path.endswith("resource.d/IPaddr")
    a = agents.lookup("IPaddr2", str(conf), str(initd))
    assert a.builtin and a.module == "address"
    assert agents.lookup("MailTo", str(conf), str(initd)).module == "mail"
    assert agents.lookup("apache2", str(conf), str(initd)).path == str(initd / "apache2")
    assert agents.lookup("noexec", str(conf), str(initd)) is None
    assert agents.lookup("nothing", str(conf), str(initd)) is None


def test_start_left_to_right_with_status_probe_stop_right_to_left(tmp_path):
    _, logf, caller = make(tmp_path)
    g = group("A", "B", "C")
    assert caller.group(g, "start") == 0
    assert calls(logf) == ["A x0 status", "A x0 start", "B x1 status", "B x1 start",
                           "C x2 status", "C x2 start"]
    assert caller.group(g, "status") == 0
    logf.unlink()
    assert caller.group(g, "start") == 0          # already running: probed, not started
    assert calls(logf) == ["A x0 status", "B x1 status", "C x2 status"]
    logf.unlink()
    assert caller.group(g, "stop") == 0
    assert calls(logf) == ["C x2 stop", "B x1 stop", "A x0 stop"]
    assert caller.group(g, "status") == 3


def test_failed_start_stops_what_started(tmp_path):
    _, logf, caller = make(tmp_path)
    (tmp_path / "C.fail").touch()
    assert caller.group(group("A", "B", "C"), "start") == 1
    assert calls(logf)[-3:] == ["C x2 start", "B x1 stop", "A x0 stop"]
    assert caller.group(group("A", "B", "C"), "status") == 3


def test_partial_status_and_failed_stop(tmp_path):
    _, logf, caller = make(tmp_path)
    g = group("A", "B")
    caller.group(group("A"), "start")
    assert caller.group(g, "status") == 1
    (tmp_path / "B.failstop").touch()
    assert caller.group(g, "stop") == 1
    assert calls(logf)[-2:] == ["B x1 stop", "A x0 stop"]     # the rest still stopped


def test_missing_agent_fails(tmp_path):
    _, _, caller = make(tmp_path)
    assert caller.group(group("Nowhere"), "start") == 1
    rc, text = caller.call(Resource("Nowhere", [], "Nowhere"), "start")
    assert rc == 1 and "cannot locate resource script Nowhere" in text


def test_timeout_is_a_failure(tmp_path):
    _, _, caller = make(tmp_path)
    (tmp_path / "A.slow").touch()
    t0 = time.monotonic()
    rc, text = caller.call(Resource("A", ["x"], "A::x"), "start")
    assert rc == 1 and "timed out after 1 s" in text
    assert time.monotonic() - t0 < 3


def test_builtin_ipaddr_status_in_process(tmp_path):
    _, _, caller = make(tmp_path, ())
    # preload imports the agent and prepares its interface; this host has none for it
    assert agents.preload([Group(1, "julius", [Resource("IPaddr", ["198.18.77.77/24"],
                                                        "198.18.77.77/24")])],
                          str(tmp_path / "conf")) == [
        "cannot prepare 198.18.77.77/24: no interface has a subnet containing 198.18.77.77:"
        " give the interface"]
    assert "pyroute2.netlink.rtnl.iprsocket" in sys.modules
    rc, text = caller.call(Resource("IPaddr", ["198.18.77.77/24"], "198.18.77.77/24"), "status")
    assert (rc, text.strip()) == (3, "stopped")


def test_runner_groups_are_independent(tmp_path):
    _, _, caller = make(tmp_path, ("A", "S"))
    (tmp_path / "S.slow").touch()
    caller.timeout = 5.0
    r = agents.Runner(caller)
    try:
        r.run(group("S", index=2), "start")
        r.run(group("A", index=1), "start")
        t0 = time.monotonic()
        got = []
        while not got and time.monotonic() - t0 < 3:
            got = r.wait(1)
        assert got == [(1, "start", 0)]
        assert time.monotonic() - t0 < 1.5          # not held up by the slow group
        while len(got) < 2 and time.monotonic() - t0 < 6:
            got += r.wait(1)
        assert got[1] == (2, "start", 0)
        assert os.path.exists(tmp_path / "S.x0.up")
    finally:
        r.close()


def script(conf, name, body):
    p = conf / "resource.d" / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return Resource(name, [], name)


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for %s" % pred
        time.sleep(0.01)


def test_a_daemon_that_keeps_stdout_neither_blocks_nor_fails_a_start(tmp_path):
    conf, _, caller = make(tmp_path, ())
    caller.timeout = 10.0
    pidf, spid = tmp_path / "daemon.pid", tmp_path / "status.pid"
    r = script(conf, "daemon", 'case "$1" in\n'
               'start) sleep 60 & echo $! > %s; echo started; exit 0 ;;\n'
               'status) sleep 60 & echo $! > %s\n'
               '        [ -s %s ] && kill -0 $(cat %s) && echo running ;;\n'
               'esac\nexit 0\n' % (pidf, spid, pidf, pidf))
    held = agents.DRAIN.count()
    try:
        t0 = time.monotonic()
        assert caller.call(r, "start") == (0, "started\n")
        assert time.monotonic() - t0 < 2.0
        pid = int(pidf.read_text())
        assert alive(pid)                    # the daemon stays, its stdout drained
        assert agents.DRAIN.count() == held + 1
        t0 = time.monotonic()
        assert caller.call(r, "status") == (0, "running\n")     # judged by its text
        assert time.monotonic() - t0 < 2.0
        assert agents.DRAIN.count() == held + 2
        os.kill(int(spid.read_text()), 9)
        os.kill(pid, 9)                      # its writers gone, the pipes are closed
        wait_for(lambda: agents.DRAIN.count() == held)
        pidf.write_text("")
        assert caller.call(r, "status") == (3, "")     # exit 0, but no "running"
    finally:
        for f in (pidf, spid):
            try:
                os.kill(int(f.read_text()), 9)
            except (ProcessLookupError, FileNotFoundError, ValueError):
                pass


def group_of(*rs, index=1) -> Group:
    return Group(index, "julius", list(rs))


def test_start_and_stop_are_judged_by_exit_status_even_with_a_daemon(tmp_path):
    conf, _, caller = make(tmp_path, ())
    pidf = tmp_path / "pid"
    r = script(conf, "bad", "sleep 60 & echo $! > %s\necho 'all OK, running'\nexit 1\n" % pidf)
    try:
        rc, text = caller.call(r, "start")
        assert rc == 1 and "running" in text
    finally:
        os.kill(int(pidf.read_text()), 9)


def test_a_timeout_kills_the_agents_whole_process_group(tmp_path):
    conf, _, caller = make(tmp_path, ())
    caller.timeout = 0.5
    pidf = tmp_path / "pid"
    r = script(conf, "hang", "sleep 60 & echo $! > %s\necho waiting\nsleep 60\n" % pidf)
    t0 = time.monotonic()
    rc, text = caller.call(r, "start")
    assert rc == 1 and text == "waiting\ntimed out after 0.5 s"
    assert time.monotonic() - t0 < 2.0
    wait_for(lambda: not alive(int(pidf.read_text())), 3.0)


def test_output_is_bounded_and_does_not_hold_up_the_exit(tmp_path):
    conf, _, caller = make(tmp_path, ())
    r = script(conf, "chatty", "head -c 3000000 /dev/zero | tr '\\0' x\nexit 0\n")
    rc, text = caller.call(r, "stop")
    assert rc == 0 and text == "x" * agents.OUTPUT_LIMIT


def test_a_builtin_that_timed_out_cannot_act_afterwards(tmp_path, monkeypatch):
    from hb import address
    _, _, caller = make(tmp_path, ())
    caller.timeout = 0.2
    gate = __import__("threading").Event()
    done: list[str] = []

    def slow_start(spec, background="thread", confirm=False):
        gate.wait(10)
        done.append("start %s" % spec.ip)
        return "added"

    def fake_run_agent(args, action, agent="IPaddr2"):
        done.append("%s %s" % (action, args[0]))
        return 0, "removed"
    monkeypatch.setattr(address, "start", slow_start)
    monkeypatch.setattr(address, "run_agent", fake_run_agent)
    r = Resource("IPaddr", ["198.18.77.77/24/lo"], "198.18.77.77/24/lo")
    assert caller.call(r, "start") == (1, "timed out after 0.2 s")
    # still stuck: not called again (one thread per stuck resource, not one per call)
    assert caller.call(r, "start") == (1, "an earlier call of IPaddr has not returned yet")
    gate.set()                                    # the late completion is undone
    wait_for(lambda: len(done) == 2)
    assert done == ["start 198.18.77.77", "stop 198.18.77.77/24/lo"]
    wait_for(lambda: caller.call(r, "status")[1] != "an earlier call of IPaddr has not "
             "returned yet")
    assert done[2:] == ["status 198.18.77.77/24/lo"]


def test_a_writer_that_never_pauses_neither_holds_up_the_exit_nor_the_timeout(tmp_path):
    conf, _, caller = make(tmp_path, ())
    caller.timeout = 1.0
    pidf = tmp_path / "pid"
    r = script(conf, "yes", "yes & echo $! > %s\nexit 0\n" % pidf)
    try:
        t0 = time.monotonic()
        rc, text = caller.call(r, "start")
        assert rc == 0 and len(text) <= agents.OUTPUT_LIMIT
        assert time.monotonic() - t0 < 1.0
        r = script(conf, "loud", "yes\n")
        t0 = time.monotonic()
        rc, text = caller.call(r, "start")
        assert rc == 1 and text.endswith("timed out after 1 s")
        assert time.monotonic() - t0 < 3.0
    finally:
        os.kill(int(pidf.read_text()), 9)
