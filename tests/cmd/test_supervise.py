"""hb-supervise as a user runs it: --check on good and broken configurations, refusals.

The running supervisor (respawn, orderly stop, second instance) is exercised with
real daemons in namespaces: tests/e2e/test_41_supervise.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin", "hb-supervise")
EXAMPLE = os.path.join(ROOT, "etc", "ha.d")

HACF = """\
keepalive 100ms
deadtime 500ms
warntime 300ms
initdead 1
udpport 694
bcast lo
auto_failback off
node julius caesar
"""


def hbsupervise(*args, timeout=20):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def conf(tmp_path):
    d = tmp_path / "ha.d"
    shutil.copytree(EXAMPLE, d)
    os.chmod(d / "authkeys", 0o600)
    return d


@pytest.fixture
def router():
    """A network namespace with the example's interfaces (eth0, eth1, eth2: veths)."""
    ns = "hbchk%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for i in ("eth0", "eth1", "eth2"):
            subprocess.run(["ip", "-n", ns, "link", "add", i, "type", "veth", "peer", "name",
                            "p" + i], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", i, "up"], check=True)
        yield ["ip", "netns", "exec", ns]
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def test_check_example_is_valid(conf, router):
    r = subprocess.run([*router, BIN, "--check", "-c", str(conf), "--node", "julius"],
                       capture_output=True, text=True, timeout=20)
    rc, out, err = r.returncode, r.stdout, r.stderr
    assert rc == 0, err
    lines = out.splitlines()
    assert "node julius (this node)" in lines
    assert any(ln.startswith("group 1 julius IPaddr::") for ln in lines)
    assert any(ln.startswith("digest ") for ln in lines)


def test_check_names_this_node_from_the_option(conf, router):
    r = subprocess.run([*router, BIN, "--check", "-c", str(conf), "--node", "CAESAR"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "node caesar (this node)" in r.stdout.splitlines()


def test_check_on_a_box_without_the_interfaces_refuses_as_start_does(conf):
    rc, out, err = hbsupervise("--check", "-c", str(conf), "--node", "julius")
    assert (rc, out) == (6, "")
    assert "ha.cf:37: bcast: no interface eth1 on this machine" in err
    assert "haresources:14: IPaddr::198.51.100.1/24/eth2: no interface eth2" in err


@pytest.mark.parametrize("fname,text,where", [
    ("ha.cf", HACF + "undport 694\n", "ha.cf:9: "),
    ("ha.cf", HACF.replace("deadtime 500ms", "deadtime 150ms"), "ha.cf:"),
    ("ha.cf", HACF.replace("node julius caesar", "node brutus caesar"), "ha.cf:"),
    ("haresources", "brutus 198.18.0.100\n", "haresources:1: "),
    ("authkeys", "auth 2\n1 sha1 secret\n", "authkeys:"),
])
def test_check_broken_gives_file_line(conf, fname, text, where):
    (conf / "ha.cf").write_text(HACF)
    (conf / "haresources").write_text("julius 198.18.0.100\n")
    (conf / fname).write_text(text)
    os.chmod(conf / "authkeys", 0o600)
    rc, out, err = hbsupervise("--check", "-c", str(conf), "--node", "julius")
    assert rc == 6, out
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith(str(conf / fname) + ":") and where in first, err


@pytest.mark.parametrize("fname,line,says", [
    ("ha.cf", "keepalive 1e400", "ha.cf:9: keepalive: bad time '1e400'"),
    ("ha.cf", "deadtime 99999999999999999999", "ha.cf:9: deadtime: time 99999999999999999999"
     " is too long: at most 86400 s (a day)"),
    ("ha.cf", "udpport " + "9" * 5000, "ha.cf:9: udpport: bad value '99999999999999999999...'"),
    ("authkeys", "auth 99999999999", "authkeys:1: auth 99999999999: the key number is from 1"),
])
@pytest.mark.parametrize("check", [True, False])
def test_numbers_too_large_are_one_line_errors_never_a_traceback(
        conf, tmp_path, fname, line, says, check):
    (conf / "ha.cf").write_text(HACF + (line + "\n" if fname == "ha.cf" else ""))
    (conf / "haresources").write_text("julius 198.18.0.100\n")
    if fname == "authkeys":
        (conf / "authkeys").write_text(line + "\n1 sha1 secret\n")
    os.chmod(conf / "authkeys", 0o600)
    args = ["--check"] if check else ["-r", str(tmp_path / "run"), "-s", str(tmp_path / "s")]
    rc, out, err = hbsupervise(*args, "-c", str(conf), "--node", "julius")
    assert rc == 6 and out == "", (out, err)
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(str(conf / fname) + ":") and says in first, err
    assert len(first) < 200 + len(str(conf))


def test_refuses_to_start_with_a_broken_config(conf, tmp_path):
    (conf / "ha.cf").write_text(HACF + "undport 694\n")
    run = tmp_path / "run"
    rc, out, err = hbsupervise("-c", str(conf), "-r", str(run), "-s", str(tmp_path / "st"),
                               "--node", "julius")
    assert rc == 6 and out == ""
    assert "ha.cf:9: " in err and "refusing to start" in err
    assert not run.exists()


def test_refuses_to_start_when_a_medium_is_missing(conf, tmp_path):
    (conf / "ha.cf").write_text(HACF.replace("bcast lo", "bcast nosuch0"))
    (conf / "haresources").write_text("julius 198.18.0.100\n")
    rc, out, err = hbsupervise("-c", str(conf), "-r", str(tmp_path / "run"),
                               "--node", "julius")
    assert rc == 6 and "no interface nosuch0" in err
    rc, out, err = hbsupervise("--check", "-c", str(conf), "--node", "julius")
    assert rc == 6 and "no interface nosuch0" in err and out == ""


@pytest.mark.parametrize("case,error", [
    ("authkeys 644", "authkeys:0: mode 644: the keys must be readable by root only"),
    ("agent", "haresources:1: IPadr::198.18.0.100: no resource agent IPadr in "),
    ("address iface", "haresources:1: IPaddr::198.18.0.100/24/nosuch1: no interface nosuch1"),
    ("medium", "ha.cf:6: bcast: no interface nosuch0 on this machine"),
])
def test_check_refuses_exactly_what_start_refuses(conf, tmp_path, case, error):
    (conf / "ha.cf").write_text(HACF.replace("bcast lo", "bcast nosuch0") if case == "medium"
                                else HACF)
    (conf / "haresources").write_text({
        "agent": "julius IPadr::198.18.0.100\n",
        "address iface": "julius IPaddr::198.18.0.100/24/nosuch1\n"}.get(
            case, "julius 198.18.0.100\n"))
    os.chmod(conf / "authkeys", 0o644 if case == "authkeys 644" else 0o600)
    rc, out, check_err = hbsupervise("--check", "-c", str(conf), "--node", "julius")
    assert (rc, out) == (6, ""), check_err
    assert error in check_err
    run = tmp_path / "run"
    rc, out, start_err = hbsupervise("-c", str(conf), "-r", str(run), "-s",
                                     str(tmp_path / "st"), "--node", "julius")
    assert (rc, out) == (6, "")
    assert start_err == check_err + "hb-supervise: refusing to start with a broken " \
        "configuration\n"
    assert not run.exists()


def test_check_warns_on_stderr_of_heartbeat_scripts_shadowing_builtins(conf):
    (conf / "ha.cf").write_text(HACF + "debug 0\n")
    (conf / "haresources").write_text("julius IPaddr::198.18.0.100 MailTo::root@localhost\n")
    os.makedirs(conf / "resource.d", exist_ok=True)
    for name in ("IPaddr", "MailTo"):
        (conf / "resource.d" / name).write_text("#!/bin/sh\nexit 0\n")
        os.chmod(conf / "resource.d" / name, 0o755)
    rc, out, err = hbsupervise("--check", "-c", str(conf), "--node", "julius")
    assert rc == 0, err
    assert "warning" not in out
    lines = [ln for ln in err.splitlines() if "resource.d" in ln]
    assert len(lines) == 2 and all(ln.startswith("warning: ") for ln in err.splitlines()), err
    for ln, name in zip(lines, ("IPaddr", "MailTo")):
        assert ln.startswith("warning: %s:1: %s: %s runs instead of hb's built-in %s" % (
            conf / "haresources", name, conf / "resource.d" / name, name)), ln
        assert "remove the heartbeat package" in ln


def test_help_is_the_usage():
    rc, out, _ = hbsupervise("--help")
    assert rc == 0 and out.startswith("hb-supervise: ")
    assert "  hb-supervise --check [-c CONFDIR] [--node NAME]" in out.splitlines()


def test_export_pacemaker(conf, tmp_path):
    out = tmp_path / "pcmk"
    rc, stdout, err = hbsupervise("--export", "pacemaker", "-c", str(conf), "--node", "julius",
                                  "-o", str(out), "--addr", "julius=192.0.2.11",
                                  "--addr", "CAESAR=192.0.2.12")
    assert rc == 0, err
    assert sorted(os.listdir(out)) == ["README.export", "authkey", "cib.xml", "corosync.conf"]
    assert sorted(stdout.split()) == sorted(str(out / f) for f in os.listdir(out))
    assert "192.0.2.12" in (out / "corosync.conf").read_text()
    assert hbsupervise("--export", "pacemaker", "-c", str(conf), "--addr", "julius")[0] == 2
    assert hbsupervise("--export", "keepalived", "-c", str(conf))[0] == 2


# ---------------------------------------------------------------- adopting daemons

def _fake(tmp_path, name, rundir):
    """A process whose argv is `/bin/sh .../NAME -r RUNDIR`, like a daemon's."""
    import subprocess as sp
    path = tmp_path / name
    path.write_text("#!/bin/sh\nsleep 30\n")
    path.chmod(0o755)
    return sp.Popen([str(path), "-r", str(rundir)])


def test_adopt_only_this_programs_process_for_this_rundir(tmp_path):
    """A pid file naming another process (another program, another RUNDIR's, a reused
    PID, garbage) is not believed: the one hb-beat of this RUNDIR is found instead;
    two of them are adopted by nobody."""
    import time
    from hb import daemons
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "b").mkdir()
    p = _fake(tmp_path, "hb-beat", run)
    other = _fake(tmp_path, "hb-watch", run)
    elsewhere = _fake(tmp_path / "b", "hb-beat", tmp_path / "other")
    procs = [p, other, elsewhere]
    try:
        deadline = time.monotonic() + 5
        while not all(open("/proc/%d/cmdline" % x.pid, "rb").read().count(b"-r")
                      for x in procs):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pidfile = run / "hb-beat.pid"
        start = daemons.proc_stat(p.pid)[1]

        def adopt(text):
            pidfile.write_text(text)
            k = daemons.Child("hb-beat", ["hb-beat"], pidfile=str(pidfile))
            return k.pid if k.adopt(str(run), 0.0) else None, k
        for text in ("%d %s\n" % (other.pid, daemons.proc_stat(other.pid)[1]),
                     "%d %s\n" % (elsewhere.pid, daemons.proc_stat(elsewhere.pid)[1]),
                     "%d %d\n" % (p.pid, int(start) + 1), "%d\n" % p.pid,
                     "%s %s\n" % ("9" * 5000, start), "%d %s\n" % (os.getpid(), start)):
            assert adopt(text)[0] == p.pid, text
            assert pidfile.read_text() == "%d %s\n" % (p.pid, start)   # written again
        pid, k = adopt("%d %s\n" % (p.pid, start))
        assert pid == p.pid and k.pidfd is not None
        assert k.ours is True                 # our child, as after SIGUSR2's re-execution
        assert not k.ended()
        k.kill(15)
        assert k.wait(5) and k.ended()
        assert k.forget() == "killed by signal 15" and not pidfile.exists()
        procs += [_fake(tmp_path, "hb-beat", run), _fake(tmp_path / "b", "hb-beat", run)]
        deadline = time.monotonic() + 5
        while not all(open("/proc/%d/cmdline" % x.pid, "rb").read().count(b"-r")
                      for x in procs[-2:]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert adopt("")[0] is None           # two of them: neither is adopted
    finally:
        for x in procs:
            x.kill()
            x.wait()


def test_a_forged_reexec_environment_is_refused(tmp_path):
    fd = os.open(str(tmp_path / "x"), os.O_RDWR | os.O_CREAT)
    os.set_inheritable(fd, True)
    conf = tmp_path / "ha.d"
    shutil.copytree(EXAMPLE, conf)
    os.chmod(conf / "authkeys", 0o600)
    (conf / "ha.cf").write_text(HACF)
    (conf / "haresources").write_text("julius 198.18.0.100\n")
    env = dict(os.environ, HB_SUPERVISE_EXEC="%d,%d,%d,%d" % (fd, fd, fd, fd))
    r = subprocess.run([BIN, "-c", str(conf), "-r", str(tmp_path / "run"), "-s",
                        str(tmp_path / "s"), "--node", "julius"], env=env, pass_fds=[fd],
                       capture_output=True, text=True, timeout=20)
    os.close(fd)
    assert r.returncode == 1
    assert "HB_SUPERVISE_EXEC does not name this RUNDIR's lock" in r.stderr
