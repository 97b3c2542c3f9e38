"""The migration of hb(7) and docs/migration.md, step by step, on a serving pair.

A Heartbeat 3.0.6 pair (alpha active, beta passive) serves a VIP to a client that
probes it every 10 ms.  Then, as the guide says (hb is already installed here: the
package's own step 1 is tests/pkg/test_package.py's): copy the three files from
alpha; `hb-supervise --check`; stop Heartbeat on beta, hand its generation to hb and
start hb; `hb_standby` on alpha; the same on alpha with the same files.  With
auto_failback on, the VIP comes back to alpha.  The client must be served
throughout except for the switch-overs, and at every step the VIP is on one node.
"""

from __future__ import annotations

import os
import shutil
import time

from lab import probe as holders
from lab.heartbeat import hacf, hbnode, heartbeat, host  # noqa: F401
from lab.probe import Ping
from lab.wait import steady, wait_until

VIP = "198.18.0.100"


def take_generation(heartbeat_node, hb_node) -> None:
    """Step 4's `cp /var/lib/heartbeat/hb_generation /var/lib/hb/generation`."""
    shutil.copy(os.path.join(heartbeat_node.dir, "lib", "hb_generation"),
                os.path.join(hb_node.state, "generation"))


def test_migrate_a_serving_heartbeat_pair_to_hb(lab, heartbeat, hbnode):  # noqa: F811
    hosts = {"alpha": host(lab, "alpha", "198.18.0.1/24"),
             "beta": host(lab, "beta", "198.18.0.2/24")}
    client = host(lab, "client", "198.18.0.10/24")
    cf = hacf(["alpha", "beta"], keepalive="200ms", warntime="600ms", deadtime="1",
              initdead="3", auto_failback="on")
    res = "alpha IPaddr2::%s/24/eth0\n" % VIP
    hb_alpha = heartbeat(hosts["alpha"], "alpha", cf, res)
    hb_beta = heartbeat(hosts["beta"], "beta", cf, res)

    def where() -> list[str]:
        return [n for n, h in hosts.items() if h.has_addr(VIP)]

    def show() -> str:
        return "VIP on %s\n" % where() + "\n".join(
            "--- %s:\n%s" % (n.name, n.log()[-3000:]) for n in nodes)

    def step(case: str, t0: float) -> None:
        marks[case] = (t0, time.time())
        print("\ninterruption: migration: %s: %d ms"
              % (case, round(probe.outage(t0, time.time()) * 1000)))

    nodes: list = [hb_alpha, hb_beta]
    hb_alpha.start()
    wait_until(lambda: where() == ["alpha"], 10, "the VIP on alpha")
    hb_beta.start()
    hb_beta.wait_log(r"(Local|remote) [Rr]esource (acquisition|transition) completed", 20)
    for name, h in hosts.items():          # who holds the VIP, every 10 ms
        holders.responder(h, VIP, name)
    watch = holders.Prober(client, VIP, duration=110, tag="hold")
    probe = Ping(client, VIP, duration=120)
    wait_until(lambda: probe.replies(), 5, "the client to reach the VIP")
    t_start = time.time()
    marks = {}

    # 2. copy the three files from alpha, unchanged; 3. check them
    conf = os.path.join(lab.tmp, "beta-etc-ha.d")
    os.makedirs(conf)
    for name in ("ha.cf", "haresources", "authkeys"):
        shutil.copy2(os.path.join(hb_alpha.dir, "ha.d", name), os.path.join(conf, name))
    check = hosts["beta"].run(["hb-supervise", "--check", "-c", conf, "--node", "beta"],
                              check=False)         # on beta: its interfaces are checked
    assert check.returncode == 0, check.stderr
    assert "auto_failback on" in check.stdout

    # 4. on beta (passive), stop Heartbeat: nothing moves; then start hb with those
    # files and Heartbeat's generation
    t = time.time()
    hb_beta.stop()
    hb_alpha.wait_log(r"Received shutdown notice from 'beta'", 5)
    assert where() == ["alpha"]
    step("stop Heartbeat on the passive node", t)
    with open(os.path.join(conf, "ha.cf")) as f:
        cf_copy = f.read()
    with open(os.path.join(conf, "haresources")) as f:
        res_copy = f.read()
    with open(os.path.join(conf, "authkeys")) as f:
        keys_copy = f.read()
    t = time.time()
    new_beta = hbnode(hosts["beta"], "beta", cf_copy, res_copy, authkeys=keys_copy)
    take_generation(hb_beta, new_beta)
    nodes.append(new_beta)
    new_beta.start()
    hb_alpha.wait_log(r"Status update for node beta: status active", 10)
    new_beta.wait_log(r"node alpha runs Heartbeat", 10)
    wait_until(lambda: hb_alpha.cl_status("rscstatus").stdout.strip() in ("local", "all"),
               20, lambda: "Heartbeat on alpha to settle\n" + show())
    assert where() == ["alpha"]
    step("start hb on the passive node", t)

    # 5. hb_standby on alpha: the VIP moves to hb
    t = time.time()
    hb_alpha.hb_standby()
    wait_until(lambda: where() == ["beta"], 10, lambda: "the VIP on beta\n" + show())
    t1 = time.time()
    wait_until(lambda: probe.replied_since(t1), 5, "the client served by beta")
    step("hb_standby on Heartbeat", t)

    # 6. alpha as beta: stop Heartbeat (it holds nothing), start hb with the same files
    time.sleep(1)
    t = time.time()
    hb_alpha.stop()
    assert where() == ["beta"]
    new_alpha = hbnode(hosts["alpha"], "alpha", cf_copy, res_copy, authkeys=keys_copy)
    take_generation(hb_alpha, new_alpha)
    nodes.append(new_alpha)
    new_alpha.start()
    wait_until(lambda: where() == ["alpha"], 15, lambda: "auto_failback to alpha\n" + show())
    t1 = time.time()
    wait_until(lambda: probe.replied_since(t1), 5, "the client served by alpha")
    step("upgrade the old active node (auto_failback)", t)
    steady(lambda: where() == ["alpha"], 1, show)
    assert new_alpha.switch("cl_status", "nodestatus", "beta").stdout.strip() == "active"
    probe.stop()

    for case, (t0, t1) in marks.items():
        out = probe.outage(t0, t1)
        assert out < (0.2 if "passive" in case else 2.0), (case, out)
    total = probe.outage(t_start)
    print("\nlongest interruption over the whole migration: %d ms" % round(total * 1000))
    assert total < 2.0
    assert probe.duplicates() == 0
    seen = watch.stop()
    assert len([p for p in seen if p.holders]) > 100
    both = holders.multi(seen, "holders")
    assert not both, "the VIP was held by both nodes %d times, first %s" % (len(both), both[0])
