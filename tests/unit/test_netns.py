"""The namespace fixture itself: two hosts ping each other over the bridge; a set-up
that fails half-way leaves no namespace behind."""

import os
import signal
import subprocess
import sys

import pytest

from lab import netns
from lab.wait import readline


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

    made: list = []
    real_ns = netns.Lab._ns

    def recording(self, suffix):
        made.append(real_ns(self, suffix))
        return made[-1]
    monkeypatch.setattr(netns.Lab, "_ns", recording)
    monkeypatch.setattr(netns, "sh", failing)
    with pytest.raises(subprocess.CalledProcessError):
        netns.Lab("fail")
    assert made                                   # it got as far as a namespace
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in made if n in listed.split()]


def _daemon(host) -> int:
    """A process that left its parent's session (setsid) and whose parent is gone,
    as Heartbeat's master after a "shutdown restart": no process group of the lab's
    holds it; only its network namespace says whose it is."""
    p = host.popen(["sh", "-c", "setsid sleep 600 < /dev/null > /dev/null 2>&1 & echo $!"],
                   stdout=subprocess.PIPE, text=True)
    pid = int(readline(p.stdout))
    assert p.wait(5) == 0
    return pid


def test_close_kills_a_daemon_outside_every_process_group():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    lab = netns.Lab("dmn")
    try:
        h = lab.host("a", "198.18.0.1/24")
        pid = _daemon(h)
        fd = os.open("/run/netns/" + h.ns, os.O_RDONLY)     # its inode stays this one
        net = netns.netid(h.ns)
        assert netns.procs_in([net]) == [pid]
    finally:
        lab.close()
    try:
        assert netns.procs_in([net]) == []
    finally:
        os.close(fd)


def test_a_namespace_deleted_under_the_lab_keeps_its_process_and_is_reported():
    """`ip netns del` kills nothing; the lab's cleanup says what it could not do."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    lab = netns.Lab("gone")
    try:
        h = lab.host("a", "198.18.0.1/24")
        pid = _daemon(h)
        fd = os.open("/run/netns/" + h.ns, os.O_RDONLY)
        net = netns.netid(h.ns)
        subprocess.run(["ip", "netns", "del", h.ns], check=True)
    finally:
        with pytest.raises(RuntimeError, match="%s: .*No such file" % h.ns):
            lab.close()
    try:
        assert netns.procs_in([net]) == [pid]
        assert netns.kill_all([net]) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_run_ended_by_a_signal_removes_its_namespaces(sig):
    """A process with a lab (a test run, the demo, a bench) killed with SIGTERM or
    SIGHUP, as a cancelled CI job or a closed terminal does, closes its lab first."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    code = ("import sys, time\nsys.path.insert(0, %r)\nfrom lab import netns\n"
            "with netns.Lab('sig') as lab:\n"
            "    lab.host('a', '198.18.0.1/24').popen(['sleep', '600'])\n"
            "    print(' '.join(lab.namespaces), lab.tmp, flush=True)\n"
            "    time.sleep(60)\n") % os.path.dirname(os.path.dirname(netns.__file__))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        *made, tmp = readline(p.stdout, timeout=20).split()
        assert len(made) == 2 and os.path.isdir(tmp)
        p.send_signal(getattr(signal, sig))
        assert p.wait(20) != 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in made if n in listed.split()], listed
    assert not os.path.exists(tmp)
