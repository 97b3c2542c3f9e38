"""The Debian package: builds, is lintian-clean, installs on a fresh Debian 12, works.

The .deb is built from a copy of the source tree (the shared tree stays clean),
with nocheck: `make check` runs the tests itself.  The fresh system is a
debootstrap'd bookworm (minbase plus hb's Depends, so dpkg -i needs no network),
made once and cached under .cache/ (git-ignored); each run mounts an overlay on
it in private mount and network namespaces, so nothing leaks to this machine.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "debootstrap")
MIRROR = "http://deb.debian.org/debian"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)")


def run(argv: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=ENV, **kw)


def depends() -> list[str]:
    """hb's Depends from debian/control (without substitution variables)."""
    with open(os.path.join(ROOT, "debian", "control")) as f:
        text = f.read()
    binary = text[text.index("\nPackage: hb"):]
    m = re.search(r"^Depends:(.*?)(?=^\S)", binary, re.M | re.S)
    return sorted(d.strip().split()[0] for d in m.group(1).split(",")
                  if d.strip() and not d.strip().startswith("$"))


def base_system() -> str:
    """A bookworm minbase chroot with hb's Depends and man-db, made once."""
    include = sorted(set(depends()) | {"python3", "man-db"})
    key = hashlib.sha256(" ".join(include).encode()).hexdigest()[:12]
    path = os.path.join(CACHE, "bookworm-" + key)
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(path):
            tmp = path + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            r = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(include),
                     "bookworm", tmp, MIRROR], timeout=600)
            assert r.returncode == 0, "debootstrap failed:\n" + r.stdout[-2000:] + r.stderr
            os.rename(tmp, path)
    return path


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> str:
    """hb_*.deb built with dpkg-buildpackage -us -uc -b from a copy of the tree."""
    top = tmp_path_factory.mktemp("pkg")
    src = top / "hb"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in files:
        if f and os.path.isfile(os.path.join(ROOT, f)) and not f.startswith(".hypothesis"):
            os.makedirs(os.path.dirname(src / f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), src / f)
    r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                       capture_output=True, text=True, timeout=300,
                       env=dict(ENV, DEB_BUILD_OPTIONS="nocheck"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    debs = glob.glob(str(top / "hb_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_lintian_clean(deb):
    changes = glob.glob(os.path.join(os.path.dirname(deb), "hb_*.changes"))
    r = run(["lintian", "--pedantic", deb, *changes], timeout=120)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert tags == [], "\n".join(tags)


# The namespace's init: reaps orphans (as init does, so daemons can be stopped), for 15 min.
REAPER = ("import os, time\n"
          "end = time.monotonic() + 900\n"
          "while time.monotonic() < end:\n"
          "    try: os.waitpid(-1, os.WNOHANG) != (0, 0) or time.sleep(0.1)\n"
          "    except ChildProcessError: time.sleep(0.1)\n")


class Chroot:
    """An overlay on the cached base system in its own mount, net, PID and UTS namespaces."""

    def __init__(self, base: str, tmp: str, debdir: str) -> None:
        self.root = os.path.join(tmp, "root")
        for d in ("root", "upper", "work"):
            os.makedirs(os.path.join(tmp, d))
        script = ('set -e; hostname julius; mount -t overlay overlay'
                  ' -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root";'
                  ' mount -t proc proc "$2/root/proc"; mount --bind "$3" "$2/root/mnt";'
                  ' echo ready; exec /usr/bin/python3 -c "$4"')
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--net", "--pid", "--uts", "--fork",
             "--propagation", "private", "sh", "-c", script, "init", base, tmp, debdir, REAPER],
            stdout=subprocess.PIPE, text=True, start_new_session=True, env=ENV)
        assert self.proc.stdout.readline().strip() == "ready"
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            self.pid = int(f.read().split()[0])      # the namespace's init

    def run(self, cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(["nsenter", "-t", str(self.pid), "-m", "-n", "-p", "-u",
                    "chroot", self.root, "sh", "-c", cmd], timeout=timeout)

    def exists(self, path: str) -> bool:
        return self.run("test -e " + path).returncode == 0

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def chroot(tmp_path, deb):
    c = Chroot(base_system(), str(tmp_path), os.path.dirname(deb))
    try:
        yield c
    finally:
        c.close()


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def test_installs_and_works_on_a_fresh_debian(deb, chroot):
    ok(chroot.run("dpkg -i /mnt/" + os.path.basename(deb)))
    assert chroot.run("pidof -x hb-supervise").returncode != 0      # nothing started

    out = ok(chroot.run("hb-supervise --check -c /usr/share/doc/hb/examples --node julius"))
    assert "julius" in out and "caesar" in out
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from hb import ipaddr
    assert ok(chroot.run("hb-ipaddr --help")) == ipaddr.__doc__.strip("\n") + "\n"
    assert ok(chroot.run("man -w hb-switch")).strip() == "/usr/share/man/man8/hb-switch.8.gz"
    commands = ok(chroot.run("cd /usr/sbin && ls hb-*")).split()
    no_page = [c for c in commands if chroot.run("man -w 8 " + c).returncode != 0]
    assert ok(chroot.run("man -w 5 ha.cf")).strip() == "/usr/share/man/man5/ha.cf.5.gz"

    meta = ok(chroot.run("OCF_ROOT=/usr/lib/ocf /usr/lib/ocf/resource.d/hb/IPaddr meta-data"))
    assert '<resource-agent name="IPaddr"' in meta
    assert chroot.exists("/usr/lib/ocf/resource.d/hb/MailTo")
    assert ok(chroot.run("stat -c %a /var/lib/hb")).strip() == "750"

    # never started without a configuration, by either init system's files
    r = chroot.run("/etc/init.d/hb start")
    assert r.returncode == 0 and "not starting" in r.stdout + r.stderr, r
    assert not chroot.exists("/run/hb/hb-supervise.pid")
    unit = ok(chroot.run("cat /lib/systemd/system/hb.service"))
    assert "ConditionPathExists=/etc/ha.d/ha.cf" in unit
    execstart = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    assert chroot.exists(execstart), "hb.service runs missing " + execstart

    ok(chroot.run("dpkg --purge hb"))
    assert not chroot.exists("/var/lib/hb")
    assert not chroot.exists("/usr/sbin/hb-supervise")
    assert no_page == [], "commands without a man page"


HACF = "keepalive 200ms\ndeadtime 1\ninitdead 2\nbcast lo\nauto_failback on\nnode julius caesar\n"


def test_sysvinit_script_runs_hb_from_a_configuration(deb, chroot):
    ok(chroot.run("dpkg -i /mnt/" + os.path.basename(deb)))
    ok(chroot.run("mkdir -p /etc/ha.d && printf '%s' > /etc/ha.d/ha.cf && "
                  "echo 'julius 198.18.0.100/24/lo' > /etc/ha.d/haresources && "
                  "printf 'auth 1\\n1 sha1 pkgtest\\n' > /etc/ha.d/authkeys && "
                  "chmod 600 /etc/ha.d/authkeys && ip link set lo up" % HACF))
    ok(chroot.run("/etc/init.d/hb start"))
    for _ in range(100):
        if "group 1 julius running" in chroot.run("cat /run/hb/status").stdout:
            break
        time.sleep(0.1)
    assert "198.18.0.100/24" in ok(chroot.run("ip -o addr show lo"))
    assert "is running" in ok(chroot.run("/etc/init.d/hb status"))
    ok(chroot.run("/etc/init.d/hb stop"))
    assert chroot.run("/etc/init.d/hb status").returncode == 3
    assert chroot.run("pidof -x hb-supervise hb-beat hb-watch").returncode != 0
    assert "198.18.0.100" not in ok(chroot.run("ip -o addr show lo"))
