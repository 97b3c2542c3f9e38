"""README's two commands on a Debian 12 box where keepalived serves: it keeps serving.

The box is a cached bookworm with keepalived running and what `make check` needs
installed except two of its daemons (heartbeat and ucarp), so that `make deps` must
install them as it does on a fresh machine.  It shares this machine's network, to
reach the package mirror; keepalived runs with no VRRP instance, so it sends nothing.
The packages apt fetches are kept under .cache/apt-archives.  The box looks booted
with systemd to the maintainer scripts and the Makefile (/run/systemd/system), and its
systemctl records each call it gets.  Then: `make deps` (what `make check` runs
before lint and the tests) and `make demo`.  keepalived runs throughout with the same
PID and no systemctl call names it; nothing was started; heartbeat and ucarp were not
started and are disabled; .cache/installed-by-make names them.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from debroot import CACHE, LEFT_OUT, ROOT, Chroot, make_var, ok, readme_extra, system

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
              pytest.mark.timeout(1800)]       # the first one waits for debootstrap

SYSTEMCTL = """#!/bin/sh
echo "$*" >> /run/systemctl.calls
case "$*" in *is-active*|*is-enabled*|*is-system-running*) exit 3 ;; esac
exit 0
"""
KEEPALIVED_CONF = "global_defs {\n    router_id readme-test\n}\n"


def copy_tree(dest: str) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    r = subprocess.run(["tar", "-C", ROOT, "--null", "-T", "-", "-cf", "-"],
                       input="\0".join(f for f in files if f and
                                       os.path.isfile(os.path.join(ROOT, f))).encode(),
                       capture_output=True, check=True)
    subprocess.run(["tar", "-C", dest, "-xf", "-"], input=r.stdout, check=True)


def test_readme_commands_leave_a_running_keepalived_alone(tmp_path):
    wanted = set(make_var("RUN_DEPS") + make_var("TEST_DEPS") + make_var("DEMO_DEPS"))
    assert set(LEFT_OUT) <= wanted and "keepalived" in wanted
    base = system("bookworm", readme_extra())
    src = tmp_path / "hb"
    src.mkdir()
    copy_tree(str(src))
    c = Chroot(base, str(tmp_path / "box"), str(src), hostname="keepalived-box",
               netns="host")
    try:
        archives = os.path.join(CACHE, "..", "apt-archives")
        os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
        c.mount(os.path.realpath(archives), "/var/cache/apt/archives")
        c.write("/etc/keepalived/keepalived.conf", KEEPALIVED_CONF)
        ok(c.run("/etc/init.d/keepalived start"))
        pid = ok(c.run("cat /run/keepalived.pid")).strip()
        c.write("/usr/bin/systemctl", SYSTEMCTL, 0o755)
        ok(c.run("mkdir -p /run/systemd/system"))
        assert ok(c.run("ps -o comm= -p " + pid)).strip() == "keepalived"

        def keepalived_serves() -> None:
            assert ok(c.run("cat /run/keepalived.pid")).strip() == pid
            assert c.run("kill -0 " + pid).returncode == 0, "keepalived stopped"
            assert ok(c.run("ps -o comm= -p " + pid)).strip() == "keepalived"

        # make check's first step: install what is missing, stop and disable nothing else
        out = ok(c.run("cd /mnt && make deps", timeout=600))
        assert "installing: heartbeat ucarp\n" in out, out
        keepalived_serves()
        for p in LEFT_OUT:
            assert "install ok installed" in ok(c.run("dpkg-query -W -f='${Status}' " + p))
            assert c.run("pgrep -x " + p).returncode != 0, p + " was started"
            assert c.run("ls /etc/rc[2345].d | grep -q '^S.*%s$'" % p).returncode != 0, \
                p + " is enabled at boot"
        assert c.read("/mnt/.cache/installed-by-make").split() == sorted(LEFT_OUT)
        calls = c.read("/run/systemctl.calls").splitlines()
        assert [x for x in calls if "keepalived" in x] == [], calls
        assert [x for x in calls if " start" in " " + x or "restart" in x] == [], calls
        disabled = [x for x in calls if "disable" in x]
        assert "disable -q heartbeat" in disabled, calls
        assert all(x.split()[-1].split(".")[0] in LEFT_OUT for x in disabled), disabled
        assert ok(c.run("cat /usr/sbin/policy-rc.d")) == "#!/bin/sh\nexit 0\n"  # put back

        # make demo: the demo's own packages are there now; it runs and leaves no trace
        out = ok(c.run("cd /mnt && make demo", timeout=300))
        assert "never held by both nodes at once" in out, out
        keepalived_serves()
        assert ok(c.run("ip netns list")).strip() == ""
        assert [x for x in c.read("/run/systemctl.calls").splitlines()
                if "keepalived" in x] == []
    finally:
        c.close()
