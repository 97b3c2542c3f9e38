"""The Debian package on Debian 12 (bookworm) and 13 (trixie), as an admin uses it.

The .deb is built twice from a copy of the source tree (the shared tree stays
clean), with nocheck (`make check` runs the tests itself): as it is, and as a newer
version (a changelog entry more) to upgrade to.  Each fresh system is a debootstrap'd
minbase with hb's Depends and a few tools (debroot.py), made once and cached under
.cache/; each run mounts an overlay on it in private namespaces (a lab's network
namespaces for the pairs), so nothing leaks to this machine.  No systemd runs in a
chroot: the maintainer scripts take their sysvinit path there, and their systemd path
where /run/systemd/system and a systemctl that records its calls make them think it
runs; the unit is checked by systemd-analyze, its notify protocol by
tests/e2e/test_44_notify.py.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from lab import probe as holders
from debroot import ENV, RELEASES, ROOT, Chroot, ok, run, system

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
              pytest.mark.timeout(1800)]       # the first one waits for debootstrap

NEW_VERSION = "0.1.0+pkgtest1"
VIP = "198.18.0.100"


def _copy_tree(dest: str) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in files:
        if f and os.path.isfile(os.path.join(ROOT, f)) and not f.startswith(".hypothesis"):
            os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f))


def _build(top: str, version: str | None = None) -> str:
    src = os.path.join(top, "hb")
    _copy_tree(src)
    if version:
        path = os.path.join(src, "debian", "changelog")
        with open(path) as f:
            old = f.read()
        who = re.search(r"^ -- (.*?>)", old, re.M).group(1)
        with open(path, "w") as f:
            f.write("hb (%s) unstable; urgency=medium\n\n  * The same tree, newer: the"
                    " package test upgrades to it.\n\n -- %s  %s\n\n%s"
                    % (version, who, time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                                   time.gmtime()), old))
    r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                       capture_output=True, text=True, timeout=300,
                       env=dict(ENV, DEB_BUILD_OPTIONS="nocheck"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    debs = glob.glob(os.path.join(top, "hb_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> tuple[str, str]:
    """(this tree's .deb, the same as version NEW_VERSION), in one directory."""
    old = _build(str(tmp_path_factory.mktemp("old")))
    new = _build(str(tmp_path_factory.mktemp("new")), NEW_VERSION)
    out = str(tmp_path_factory.mktemp("debs"))
    return shutil.copy(old, out), shutil.copy(new, out)


@pytest.fixture(scope="module")
def deb(debs) -> str:
    return debs[0]


def mnt(path: str) -> str:
    return "/mnt/" + os.path.basename(path)


@pytest.fixture(params=list(RELEASES), ids=["debian%s" % v for v in RELEASES.values()])
def release(request) -> str:
    return request.param


@pytest.fixture
def chroot(tmp_path, debs, release):
    c = Chroot(system(release), str(tmp_path), os.path.dirname(debs[0]))
    try:
        yield c
    finally:
        c.close()


def test_lintian_clean(deb):
    changes = glob.glob(os.path.join(os.path.dirname(os.path.dirname(deb)), "*",
                                     "hb_*.changes"))
    r = run(["lintian", "--pedantic", deb, *changes], timeout=120)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert tags == [], "\n".join(tags)


def test_systemd_unit_verifies(deb, tmp_path):
    """The unit as systemd reads it: notify, watchdog, --check before start, mixed kill."""
    ok(run(["dpkg-deb", "-x", deb, str(tmp_path)]))
    unit = str(tmp_path / "lib/systemd/system/hb.service")
    with open(unit) as f:
        text = f.read()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=60s", "KillMode=process",
                 "ExecStartPre=/usr/sbin/hb-supervise --check $HB_OPTS",
                 "ExecStart=/usr/sbin/hb-supervise $HB_OPTS",
                 "EnvironmentFile=-/etc/default/hb"):
        assert line in text.splitlines(), line
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M).group(1))
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from hb import daemons
    assert stop >= 2 * (daemons.WATCH_STOP + daemons.STOP)
    r = run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", unit])
    problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                if "hb.service" in ln and "/usr/sbin/hb-supervise" not in ln]
    assert problems == [], problems


def test_installs_removes_and_purges(debs, chroot, release):
    deb = debs[0]
    out = ok(chroot.run("dpkg -i " + mnt(deb)))
    assert "not starting" not in out                  # no ha.cf: nothing to say
    assert chroot.run("pgrep -f [h]b-supervise").returncode != 0      # nothing started
    for d in ("/etc/ha.d", "/etc/ha.d/resource.d", "/var/lib/hb"):
        assert chroot.exists(d), d
    assert ok(chroot.run("stat -c %a /var/lib/hb")).strip() == "750"
    assert chroot.run("getent group haclient").returncode == 0     # monitoring group

    # README's first steps (into a directory of its own: /etc/ha.d stays unconfigured),
    # on a box with the example's interfaces (veths, in the chroot's own netns)
    ok(chroot.run("for i in eth0 eth1 eth2; do ip link add $i type veth peer name $i-peer; done"))
    out = ok(chroot.run("mkdir /root/ha.d && cp /usr/share/doc/hb/examples/* /root/ha.d/"
                        " && chmod 600 /root/ha.d/authkeys"
                        " && hb-supervise --check -c /root/ha.d --node julius"))
    assert "julius" in out and "caesar" in out
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from hb import wire
    ours = ok(subprocess.run([os.path.join(ROOT, "bin", "hb-ipaddr"), "--help"],
                             capture_output=True, text=True, timeout=60,
                             env=dict(ENV, PYTHONPATH=os.path.join(ROOT, "lib"))))
    assert ok(chroot.run("hb-ipaddr --help")) == ours
    # the digests of this release's python (no _sha256 builtin from 3.12 on) match ours
    code = ("from hb import wire\nfor m in ('sha1', 'md5', 'sha256', 'crc'):\n"
            "    print(m, wire.auth_token(m, b'key', b'some message'))\n")
    mine = "".join("%s %s\n" % (m, wire.auth_token(m, b"key", b"some message"))
                   for m in ("sha1", "md5", "sha256", "crc"))
    assert ok(chroot.run("python3 -c \"%s\"" % code)) == mine

    assert ok(chroot.run("man -w hb-switch")).strip() == "/usr/share/man/man8/hb-switch.8.gz"
    commands = ok(chroot.run("cd /usr/sbin && ls hb-*")).split()
    no_page = [c for c in commands if chroot.run("man -w 8 " + c).returncode != 0]
    assert no_page == [], "commands without a man page"
    for page in ("ha.cf", "authkeys", "haresources"):
        assert ok(chroot.run("man -w 5 " + page)).strip() == \
            "/usr/share/man/man5/%s.5hb.gz" % page
        assert "hb manual" in ok(chroot.run("man 5hb %s | head -3" % page)) or \
            chroot.run("man -w 5hb " + page).returncode == 0

    meta = ok(chroot.run("OCF_ROOT=/usr/lib/ocf /usr/lib/ocf/resource.d/hb/IPaddr meta-data"))
    assert '<resource-agent name="IPaddr"' in meta
    assert chroot.exists("/usr/lib/ocf/resource.d/hb/MailTo")

    # bash completion of hb-switch, as bash-completion loads it
    comp = ("source /usr/share/bash-completion/bash_completion;"
            " COMP_WORDS=(hb-switch %s); COMP_CWORD=%d; COMP_LINE=\"hb-switch %s\";"
            " COMP_POINT=${#COMP_LINE}; _completion_loader hb-switch;"
            " complete -p hb-switch >/dev/null && _hb_switch; echo \"${COMPREPLY[*]}\"")

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        return ok(chroot.run("bash -c '%s'" % (comp % (line, len(words), line)))).split()
    assert complete("st") == ["standby", "status"]
    assert complete("standby", "")[:3] == ["-r", "--wait", "--no-wait"]
    assert "local" in complete("takeover", "")
    assert complete("cl_status", "hbl") == ["hblinkstatus"]

    # never started without a configuration, by either init system's files
    r = chroot.run("/etc/init.d/hb start")
    assert r.returncode == 0 and "not starting" in r.stdout + r.stderr, r
    assert not chroot.exists("/run/hb/hb-supervise.pid")
    unit = ok(chroot.run("cat /lib/systemd/system/hb.service"))
    assert "ConditionPathExists=/etc/ha.d/ha.cf" in unit
    execstart = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    assert chroot.exists(execstart), "hb.service runs missing " + execstart

    ok(chroot.run("dpkg -r hb"))
    assert not chroot.exists("/usr/sbin/hb-supervise")
    assert chroot.exists("/etc/default/hb") and chroot.exists("/var/lib/hb")   # conffiles
    ok(chroot.run("dpkg --purge hb"))
    for gone in ("/var/lib/hb", "/etc/default/hb", "/etc/logrotate.d/hb", "/etc/init.d/hb",
                 "/usr/share/bash-completion/completions/hb-switch", "/etc/ha.d/resource.d"):
        assert not chroot.exists(gone), gone
    assert ok(chroot.run("dpkg-query -W -f='${Status}' hb 2>&1 || true")) in (
        "", "unknown ok not-installed", "dpkg-query: no packages found matching hb\n")

    # a configuration --check refuses: installing does not start it, nor does the script
    write_config(chroot, HACF % "bcast lo", "julius 198.18.0.100/24/lo\n")
    ok(chroot.run("echo 'bogus_directive yes' >> /etc/ha.d/ha.cf"))
    out = ok(chroot.run("dpkg -i " + mnt(deb)))
    assert "not starting" in out and "--check" in out, out
    assert chroot.run("pgrep -f [h]b-supervise").returncode != 0
    r = chroot.run("/etc/init.d/hb start")
    assert r.returncode != 0 and "ha.cf:" in r.stderr, r
    assert chroot.run("pgrep -f [h]b-supervise").returncode != 0
    ok(chroot.run("dpkg --purge hb"))
    assert chroot.exists("/etc/ha.d/ha.cf")                                   # the admin's


HACF = ("logfile /var/log/ha-log\nkeepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\n"
        "udpport 694\n%s\nauto_failback off\nnode julius caesar\n")
AUTHKEYS = "auth 1\n1 sha1 package-test\n"


def write_config(c: Chroot, hacf: str, haresources: str,
                 authkeys: str = AUTHKEYS) -> None:
    c.write("/etc/ha.d/ha.cf", hacf)
    c.write("/etc/ha.d/haresources", haresources)
    c.write("/etc/ha.d/authkeys", authkeys, 0o600)


def wait_until(cond, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what() if callable(what) else what))
        time.sleep(0.05)


def pids(c: Chroot) -> dict[str, int]:
    """hb-supervise, hb-beat and hb-watch in chroot c: name -> PID (in its namespace)."""
    out = {}
    for name in ("hb-supervise", "hb-beat", "hb-watch"):
        r = c.run("pgrep -o -f '^/usr/bin/python3 /usr/sbin/%s '" % name)
        if r.returncode == 0:
            out[name] = int(r.stdout.split()[0])
    return out


DEATH = re.compile(r"dead \(|is dead|link \S+ \S+ dead")


@pytest.fixture
def pair(lab, tmp_path, debs, release):
    """julius and caesar, each a chroot of `release` in a lab host, and a client."""
    hosts = {"julius": lab.host("julius", "198.18.0.1/24"),
             "caesar": lab.host("caesar", "198.18.0.2/24")}
    client = lab.host("client", "198.18.0.10/24")
    nodes = {}
    try:
        for name, h in hosts.items():
            nodes[name] = Chroot(system(release), str(tmp_path / name),
                                 os.path.dirname(debs[0]), hostname=name, netns=h.ns)
        yield lab, hosts, client, nodes
    finally:
        for c in nodes.values():
            c.close()


def test_pair_upgrades_in_place_and_fails_over(pair, debs, release):
    """Install on a configured pair starts it; logs rotate; an upgrade of the active node,
    then of the passive one, moves nothing (the client probing the VIP every 10 ms sees no
    gap, the peer logs no death); then the active node crashes and its peer takes over;
    removal stops hb and purge leaves nothing of it."""
    lab, hosts, client, nodes = pair
    julius, caesar = nodes["julius"], nodes["caesar"]
    for c in nodes.values():
        write_config(c, HACF % "bcast eth0", "julius IPaddr::%s/24/eth0\n" % VIP)

    def where() -> list[str]:
        return [n for n, h in hosts.items() if h.has_addr(VIP)]

    def logs() -> str:
        return "VIP on %s\n" % where() + "".join(
            "--- %s:\n%s\n" % (n, c.read("/var/log/ha-log")[-3000:]) for n, c in nodes.items())

    # installing on a configured box starts hb (sysvinit here: invoke-rc.d)
    for c in (julius, caesar):
        ok(c.run("dpkg -i " + mnt(debs[0])))
    wait_until(lambda: where() == ["julius"], 20, lambda: "the VIP on julius\n" + logs())
    wait_until(lambda: re.search(r"node\s+caesar\s+up", julius.run("hb-switch status").stdout),
               10,
               lambda: "julius to see caesar\n" + logs())
    for name, h in hosts.items():
        holders.responder(h, VIP, name)
    prober = holders.Prober(client, VIP, duration=240)
    prober.wait_served("julius", 10)

    # the shipped logrotate file: the log goes on in ha-log, not ha-log.1
    ok(julius.run("logrotate -f /etc/logrotate.d/hb"))
    assert julius.exists("/var/log/ha-log.1")

    for name, c in nodes.items():       # upgrade the active node, then the passive one
        peer = nodes["caesar" if name == "julius" else "julius"]
        t = time.monotonic()
        mark = {n: len(x.read("/var/log/ha-log")) for n, x in nodes.items()}
        before = pids(c)
        assert set(before) == {"hb-supervise", "hb-beat", "hb-watch"}, before
        out = ok(c.run("dpkg -i " + mnt(debs[1])))
        assert "re-executes itself" in out, out
        assert NEW_VERSION in ok(c.run("dpkg-query -W -f='${Version}' hb"))

        def replaced() -> bool:
            now = pids(c)
            return (set(now) == set(before) and now["hb-supervise"] == before["hb-supervise"]
                    and now["hb-beat"] != before["hb-beat"]
                    and now["hb-watch"] != before["hb-watch"])
        wait_until(replaced, 30, lambda: "hb-beat and hb-watch replaced in place: %s -> %s\n%s"
                   % (before, pids(c), logs()))
        # twice deadtime, a death would have been seen; meanwhile the peer's dead timer
        # of the upgraded node stays at deadtime: its new hb-beat is not starting (no
        # +2 s slack), even when the old hb-watch was gone before its first status
        dts, end = set(), time.monotonic() + 2
        while time.monotonic() < end:
            m = re.search(r"^node %s up .*\bdt=(\d+)" % name,
                          peer.read("/run/hb/status"), re.M)
            dts.add(m and m.group(1))
            time.sleep(0.1)
        assert dts == {"1000"}, "%s's dead timer of %s: %s\n%s" % (peer.root, name, dts, logs())
        assert where() == ["julius"], logs()
        gap = [g for g in holders.gaps(holders.window(prober.probes(), t))
               if g.after is not None]
        assert gap == [], "the client saw %s during the upgrade of %s" % (gap, c.root)
        for n, x in nodes.items():
            said = x.read("/var/log/ha-log")[mark[n]:]
            assert not DEATH.search(said), "%s logged during the upgrade:\n%s" % (n, said)
    assert "started hb-watch" in julius.read("/var/log/ha-log.1"), "before the rotation"
    assert "hb-watch" in julius.read("/var/log/ha-log"), "after the rotation"

    # this release's python and libraries fail over: julius crashes, caesar takes the VIP
    t = time.monotonic()
    julius.run("pkill -KILL -f '^/usr/bin/python3 /usr/sbin/hb-'")
    lab.cut(hosts["julius"])
    prober.wait_served("caesar", 10, since=t)
    gap = holders.outage_after(prober.probes(), t)
    assert gap is not None and gap.ms < 3000, "%s, %.3f s after the crash\n%s" % (
        gap, time.monotonic() - t, logs())
    assert "julius: dead" in caesar.read("/var/log/ha-log"), logs()

    # removal stops hb (hands over: nobody to hand to, so the VIP goes), purge cleans up
    ok(caesar.run("dpkg -r hb"))
    assert caesar.run("pgrep -f /usr/sbin/[h]b-").returncode != 0
    assert "caesar" not in where()
    ok(caesar.run("dpkg --purge hb"))
    assert not caesar.exists("/var/lib/hb") and not caesar.exists("/run/hb")
    prober.stop()


PACEMAKER = {"bookworm": "2.1", "trixie": "3.0"}


def test_pacemaker_export_loads(chroot, deb, release):
    """hb-supervise --export pacemaker: this release's Pacemaker and Corosync accept it."""
    ok(chroot.run("dpkg -i " + mnt(deb)))
    write_config(chroot, HACF.replace("auto_failback off", "auto_failback on")
                 % "ucast eth0 198.18.0.1\nucast eth0 198.18.0.2",
                 "julius IPaddr::%s/24/eth0 MailTo::root@example.org\n" % VIP)
    out = ok(chroot.run("hb-supervise --export pacemaker --node julius -o /root/export"
                        " --addr julius=198.18.0.1 --addr caesar=198.18.0.2"))
    assert "/root/export/cib.xml" in out.split()
    version = ok(chroot.run("crm_verify --version")).split()
    assert version[0] == "Pacemaker" and version[1].startswith(PACEMAKER[release]), version
    r = chroot.run("crm_verify -V --xml-file /root/export/cib.xml")
    assert r.returncode == 0, r.stdout + r.stderr
    ok(chroot.run("cp /root/export/corosync.conf /root/export/authkey /etc/corosync/"))
    r = chroot.run("corosync -t")
    assert r.returncode == 0, r.stdout + r.stderr
    # the agents the CIB names are where Pacemaker looks for them
    cib = chroot.read("/root/export/cib.xml")
    for agent in set(re.findall(r'provider="hb" type="(\w+)"', cib)):
        assert chroot.exists("/usr/lib/ocf/resource.d/hb/" + agent), agent


MIGRATION = os.path.join(ROOT, "docs", "migration.md")


def doc_commands(heading: str, step: int | None = None) -> list[str]:
    """The sysvinit shell lines of docs/migration.md under `heading` (its step `step`)."""
    with open(MIGRATION) as f:
        text = f.read()
    part = text[text.index("\n## " + heading):]
    part = part[:part.find("\n## ", 4)] if "\n## " in part[4:] else part
    if step is not None:
        m = re.search(r"^%d\. .*?(?=^\d+\. |\Z)" % step, part, re.M | re.S)
        part = m.group(0)
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", part, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.endswith("# systemd"):
                lines.append(re.sub(r"\s+# sysvinit$", "", line))
    return lines


def test_migration_guide_from_running_heartbeat_and_back(lab, tmp_path, debs):
    """docs/migration.md, word for word, on two Debian 12 boxes running Debian's heartbeat,
    with a client probing the VIP every 10 ms; then both go back to Heartbeat."""
    from lab.heartbeat import hacf, host
    deb = debs[0]
    hosts = {"alpha": host(lab, "alpha", "198.18.0.1/24"),
             "beta": host(lab, "beta", "198.18.0.2/24")}
    client = lab.host("client", "198.18.0.10/24")
    base = system("bookworm", ("heartbeat",))
    nodes: dict[str, Chroot] = {}
    cf = hacf(["alpha", "beta"], keepalive="200ms", warntime="600ms", deadtime="1",
              initdead="3", auto_failback="on")
    try:
        for name, h in hosts.items():
            nodes[name] = c = Chroot(base, str(tmp_path / name), os.path.dirname(deb),
                                     hostname=name, netns=h.ns)
            write_config(c, cf, "alpha IPaddr2::%s/24/eth0\n" % VIP)
            # what systemd-tmpfiles makes at boot (heartbeat.conf), then Heartbeat starts
            ok(c.run("mkdir -p /run/heartbeat/ccm /run/heartbeat/crm /run/heartbeat/dopd"
                     " /run/crm && chown -R hacluster:haclient /run/heartbeat /run/crm"))
        alpha, beta = nodes["alpha"], nodes["beta"]

        def where() -> list[str]:
            return [n for n, h in hosts.items() if h.has_addr(VIP)]

        def logs() -> str:
            return "VIP on %s\n" % where() + "".join(
                "--- %s:\n%s\n" % (n, c.read("/var/log/ha-log")[-7000:])
                for n, c in nodes.items())

        def heartbeat_runs(c: Chroot) -> bool:
            return c.run("grep -qsx heartbeat /proc/[0-9]*/comm").returncode == 0

        def hb_runs(c: Chroot) -> bool:
            return c.run("pgrep -f '^/usr/bin/python3 /usr/sbin/hb-supervise'").returncode == 0

        def settled(c: Chroot) -> bool:
            return c.run("cl_status rscstatus").stdout.strip() in ("all", "local", "none")

        def follow(c: Chroot, lines: list[str]) -> str:
            out = ""
            for line in lines:
                line = line.replace("apt-get install hb", "apt-get install -y " + mnt(deb))
                if line.startswith("scp ") or line.startswith("chmod 600"):
                    continue            # step 2: the box has the files already
                r = c.run(line, timeout=180)
                ok(r)
                out += r.stdout + r.stderr
            return out

        ok(alpha.run("/etc/init.d/heartbeat start"))
        wait_until(lambda: where() == ["alpha"], 20, lambda: "VIP on alpha\n" + logs())
        ok(beta.run("/etc/init.d/heartbeat start"))
        wait_until(lambda: settled(alpha) and settled(beta), 40,
                   lambda: "Heartbeat settled\n" + logs())
        for name, h in hosts.items():
            holders.responder(h, VIP, name)
        prober = holders.Prober(client, VIP, duration=300)
        prober.wait_served("alpha", 10)
        files = {f: alpha.read("/etc/ha.d/" + f) for f in ("ha.cf", "haresources", "authkeys")}

        # 1. beta: install hb beside a running Heartbeat: not started, no file clash
        out = follow(beta, doc_commands("Steps", 1))
        assert "not starting: Heartbeat runs" in out, out
        assert heartbeat_runs(beta) and not hb_runs(beta)
        assert ok(beta.run("man -w 5hb ha.cf")).strip() == "/usr/share/man/man5/ha.cf.5hb.gz"
        assert ok(beta.run("man -w 5 ha.cf")).strip() == "/usr/share/man/man5/ha.cf.5.gz"
        # 2. the same files as alpha's; 3. check them
        assert {f: beta.read("/etc/ha.d/" + f) for f in files} == files
        said = follow(beta, doc_commands("Steps", 3))
        assert re.search(r"warning: .*IPaddr2.*resource\.d", said), said   # shadowing
        # 4. beta: Heartbeat stopped, hb started; alpha keeps the VIP
        t = time.monotonic()
        follow(beta, doc_commands("Steps", 4))
        assert hb_runs(beta) and not heartbeat_runs(beta)
        wait_until(lambda: "node alpha runs Heartbeat" in beta.read("/var/log/ha-log"), 15,
                   lambda: "hb on beta to see Heartbeat on alpha\n" + logs())
        wait_until(lambda: re.search(r"Status update for node beta: status active",
                                     alpha.read("/var/log/ha-log")), 15,
                   lambda: "alpha to see hb on beta\n" + logs())
        assert where() == ["alpha"]
        assert holders.gaps(holders.window(prober.probes(), t)) == []
        # 5. alpha: hb_standby once settled: the VIP moves to hb on beta
        wait_until(lambda: settled(alpha), 30, lambda: "alpha settled\n" + logs())
        follow(alpha, doc_commands("Steps", 5))
        wait_until(lambda: where() == ["beta"], 15, lambda: "the VIP on beta\n" + logs())
        # 6. alpha as beta in steps 1, 3 and 4: auto_failback brings the VIP back
        out = follow(alpha, doc_commands("Steps", 1))
        assert "not starting: Heartbeat runs" in out, out
        follow(alpha, doc_commands("Steps", 3))
        follow(alpha, doc_commands("Steps", 4))
        wait_until(lambda: where() == ["alpha"], 20, lambda: "auto_failback to alpha\n" + logs())
        prober.wait_served("alpha", 10)
        assert hb_runs(alpha) and hb_runs(beta)
        assert not heartbeat_runs(alpha) and not heartbeat_runs(beta)

        # going back: beta (holds nothing), then alpha (hands over, auto_failback back)
        back = doc_commands("Going back")
        assert back[0] == "hb-switch standby"         # on a node that holds groups
        mark = len(alpha.read("/var/log/ha-log"))
        follow(beta, back[1:])
        assert heartbeat_runs(beta) and not hb_runs(beta)
        wait_until(lambda: "node beta runs Heartbeat" in alpha.read("/var/log/ha-log")[mark:],
                   15, lambda: "hb on alpha to see Heartbeat on beta\n" + logs())
        wait_until(lambda: re.search(r"^group\s+1\s+running\s+on alpha",
                                     alpha.run("hb-switch status").stdout, re.M), 15,
                   lambda: "hb on alpha settled\n" + logs())
        follow(alpha, back)
        assert heartbeat_runs(alpha) and not hb_runs(alpha)
        wait_until(lambda: where() == ["alpha"] and settled(alpha), 40,
                   lambda: "Heartbeat on alpha holds the VIP again\n" + logs())
        prober.wait_served("alpha", 10)
        seen = prober.stop()
        both = holders.multi(seen, "holders")
        assert not both, "the VIP was held by both nodes: %s" % both[:3]
        worst = holders.max_interruption(seen)
        print("\nlongest interruption over the migration and back: %d ms" % worst)
        assert worst < 3000, worst
    finally:
        for c in nodes.values():
            c.close()


def test_sysvinit_script_runs_hb_and_logs_to_syslog(chroot, deb, tmp_path):
    """/etc/init.d/hb checks, starts (hb-supervise --daemon), reports and stops hb; with
    no logfile, debugfile nor logfacility in ha.cf, every program's lines reach syslog
    (/dev/log)."""
    import socket
    path = str(tmp_path / "devlog")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)
    s.settimeout(0.2)
    lines: list[str] = []
    import threading
    done = threading.Event()

    def drain() -> None:            # as a syslog daemon does: a full queue blocks senders
        while not done.is_set():
            try:
                lines.append(s.recv(4096).decode(errors="replace"))
            except socket.timeout:
                pass

    def seen() -> set[str]:
        return {m.group(1) for ln in list(lines) for m in [re.search(r"(hb-\w+)\[\d+\]", ln)]
                if m}
    reader = threading.Thread(target=drain)
    reader.start()
    try:
        # the chroot's own /dev (a tmpfs with the usual nodes), /dev/log this socket
        ok(run(["nsenter", "-t", str(chroot.pid), "-m", "sh", "-c",
                'set -e; d="$1/dev"; mkdir -p /tmp/hbdev; mount -t tmpfs -o mode=755 dev '
                '/tmp/hbdev; for n in null zero full random urandom tty; do touch /tmp/hbdev/$n;'
                ' mount --bind /dev/$n /tmp/hbdev/$n; done; touch /tmp/hbdev/log;'
                ' mount --bind "$2" /tmp/hbdev/log; mount --move /tmp/hbdev "$d"',
                "sh", chroot.root, path]))
        ok(chroot.run("dpkg -i " + mnt(deb)))
        write_config(chroot, HACF.replace("logfile /var/log/ha-log\n", "") % "bcast lo",
                     "julius 198.18.0.100/24/lo\n")
        assert "is valid" in ok(chroot.run("/etc/init.d/hb check"))
        ok(chroot.run("ip link set lo up && /etc/init.d/hb start"))
        wait_until(lambda: {"hb-supervise", "hb-beat", "hb-watch"} <= seen(), 15,
                   lambda: "syslog to get lines from each program, not only %s"
                   % sorted(seen()))
        wait_until(lambda: "198.18.0.100/24" in chroot.run("ip -o addr show lo").stdout, 10,
                   "the address on lo")
        assert "is running" in ok(chroot.run("/etc/init.d/hb status"))
        ok(chroot.run("/etc/init.d/hb stop"))
        assert chroot.run("/etc/init.d/hb status").returncode == 3
        assert chroot.run("pgrep -f /usr/sbin/[h]b-").returncode != 0
        assert "198.18.0.100" not in ok(chroot.run("ip -o addr show lo"))
    finally:
        done.set()
        reader.join(5)
        s.close()


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /run/systemctl.calls
case "$*" in
  *is-active*) [ -e /run/fake-active ] ;;
  *"-p MainPID --value"*) cat /run/fake-mainpid ;;
  *is-enabled*) echo enabled ;;
  *) exit 0 ;;
esac
"""
# The service's main process: one that catches SIGUSR2 (as hb-supervise re-executing
# itself does) or not (a supervisor from before that).
MAIN = ("import signal, sys, time\n"
        "if sys.argv[1] == 'catches':\n"
        "    signal.signal(signal.SIGUSR2, lambda *_: None)\n"
        "time.sleep(60)\n")


def test_maintainer_scripts_under_systemd(chroot, debs):
    """With systemd running (its systemctl recording what it is asked): a configured
    install starts hb.service; an upgrade signals the main process with SIGUSR2 when it
    catches it, else restarts the service; removal stops it.  Nothing else."""
    old, new = debs
    chroot.write("/usr/bin/systemctl", FAKE_SYSTEMCTL, 0o755)
    ok(chroot.run("mkdir -p /run/systemd/system"))
    write_config(chroot, HACF % "bcast lo", "julius 198.18.0.100/24/lo\n")

    def calls() -> list[str]:
        out = chroot.read("/run/systemctl.calls").splitlines()
        ok(chroot.run("rm -f /run/systemctl.calls"))
        out = [" ".join(w for w in c.split() if w not in ("--quiet", "-q", "--system", "--"))
               for c in out]
        return [c for c in out if not re.search(r"daemon-reload|preset|is-enabled|"
                                                r"is-active|MainPID|enable|unmask", c)]

    ok(chroot.run("dpkg -i " + mnt(old)))
    assert calls() == ["start hb.service"]
    chroot.write("/root/main.py", MAIN)
    for kind, version, expect in (("catches", new, "kill --signal=USR2 --kill-whom=main"
                                   " hb.service"), ("ignores", old, "restart hb.service")):
        ok(chroot.run("python3 /root/main.py %s >/dev/null 2>&1 & echo $! > /run/fake-mainpid;"
                      " touch /run/fake-active" % kind))
        wait_until(lambda: chroot.run("grep -q main.py /proc/$(cat /run/fake-mainpid)/cmdline"
                                      " && grep -q '^SigCgt:' /proc/$(cat /run/fake-mainpid)"
                                      "/status").returncode == 0, 5, "the main process")
        if kind == "catches":        # its handler is in place once SigCgt shows SIGUSR2
            wait_until(lambda: int(re.search(r"SigCgt:\s*(\w+)", chroot.read(
                "/proc/%s/status" % chroot.read("/run/fake-mainpid").strip())).group(1),
                16) >> 11 & 1, 5, "SIGUSR2 caught")
        out = ok(chroot.run("dpkg -i " + mnt(version)))
        assert calls() == [expect], out
        ok(chroot.run("kill $(cat /run/fake-mainpid); rm /run/fake-active"))
    ok(chroot.run("dpkg -r hb"))
    assert calls() == ["stop hb.service"]
