"""Each code of the one exit-code table (exits.TABLE), produced by a real command."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from hb import exits, runfiles

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")
NOBODY = 65534


def run(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], capture_output=True,
                          text=True, timeout=60, **kw)


def status_file(rundir: str, mode: int = 0o644) -> None:
    """Current (written now by a live process: this one); group 1 on caesar."""
    runfiles.write_atomic(os.path.join(rundir, "status"),
                          "updated %d pid=%d node=julius\nself julius st=active rsc_hold=none "
                          "maintenance=off\nnode caesar up since=1 kind=hb\ngroup 1 caesar "
                          "running pref=julius since=1 fails=0 key=198.18.0.100\nlast 1 "
                          "started\n" % (time.time(), os.getpid()), mode)


def code_0(tmp) -> subprocess.CompletedProcess:
    status_file(str(tmp))
    return run("hb-switch", "status", "-r", str(tmp))           # current


def code_1(tmp) -> subprocess.CompletedProcess:
    return run("hb-switch", "status", "-r", str(tmp))          # no status: not running


def code_2(tmp) -> subprocess.CompletedProcess:
    return run("hb-switch", "standby", "--wait", "x")


def code_3(tmp) -> subprocess.CompletedProcess:
    os.chmod(tmp, 0o755)
    status_file(str(tmp), 0o600)
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                           "--clear-groups", os.path.join(BIN, "hb-switch"), "status", "-r",
                           str(tmp)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))


def code_6(tmp) -> subprocess.CompletedProcess:
    conf = tmp / "ha.d"
    conf.mkdir()
    (conf / "ha.cf").write_text("keepalive soon\nnode julius caesar\nbcast lo\n")
    (conf / "haresources").write_text("")
    (conf / "authkeys").write_text("auth 1\n1 sha1 x\n")
    os.chmod(conf / "authkeys", 0o600)
    return run("hb-supervise", "--check", "-c", str(conf), "--node", "julius")


def code_124(tmp) -> subprocess.CompletedProcess:
    status_file(str(tmp))
    rfd, wfd = runfiles.open_fifo_reader(str(tmp / "watch.fifo"))   # a deaf hb-watch
    try:
        return run("hb-switch", "takeover", "-r", str(tmp), "--wait", "0.5")
    finally:
        os.close(rfd)
        os.close(wfd)


CASES = {0: code_0, 1: code_1, 2: code_2, 3: code_3, 6: code_6, 124: code_124}


def test_every_code_of_the_table_has_a_case():
    assert sorted(CASES) == sorted(code for code, _ in exits.TABLE)


@pytest.mark.parametrize("code", sorted(CASES))
def test_exit_code(tmp_path, code):
    r = CASES[code](tmp_path)
    assert r.returncode == code, r
    assert "Traceback" not in r.stderr
    if code == 2:
        assert r.stderr.count("\n") == 1 and r.stdout == ""
    if code == 3:
        assert "permission denied" in r.stderr and r.stdout == ""
    if code == 6:
        assert r.stderr.startswith(str(tmp_path / "ha.d" / "ha.cf") + ":1: ")
    if code == 124:
        assert r.stdout.startswith("timeout: takeover all")


def test_config_errors_are_6_in_every_daemon(tmp_path):
    conf = tmp_path / "ha.d"
    code_6(tmp_path)
    for cmd in ("hb-beat", "hb-watch", "hb-supervise"):
        r = run(cmd, "-c", str(conf), "-r", str(tmp_path / "run"), "-s", str(tmp_path / "st"),
                "--node", "julius", stdin=subprocess.DEVNULL)
        assert r.returncode == exits.CONFIG, (cmd, r)
        assert r.stderr.startswith(str(conf / "ha.cf") + ":1: "), (cmd, r.stderr)
