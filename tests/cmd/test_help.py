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
def test_bad_usage_is_exit_2_with_the_usage_on_stderr(cmd):
    """A misspelt option is the LSB's 2 (invalid arguments), not docopt's own 1,
    the usage lines on stderr and nothing on stdout."""
    r = subprocess.run([os.path.join(ROOT, "bin", cmd), "--no-such-option"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr.lower().startswith("usage:")
    assert usage_lines(module(cmd).__doc__)[0] in r.stderr


def test_bad_usage_of_a_check_is_nagios_unknown():
    r = subprocess.run([os.path.join(ROOT, "bin", "hb-watch"), "--check", "--max-age"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (3, ""), r
    assert r.stderr.startswith("--max-age requires argument\nUsage:\n")
