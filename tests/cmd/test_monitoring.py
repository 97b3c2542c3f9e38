"""Monitoring as a normal user: every read-only command run by an unprivileged user
(setpriv to nobody) against the status a real hb-watch writes, in and out of the group
haclient; the Nagios line against the plugin guidelines; the Prometheus output
against a strict parser of the text exposition format; typed JSON when stopped."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from hb import access, runfiles, status

from test_watch import Node

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")
NOBODY = 65534                           # nobody / nogroup on Debian

# ------------------------------------------------------------------ the formats

# Nagios plugin guidelines: one line 'SERVICE STATUS - text | perfdata'; each perfdata
# item 'label'=value[UOM];[warn];[crit];[min];[max]
PLUGIN = re.compile(r"HB (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+?(?: \| (?P<perf>[^|\n]+))?\n")
PERF = re.compile(r"(?:'[^'=]+'|[^' =]+)=-?\d+(?:\.\d+)?(?:s|ms|us|%|B|KB|MB|TB|c)?"
                  r"(?:;(?:-?\d+(?:\.\d+)?)?){0,4}")


def plugin_line(text: str, code: int) -> dict[str, str]:
    m = PLUGIN.fullmatch(text)
    assert m, "not a plugin line: %r" % text
    assert ["OK", "WARNING", "CRITICAL", "UNKNOWN"].index(m.group(1)) == code, text
    perf = {}
    for item in (m.group("perf") or "").split(" ") if m.group("perf") else []:
        assert PERF.fullmatch(item), "bad perfdata %r" % item
        perf[item.split("=")[0]] = item.split("=", 1)[1]
    return perf


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LVALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"(?P<name>%s)(?:\{(?P<labels>(?:%s=%s)(?:,%s=%s)*)?\})? (?P<value>\S+)"
                    % (NAME, LABEL, LVALUE, LABEL, LVALUE))


def _unescape(m: re.Match) -> str:
    return "\n" if m.group(1) == "n" else m.group(1)


def parse_prometheus(text: str) -> dict[str, list[tuple[dict, float]]]:
    """A strict reader of the text exposition format 0.0.4: HELP and TYPE once per
    family and before its samples, families contiguous, no duplicate series, valid
    names, escaped label values, float values, no timestamps, a final newline."""
    assert text.endswith("\n") and "\r" not in text
    fams: dict[str, list[tuple[dict, float]]] = {}
    help_, types, order, seen = set(), {}, [], set()
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % NAME, line)
            assert m, "bad comment %r" % line
            kind, name, rest = m.groups()
            assert name not in (order[:-1] if order else []), "family %s not contiguous" % name
            if kind == "HELP":
                assert name not in help_, "second HELP for %s" % name
                assert not re.search(r"\\[^\\n]", rest), "bad escape in HELP %r" % rest
                help_.add(name)
            else:
                assert name not in types and name not in fams, "TYPE of %s late/twice" % name
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), rest
                types[name] = rest
            if not order or order[-1] != name:
                order.append(name)
            continue
        m = SAMPLE.fullmatch(line)
        assert m, "bad sample %r" % line
        name = m.group("name")
        assert name in types and name in help_, "sample of %s before HELP/TYPE" % name
        assert order[-1] == name, "family %s not contiguous" % name
        labels = {}
        for lm in re.finditer(r"(%s)=(%s)" % (LABEL, LVALUE), m.group("labels") or ""):
            assert lm.group(1) not in labels, "label %s twice" % lm.group(1)
            labels[lm.group(1)] = re.sub(r"\\(.)", _unescape, lm.group(2)[1:-1])
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "duplicate series %r" % (key,)
        seen.add(key)
        v = m.group("value")
        assert re.fullmatch(r"[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+|Inf|NaN)", v), v
        fams.setdefault(name, []).append((labels, float(v)))
    return fams


# ------------------------------------------------------------------ the setting

@pytest.fixture(scope="module")
def haclient():
    """The monitoring group: the package makes it; here made (and removed) if missing."""
    gid = access.group_id()
    made = gid is None
    if made:
        subprocess.run(["groupadd", "--system", access.GROUP], check=True)
        gid = access.group_id()
    yield gid
    if made:
        subprocess.run(["groupdel", access.GROUP], check=False)


@pytest.fixture
def node(haclient):
    """A real hb-watch (this test plays hb-beat and the peer) in a directory others may
    traverse, as /var/run is."""
    d = tempfile.mkdtemp(prefix="hbmon.", dir="/tmp")
    os.chmod(d, 0o755)
    n = Node(pathlib.Path(d), initdead="3")
    n.peer = ("local", "2", "1")
    n.start()
    try:
        n.wait(lambda: n.group(1) == ["julius", "running"] and
               n.group(2) == ["caesar", "running"], timeout=15, what="each its own")
        n.wait(lambda: n.check()[0] == 0, timeout=15, what="check OK")
        yield n
    finally:
        try:
            n.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def as_user(argv: list[str], groups: list[int] | None) -> subprocess.CompletedProcess:
    """Run argv as nobody, in the given supplementary groups (none: --clear-groups)."""
    who = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY]
    who += ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"), HOME="/")
    return subprocess.run(who + argv, capture_output=True, text=True, timeout=30, env=env)


def read_only(run: str) -> list[list[str]]:
    sw = os.path.join(BIN, "hb-switch")
    return [[os.path.join(BIN, "hb-watch"), "--check", "-r", run],
            [sw, "status", "-r", run],
            [sw, "status", "--format=shell", "-r", run],
            [sw, "status", "--format=json", "-r", run],
            [sw, "status", "--format=prometheus", "-r", run],
            [sw, "why", "-r", run],
            [sw, "why", "1", "-r", run]] + [
            [sw, "cl_status", *q, "-r", run] for q in (
                ["hbstatus"], ["rscstatus"], ["listnodes"], ["listnodes", "-p"],
                ["nodestatus", "caesar"], ["listhblinks", "caesar"],
                ["hblinkstatus", "caesar", "lo"])]


def test_members_of_haclient_read_what_root_reads(node, haclient):
    st = os.stat(node.path("status"))
    assert (st.st_mode & 0o777, st.st_gid) == (0o640, haclient)
    assert os.stat(node.run).st_mode & 0o7777 == 0o2755
    for argv in read_only(node.run):
        root = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        user = as_user(argv, [haclient])
        assert "Traceback" not in user.stderr, user.stderr
        assert user.returncode == root.returncode, (argv, user)
        if "--check" not in argv and "json" not in argv[-3] and "prometheus" not in argv[-3]:
            assert user.stdout == root.stdout or "status" in argv, (argv, user.stdout)
        assert user.returncode in (0, 1), (argv, user)
    r = as_user(read_only(node.run)[0], [haclient])
    assert r.returncode == 0 and r.stdout.startswith("HB OK - julius: groups 1 on julius")


def test_others_get_one_line_and_unknown(node):
    for argv in read_only(node.run):
        r = as_user(argv, None)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 3, (argv, r)
        lines = (r.stdout + r.stderr).splitlines()
        assert len(lines) == 1, (argv, r)
        assert "permission denied" in lines[0] and "haclient" in lines[0], lines
    r = as_user(read_only(node.run)[0], None)
    assert r.stdout.startswith("HB UNKNOWN - cannot read %s: permission denied" %
                               node.path("status")), r.stdout


def test_unprivileged_requests_and_versions_do_not_traceback(node, haclient):
    r = as_user([os.path.join(BIN, "hb-switch"), "standby", "-r", node.run], [haclient])
    assert (r.returncode, r.stderr) == (1, ""), r
    assert r.stdout == "fail: standby: unable to write to watch.fifo: permission denied " \
        "(run as root)\n"
    for cmd in ("hb-beat", "hb-watch", "hb-ipaddr", "hb-mailto", "hb-switch", "hb-supervise"):
        for opt in ("--version", "--help"):
            r = as_user([os.path.join(BIN, cmd), opt], None)
            assert r.returncode == 0 and r.stderr == "", r


def test_nagios_line_follows_the_plugin_guidelines(node):
    r = subprocess.run([os.path.join(BIN, "hb-watch"), "--check", "-r", node.run],
                       capture_output=True, text=True, timeout=30)
    perf = plugin_line(r.stdout, r.returncode)
    assert r.returncode == 0
    assert re.fullmatch(r"\d+s;10;30;0", perf["age"]), perf
    assert re.fullmatch(r"\d+\.\d{3}s;;;0", perf["late"]), perf
    assert perf["links_up"] == "1;;;0;1", perf
    node.peer = False                                   # the peer goes silent: CRITICAL
    node.wait(lambda: node.check()[0] == 2, timeout=15, what="peer dead")
    code, line = node.check("--warn-age", "5", "--max-age", "60")
    perf = plugin_line(line, code)
    assert line.startswith("HB CRITICAL - node caesar dead")
    assert perf["links_up"] == "0;;;0;1" and perf["age"].endswith("s;5;60;0")
    node.proc.kill()                                    # hb-watch gone: CRITICAL at once
    node.proc.wait(10)
    code, line = node.check()
    plugin_line(line, code)
    assert code == 2 and re.match(r"HB CRITICAL - hb-watch \(pid %d\) is not running: its "
                                  r"status is \d+ s old" % node.proc.pid, line), line
    for rundir, code in ((node.tmp / "nowhere", 3),):
        r = subprocess.run([os.path.join(BIN, "hb-watch"), "--check", "-r", str(rundir)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == code
        assert plugin_line(r.stdout, code) == {}


def test_prometheus_output_is_valid_exposition_format(node):
    r = subprocess.run([os.path.join(BIN, "hb-switch"), "status", "--format=prometheus",
                        "-r", node.run], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    fams = parse_prometheus(r.stdout)
    assert fams["hb_up"] == [({"node": "julius"}, 1.0)]
    assert fams["hb_peer_up"] == [({"node": "julius", "peer": "caesar"}, 1.0)]
    held = {lab["group"]: v for lab, v in fams["hb_group_held"]}
    assert held == {"1": 1.0, "2": 0.0}
    assert 0 <= fams["hb_status_age_seconds"][0][1] < 10
    assert ({"node": "julius", "peer": "caesar", "medium": "lo"}, 1.0) in fams["hb_link_up"]


def test_prometheus_escapes_label_values_and_says_when_stopped(tmp_path):
    """A group key with a quote, a backslash and a newline; hb not running."""
    text = status.record("updated", 1700000000, pid=999999999, node="julius") + "\n" + \
        status.record("group", 1, "julius", "running", pref="julius", since=1, fails=0,
                      key='Svc::a"b\\c\nd') + "\n"
    runfiles.write_atomic(str(tmp_path / "status"), text)
    r = subprocess.run([os.path.join(BIN, "hb-switch"), "status", "--format=prometheus",
                        "-r", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    fams = parse_prometheus(r.stdout)
    assert fams["hb_up"] == [({"node": "julius"}, 0.0)]
    assert fams["hb_group_held"][0][0]["key"] == 'Svc::a"b\\c\nd'
    os.unlink(tmp_path / "status")
    r = subprocess.run([os.path.join(BIN, "hb-switch"), "status", "--format=prometheus",
                        "-r", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and parse_prometheus(r.stdout)["hb_up"] == [({"node": ""}, 0.0)]


def test_the_strict_parser_refuses_what_it_must():
    good = "# HELP a x\n# TYPE a gauge\na{b=\"c\"} 1\n"
    parse_prometheus(good)
    for bad in ("a 1\n", good + "a{b=\"c\"} 2\n", good.replace("\"c\"", "\"c\nd\""),
                good.replace("a{", "1a{"), good + "# HELP z y\n# TYPE z gauge\nz 1\na 1\n",
                good.replace(" 1\n", " one\n"), good.replace(" 1\n", " 1 1700000000\n"),
                good[:-1], good.replace("gauge", "meter")):
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


def test_json_is_typed_and_meaningful_when_stopped(node):
    sw = os.path.join(BIN, "hb-switch")
    r = subprocess.run([sw, "status", "--format=json", "-r", node.run], capture_output=True,
                       text=True, timeout=30)
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["running"] is True and d["reason"] is None
    assert isinstance(d["pid"], int) and isinstance(d["age"], float)
    assert [(g["index"], g["holder"]) for g in d["groups"]] == [(1, "julius"), (2, "caesar")]
    assert all(isinstance(g["since"], int) and isinstance(g["fails"], int)
               for g in d["groups"])
    assert d["self"]["maintenance"] is False and d["self"]["stable"] in (True, False)
    peer = [n for n in d["nodes"] if n["name"] == "caesar"][0]
    assert isinstance(peer["late"], float) and isinstance(peer["lates"], int)
    assert any(h["group"] == 1 and h["to"] == "running" for h in d["history"])
    node.proc.kill()                                   # hb-watch gone: running false
    node.proc.wait(10)
    r = subprocess.run([sw, "status", "--format=json", "-r", node.run], capture_output=True,
                       text=True, timeout=30)
    d = json.loads(r.stdout)
    assert r.returncode == 1 and d["running"] is False and d["stale"] is True
    assert "gone" in d["reason"] or "hung" in d["reason"], d["reason"]
    assert [g["index"] for g in d["groups"]] == [1, 2]          # the last status there was
    os.unlink(node.path("status"))
    r = subprocess.run([sw, "status", "--format=json", "-r", node.run], capture_output=True,
                       text=True, timeout=30)
    d = json.loads(r.stdout)
    assert r.returncode == 1 and d["running"] is False and d["groups"] == []
    assert d["reason"] == "no status file: hb-watch is not running"


def test_why_shows_each_groups_transitions_with_reasons(node):
    sw = os.path.join(BIN, "hb-switch")
    r = subprocess.run([sw, "why", "-r", node.run], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("group 1 (Rsc::g1): running on julius since ")
    assert re.fullmatch(r"  \d\d:\d\d:\d\d  (stopped|probing) +-> (starting|running) +\S.*",
                        lines[1]), lines
    assert any(ln.startswith("group 2 (Rsc::g2): running on caesar") for ln in lines)
    node.peer = False                                   # caesar dies: julius takes group 2
    node.wait(lambda: node.group(2) == ["julius", "running"], timeout=15, what="takeover")
    r = subprocess.run([sw, "why", "2", "-r", node.run], capture_output=True, text=True,
                       timeout=30)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("group 2 (Rsc::g2): running on julius since "), lines
    assert re.fullmatch(r"  \d\d:\d\d:\d\d  stopped  -> starting .*caesar.*dead.*",
                        lines[-2]), lines
    assert re.fullmatch(r"  \d\d:\d\d:\d\d  starting -> running  .*caesar.*dead.*",
                        lines[-1]), lines
    r = subprocess.run([sw, "why", "7", "-r", node.run], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout) == (1, "fail: no group 7 (groups: 1 2)\n")


def test_other_read_only_commands_as_nobody(node, haclient):
    """The agents' status actions and hb-supervise --check: their own answers, one line
    each, no traceback, in or out of the group."""
    conf = node.conf
    cases = [([os.path.join(BIN, "hb-ipaddr"), "198.18.0.100/24/lo", "status"], 3, "stopped"),
             ([os.path.join(BIN, "hb-mailto"), "root@localhost", "status", "-r", node.run],
              3, "stopped"),
             ([os.path.join(BIN, "hb-supervise"), "--check", "-c", conf, "--node", "julius"],
              6, "%s/authkeys:0: cannot read: Permission denied" % conf)]
    for groups in (None, [haclient]):
        for argv, code, line in cases:
            r = as_user(argv, groups)
            assert "Traceback" not in r.stderr, r.stderr
            assert r.returncode == code, (argv, r)
            assert (r.stdout + r.stderr).splitlines() == [line], (argv, r)
