"""One synopsis: for every bin/hb-* command, `--help` prints the module's docopt text,
and man/<command>.8's SYNOPSIS is its usage lines verbatim (`-` written `\\-`)."""

from __future__ import annotations

import glob
import importlib
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "bin", "hb-*")))


def module(cmd: str):
    """The module a launcher runs: `from hb.X import main`."""
    with open(os.path.join(ROOT, "bin", cmd)) as f:
        m = re.search(r"from (hb\.\w+) import main", f.read())
    assert m, "bin/%s is not a two-line launcher of hb.<cmd>.main" % cmd
    return importlib.import_module(m.group(1))


def usage_lines(doc: str) -> list[str]:
    """The lines of docopt's usage section, without 'Usage:' and indentation."""
    m = re.search(r"^usage:(.*?)(?:\n\s*\n|\Z)", doc, re.I | re.M | re.S)
    assert m, "no Usage: section"
    lines = [x.strip() for x in m.group(1).strip("\n").splitlines()]
    return [x for x in lines if x]


def synopsis(page: str) -> list[str]:
    m = re.search(r"^\.SH SYNOPSIS\n\.nf\n(.*?)\n\.fi$", page, re.M | re.S)
    assert m, "no .SH SYNOPSIS with a .nf/.fi block"
    return m.group(1).splitlines()


def test_there_are_commands():
    assert "hb-supervise" in COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_is_the_docopt_text(cmd):
    r = subprocess.run([os.path.join(ROOT, "bin", cmd), "--help"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == module(cmd).__doc__.strip("\n") + "\n"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_man_synopsis_is_the_usage(cmd):
    path = os.path.join(ROOT, "man", cmd + ".8")
    assert os.path.exists(path), "man/%s.8 is missing" % cmd
    with open(path) as f:
        page = f.read()
    want = [line.replace("-", "\\-") for line in usage_lines(module(cmd).__doc__)]
    assert synopsis(page) == want


@pytest.mark.parametrize("cmd", COMMANDS)
def test_man_page_sections_in_order(cmd):
    path = os.path.join(ROOT, "man", cmd + ".8")
    if not os.path.exists(path):
        pytest.fail("man/%s.8 is missing" % cmd)
    with open(path) as f:
        heads = re.findall(r"^\.SH (.+)$", f.read(), re.M)
    order = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES", "EXIT STATUS",
             "SIGNALS", "EXAMPLES", "SEE ALSO"]
    known = [h.strip('"') for h in heads if h.strip('"') in order]
    assert known == sorted(known, key=order.index)
    assert known[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    assert "EXIT STATUS" in known and "SEE ALSO" in known


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_usage_is_exit_2_with_one_line_on_stderr(cmd):
    """A misspelt option is the LSB's 2 (invalid arguments), not docopt's own 1: one
    line on stderr says what was wrong and where help is; nothing on stdout."""
    r = subprocess.run([os.path.join(ROOT, "bin", cmd), "--no-such-option"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == "%s: unknown option --no-such-option (try '%s --help')\n" % (cmd, cmd)


@pytest.mark.parametrize("argv,line", [
    (["hb-switch", "standby", "--wait"], "--wait requires argument"),
    (["hb-switch", "standby", "sideways"], "unexpected argument 'sideways'"),
    (["hb-switch", "frobnicate"], "unknown command 'frobnicate' (one of: cl_status, "
     "maintenance, standby, status, takeover, why)"),
    (["hb-switch", "cl_status", "bogus"], "unknown command 'bogus' after 'cl_status' (one of: "
     "hblinkstatus, hbstatus, listhblinks, listnodes, nodestatus, rscstatus)"),
    (["hb-switch", "maintenance"], "missing command after 'maintenance' (one of: off, on)"),
    (["hb-switch", "-r", "/run/x", "cl_status"], "missing command after 'cl_status' (one "
     "of: hblinkstatus, hbstatus, listhblinks, listnodes, nodestatus, rscstatus)"),
    (["hb-switch", "cl_status", "nodestatus"], "missing or bad arguments after 'cl_status "
     "nodestatus'"),
    (["hb-switch", "standby", "--wait", "3", "--no-wait"], "option --no-wait is not allowed "
     "here"),
    (["hb-switch"], "missing command (one of: cl_status, maintenance, standby, status, "
     "takeover, why)"),
    (["hb-switch", "--no-wait"], "missing command (one of: cl_status, maintenance, standby, "
     "status, takeover, why)"),
    (["hb-ipaddr", "a", "b", "c"], "unexpected argument 'c'"),
    (["hb-supervise", "--export"], "--export requires argument"),
    (["hb-beat", "--stats", "soon"], "--stats wants seconds, not 'soon'"),
])
def test_usage_error_says_what_was_wrong_in_one_line(argv, line):
    r = subprocess.run([os.path.join(ROOT, "bin", argv[0]), *argv[1:]], capture_output=True,
                       text=True, timeout=30)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == "%s: %s (try '%s --help')\n" % (argv[0], line, argv[0])


def test_bad_usage_of_a_check_is_nagios_unknown():
    r = subprocess.run([os.path.join(ROOT, "bin", "hb-watch"), "--check", "--max-age"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3, r
    assert r.stdout == "HB UNKNOWN - --max-age requires argument (try 'hb-watch --help')\n"
    assert r.stderr == "hb-watch: --max-age requires argument (try 'hb-watch --help')\n"


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("opt", ["--version", "-V"])
def test_version(cmd, opt):
    from hb import __version__
    r = subprocess.run([os.path.join(ROOT, "bin", cmd), opt], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "%s %s\n" % (cmd, __version__), "")


def test_version_is_the_package_version():
    """hb.__version__ is the one place: setup.cfg reads it; debian/changelog agrees."""
    from hb import __version__
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        assert "version = attr: hb.__version__" in f.read().splitlines()
    with open(os.path.join(ROOT, "debian", "changelog")) as f:
        m = re.match(r"hb \(([^)-]+)", f.readline())
    assert m and m.group(1) == __version__


@pytest.mark.parametrize("cmd", COMMANDS)
def test_man_page_exit_status_has_the_table(cmd):
    """One exit-code table (exits.TABLE) at the head of every page's EXIT STATUS."""
    from hb import exits
    with open(os.path.join(ROOT, "man", cmd + ".8")) as f:
        page = f.read()
    m = re.search(r'^\.SH "?EXIT STATUS"?\n(.*?)(?=^\.SH )', page, re.M | re.S)
    assert m, "no EXIT STATUS section"
    assert m.group(1).startswith(exits.man_table()), m.group(1)[:400]
