"""checks.py: monitor checks of real scripts in threads, restarts in place, group addresses."""

from __future__ import annotations

import os
import select
import time

import pytest

from hb import checks, exits
from hb.settings import Group, Resource

SCRIPT = """#!/bin/sh
echo "$@" >> {dir}/calls
case "$1" in
start) touch {dir}/$0.up ;;
stop) rm -f {dir}/$0.up ;;
status) if [ -e {dir}/$0.up ]; then echo running; else echo stopped; fi ;;
esac
"""


@pytest.fixture
def confdir(tmp_path):
    d = tmp_path / "ha.d" / "resource.d"
    d.mkdir(parents=True)
    for name in ("svc", "web"):
        p = d / name
        p.write_text(SCRIPT.format(dir=tmp_path).replace("$0.up", name + ".up"))
        p.chmod(0o755)
    slow = d / "slow"
    slow.write_text("#!/bin/sh\nsleep 5\necho running\n")
    slow.chmod(0o755)
    (d / "noexec").write_text("#!/bin/sh\necho running\n")
    return str(tmp_path / "ha.d")


def caller(confdir, timeout=5.0):
    return checks.Caller(confdir, "alpha", confdir, confdir, timeout=timeout,
                         initd=os.path.join(confdir, "no-init.d"))


def group(*names, index=1):
    return Group(index, "alpha", [Resource(n, [], n) for n in names])


def calls(confdir):
    try:
        with open(os.path.join(os.path.dirname(confdir), "calls")) as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def collect(ck, n=1, timeout=8.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        select.select([ck.fileno()], [], [], 0.1)
        out += ck.collect()
    return out


def test_check_running_stopped_and_missing(confdir):
    c = caller(confdir)
    assert checks.check(c, Resource("svc", [], "svc")) == (False, "svc status: stopped")
    c.call(Resource("svc", [], "svc"), "start")
    assert checks.check(c, Resource("svc", [], "svc")) == (True, "")
    assert checks.check(c, Resource("nosuch", [], "nosuch")) == (
        False, "cannot locate resource script nosuch")
    assert checks.check(c, Resource("noexec", [], "noexec")) == (
        False, "cannot locate resource script noexec")


def test_checker_runs_off_the_caller_thread_and_reports(confdir):
    c = caller(confdir, timeout=1.0)
    c.call(Resource("svc", [], "svc"), "start")
    ck = checks.Checker(c)
    ck.run(group("slow", index=3), 6)       # its script sleeps 5 s: killed after 1 s
    ck.run(group("svc"), 7)
    ck.run(group("svc", "web", index=2), 8)
    # a run() that waited for its check would have posted the slow group's result first
    got = sorted(collect(ck, 2))
    assert got == [(1, 7, True, ""), (2, 8, False, "web status: stopped")]
    [(i, tok, ok, why)] = collect(ck, 1)
    assert (i, tok, ok) == (3, 6, False) and "timed out after 1 s" in why
    ck.close()
    # run() returns before the check ends: a check of `slow` ends after 0.5 s (its
    # timeout), and nothing is there to collect when run() has returned
    ck = checks.Checker(caller(confdir, timeout=0.5))
    ck.run(group("slow"), 9)
    assert ck.collect() == []
    [(_, tok, ok, _)] = collect(ck, 1)
    assert tok == 9 and not ok
    ck.close()


def test_a_check_that_hangs_times_out_as_a_failure(confdir):
    ck = checks.Checker(caller(confdir, timeout=0.5))
    t0 = time.monotonic()
    ck.run(group("slow"), 1)
    [(i, tok, ok, why)] = collect(ck, 1)
    assert not ok and "timed out after 0.5 s" in why
    assert time.monotonic() - t0 < 2.0
    ck.close()


def test_restart_starts_only_what_is_stopped(confdir):
    c = caller(confdir)
    c.call(Resource("svc", [], "svc"), "start")
    before = len(calls(confdir))
    assert c.group(group("svc", "web"), "restart") == exits.OK
    assert calls(confdir)[before:] == ["status", "status", "start"]
    assert checks.check(c, Resource("web", [], "web"))[0]


def test_restart_that_cannot_start_fails(confdir):
    c = caller(confdir)
    assert c.group(group("svc", "nosuch"), "restart") == exits.FAIL
    assert c.group(group("svc"), "status") == exits.OK        # the others as before


def test_addresses_of_the_groups(confdir):
    gs = [Group(1, "alpha", [Resource("IPaddr", ["198.18.0.100/24/eth7"], "x"),
                             Resource("IPaddr2", ["2001:db8:0::10/64/eth8"], "y"),
                             Resource("svc", [], "svc")]),
          Group(2, "beta", [Resource("IPaddr", ["198.18.0.100/24/eth7"], "z"),
                            Resource("IPaddr", ["203.0.113.77"], "w"),
                            Resource("IPaddr", ["not-an-address"], "v")])]
    ifaces, byip = checks.addresses(gs, confdir)
    assert ifaces == ["eth7", "eth8"]          # 203.0.113.77 fits no subnet here
    assert byip == {"198.18.0.100": {1, 2}, "2001:db8::10": {1}, "203.0.113.77": {2}}


def test_a_stuck_check_holds_one_thread_per_group_not_one_per_interval(confdir):
    import threading
    ck = checks.Checker(caller(confdir, timeout=3.0))
    before = threading.active_count()
    t0 = time.monotonic()
    ck.run(group("slow"), 1)                 # stuck for 3 s (its timeout)
    for token in range(2, 12):               # ten more intervals meanwhile
        ck.run(group("slow"), token)
    got = collect(ck, 10, timeout=2.0)
    assert got == [(1, t, False, "the previous check of group 1 has not returned")
                   for t in range(2, 12)]
    assert time.monotonic() - t0 < 1.0
    assert threading.active_count() <= before + 1
    [(i, tok, ok, why)] = collect(ck, 1)
    assert (i, tok, ok) == (1, 1, False) and "timed out after 3 s" in why
    # the group's next check, asked for as soon as that result is collected, runs
    # (the worker is no longer counted in flight once its result is out)
    ck.run(group("svc"), 12)
    assert collect(ck, 1) == [(1, 12, False, "svc status: stopped")]
    ck.close()


def test_a_check_asked_for_right_after_a_result_runs(confdir):
    """Each result collected, the next check of the same group at once: never
    'has not returned' (the worker thread may not have exited yet)."""
    ck = checks.Checker(caller(confdir))
    for token in range(1, 41):
        ck.run(group("svc"), token)
        assert collect(ck, 1) == [(1, token, False, "svc status: stopped")]
    ck.close()
