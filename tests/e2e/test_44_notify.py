"""hb-supervise under systemd's notify protocol: a real pair, a real AF_UNIX socket.

julius runs with NOTIFY_SOCKET (a path, as systemd gives: an abstract name would not
cross into the lab's network namespace; tests/unit/test_notify.py sends to one) and
WATCHDOG_USEC
set as hb.service's Type=notify and WatchdogSec make systemd do.  READY=1 comes once,
only after julius has decided what it holds (the VIP running there); STATUS= is a
one-line summary; WATCHDOG=1 comes at least every second while both daemons run, and
stops while one is gone; SIGTERM says STOPPING=1.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from lab.pair import Pair


class Listener:
    def __init__(self, path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.got: list[tuple[float, str]] = []

    def read(self, until: float) -> None:
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            self.s.settimeout(left)
            try:
                msg = self.s.recv(4096).decode()
            except socket.timeout:
                return
            self.got += [(time.monotonic(), m) for m in msg.splitlines()]

    def wait(self, what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for t, m in self.got:
                if m == what or (what.endswith("=") and m.startswith(what)):
                    return t
            if time.monotonic() > deadline:
                raise AssertionError("no %s within %.0f s: %s" % (what, timeout, self.got))
            self.read(min(deadline, time.monotonic() + 0.2))

    def close(self) -> None:
        self.s.close()


def test_ready_status_watchdog_and_stopping(lab, monkeypatch):
    pair = Pair(lab, warntime="500ms", deadtime="1", initdead="2")
    julius = pair["julius"]
    path = os.path.join(lab.tmp, "notify")
    sock = Listener(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "3000000")
        julius.start()
        monkeypatch.delenv("NOTIFY_SOCKET")
        monkeypatch.delenv("WATCHDOG_USEC")
        t_ready = sock.wait("READY=1", 20)
        held = julius.holds()
        assert held == ["1"], (held, julius.logtail())           # decided before READY
        before = [m for t, m in sock.got if t <= t_ready]
        assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in before), before
        status = [m for t, m in sock.got if m.startswith("STATUS=")]
        assert any(s.startswith("STATUS=julius active; holds 1") for s in status), status
        assert all("\n" not in s for s in status)

        pair["caesar"].start()
        pair.wait(lambda: julius.node("caesar").get("status") == "up", what="caesar up")
        sock.read(time.monotonic() + 3)
        dogs = [t for t, m in sock.got if m == "WATCHDOG=1" and t > t_ready]
        assert len(dogs) >= 3 and max(b - a for a, b in zip(dogs, dogs[1:])) < 1.5, dogs
        assert [m for t, m in sock.got].count("READY=1") == 1
        assert any("caesar up" in m for t, m in sock.got if m.startswith("STATUS="))

        # hb-watch stopped (SIGSTOP): its status goes stale and the watchdog is not fed
        kids = julius.children()
        os.kill(kids["hb-watch"], signal.SIGSTOP)
        try:
            time.sleep(0.5)
            from hb import notify
            t_stop = time.monotonic()
            sock.read(t_stop + notify.FRESH + 6)
            late = [t for t, m in sock.got if m == "WATCHDOG=1" and t > t_stop + notify.FRESH]
            assert late == [], "watchdog fed while hb-watch's status was stale"
            assert any("s old" in m for t, m in sock.got
                       if m.startswith("STATUS=") and t > t_stop)
        finally:
            os.kill(kids["hb-watch"], signal.SIGCONT)
        t_back = time.monotonic()
        sock.read(t_back + 7)
        assert [t for t, m in sock.got if m == "WATCHDOG=1" and t > t_back], \
            "the watchdog was not fed again once hb-watch wrote its status"

        t_term = time.monotonic()
        assert julius.stop() == 0
        sock.read(time.monotonic() + 0.5)
        assert "STOPPING=1" in [m for t, m in sock.got if t >= t_term]
    finally:
        sock.close()
