"""hb.notify: systemd's notify protocol over a real AF_UNIX datagram socket; judge() pure."""

from __future__ import annotations

import os
import socket

import pytest

from hb import notify

STATUS = """updated {t} pid=42 node=julius
self julius st={st} rsc_hold=all maintenance=off
node julius up since=1 late=0 gen=1 kind=self lates=0 st=active
node caesar {peer} since=1 late=0 gen=1 kind=hb lates=0 st=active
link caesar eth0 up since=1
group 1 {holder} {state} pref=julius since=1 fails=0 key=IPaddr::198.18.0.100/24/eth0
group 2 caesar running pref=caesar since=1 fails=0 key=198.18.0.101
"""


def status(t: float = 1000, st: str = "active", peer: str = "up", holder: str = "julius",
           state: str = "running") -> str:
    return STATUS.format(t=int(t), st=st, peer=peer, holder=holder, state=state)


@pytest.fixture
def listener():
    """An abstract-namespace datagram socket, as systemd's $NOTIFY_SOCKET."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = "hb-notify-test-%d" % os.getpid()
    s.bind(b"\0" + name.encode())
    s.settimeout(0.5)
    yield s, "@" + name
    s.close()


def received(s: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return out
        s.settimeout(0.05)


def test_address_forms():
    assert notify.address({"NOTIFY_SOCKET": "@hb"}) == b"\0hb"
    assert notify.address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify.address({"NOTIFY_SOCKET": ""}) is None
    assert notify.address({}) is None
    assert notify.address({"NOTIFY_SOCKET": "vsock:2:1"}) is None


def test_send_to_abstract_and_path_sockets(listener, tmp_path):
    s, name = listener
    assert notify.send("READY=1", {"NOTIFY_SOCKET": name})
    assert received(s) == ["READY=1"]
    path = str(tmp_path / "notify")
    p = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    p.bind(path)
    p.settimeout(0.5)
    assert notify.send("WATCHDOG=1", {"NOTIFY_SOCKET": path})
    assert p.recv(100) == b"WATCHDOG=1"
    p.close()
    assert not notify.send("READY=1", {})
    assert not notify.send("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")})


def test_watchdog_interval_is_for_this_process_only():
    assert notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"},
                                    pid=7) == 3.0
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"},
                                    pid=8) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    assert notify.watchdog_interval({}) is None


def test_judge_decided_only_when_active_and_nothing_in_flux():
    decided, fresh, summary = notify.judge(status(), 1001)
    assert decided and fresh
    assert summary == "julius active; holds 1; peer holds 2; caesar up"
    assert notify.judge(status(st="up"), 1001)[0] is False            # initdead
    assert "starting (initdead)" in notify.judge(status(st="up"), 1001)[2]
    d, _, s = notify.judge(status(state="starting"), 1001)
    assert not d and "in flux 1 starting" in s
    assert not notify.judge(status(holder="caesar", state="stopping"), 1001)[0]
    assert notify.judge(status(holder="none", state="stopped"), 1001)[2].startswith(
        "julius active; holds nothing")
    d, fresh, s = notify.judge(status(), 1000 + notify.FRESH + 1)
    assert d and not fresh and "status 16 s old" in s
    assert notify.judge("", 1000) == (False, False, "waiting for hb-watch's first status")
    assert "caesar dead" in notify.judge(status(peer="dead"), 1000)[2]


def test_notifier_ready_once_watchdog_while_alive_and_fresh(listener, tmp_path):
    s, name = listener
    path = str(tmp_path / "status")
    n = notify.Notifier(path, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000"})
    assert n.on and n.wait() == 1.0

    n.tick(alive=True, wall=1000)               # no status yet: still starting
    assert received(s) == ["STATUS=waiting for hb-watch's first status"]
    with open(path, "w") as f:
        f.write(status(st="up"))
    n.tick(alive=True, wall=1000)
    msgs = received(s)
    assert msgs == ["STATUS=julius starting (initdead); holds 1; peer holds 2; caesar up\n"
                    "EXTEND_TIMEOUT_USEC=%d\nWATCHDOG=1" % (notify.EXTEND * 1e6)]
    with open(path, "w") as f:
        f.write(status())
    n.tick(alive=True, wall=1001)
    assert received(s) == ["STATUS=julius active; holds 1; peer holds 2; caesar up\n"
                           "READY=1\nWATCHDOG=1"]
    n.tick(alive=True, wall=1002)               # nothing new: the watchdog alone
    assert received(s) == ["WATCHDOG=1"]
    n.tick(alive=False, wall=1002)              # a daemon is being restarted: no watchdog
    msgs = received(s)
    assert len(msgs) == 1 and "WATCHDOG" not in msgs[0] and "READY" not in msgs[0]
    assert msgs[0].startswith("STATUS=a daemon is being restarted")
    n.tick(alive=True, wall=1000 + notify.FRESH + 5)     # hb-watch stopped writing
    msgs = received(s)
    assert len(msgs) == 1 and "WATCHDOG" not in msgs[0] and "status 20 s old" in msgs[0]
    n.stopping()
    assert received(s) == ["STOPPING=1\nSTATUS=stopping: handing the groups over"]


def test_notifier_without_systemd_sends_nothing(tmp_path):
    n = notify.Notifier(str(tmp_path / "status"), {})
    assert not n.on and n.wait() == 3600.0
    n.tick(alive=True)
    n.stopping()
