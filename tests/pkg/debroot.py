"""Fresh Debian systems for the package tests: debootstrap'd once, cached, overlaid per run.

system(release, extra) is a minbase of `release` (bookworm = Debian 12, trixie =
Debian 13) with hb's Depends and the tools the tests use, plus the packages of
`extra` installed by apt on a copy (e.g. Debian's heartbeat), with no service
started.  Each is made once and kept under .cache/debootstrap (git-ignored); the
key in its name changes when the package lists do.

Chroot(...) mounts an overlay on a cached system in private mount, PID and UTS
namespaces, and in a network namespace of its own or the one given (a lab host's),
so a run leaves nothing on this machine nor in the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "debootstrap")
MIRROR = "http://deb.debian.org/debian"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}
RELEASES = {"bookworm": "12", "trixie": "13"}
# What the tests use besides hb's Depends: the init script's functions, pidof/pgrep,
# man, logrotate, bash's completion, and Pacemaker's crm_verify and corosync -t.
TOOLS = ["python3", "man-db", "procps", "sysvinit-utils", "logrotate", "bash-completion",
         "pacemaker-cli-utils", "corosync", "iproute2"]
# No daemon a package brings is started while the cache is made.
POLICY = "#!/bin/sh\nexit 101\n"


LEFT_OUT = ("heartbeat", "ucarp")      # the README box lacks these: make deps installs them


def make_var(name: str) -> list[str]:
    r = subprocess.run(["make", "-s", "-C", ROOT, "--eval", "show: ; @echo $(%s)" % name,
                        "show"], capture_output=True, text=True, check=True)
    return r.stdout.split()


def readme_extra() -> tuple[str, ...]:
    """The README box's packages: what make check and make demo install, but LEFT_OUT."""
    wanted = set(make_var("RUN_DEPS") + make_var("TEST_DEPS") + make_var("DEMO_DEPS"))
    return tuple(sorted(wanted - set(LEFT_OUT) | {"make", "keepalived"}))


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


def _minbase(release: str) -> str:
    path = os.path.join(CACHE, release + "-minbase")
    if not os.path.isdir(path):
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        r = run(["debootstrap", "--variant=minbase", release, tmp, MIRROR], timeout=1200)
        assert r.returncode == 0, "debootstrap failed:\n" + r.stdout[-2000:] + r.stderr
        with open(os.path.join(tmp, "etc", "apt", "sources.list"), "w") as f:
            f.write("deb %s %s main\n" % (MIRROR, release))
        os.rename(tmp, path)
    return path


def system(release: str, extra: tuple[str, ...] = ()) -> str:
    """The cached system for release: hb's Depends, TOOLS and extra installed, none started.

    apt installs them (its resolver, no Recommends) on a copy of a debootstrap'd minbase,
    with a policy-rc.d that starts no service; the result is kept under a key of the list.
    """
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        packages = sorted(set(depends()) | set(TOOLS) | set(extra))
        key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
        path = os.path.join(CACHE, "%s-%s" % (release, key))
        if os.path.isdir(path):
            return path
        base = _minbase(release)
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        r = run(["cp", "-a", base, tmp])
        assert r.returncode == 0, r.stderr
        policy = os.path.join(tmp, "usr", "sbin", "policy-rc.d")
        with open(policy, "w") as f:
            f.write(POLICY)
        os.chmod(policy, 0o755)
        shutil.copy("/etc/resolv.conf", os.path.join(tmp, "etc", "resolv.conf"))
        script = ('set -e; mount -t proc proc "$1/proc"; chroot "$1" apt-get update -q;'
                  ' DEBIAN_FRONTEND=noninteractive chroot "$1" apt-get install -y -q'
                  ' --no-install-recommends %s; chroot "$1" apt-get clean' % " ".join(packages))
        r = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                 "sh", tmp], timeout=1200)
        assert r.returncode == 0, "apt-get failed:\n" + r.stdout[-2000:] + r.stderr
        os.unlink(policy)
        os.rename(tmp, path)
        return path


# The namespace's init: reaps orphans (as init does, so daemons can be stopped), for 15 min.
REAPER = ("import os, time\n"
          "end = time.monotonic() + 900\n"
          "while time.monotonic() < end:\n"
          "    try: os.waitpid(-1, os.WNOHANG) != (0, 0) or time.sleep(0.1)\n"
          "    except ChildProcessError: time.sleep(0.1)\n")


class Chroot:
    """An overlay on a cached system in its own mount, PID and UTS namespaces.

    netns: a named network namespace (`ip netns`) to run in, "host" for this machine's
    (to reach the package mirror), else a new empty one.
    """

    def __init__(self, base: str, tmp: str, debdir: str, hostname: str = "julius",
                 netns: str | None = None) -> None:
        self.root = os.path.join(tmp, "root")
        for d in ("root", "upper", "work"):
            os.makedirs(os.path.join(tmp, d))
        script = ('set -e; hostname "$5"; mount -t overlay overlay'
                  ' -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root";'
                  ' mount -t proc proc "$2/root/proc"; mount --bind "$3" "$2/root/mnt";'
                  ' mount -t tmpfs -o mode=0755 tmpfs "$2/root/run";'
                  ' mkdir -p "$2/root/run/lock"; mount --bind /dev "$2/root/dev";'
                  ' mount -t devpts -o newinstance,ptmxmode=0666 devpts "$2/root/dev/pts";'
                  ' echo ready; exec /usr/bin/python3 -c "$4"')
        argv = ["unshare", "--mount", "--pid", "--uts", "--fork", "--propagation", "private",
                "sh", "-c", script, "init", base, tmp, debdir, REAPER, hostname]
        if netns is None:
            argv.insert(1, "--net")
        elif netns != "host":
            argv = ["ip", "netns", "exec", netns] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True, env=ENV)
        assert self.proc.stdout.readline().strip() == "ready"
        pid, deadline = self.proc.pid, time.monotonic() + 10
        while True:            # ip netns exec and unshare fork, sh execs: find the init
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
            if comm.startswith("python"):
                break
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = f.read().split()
            if kids:
                pid = int(kids[0])
            else:
                assert time.monotonic() < deadline, "no init in the chroot's namespaces"
                time.sleep(0.01)
        self.pid = pid                              # the namespace's init
        # as on a booted box, invoke-rc.d runs init scripts (in a bare chroot, with no
        # /sbin/init and no runlevel, it blocks every action)
        self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 0\n", 0o755)

    def argv(self, cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-n", "-p", "-u",
                "chroot", self.root, "sh", "-c", cmd]

    def mount(self, outside: str, inside: str) -> None:
        """Bind outside (a directory of this machine) on inside (in the chroot)."""
        r = run(["nsenter", "-t", str(self.pid), "-m", "sh", "-c",
                 'mkdir -p "$2$1" && mount --bind "$0" "$2$1"', outside, inside, self.root])
        assert r.returncode == 0, r.stderr

    def run(self, cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(self.argv(cmd), timeout=timeout)

    def exists(self, path: str) -> bool:
        return self.run("test -e " + path).returncode == 0

    def read(self, path: str) -> str:
        """A file's text inside the chroot (its overlay is seen only from its namespaces)."""
        return self.run("cat %s 2>/dev/null || true" % path).stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        r = subprocess.run(self.argv("mkdir -p \"$(dirname %s)\" && cat > %s && chmod %o %s"
                                     % (path, path, mode, path)),
                           input=text, capture_output=True, text=True, timeout=30, env=ENV)
        assert r.returncode == 0, r.stderr

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def prebuild() -> None:
    """Every system the package tests use (conftest starts this in the background
    when a run includes tests/pkg, so that a cold cache is made while other tests run)."""
    for rel in RELEASES:
        print(system(rel), flush=True)
    print(system("bookworm", ("heartbeat",)), flush=True)
    print(system("bookworm", readme_extra()), flush=True)


if __name__ == "__main__":          # make the caches ahead of a test run
    prebuild()
