"""hbapi (cl_status's answers, as Heartbeat 3.0.6's), proc.runs (is Heartbeat
running), and hb-switch's pure parts (switching.duration, status.maintenance).
Their commands, as processes: tests/cmd/test_switch.py."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from hb import hbapi, status, switching

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
PID = os.getpid()
STATUS = open(os.path.join(DATA, "status", "julius.status")).read() % PID

HACF = open(os.path.join(DATA, "status", "julius.ha.cf")).read()


def test_duration_and_parse_units():
    assert switching.duration("3600") == 3600
    assert switching.duration("1h30m") == 5400
    assert switching.duration("90s") == 90
    assert switching.duration("2d") == 172800
    for bad in ("", "0", "h", "5x"):
        with pytest.raises(ValueError):
            switching.duration(bad)
    st = status.parse("self a st=up maintenance=until=123\nbogus line\n")
    assert status.maintenance(st) == (True, 123.0)


def test_clientstatus_waits_its_timeout_and_cl_status_its_alarm():
    """hb has no API clients: the answer of a client that does not answer, after the
    timeout; a timeout past cl_status's 5 s alarm ends it with 12 and nothing said."""
    st = status.parse(STATUS.format(now=time.time(), peer="up", g1="julius"))
    waited: list[float] = []
    rc, out, err = hbapi.answer(["clientstatus", "caesar", "ipfail"], st, HACF, True,
                                wait=waited.append)
    assert (rc, out, waited) == (13, "", [0.5])
    assert err.endswith("REASON: No timely response.\n")
    waited.clear()
    assert hbapi.answer(["clientstatus", "caesar", "ipfail", "9000"], st, HACF, True,
                        wait=waited.append) == (12, "", "")
    assert waited == [5]


def test_parameters_as_heartbeat_records_them():
    p = hbapi.parameters("deadtime 10\nkeepalive 2, 3 # last wins\nnode a b\n"
                         "logfacility local0\n")
    assert (p["keepalive"], p["deadtime"], p["warntime"], p["initdead"], p["deadping"]) == (
        "3", "10", "5000ms", "20000ms", "10000ms")
    assert (p["logfile"], p["debugfile"], p["auto_failback"], p["udpport"]) == (
        "/dev/null", "/dev/null", "legacy", "694")
    assert "node" not in p and "use_logd" not in p
    assert hbapi.parameters("deadtime 30\n")["initdead"] == "30000ms"
    assert hbapi.parameters("")["use_logd"] == "yes"
    assert hbapi.parameters("logfacility none\n")["use_logd"] == "yes"
    assert "use_logd" not in hbapi.parameters("logfile /var/log/ha-log\n")
    assert hbapi.cluster_nodes("ping 1.2.3.4\nnode A\nnode b a\nping_group g 1 2\n") == [
        ("g", "ping"), ("b", "normal"), ("a", "normal"), ("1.2.3.4", "ping")]


def test_heartbeat_is_told_apart_by_its_pid_file(tmp_path):
    from hb import proc
    pidfile = str(tmp_path / "heartbeat.pid")
    assert not proc.runs(pidfile, "heartbeat")
    with open(pidfile, "w") as f:
        f.write("%d\n" % os.getpid())             # alive, but not called heartbeat
    assert not proc.runs(pidfile, "heartbeat")
    os.symlink("/bin/sleep", str(tmp_path / "heartbeat"))     # a process called heartbeat
    p = subprocess.Popen([str(tmp_path / "heartbeat"), "30"])
    try:
        with open(pidfile, "w") as f:
            f.write("%d\n" % p.pid)
        deadline = time.monotonic() + 5      # until the child has exec'd
        while not proc.runs(pidfile, "heartbeat") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.runs(pidfile, "heartbeat")
    finally:
        p.kill()
        p.wait()
    assert not proc.runs(pidfile, "heartbeat")
