"""The namespace fixture itself: two hosts ping each other over the bridge; a set-up
that fails half-way leaves no namespace behind."""

import os
import subprocess

import pytest

from lab import netns


def test_two_namespaces_ping_over_the_bridge(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    r = a.run(["ping", "-c", "1", "-W", "2", "198.18.0.2"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b.has_addr("198.18.0.2")


def test_cut_cable_loses_carrier(lab):
    a = lab.host("a", "198.18.0.1/24")
    lab.host("b", "198.18.0.2/24")
    lab.cut(a)
    r = a.run(["ping", "-c", "1", "-W", "1", "198.18.0.2"], check=False)
    assert r.returncode != 0
    assert "NO-CARRIER" in a.run(["ip", "link", "show", "eth0"]).stdout
    lab.mend(a)


def test_serial_pair_carries_bytes(lab):
    import os
    import time
    a, b = lab.serial_pair()
    fa = os.open(a, os.O_RDWR | os.O_NOCTTY)
    fb = os.open(b, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    os.write(fa, b">>>\nt=status\n<<<\n")
    data = b""
    deadline = time.monotonic() + 3
    while b"<<<" not in data and time.monotonic() < deadline:
        try:
            data += os.read(fb, 100)
        except BlockingIOError:
            time.sleep(0.01)
    os.close(fa)
    os.close(fb)
    assert data == b">>>\nt=status\n<<<\n"


def test_a_lab_whose_set_up_fails_leaves_nothing_behind(monkeypatch):
    """A namespace made before a failing set-up step is deleted, its files removed."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    real = netns.sh

    def failing(*argv, **kw):
        if argv[-1] == "up" and "br0" in argv:
            raise subprocess.CalledProcessError(1, argv)
        return real(*argv, **kw)

    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    monkeypatch.setattr(netns, "sh", failing)
    with pytest.raises(subprocess.CalledProcessError):
        netns.Lab("fail")
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert after == before
