"""rc.d hooks and Heartbeat's message fifo on a mixed pair: Heartbeat 3.0.6 on alpha,
hb on beta, the very same ha.cf, haresources and authkeys.

The same recording hook (it writes its $1 and `env | grep '^HA_|^OCF_' | sort` to a
file per event) is installed in both nodes' rc.d; the same events are driven on both
sides and the recorded environments compared, name by name and value by value, except
for the variables listed in EXEMPT, each with the reason it may differ.

Each node has a private /var/log (its records) and /var/lib/heartbeat (its fifo).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from lab.heartbeat import HbNode, hacf, hbnode, heartbeat, host  # noqa: F401
from lab.wait import wait_until

VIP = "198.18.0.100"
NAMES = ("alpha", "beta")            # alpha runs Heartbeat, beta runs hb
RECORD = r"""#!/bin/sh
# test hook: record the event, then run Heartbeat's own script if one was set aside
f=/var/log/hooks/$1.$(date +%s%N).$$
mkdir -p /var/log/hooks
{ echo "ARG=$1"; env | grep -E '^(HA_|OCF_)' | sort; } > $f.tmp && mv $f.tmp $f
[ -x "$0.orig" ] && exec "$0.orig" "$@"
exit 0
"""
AGENT = r"""#!/bin/sh
# test resource script: record the environment of each start
case "$1" in
  start) mkdir -p /var/log/agents
         f=/var/log/agents/start.$(date +%s%N).$$
         env | grep -E '^(HA_|OCF_)' | sort > $f.tmp && mv $f.tmp $f
         touch /var/log/agents/up ;;
  stop) rm -f /var/log/agents/up ;;
  status) if [ -e /var/log/agents/up ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"""
HOOKED = ("status", "admin_note", "hb_takeover")
# Variables that may differ between the two records of one event, and why:
EXEMPT = {
    "HA_src": "the sender: the peer's name on each side (checked apart)",
    "HA_CURHOST": "this node's name (checked apart)",
    "HA_ts": "the time the message was made",
    "HA_seq": "the sender's own message counter",
    "HA_hg": "the sender's generation (its first start's time)",
    "HA_ld": "the sender's load average",
    "HA_note": "the test's message text names its sender (checked apart)",
    "HA_DIR": "hb's configuration directory in this test is not /etc/ha.d (checked apart)",
    "HA_FUNCS": "follows HA_DIR (checked apart)",
    "HA_RCDIR": "follows HA_DIR (set by shellfuncs)",
    "HA_RESOURCEDIR": "follows HA_DIR (set by shellfuncs)",
    "HA_auth": "the signature: it covers seq, ts, hg and src",
}


def records(logdir: str, typ: str) -> list[dict[str, str]]:
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "hooks", typ + ".*")),
                       key=lambda p: int(p.split(".")[-2])):
        if path.endswith(".tmp"):
            continue
        env = {}
        for line in open(path).read().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        out.append(env)
    return out


def agent_env(logdir: str) -> dict[str, str]:
    path = sorted(glob.glob(os.path.join(logdir, "agents", "start.*")))[0]
    return dict(line.partition("=")[::2] for line in open(path).read().splitlines())


def install_hooks(rcdir: str, keep_heartbeats: bool) -> None:
    """The recorder as rc.d/status and rc.d/admin_note; Heartbeat's own status script,
    set aside as status.orig, still runs after it on the Heartbeat node."""
    for name in HOOKED:
        path = os.path.join(rcdir, name)
        if keep_heartbeats and os.path.exists(path):
            os.rename(path, path + ".orig")
        with open(path, "w") as f:
            f.write(RECORD)
        os.chmod(path, 0o755)


def start_hb(node: HbNode) -> HbNode:
    """HbNode.start with a private /var/lib/heartbeat too (the fifo's directory)."""
    lib = os.path.join(node.dir, "lib")
    os.makedirs(lib, exist_ok=True)
    node._err = open(node.errfile, "a")
    node.proc = node.host.popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /var/log && mount --bind "$1" /var/lib/heartbeat && '
         'shift && exec "$@"', os.path.join(node.dir, "log"), lib,
         "hb-supervise", "-c", node.conf, "-r", node.run, "-s", node.state,
         "--node", node.name],
        stdin=subprocess.DEVNULL, stdout=node._err, stderr=subprocess.STDOUT)
    return node


def hb_nsenter(node: HbNode, argv: list[str]) -> subprocess.CompletedProcess:
    assert node.proc is not None
    return subprocess.run(["nsenter", "-t", str(node.proc.pid), "-m", "-n", *argv],
                          text=True, capture_output=True, timeout=20, check=True)


CLUSTERMSG = ". /etc/ha.d/shellfuncs && ha_clustermsg <<!MSG\nt=admin_note\nnote=%s\n!MSG\n"


class Pair:
    def __init__(self, lab, heartbeat, hbnode) -> None:  # noqa: F811
        self.hosts = {"alpha": host(lab, "alpha", "198.18.0.1/24"),
                      "beta": host(lab, "beta", "198.18.0.2/24")}
        cf = hacf(NAMES, keepalive="200ms", warntime="600ms", deadtime="1", initdead="3",
                  auto_failback="on", extra="realtime off\n")
        hares = "alpha IPaddr2::%s/24/eth0 envrec\n" % VIP
        self.alpha = heartbeat(self.hosts["alpha"], "alpha", cf, hares,
                               resource_scripts={"envrec": AGENT})
        self.beta: HbNode = hbnode(self.hosts["beta"], "beta", cf, hares)
        install_hooks(os.path.join(self.alpha.dir, "ha.d", "rc.d"), keep_heartbeats=True)
        os.makedirs(os.path.join(self.beta.conf, "resource.d"), exist_ok=True)
        with open(os.path.join(self.beta.conf, "resource.d", "envrec"), "w") as f:
            f.write(AGENT)
        os.chmod(os.path.join(self.beta.conf, "resource.d", "envrec"), 0o755)
        rc = os.path.join(self.beta.conf, "rc.d")
        os.makedirs(rc, exist_ok=True)
        install_hooks(rc, keep_heartbeats=False)
        # Heartbeat's own ip-request-resp (it calls ResourceManager): hb must not run it
        shutil.copy("/etc/ha.d/rc.d/ip-request-resp", rc)
        # a migrated /etc/ha.d keeps Heartbeat's shellfuncs, which hooks get as in harc
        shutil.copy("/etc/ha.d/shellfuncs", self.beta.conf)
        self.alog = os.path.join(self.alpha.dir, "log")
        self.blog = os.path.join(self.beta.dir, "log")

    def show(self) -> str:
        return "--- Heartbeat alpha log:\n%s\n--- hb beta log:\n%s" % (
            self.alpha.log()[-4000:], self.beta.log()[-4000:])

    def wait_record(self, logdir: str, typ: str, pred, what: str) -> dict[str, str]:
        found: list[dict[str, str]] = []

        def look() -> bool:
            found[:] = [r for r in records(logdir, typ) if pred(r)]
            return bool(found)
        wait_until(look, 20, lambda: "%s\n%s" % (what, self.show()))
        return found[-1]

    def seen(self) -> None:
        wait_until(lambda: re.search(r"Status update for node beta: status active",
                                     self.alpha.log()), 20,
                   lambda: "Heartbeat to see beta active\n" + self.show())
        wait_until(lambda: re.search(r"^node alpha up .*kind=heartbeat", self.beta.status_text(),
                                     re.M), 15, lambda: "hb to see alpha\n" + self.show())


def compare(heartbeat_env: dict[str, str], hb_env: dict[str, str], what: str) -> None:
    names = set(heartbeat_env) | set(hb_env)
    missing = sorted(n for n in names if n not in hb_env)
    extra = sorted(n for n in names if n not in heartbeat_env)
    assert not missing and not extra, "%s: hb lacks %s, has more %s\nHeartbeat: %s\nhb: %s" % (
        what, missing, extra, heartbeat_env, hb_env)
    differ = {n: (heartbeat_env[n], hb_env[n]) for n in names
              if n not in EXEMPT and heartbeat_env[n] != hb_env[n]}
    assert not differ, "%s: (Heartbeat, hb) differ: %s" % (what, differ)


def test_hooks_run_with_heartbeats_environment(lab, heartbeat, hbnode):  # noqa: F811
    p = Pair(lab, heartbeat, hbnode)
    p.alpha.start()
    start_hb(p.beta)
    p.seen()

    # -- a message written into each node's fifo with shellfuncs' ha_clustermsg
    hb_nsenter(p.beta, ["sh", "-c", CLUSTERMSG % "from-beta"])
    a_got = p.wait_record(p.alog, "admin_note", lambda r: r.get("HA_note") == "from-beta",
                          "Heartbeat runs rc.d/admin_note for hb's fifo message")
    b_own = p.wait_record(p.blog, "admin_note", lambda r: r.get("HA_note") == "from-beta",
                          "hb delivers its own fifo message locally too")
    p.alpha.nsenter(["sh", "-c", CLUSTERMSG % "from-alpha"], check=True)
    b_got = p.wait_record(p.blog, "admin_note", lambda r: r.get("HA_note") == "from-alpha",
                          "hb runs rc.d/admin_note for Heartbeat's fifo message")
    a_own = p.wait_record(p.alog, "admin_note", lambda r: r.get("HA_note") == "from-alpha",
                          "Heartbeat delivers its own fifo message locally")
    assert (a_got["HA_src"], a_got["HA_CURHOST"]) == ("beta", "alpha")
    assert (b_got["HA_src"], b_got["HA_CURHOST"]) == ("alpha", "beta")
    assert (b_own["HA_src"], b_own["HA_CURHOST"]) == ("beta", "beta")
    assert b_got["ARG"] == "admin_note"
    assert b_got["HA_DIR"] == p.beta.conf + "/"
    assert b_got["HA_FUNCS"] == p.beta.conf + "//shellfuncs"
    assert a_got["HA_DIR"] == "/etc/ha.d/" and a_got["HA_FUNCS"] == "/etc/ha.d//shellfuncs"
    compare(a_got, b_got, "a peer's fifo message")
    compare(a_own, b_own, "our own fifo message")

    # -- hb_takeover: a peer's request reaches rc.d on both kinds of node
    p.alpha.hb_takeover("local")
    b_tk = p.wait_record(p.blog, "hb_takeover", lambda r: r.get("HA_src") == "alpha",
                         "hb runs rc.d/hb_takeover for Heartbeat's request")
    tries: list[str] = []

    def takeover() -> bool:             # refused while a transition is under way
        r = p.beta.switch("takeover", "foreign")
        tries.append(r.stdout + r.stderr)
        return r.returncode == 0
    wait_until(takeover, 60, lambda: "hb-switch takeover foreign: %s\n%s" % (tries[-3:],
                                                                             p.show()))
    a_tk = p.wait_record(p.alog, "hb_takeover", lambda r: r.get("HA_src") == "beta",
                         "Heartbeat runs rc.d/hb_takeover for hb's request")
    assert (a_tk["HA_rsc_hold"], b_tk["HA_rsc_hold"]) == ("foreign", "local")
    compare(dict(a_tk, HA_rsc_hold="-"), dict(b_tk, HA_rsc_hold="-"), "a peer's hb_takeover")

    # -- agents: Heartbeat's environment too (the group moved to beta above)
    wait_until(lambda: glob.glob(os.path.join(p.blog, "agents", "start.*")), 30,
               lambda: "hb to start envrec\n" + p.show())
    a_ag = agent_env(p.alog)
    b_ag = agent_env(p.blog)
    # Heartbeat started it from its ip-request-resp hook (harc's message fields are
    # inherited) or from req_our_resources (none): those are not the agents' own.
    situational = {"HA_t", "HA_src", "HA_seq", "HA_ts", "HA_hg", "HA_ld", "HA_ttl",
                   "HA_auth", "HA_dest", "HA_ipaddr", "HA_ok", "HA_weown", "HA_OSTATUS",
                   "HA_DONTASK", "HA_rsc_hold", "HA_info"}
    assert b_ag["HA_DIR"] == p.beta.conf and a_ag["HA_DIR"] == "/etc/ha.d"
    compare({k: v for k, v in a_ag.items() if k not in situational},
            {k: v for k, v in b_ag.items() if k not in situational}, "an agent's start")

    # -- hb does not run Heartbeat's own scripts (they would act a second time)
    assert re.search(r"rc\.d/ip-request-resp: Heartbeat's own script", p.beta.log()), p.show()

    # -- the peer dies: a status hook with st=dead on the survivor, each way round
    p.beta.kill()
    a_dead = p.wait_record(p.alog, "status", lambda r: r.get("HA_st") == "dead"
                           and r.get("HA_src") == "beta", "Heartbeat's status hook, beta dead")

    def alpha_active() -> int:
        return len([r for r in records(p.blog, "status") if r.get("HA_src") == "alpha"
                    and r.get("HA_st") == "active"])

    assert alpha_active() == 1          # a status event only on a change
    mark = p.alpha.mark()
    start_hb(p.beta)
    p.alpha.wait_log(r"Status update for node beta: status active", 20, since=mark)
    wait_until(lambda: alpha_active() == 2, 20,
               lambda: "the restarted hb's status hook for alpha\n" + p.show())
    p.alpha.kill()
    b_dead = p.wait_record(p.blog, "status", lambda r: r.get("HA_st") == "dead"
                           and r.get("HA_src") == "alpha", "hb's status hook, alpha dead")
    assert a_dead["HA_OSTATUS"] == "active" and a_dead["ARG"] == "status"
    compare(a_dead, b_dead, "the peer's death")
    p.beta.stop()
