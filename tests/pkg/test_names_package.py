"""Heartbeat's command names in hb's package, on a Debian 12 box with Debian's heartbeat.

hb installs /usr/bin/cl_status, /usr/share/heartbeat/hb_standby and hb_takeover (links
to /usr/lib/hb/heartbeat-compat/); heartbeat owns the same paths.  preinst diverts
Heartbeat's files to NAME.heartbeat, postrm gives them back: both packages install in
either order, each can be removed, and the names always work.
"""

from __future__ import annotations

import os
import re

import pytest

from debroot import Chroot, ok, system

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
              pytest.mark.timeout(1800)]       # the first one waits for debootstrap

NAMES = ("/usr/bin/cl_status", "/usr/share/heartbeat/hb_standby",
         "/usr/share/heartbeat/hb_takeover")
COMPAT = "/usr/lib/hb/heartbeat-compat/"


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> str:
    from test_package import _build
    return _build(str(tmp_path_factory.mktemp("names")))


def diversions(c: Chroot) -> list[str]:
    return sorted(ln for ln in ok(c.run("dpkg-divert --list")).splitlines() if " by hb" in ln)


def test_names_are_diverted_beside_heartbeat_and_given_back(tmp_path, deb):
    base = system("bookworm", ("heartbeat",))
    c = Chroot(base, str(tmp_path / "box"), os.path.dirname(deb))
    mnt = "/mnt/" + os.path.basename(deb)
    try:
        heartbeats = {p: ok(c.run("md5sum < " + p)) for p in NAMES}
        ok(c.run("dpkg -i " + mnt))
        assert diversions(c) == sorted("diversion of %s to %s.heartbeat by hb" % (p, p)
                                       for p in NAMES)
        for p in NAMES:        # hb's name; Heartbeat's file kept, unchanged, beside it
            assert ok(c.run("readlink -f " + p)).strip() == COMPAT + os.path.basename(p)
            assert ok(c.run("md5sum < %s.heartbeat" % p)) == heartbeats[p]
        # neither daemon runs: what Heartbeat's own says of a stopped Heartbeat
        r = c.run("cl_status hbstatus")
        assert (r.returncode, r.stdout) == (1, "Heartbeat is stopped on this machine.\n")
        assert c.run("cl_status.heartbeat hbstatus").stdout == r.stdout
        r = c.run("cl_status bogus")
        assert r.returncode == 11 and re.fullmatch(
            r"\w{3} [ 0-9]\d [\d:]{8} julius cl_status: \[\d+\]: ERROR: bogus: invalid "
            r"sub-command\.\n", r.stderr), r
        r = c.run("/usr/share/heartbeat/hb_standby sideways")
        assert (r.returncode, r.stdout, r.stderr) == (
            1, "/usr/share/heartbeat/hb_standby: wrong resources(sideways).\nusage:\n",
            "/usr/share/heartbeat/hb_standby [all|foreign|local|failback]\n")
        r = c.run("/usr/share/heartbeat/hb_takeover")
        assert (r.returncode, r.stderr) == (
            1, "/usr/share/heartbeat/hb_takeover: hb-watch is not running\n")
        assert ok(c.run("man -w 1hb cl_status")).strip() == \
            "/usr/share/man/man1/cl_status.1hb.gz"

        ok(c.run("dpkg -r hb"))                    # Heartbeat's files get their names back
        assert diversions(c) == []
        for p in NAMES:
            assert ok(c.run("md5sum < " + p)) == heartbeats[p]
            assert not c.exists(p + ".heartbeat")

        ok(c.run("dpkg -i %s && dpkg -r heartbeat" % mnt))     # hb stays: the names too
        for p in NAMES:
            assert ok(c.run("readlink -f " + p)).strip() == COMPAT + os.path.basename(p)
            assert not c.exists(p + ".heartbeat")
        assert c.run("cl_status hbstatus").returncode == 1

        ok(c.run("dpkg -P hb"))
        assert diversions(c) == []
        assert not any(c.exists(p) for p in NAMES)
    finally:
        c.close()
