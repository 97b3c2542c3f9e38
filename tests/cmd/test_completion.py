"""The bash completion of hb-switch: bash itself sources the script and completes
command lines; group, node and link names come from a status file."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from hb import runfiles, status

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "etc", "bash_completion.d", "hb-switch")


def complete(line: str) -> list[str]:
    """What bash offers for `line` (the cursor at its end) with the script sourced."""
    words = line.split(" ")
    prog = ("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE=%s; COMP_POINT=%d; "
            "_hb_switch; printf '%%s\\n' \"${COMPREPLY[@]}\"" % (
                shlex.quote(SCRIPT), " ".join(shlex.quote(w) for w in words), len(words) - 1,
                shlex.quote(line), len(line)))
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0 and r.stderr == "", r
    return sorted(x for x in r.stdout.split("\n") if x)


@pytest.fixture
def rundir(tmp_path):
    runfiles.write_atomic(str(tmp_path / "status"), "\n".join([
        status.record("updated", 1, pid=1, node="julius"),
        status.record("node", "julius", "up", kind="self"),
        status.record("node", "caesar", "up", kind="hb"),
        status.record("link", "caesar", "eth1", "up", since=1),
        status.record("link", "caesar", "ttyS0", "dead", since=1),
        status.record("ping", "192.0.2.254", "up", since=1),
        status.record("group", 1, "julius", "running", key="a"),
        status.record("group", 2, "caesar", "running", key="b")]) + "\n")
    return str(tmp_path)


def test_the_script_is_bash():
    assert subprocess.run(["bash", "-n", SCRIPT], timeout=20).returncode == 0


def test_commands_and_their_words():
    assert complete("hb-switch ") == sorted(
        ["standby", "takeover", "maintenance", "status", "why", "cl_status", "--help",
         "--version"])
    assert complete("hb-switch st") == ["standby", "status"]
    assert complete("hb-switch standby ") == sorted(
        ["all", "local", "foreign", "failback", "-r", "--wait", "--no-wait", "--force"])
    assert complete("hb-switch standby local --") == ["--force", "--no-wait", "--wait"]
    assert complete("hb-switch takeover --wait 5 f") == ["failback", "foreign"]
    assert complete("hb-switch maintenance ") == ["off", "on"]
    assert complete("hb-switch maintenance on --") == ["--for", "--no-wait", "--wait"]
    assert complete("hb-switch status --format=") == sorted(
        ["--format=text", "--format=shell", "--format=json", "--format=prometheus"])
    assert complete("hb-switch status --format=p") == ["--format=prometheus"]
    assert complete("hb-switch cl_status list") == ["listhblinks", "listnodes"]
    assert complete("hb-switch cl_status listnodes -") == ["-n", "-p", "-r"]
    assert complete("hb-switch standby --wait ") == []


def test_names_from_the_status_file(rundir):
    assert complete("hb-switch why -r %s " % rundir) == ["-r", "1", "2"]
    assert complete("hb-switch cl_status nodestatus -r %s " % rundir) == [
        "-r", "192.0.2.254", "caesar", "julius"]
    assert complete("hb-switch -r %s cl_status hblinkstatus c" % rundir) == ["caesar"]
    assert complete("hb-switch -r %s cl_status hblinkstatus caesar " % rundir) == [
        "-r", "eth1", "ttyS0"]
    assert complete("hb-switch why -r %s/nowhere " % rundir) == ["-r"]


def test_rundir_completes_directories(tmp_path):
    (tmp_path / "run-a").mkdir()
    (tmp_path / "file").write_text("")
    assert complete("hb-switch status -r %s/" % tmp_path) == [str(tmp_path / "run-a")]
