"""hb_standby, hb_takeover and cl_status under Heartbeat's names, against the real thing.

A mixed pair: Debian's Heartbeat 3.0.6 on alpha, hb on beta, byte-identical ha.cf,
haresources and authkeys, plus a ping node (the client).  Every cl_status query runs
as Heartbeat's /usr/bin/cl_status on alpha and as hb's `cl_status` (bin/cl_status,
what the package installs in its place) on beta, about the same cluster: stdout,
stderr and exit code must be the same once the facts that differ are mirrored (which
node is local, and the time, host and pid in cl_log's error lines).  hb's names on
the Heartbeat node delegate to Heartbeat's own programs; on the hb node, hb_standby
and hb_takeover move the VIP.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from lab.heartbeat import (HeartbeatNode, HbNode, hacf, hbnode, heartbeat,  # noqa: F401
                           host)
from lab.wait import steady, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPAT = os.path.join(ROOT, "bin")
VIP = "198.18.0.100"          # alpha's group
VIP2 = "198.18.0.101"         # beta's group
PING = "198.18.0.10"
# cl_log's stderr lines: "Dec 03 06:28:45 HOST cl_status: [PID]: ERROR: ..."
LOGLINE = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ cl_status: \[\d+\]: ",
                     re.M)


class Pair:
    def __init__(self, lab, heartbeat, hbnode, auto_failback: str = "on",  # noqa: F811
                 haresources: str = "alpha IPaddr2::%s/24/eth0\nbeta IPaddr2::%s/24/eth0\n"
                 % (VIP, VIP2)) -> None:
        self.hosts = {"alpha": host(lab, "alpha", "198.18.0.1/24"),
                      "beta": host(lab, "beta", "198.18.0.2/24")}
        self.client = host(lab, "client", PING + "/24")
        cf = hacf(("alpha", "beta"), keepalive="200ms", warntime="600ms", deadtime="1",
                  initdead="3", auto_failback=auto_failback,
                  extra="realtime off\nping %s\n" % PING)
        self.alpha: HeartbeatNode = heartbeat(self.hosts["alpha"], "alpha", cf, haresources)
        self.beta: HbNode = hbnode(self.hosts["beta"], "beta", cf, haresources)

    def where(self, vip: str = VIP) -> list[str]:
        return [n for n in ("alpha", "beta") if self.hosts[n].has_addr(vip)]

    def wait_vip(self, on: str, vip: str = VIP, timeout: float = 20, what: str = "") -> float:
        return wait_until(lambda: self.where(vip) == [on], timeout,
                          lambda: "%s only on %s (%s): on %s\n%s" % (
                              vip, on, what, self.where(vip), self.show()))

    def show(self) -> str:
        return "--- alpha:\n%s\n--- beta:\n%s\n--- beta status:\n%s" % (
            self.alpha.log()[-3000:], self.beta.log()[-3000:], self.beta.status_text())

    def hb(self, name: str, *args: str) -> subprocess.CompletedProcess:
        """hb's NAME on beta (the hb node), as installed: RUNDIR and CONFDIR of the node."""
        env = dict(os.environ, HB_RUNDIR=self.beta.run, HB_CONFDIR=self.beta.conf)
        return subprocess.run(self.hosts["beta"].argv([os.path.join(COMPAT, name), *args]),
                              capture_output=True, text=True, timeout=30, env=env)

    def heartbeat_cl(self, *args: str) -> subprocess.CompletedProcess:
        return self.alpha.nsenter(["/usr/bin/cl_status", *args])

    def stable(self) -> None:
        def settled() -> bool:
            a, b = self.heartbeat_cl("rscstatus"), self.hb("cl_status", "rscstatus")
            return a.returncode == b.returncode == 0 and "transition\n" not in (
                a.stdout, b.stdout)
        wait_until(settled, 25, lambda: "both stable\n" + self.show())
        steady(settled, 0.5, lambda: "stable for 0.5 s\n" + self.show())


def running(lab, heartbeat, hbnode, **kw) -> Pair:  # noqa: F811
    p = Pair(lab, heartbeat, hbnode, **kw)
    p.alpha.start()
    p.wait_vip("alpha", what="Heartbeat alone")
    p.wait_vip("alpha", VIP2, what="Heartbeat alone")
    p.beta.start()
    p.alpha.wait_log(r"Status update for node beta: status active", 20)
    wait_until(lambda: re.search(r"^node alpha up .*kind=heartbeat", p.beta.status_text(), re.M),
               15, lambda: "hb to see alpha\n" + p.show())
    wait_until(lambda: re.search(r"^ping %s up" % re.escape(PING), p.beta.status_text(), re.M)
               and p.heartbeat_cl("nodestatus", PING).stdout == "ping\n", 15,
               lambda: "both to see the ping node\n" + p.show())
    p.stable()
    if kw.get("auto_failback", "on") == "on":
        p.wait_vip("beta", VIP2, what="auto_failback to hb")
        p.stable()
    return p


def mirror(text: str) -> str:
    """alpha's answer as beta would give it: the two node names swapped."""
    return text.replace("alpha", "\0").replace("beta", "alpha").replace("\0", "beta")


def plain(err: str) -> str:
    return LOGLINE.sub("LOG: ", err)


QUERIES = [
    ["hbstatus"], ["hbstatus", "-m"], ["hbstatus", "-v"], ["hbstatus", "-v", "-m"],
    ["listnodes", "-v"],
    ["hbstatus", "-x"], ["listnodes"], ["listnodes", "-p"],
    ["listnodes", "-n"], ["listnodes", "-n", "-p"], ["listnodes", "-m"],
    ["nodestatus", "{peer}"], ["nodestatus", "{me}"], ["nodestatus", PING],
    ["nodestatus", "nosuch"], ["nodestatus"], ["nodestatus", "-m", "{peer}"],
    ["nodestatus", "-x", "{peer}"],
    ["nodetype", "{peer}"], ["nodetype", PING], ["nodetype", "nosuch"], ["nodetype"],
    ["nodeweight", "{peer}"], ["nodeweight", "nosuch"], ["nodesite", "{peer}"],
    ["nodesite", "nosuch"],
    ["listhblinks", "{peer}"], ["listhblinks", "{me}"], ["listhblinks", PING],
    ["listhblinks", "-v", "{peer}"], ["listhblinks", "nosuch"], ["listhblinks"],
    ["hblinkstatus", "{peer}", "eth0"], ["hblinkstatus", "{peer}", "eth9"],
    ["hblinkstatus", PING, PING], ["hblinkstatus", PING, "ping"], ["hblinkstatus", "{peer}"],
    ["clientstatus", "{peer}", "ipfail"], ["clientstatus", "{peer}", "ipfail", "100"],
    ["rscstatus"], ["rscstatus", "-m"],
    ["hbparameter", "-p", "deadtime"], ["hbparameter", "-p", "keepalive"],
    ["hbparameter", "-p", "warntime"], ["hbparameter", "-p", "auto_failback"],
    ["hbparameter", "-p", "udpport"], ["hbparameter", "-p", "initdead"],
    ["hbparameter", "-p", "deadping"], ["hbparameter", "-p", "hbversion"],
    ["hbparameter", "-p", "cluster"], ["hbparameter", "-p", "debug"],
    *[["hbparameter", "-p", name] for name in (
        "use_logd", "logfile", "debugfile", "logfacility", "baud", "realtime", "msgfmt",
        "pacemaker", "crm", "hopfudge", "memreserve", "compression", "hbgenmethod",
        "autojoin", "uuidfrom", "conn_logd_time", "max_rexmit_delay", "watchdog",
        "apiauth", "bcast", "ping", "nice_failback")],
    ["hbparameter", "-p", "node"], ["hbparameter", "-p", "nosuch"], ["hbparameter"],
    ["hbparameter", "-p"], ["hbparameter", "-m", "-p", "deadtime"],
    ["bogus"], ["-h"], [],
]


def test_every_cl_status_query_as_heartbeat_answers(lab, heartbeat, hbnode):  # noqa: F811
    p = running(lab, heartbeat, hbnode)
    diffs = []
    for q in QUERIES:
        ra = p.heartbeat_cl(*[w.format(peer="beta", me="alpha") for w in q])
        rb = p.hb("cl_status", *[w.format(peer="alpha", me="beta") for w in q])
        # the node list is the cluster's, the same on both; the rest is relative to
        # the local node
        same = q[:1] == ["listnodes"] or q[:2] == ["hbstatus", "-v"]
        want = (ra.returncode, ra.stdout if same else mirror(ra.stdout),
                plain(mirror(ra.stderr)))
        got = (rb.returncode, rb.stdout, plain(rb.stderr))
        print("\n%s: heartbeat %r\n%s  hb        %r" % (" ".join(q), want, " " * len(
            " ".join(q)), got))
        if got != want:
            diffs.append((q, want, got))
    assert not diffs, "\n".join("%s:\n  heartbeat %r\n  hb        %r" % d for d in diffs)


def test_on_the_heartbeat_node_the_names_are_heartbeats_own(lab, heartbeat, hbnode):  # noqa: F811
    """While Heartbeat runs on a node (hb installed but not running there), hb's three
    names hand over to Heartbeat's programs: cl_status gives Heartbeat's answers, and
    hb_standby / hb_takeover move the groups through Heartbeat itself."""
    p = running(lab, heartbeat, hbnode, auto_failback="off")

    def ours(name: str, *args: str) -> subprocess.CompletedProcess:
        return p.alpha.nsenter([os.path.join(COMPAT, name), *args])

    for q in (["hbstatus"], ["listnodes"], ["nodestatus", "beta"], ["rscstatus"],
              ["hbparameter", "-p", "hbversion"], ["nodestatus", "nosuch"]):
        ra, rb = p.heartbeat_cl(*q), ours("cl_status", *q)
        assert (rb.returncode, rb.stdout, plain(rb.stderr)) == (
            ra.returncode, ra.stdout, plain(ra.stderr)), q
    r = ours("hb_standby", "failback")         # Heartbeat's: failback = foreign
    assert (r.returncode, r.stdout) == (0, ""), r
    assert re.fullmatch(r"\w{3} [ 0-9]\d \d\d:\d\d:\d\d Going standby \[foreign\]\.\n",
                        r.stderr), r
    try:
        p.wait_vip("beta", VIP2, what="hb_standby failback on Heartbeat")
    except AssertionError:
        # Heartbeat 3.0.6 under load can lose the request inside itself (it logged
        # "msg2string: Message with zero fields" and nothing reached hb): asked once
        # more, as an admin would.  Anything else fails.
        if "Message with zero fields" not in p.alpha.log():
            raise
        assert ours("hb_standby", "failback").returncode == 0
        p.wait_vip("beta", VIP2, what="hb_standby failback on Heartbeat, asked again")
    assert p.where(VIP) == ["alpha"]
    p.stable()
    r = ours("hb_takeover", "failback")        # the peer gives up all
    assert r.returncode == 0, r
    p.wait_vip("alpha", VIP2, what="hb_takeover failback on Heartbeat")
    assert p.where(VIP) == ["alpha"]
    r = ours("hb_standby", "sideways")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "%s: wrong resources(sideways).\nusage:\n" % os.path.join(COMPAT, "hb_standby"),
        "%s [all|foreign|local|failback]\n" % os.path.join(COMPAT, "hb_standby")), r


def test_hb_standby_and_hb_takeover_move_the_vip_on_the_hb_node(
        lab, heartbeat, hbnode):  # noqa: F811
    """On the hb node, under Heartbeat's names and arguments, as a runbook calls them:
    each returns at once (as Heartbeat's do) and the groups move as Heartbeat would
    move them, the peer being Heartbeat."""
    p = running(lab, heartbeat, hbnode, auto_failback="off")
    steps = [
        (["hb_takeover"], {VIP: "beta", VIP2: "beta"}),             # all
        (["hb_standby", "failback"], {VIP: "alpha", VIP2: "beta"}),  # = foreign
        (["hb_standby", "local"], {VIP: "alpha", VIP2: "alpha"}),
        (["hb_takeover", "local"], {VIP: "alpha", VIP2: "beta"}),
        (["hb_takeover", "failback"], {VIP: "beta", VIP2: "beta"}),  # peer gives up all
        (["hb_standby"], {VIP: "alpha", VIP2: "alpha"}),             # all
        (["hb_takeover", "foreign"], {VIP: "beta", VIP2: "alpha"}),
    ]
    for argv, want in steps:
        t0 = time.monotonic()
        r = p.hb(*argv)
        assert (r.returncode, r.stdout) == (0, ""), (argv, r)
        said = "" if argv[0] == "hb_takeover" else "Going standby [%s].\n" % (
            "all" if argv[1:] == [] else "foreign" if argv[1] == "failback" else argv[1])
        assert r.stderr[16:] == said and (said or not r.stderr), (argv, r)
        assert time.monotonic() - t0 < 5, argv
        for vip, node in want.items():
            took = p.wait_vip(node, vip, what=" ".join(argv))
            print("\n%s: %s on %s after %.2f s" % (" ".join(argv), vip, node, took))
        p.stable()
        assert {vip: p.where(vip) for vip in want} == {v: [n] for v, n in want.items()}, argv


@pytest.mark.parametrize("victim", ["alpha", "beta"])
def test_rscstatus_after_the_peer_died_is_all(lab, heartbeat, hbnode, victim):  # noqa: F811
    """kill -9 of one node: the survivor's cl_status rscstatus says `all`, Heartbeat's
    on alpha as hb's on beta; and nodestatus says the victim is dead."""
    p = running(lab, heartbeat, hbnode)
    (p.alpha if victim == "alpha" else p.beta).kill()
    for vip in (VIP, VIP2):              # the box is gone, and its addresses with it
        p.hosts[victim].run(["ip", "addr", "del", vip + "/24", "dev", "eth0"], check=False)
    survivor = "beta" if victim == "alpha" else "alpha"
    p.wait_vip(survivor, VIP, what="takeover after kill -9")
    p.wait_vip(survivor, VIP2, what="takeover after kill -9")

    def ask(*q: str) -> subprocess.CompletedProcess:
        return p.hb("cl_status", *q) if survivor == "beta" else p.heartbeat_cl(*q)

    wait_until(lambda: ask("rscstatus").stdout != "transition\n", 20,
               lambda: "the survivor to settle\n" + p.show())
    r = ask("rscstatus")
    assert (r.returncode, r.stdout) == (0, "all\n"), (r, p.show())
    r = ask("nodestatus", victim)
    assert (r.returncode, r.stdout) == (1, "dead\n"), r
    r = ask("hblinkstatus", victim, "eth0")
    assert (r.returncode, r.stdout) == (1, "dead\n"), r


def test_heartbeats_rc_d_reaches_its_hb_standby_through_hbs_name(
        lab, heartbeat, hbnode):  # noqa: F811
    """With hb's package beside Heartbeat's, /usr/share/heartbeat/hb_standby is hb's and
    Heartbeat's own is hb_standby.heartbeat (the diversion, made here in the Heartbeat
    node's mount namespace).  Heartbeat's rc.d/hb_takeover, run when the hb node asks
    for a takeover, calls /usr/share/heartbeat/hb_standby: hb's name hands over to
    Heartbeat's script, and the groups move."""
    p = running(lab, heartbeat, hbnode, auto_failback="off")
    share = os.path.join(lab.tmp, "share-heartbeat")
    shutil.copytree("/usr/share/heartbeat", share, symlinks=True)
    for name in ("hb_standby", "hb_takeover"):
        os.rename(os.path.join(share, name), os.path.join(share, name + ".heartbeat"))
        os.symlink(os.path.join(COMPAT, name), os.path.join(share, name))
    r = p.alpha.nsenter(["mount", "--bind", share, "/usr/share/heartbeat"])
    assert r.returncode == 0, r
    r = p.alpha.nsenter(["readlink", "/usr/share/heartbeat/hb_standby"])
    assert r.stdout.strip() == os.path.join(COMPAT, "hb_standby")
    mark = p.alpha.mark()
    r = p.hb("hb_takeover")                       # on beta: take all
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
    p.wait_vip("beta", VIP, what="hb_takeover on hb, through Heartbeat's rc.d")
    p.wait_vip("beta", VIP2, what="hb_takeover on hb, through Heartbeat's rc.d")
    p.alpha.wait_log(r"Going standby \[all\]", 10, since=mark)
    p.stable()
    r = p.alpha.nsenter(["/usr/share/heartbeat/hb_takeover", "local"])    # hb's name
    assert r.returncode == 0, r
    p.wait_vip("alpha", VIP, what="hb_takeover local on Heartbeat, by hb's name")
    assert p.where(VIP2) == ["beta"]
