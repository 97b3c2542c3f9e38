"""Shared fixtures: the source tree on the path, and the `lab` of namespaces."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ["PYTHONPATH"] = os.path.join(ROOT, "lib") + (
    ":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ["PATH"] = os.path.join(ROOT, "bin") + ":" + os.environ["PATH"]

from netns import Lab  # noqa: E402
from smtpserver import Smtpd  # noqa: E402


@pytest.fixture
def lab(request):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with Lab(request.node.name.replace("test_", "")[:4]) as lab:
        yield lab


@pytest.fixture
def smtpd():
    """A plain SMTP server on loopback that keeps what it receives."""
    s = Smtpd()
    s.start()
    yield s
    s.stop()


def pytest_sessionfinish(session, exitstatus):
    """The run fails if any namespace of its own, or a process in one, is still alive."""
    if os.geteuid() != 0:
        return
    import re
    from netns import inside, kill_inside, leftovers
    mine = re.compile(r"hb%d[^0-9]" % (os.getpid() % 100000))
    names, _ = leftovers("hb")
    names = [n for n in names if mine.match(n)]
    pids = [p for n in names for p in inside(n)]
    if names:
        import subprocess
        for n in names:
            kill_inside(n)
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "LEFT BEHIND: namespaces %s, processes %s" % (names, pids), red=True)
        session.exitstatus = 1
