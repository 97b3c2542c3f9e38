"""Log files follow rotation: logrotate (the real one) moves hb-watch's logfile away,
with and without a postrotate SIGHUP, and the next lines land in the new file.

Also hb.log's handler on its own: moved, removed, and reopened by reopen()."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time

import pytest

from hb import log as hblog, runfiles

from test_watch import Node

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"

# what a package ships for hb's own files, pointed at the test's file
CONF = """\
{log} {{
    rotate 3
    missingok
    notifempty
    nocompress
    create 0640 root root
{post}}}
"""
POSTROTATE = """\
    postrotate
        kill -HUP {pid}
    endscript
"""


def logrotate(tmp, log: str, pid: int | None = None) -> None:
    conf = tmp / "logrotate.conf"
    conf.write_text(CONF.format(log=log, post=POSTROTATE.format(pid=pid) if pid else ""))
    r = subprocess.run([LOGROTATE, "-f", "-s", str(tmp / "logrotate.state"), str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(pred, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out: " + what
        time.sleep(0.02)


@pytest.fixture
def watch(tmp_path):
    if not os.path.exists(LOGROTATE):
        pytest.fail("logrotate is not installed (apt-get install logrotate)")
    n = Node(tmp_path).start()
    yield n
    n.close()


def test_logrotate_moves_the_logfile_and_the_next_line_lands_in_the_new_one(watch, tmp_path):
    n = watch
    n.wait(lambda: "starting: node julius" in n.logtext(), what="first lines")
    ino = os.stat(n.log).st_ino
    logrotate(tmp_path, n.log)
    assert "starting: node julius" in read(n.log + ".1")
    assert os.stat(n.log).st_ino != ino and read(n.log) == ""      # logrotate's `create`
    runfiles.fifo_send(n.path("watch.fifo"), "frobnicate")
    wait_for(lambda: "request: frobnicate" in read(n.log), "the request logged in the new file")
    assert "frobnicate" not in read(n.log + ".1")
    logrotate(tmp_path, n.log)                                    # and again: log.1 -> log.2
    runfiles.fifo_send(n.path("watch.fifo"), "twiddle")
    wait_for(lambda: "request: twiddle" in read(n.log), "after the second rotation")
    assert "frobnicate" in read(n.log + ".1") and "starting" in read(n.log + ".2")


def test_postrotate_sighup_reopens_and_rereads(watch, tmp_path):
    n = watch
    n.wait(lambda: "starting: node julius" in n.logtext(), what="first lines")
    logrotate(tmp_path, n.log, pid=n.proc.pid)
    wait_for(lambda: "configuration re-read" in read(n.log), "SIGHUP's line in the new file")
    assert "configuration re-read" not in read(n.log + ".1")
    assert n.proc.poll() is None


def test_handler_follows_a_moved_and_a_removed_file(tmp_path):
    path = str(tmp_path / "ha-log")
    logger = logging.getLogger("hb.test.rotation")
    h = hblog.FollowingFileHandler(path)
    logger.addHandler(h)
    logger.propagate = False
    try:
        logger.warning("one")
        os.rename(path, path + ".1")
        logger.warning("two")
        assert read(path + ".1") == "one\n" and read(path) == "two\n"
        os.unlink(path)
        logger.warning("three")
        assert read(path) == "three\n"
    finally:
        logger.removeHandler(h)
        h.close()


def test_reopen_reopens_every_file(tmp_path, monkeypatch):
    """reopen() (SIGHUP) even when the path still names a file: a new one moved in
    place by hand (same name, different inode) is taken at once."""
    path = str(tmp_path / "ha-log")
    cfg = type("Cfg", (), {"logfile": path, "debugfile": None, "logfacility": None,
                           "debug": 0})()
    log = hblog.setup("hb-test", cfg, stderr=False)
    try:
        log.info("before")
        os.rename(path, path + ".old")
        with open(path, "w"):
            pass
        hblog.reopen()
        log.info("after")
        assert "after" in read(path) and "after" not in read(path + ".old")
        assert "before" in read(path + ".old")
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()


def test_sighup_to_hb_watch_keeps_it_running(watch):
    n = watch
    n.wait(lambda: "starting: node julius" in n.logtext(), what="first lines")
    os.rename(n.log, n.log + ".moved")
    n.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration re-read" in read(n.log), "re-read logged in a new file")
    assert n.proc.poll() is None
