"""Shared fixtures: the source tree on the path, and the `lab` of namespaces."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import lab as _lab  # noqa: E402  (the package tests/lab; `lab` is the fixture below)
_lab.source_tree()

from lab.netns import Lab  # noqa: E402
from lab.smtpserver import Smtpd  # noqa: E402


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


_prebuild: list = []


def pytest_collection_finish(session):
    """A run that includes the package tests makes their Debian systems in the
    background meanwhile (debootstrap and apt: minutes when the cache is cold); the
    package tests wait for them on the cache's lock."""
    if os.geteuid() != 0 or not any("/tests/pkg/" in str(i.fspath) for i in session.items):
        return
    import subprocess
    os.makedirs(os.path.join(ROOT, ".cache"), exist_ok=True)
    log = open(os.path.join(ROOT, ".cache", "prebuild.log"), "w")
    _prebuild.append(subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "pkg", "debroot.py")],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        cwd=os.path.join(ROOT, "tests", "pkg"), start_new_session=True))
    log.close()


@pytest.hookimpl(trylast=True)      # after pytest's own, which tears down the fixtures
def pytest_sessionfinish(session, exitstatus):
    """The run fails if any namespace of its own, or a process in one, is still
    alive: it is killed and reported.  (A lab's close() empties each namespace and
    kills what forked meanwhile before it lets go of it, and fails otherwise.)"""
    import signal
    for p in _prebuild:                 # an interrupted run leaves no apt-get behind
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        p.wait()
    if os.geteuid() != 0:
        return
    from lab.netns import describe, session_leftovers
    names, pids = session_leftovers()
    if names or pids:
        import subprocess
        from lab.netns import kill_inside
        said = [describe(p) for p in pids]
        for n in names:
            kill_inside(n)
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "LEFT BEHIND (now killed): namespaces %s, processes:\n  %s"
            % (names, "\n  ".join(said)), red=True)
        session.exitstatus = 1
