"""docs/migration.md's guide with what a real pair carries besides its three files:
the admin's own rc.d scripts, and runbooks calling Heartbeat's command names.

test_migration_keeps_hooks_and_names: a Heartbeat 3.0.6 pair (alpha active, beta
passive) whose /etc/ha.d has two scripts of the admin's: a line added to Heartbeat's
rc.d/status appends `$HA_src $HA_st` to /var/log/peer-events, and rc.d/admin_note (a
message type of the admin's, sent with shellfuncs' ha_clustermsg through
/var/lib/heartbeat/fifo) appends `$HA_src $HA_note` to /var/log/notes.  Each node
keeps its /etc/ha.d, /var/log and /var/lib/heartbeat through the migration (hb's
CONFDIR is a copy of the node's whole /etc/ha.d, Heartbeat's shipped rc.d scripts
included, with only the admin's line left in rc.d/status as the guide says), as a box
does.  The guide's steps run while a client probes the VIP every 10 ms; in the mixed
phase the runbook's `cl_status rscstatus`, `hb_takeover` and `hb_standby` run on the
hb node under those names (bin/, what the package installs).  A peer's death is
recorded by rc.d/status under Heartbeat before the move and under hb after it; the
admin's message goes through each kind of fifo to both nodes; and the VIP is on one
node at every probe (Heartbeat's own rc.d scripts, which would take groups a second
time, are skipped by hb).

test_starting_alone_gives_agents_ha_dontask: a node that starts while its peer is
down, under Heartbeat 3.0.6 and then under hb, with a resource script that records
its environment at each call: HA_DONTASK=yes for the status probe before its own
group's start only (not the start, not the dead peer's group), the same on both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

from hb import harc
from lab import probe as holders
from lab.heartbeat import (HbNode, HeartbeatNode, hacf, hbnode, heartbeat,  # noqa: F401
                           host)
from lab.probe import Ping as Probe
from lab.wait import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPAT = os.path.join(ROOT, "bin")
VIP = "198.18.0.100"

ADMIN_LINE = 'echo "$HA_src $HA_st" >> /var/log/peer-events'


def status_edited() -> str:
    """Under Heartbeat, rc.d/status is the only script a status change runs (harc runs
    rc.d/TYPE), and its mach_down line is part of Heartbeat's resource protocol
    (without it Heartbeat stays in transition): the admin added a line to it."""
    with open("/etc/ha.d/rc.d/status") as f:
        return f.read() + "# the on-call's timeline\n" + ADMIN_LINE + "\n"


# hb skips a script that names mach_down (it takes a dead node's groups itself): at
# step 4 the admin's addition is kept alone in rc.d/status, as the guide says.
STATUS_HB = "#!/bin/sh\n# the on-call's timeline\n" + ADMIN_LINE + "\n"
NOTE_HOOK = """#!/bin/sh
# the admin's own message type: t=admin_note note=TEXT
echo "$HA_src $HA_note" >> /var/log/notes
"""
CLUSTERMSG = ". /etc/ha.d/shellfuncs && ha_clustermsg <<!MSG\nt=admin_note\nnote=%s\n!MSG\n"


def lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def add_hooks(etc: str, status: str | None = None) -> None:
    """The admin's scripts in a node's /etc/ha.d/rc.d."""
    for name, text in (("status", status or status_edited()), ("admin_note", NOTE_HOOK)):
        path = os.path.join(etc, "rc.d", name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)


def migrate(old: HeartbeatNode, new: HbNode) -> None:
    """The box's /etc/ha.d as it is (the three files, rc.d, resource.d, shellfuncs)
    but for the admin's line moved out of Heartbeat's rc.d/status, and step 4's
    `cp /var/lib/heartbeat/hb_generation /var/lib/hb/generation`."""
    shutil.copytree(os.path.join(old.dir, "ha.d"), new.conf, symlinks=True,
                    dirs_exist_ok=True)
    add_hooks(new.conf, STATUS_HB)
    shutil.copy(os.path.join(old.dir, "lib", "hb_generation"),
                os.path.join(new.state, "generation"))
    new.logfile = old.logfile              # the same /var/log/ha-log


def start_on_box(new: HbNode, old: HeartbeatNode) -> HbNode:
    """Start hb with the box's /var/log and /var/lib/heartbeat (its fifo) as the
    Heartbeat node had them: a mount namespace of hb's own binds the old node's."""
    new._err = open(new.errfile, "a")
    new.proc = new.host.popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /var/log && mount --bind "$1" /var/lib/heartbeat && '
         'shift && exec "$@"', os.path.join(old.dir, "log"), os.path.join(old.dir, "lib"),
         "hb-supervise", "-c", new.conf, "-r", new.run, "-s", new.state,
         "--node", new.name],
        stdin=subprocess.DEVNULL, stdout=new._err, stderr=subprocess.STDOUT)
    return new


def names(node: HbNode, name: str, *args: str) -> subprocess.CompletedProcess:
    """Heartbeat's command NAME on the hb node, as hb's package installs it."""
    env = dict(os.environ, HB_RUNDIR=node.run, HB_CONFDIR=node.conf)
    return subprocess.run(node.host.argv([os.path.join(COMPAT, name), *args]),
                          capture_output=True, text=True, timeout=30, env=env)


def hb_nsenter(node: HbNode, argv: list[str]) -> subprocess.CompletedProcess:
    assert node.proc is not None
    return subprocess.run(["nsenter", "-t", str(node.proc.pid), "-m", "-n", *argv],
                          text=True, capture_output=True, timeout=20)


NAMES = ("alpha", "beta")


def test_migration_keeps_hooks_and_names(lab, heartbeat, hbnode):  # noqa: F811
    hosts = {n: host(lab, n, "198.18.0.%d/24" % (i + 1)) for i, n in enumerate(NAMES)}
    client = host(lab, "client", "198.18.0.10/24")
    cf = hacf(NAMES, keepalive="200ms", warntime="600ms", deadtime="1", initdead="3",
              auto_failback="on")
    res = "alpha IPaddr2::%s/24/eth0\n" % VIP
    old = {n: heartbeat(hosts[n], n, cf, res) for n in NAMES}
    new: dict[str, HbNode] = {}
    for n in NAMES:
        add_hooks(os.path.join(old[n].dir, "ha.d"))

    def events(n: str) -> list[str]:           # the box's /var/log, whoever runs
        return lines(os.path.join(old[n].dir, "log", "peer-events"))

    def notes(n: str) -> list[str]:
        return lines(os.path.join(old[n].dir, "log", "notes"))

    def where() -> list[str]:
        return [n for n in NAMES if hosts[n].has_addr(VIP)]

    def show() -> str:
        out = "VIP on %s\n" % where()
        for n in NAMES:
            if n in new or old[n].running():
                out += "rscstatus %s: %r\n" % (n, (
                    names(new[n], "cl_status", "rscstatus") if n in new
                    else old[n].cl_status("rscstatus")).stdout)
        for n in NAMES:
            node = new.get(n) or old[n]
            out += "--- %s (%s):\n%s\n" % (n, type(node).__name__, node.log()[-3000:])
            out += "events %s notes %s\n" % (events(n), notes(n))
        return out

    def wait_line(get, n: str, line: str, count: int = 1, what: str = "") -> None:
        wait_until(lambda: get(n).count(line) >= count, 20,
                   lambda: "%r x%d on %s (%s)\n%s" % (line, count, n, what, show()))

    def settled() -> bool:
        """Neither side in transition (Heartbeat ignores hb_standby then)."""
        for n in NAMES:
            if n not in new and not old[n].running():
                continue
            r = (names(new[n], "cl_status", "rscstatus") if n in new
                 else old[n].cl_status("rscstatus"))
            if r.returncode != 0 or r.stdout == "transition\n":
                return False
        return True

    def settle(what: str) -> None:
        took = wait_until(settled, 60, lambda: "%s: both settled\n%s" % (what, show()))
        print("\nsettled after %s in %.1f s" % (what, took))

    def moved(to: str, t: float, what: str) -> None:
        wait_until(lambda: where() == [to], 15, lambda: "%s: VIP on %s\n%s" % (
            what, to, show()))
        t1 = time.time()
        wait_until(lambda: probe.replied_since(t1), 5, "the client served by " + to)
        out = probe.outage(t, time.time())
        print("\ninterruption: %s: %d ms" % (what, round(out * 1000)))
        assert out < 2.0, (what, out)

    def fifo_note(n: str, text: str) -> None:
        """The admin's ha_clustermsg on node n (through its daemon's fifo)."""
        sh = ["sh", "-c", CLUSTERMSG % text]
        r = hb_nsenter(new[n], sh) if n in new else old[n].nsenter(sh)
        assert r.returncode == 0, r
        for m in NAMES:                     # the peer and this node itself
            wait_line(notes, m, "%s %s" % (n, text), what="fifo message")

    old["alpha"].start()
    wait_until(lambda: where() == ["alpha"], 10, "the VIP on alpha")
    old["beta"].start()
    old["beta"].wait_active(20)
    settle("the Heartbeat pair")
    for n in NAMES:                          # who holds the VIP, every 10 ms
        holders.responder(hosts[n], VIP, n)
    watch = holders.Prober(client, VIP, duration=170, tag="hold")
    probe = Probe(client, VIP, duration=180)
    wait_until(lambda: probe.replies(), 5, "the client to reach the VIP")
    t_start = time.time()

    # -- before: Heartbeat runs the admin's scripts
    fifo_note("alpha", "before")
    dead = events("alpha").count("beta dead")      # one at start: initdead ran out
    old["beta"].kill()                       # the passive node crashes
    wait_line(events, "alpha", "beta dead", dead + 1, what="Heartbeat's rc.d/status")
    assert where() == ["alpha"]
    settle("Heartbeat alone")            # a restart during its takeover stays in flux
    mark = old["alpha"].mark()
    old["beta"].start()
    old["alpha"].wait_log(r"Status update for node beta: status active", 20, since=mark)
    settle("Heartbeat's beta back")
    as_heartbeat = old["beta"].cl_status("rscstatus")

    # -- steps 2-4 on beta: its /etc/ha.d as it is, checked; Heartbeat stopped, hb started
    t = time.time()
    old["beta"].stop()
    old["alpha"].wait_log(r"Received shutdown notice from 'beta'", 5)
    # as the box's /etc/ha.d stands, hb would skip the edited rc.d/status whole
    hooks, skipped = harc.scan(os.path.join(old["beta"].dir, "ha.d"))
    assert "admin_note" in hooks and "status" not in hooks, (hooks, skipped)
    assert any("rc.d/status: Heartbeat's own script" in w for w in skipped), skipped
    new["beta"] = hbnode(hosts["beta"], "beta", cf, res)
    migrate(old["beta"], new["beta"])
    check = hosts["beta"].run(["hb-supervise", "--check", "-c", new["beta"].conf,
                               "--node", "beta"], check=False)
    assert check.returncode == 0, check.stderr
    before = len(events("beta"))
    mark = old["alpha"].mark()
    start_on_box(new["beta"], old["beta"])
    old["alpha"].wait_log(r"Status update for node beta: status active", 10, since=mark)
    new["beta"].wait_log(r"node alpha runs Heartbeat", 10)
    for script in ("ip-request", "ip-request-resp", "hb_takeover", "ask_resources"):
        new["beta"].wait_log(r"rc\.d/%s: Heartbeat's own script" % re.escape(script), 5)
    assert "rc.d/status: Heartbeat" not in new["beta"].log()
    wait_until(lambda: [ln for ln in events("beta")[before:] if ln.startswith("alpha ")],
               10, lambda: "hb's rc.d/status on beta for alpha\n" + show())
    settle("hb joins Heartbeat")
    assert where() == ["alpha"]
    print("\ninterruption: start hb on the passive node: %d ms"
          % round(probe.outage(t, time.time()) * 1000))
    assert probe.outage(t, time.time()) < 0.2

    # -- the mixed pair: the admin's messages each way; the runbook's names on hb
    fifo_note("beta", "mixed-from-hb")
    fifo_note("alpha", "mixed-from-heartbeat")
    r = names(new["beta"], "cl_status", "rscstatus")      # as Heartbeat said there
    assert (r.returncode, r.stdout) == (0, as_heartbeat.stdout) == (0, "local\n"), r
    t = time.time()
    r = names(new["beta"], "hb_takeover")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
    moved("beta", t, "hb_takeover on the hb node")
    settle("hb_takeover")
    r = names(new["beta"], "cl_status", "rscstatus")
    print("\ncl_status rscstatus on beta, holding alpha's group: %r" % r.stdout)
    assert r.returncode == 0 and r.stdout in ("all\n", "foreign\n"), r
    t = time.time()
    r = names(new["beta"], "hb_standby")
    assert (r.returncode, r.stdout) == (0, "") and r.stderr.endswith(
        "Going standby [all].\n"), r
    moved("alpha", t, "hb_standby on the hb node")
    settle("hb_standby")
    # step 5 as the guide has it, on Heartbeat
    t = time.time()
    old["alpha"].hb_standby()
    moved("beta", t, "hb_standby on Heartbeat")
    settle("step 5")

    # -- step 6: alpha the same way; auto_failback brings the VIP back to it
    t = time.time()
    old["alpha"].stop()
    assert where() == ["beta"]
    new["alpha"] = hbnode(hosts["alpha"], "alpha", cf, res)
    migrate(old["alpha"], new["alpha"])
    start_on_box(new["alpha"], old["alpha"])
    moved("alpha", t, "upgrade the old active node (auto_failback)")
    new["alpha"].wait_log(r"rc\.d/ip-request-resp: Heartbeat's own script", 5)
    settle("both hb")

    # -- after: hb runs the same scripts
    fifo_note("alpha", "after")
    assert not old["alpha"].running()       # from here on, only hb runs on alpha
    dead = events("alpha").count("beta dead")      # + beta's orderly stop at step 4
    new["beta"].kill()
    wait_line(events, "alpha", "beta dead", dead + 1, what="hb's rc.d/status")
    time.sleep(1)
    assert where() == ["alpha"]
    probe.stop()
    total = probe.outage(t_start)
    print("\nlongest interruption over the whole migration: %d ms" % round(total * 1000))
    assert total < 2.0
    assert probe.duplicates() == 0
    seen = watch.stop()
    assert len([p for p in seen if p.holders]) > 1000
    both = holders.multi(seen, "holders")
    assert not both, "the VIP was held by both nodes %d times, first %s" % (len(both), both[0])


# -- HA_DONTASK -------------------------------------------------------------

AGENT = r"""#!/bin/sh
# envrec NAME {start|stop|status}: records the environment of each start
mkdir -p /var/log/agents
case "$2" in
  start) env | grep -E '^(HA_|OCF_)' | sort > /var/log/agents/$1.tmp &&
         mv /var/log/agents/$1.tmp /var/log/agents/$1.env
         touch /var/log/agents/$1.up ;;
  stop) rm -f /var/log/agents/$1.up ;;
  status) [ -e /var/log/agents/$1.status.env ] ||
          env | grep -E '^(HA_|OCF_)' | sort > /var/log/agents/$1.status.env
          if [ -e /var/log/agents/$1.up ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"""
GROUPS = "alpha envrec::own\nbeta envrec::peers\n"


def agent_env(logdir: str, name: str) -> dict[str, str] | None:
    path = os.path.join(logdir, "agents", name + ".env")
    if not os.path.exists(path):
        return None
    return dict(ln.partition("=")[::2] for ln in lines(path))


def started_alone(logdir: str, what: str, show) -> dict[str, str | None]:
    """HA_DONTASK of the first status probe and of the start, of each group."""
    want = ("own.status", "own", "peers.status", "peers")
    wait_until(lambda: all(agent_env(logdir, n) for n in want), 40,
               lambda: "%s to start both groups alone\n%s" % (what, show()))
    got = {n: (agent_env(logdir, n) or {}).get("HA_DONTASK") for n in want}
    print("\n%s alone: HA_DONTASK %s" % (what, got))
    return got


def test_starting_alone_gives_agents_ha_dontask(lab, heartbeat, hbnode):  # noqa: F811
    cf = hacf(["alpha", "beta"], keepalive="200ms", warntime="600ms", deadtime="1",
              initdead="3", auto_failback="on")
    box = host(lab, "alpha", "198.18.0.1/24")         # beta is never started
    ha = heartbeat(box, "alpha", cf, GROUPS, resource_scripts={"envrec": AGENT})
    ha.start()
    under_heartbeat = started_alone(os.path.join(ha.dir, "log"), "Heartbeat",
                                    lambda: ha.log()[-4000:])
    ha.stop()
    node = hbnode(box, "alpha", cf, GROUPS)
    os.makedirs(os.path.join(node.conf, "resource.d"), exist_ok=True)
    path = os.path.join(node.conf, "resource.d", "envrec")
    with open(path, "w") as f:
        f.write(AGENT)
    os.chmod(path, 0o755)
    node.start()
    under_hb = started_alone(os.path.join(node.dir, "log"), "hb",
                             lambda: node.log()[-4000:] + node.status())
    # Heartbeat's req_resource probes our own group with HA_DONTASK=yes (it does not
    # ask the dead peer) and starts it through its own ip-request-resp, without it;
    # mach_down takes the dead peer's group without it.
    assert under_hb == under_heartbeat == {
        "own.status": "yes", "own": None, "peers.status": None, "peers": None}
