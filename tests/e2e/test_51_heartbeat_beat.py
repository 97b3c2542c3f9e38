"""hb-beat and a real Heartbeat 3.0.6 node hear each other (issue 3, interop).

alpha runs Debian's heartbeat in its own network, mount and UTS namespaces;
beta runs hb-beat alone, advertising `st=active` through RUNDIR/state as
hb-watch would.  hb-beat must print Heartbeat's status messages, and
Heartbeat's log must show beta as active, never dead, with no authentication,
replay or bad-node complaints.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest

from hb import lines
from lab.heartbeat import hacf, heartbeat, host  # noqa: F401

COMPLAINTS = re.compile(r"authentication|authtoken|replay|bad node|[Ii]rretrievably|"
                        r"node beta: is dead|"
                        r"Cluster node beta returning after partition")


class BeatNode:
    """hb-beat with its own CONFDIR/RUNDIR/STATEDIR; its stdout collected as dicts."""

    def __init__(self, lab, h, name: str, cf: str, authkeys: str) -> None:
        self.h, self.name = h, name
        base = os.path.join(lab.tmp, "hb-" + name)
        self.conf, self.run, self.state = (os.path.join(base, d) for d in "crs")
        for d in (self.conf, self.run, self.state):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(self.conf, "ha.cf"), "w") as f:   # hb-beat logs to stderr
            f.write(re.sub(r"(?m)^(logfile|debugfile) .*\n", "", cf))
        open(os.path.join(self.conf, "haresources"), "w").close()
        ak = os.path.join(self.conf, "authkeys")
        with open(ak, "w") as f:
            f.write(authkeys)
        os.chmod(ak, 0o600)
        self.errfile = os.path.join(base, "stderr")
        self.lines: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def advertise(self, **fields: str) -> None:
        """Write RUNDIR/state as hb-watch does (temp file + rename)."""
        tmp = os.path.join(self.run, "state.tmp")
        with open(tmp, "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in fields.items()))
        os.rename(tmp, os.path.join(self.run, "state"))

    def start(self) -> "BeatNode":
        self.err = open(self.errfile, "w")
        self.p = self.h.popen(["hb-beat", "-c", self.conf, "-r", self.run, "-s", self.state,
                               "--node", self.name], stdout=subprocess.PIPE, stderr=self.err)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for raw in self.p.stdout:
            d = lines.parse_line(raw.decode("utf-8", "replace"))
            if lines.heard_slots(d) is not None:
                continue                # RUNDIR/heard offered: no message
            with self.lock:
                self.lines.append(d)

    def heard(self, **kw: str) -> list[dict[str, str]]:
        with self.lock:
            return [d for d in self.lines if all(d.get(k) == v for k, v in kw.items())]

    def stderr(self) -> str:
        with open(self.errfile) as f:
            return f.read()


def wait(pred, timeout: float, what: str, show) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s\n%s" % (what, show()))
        time.sleep(0.05)


AUTH = {
    "sha1": "auth 1\n1 sha1 s3cr3tKey\n",
    "md5": "auth 2\n2 md5 An0therKey\n",
    "crc": "auth 3\n3 crc\n",
}


def media(lab, kind: str) -> tuple[list[str], list[str], str, str]:
    """ha.cf media lines for alpha and beta, Heartbeat's link name, hb-beat's _via."""
    if kind == "bcast":
        return ["bcast eth0"], ["bcast eth0"], "eth0", "eth0"
    if kind == "ucast":            # the same two lines on both, as Heartbeat allows
        both = ["ucast eth0 198.18.0.1", "ucast eth0 198.18.0.2"]
        return both, both, "eth0", "eth0"
    ta, tb = lab.serial_pair()
    return (["baud 19200", "serial %s" % ta], ["baud 19200", "serial %s" % tb], ta,
            os.path.basename(tb))


@pytest.mark.parametrize("method,kind", [("sha1", "bcast"), ("md5", "ucast"),
                                         ("crc", "serial")])
def test_hb_beat_and_heartbeat_hear_each_other(lab, heartbeat, method, kind):  # noqa: F811
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    ma, mb, link, via = media(lab, kind)
    timing = dict(keepalive="200ms", warntime="600ms", deadtime="1", initdead="3",
                  extra="realtime off\n")
    alpha = heartbeat(a, "alpha", hacf(["alpha", "beta"], ma, **timing), "",
                      authkeys=AUTH[method])
    beta = BeatNode(lab, b, "beta", hacf(["alpha", "beta"], mb, **timing), AUTH[method])
    beta.advertise(st="active", hbv="1")
    beta.start()
    alpha.start()

    def show() -> str:
        return "hb-beat lines: %r\nhb-beat stderr: %s\nheartbeat log:\n%s" % (
            beta.lines[-8:], beta.stderr()[-2000:], alpha.log()[-5000:])

    # hb-beat prints Heartbeat's status heartbeats, including `active` ones
    wait(lambda: beta.heard(t="status", src="alpha", st="active"), 10,
         "hb-beat to print alpha's active status", show)
    first = beta.heard(t="status", src="alpha")[0]
    assert first["_via"] == via and "_self" not in first and float(first["_rt"]) > 0
    assert {"seq", "hg", "ts", "dt"} <= set(first)
    # Heartbeat sees beta up, then active, and the link up
    alpha.wait_log(r"Status update for node beta: status active", 10)
    alpha.wait_log(r"Link beta:%s up" % re.escape(link), 1)
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "active"
    assert alpha.cl_status("hblinkstatus", "beta", link).stdout.strip() == "up"
    # and keeps hearing it: 3 s at keepalive 200 ms, deadtime 1 s
    n0 = len(beta.heard(t="status", src="alpha"))
    time.sleep(3)
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "active"
    got = len(beta.heard(t="status", src="alpha")) - n0
    assert got >= 5, got        # ~15 (each printed once: seqs below); bench/beat has rates
    bad = COMPLAINTS.findall(alpha.log())
    assert not bad, show()
    # hb-beat sent on time (Heartbeat may still log a late one while it is busy
    # starting: it measures the interval when its master process reads the packet)
    own = [float(d["_rt"]) for d in beta.lines if d.get("_via") == "local"]
    assert max(y - x for x, y in zip(own, own[1:])) < 1.0, show()      # < deadtime
    seqs = [int(d["seq"], 16) for d in beta.heard(t="status", src="alpha")]
    assert len(seqs) == len(set(seqs)), "a Heartbeat message printed twice"

    # a message sent through beat.fifo reaches Heartbeat's protocol engine
    mark = alpha.mark()
    with open(os.path.join(beta.run, "beat.fifo"), "w") as f:
        f.write("t=ask_resources rsc_hold=all info=me\n")
    alpha.wait_log(r"standby message \[me\] from beta|beta wants to go standby", 5, since=mark)

    # Heartbeat sees beta die when hb-beat stops
    lab.stop(beta.p)
    alpha.wait_log(r"node beta: is dead", 5)

    # hb-beat advertised no `protocol`: Heartbeat turns its flow control off
    assert "flow control disabled due to different version heartbeat" in alpha.log()


def test_wrong_key_is_refused_both_ways(lab, heartbeat):  # noqa: F811
    """The control: with different keys neither side accepts the other."""
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    cf = hacf(["alpha", "beta"], initdead="2", extra="realtime off\n")
    alpha = heartbeat(a, "alpha", cf, "", authkeys="auth 1\n1 sha1 s3cr3tKey\n")
    beta = BeatNode(lab, b, "beta", cf, "auth 1\n1 sha1 wrongKey\n")
    beta.advertise(st="active", hbv="1")
    beta.start()
    alpha.start()
    alpha.wait_log(r"node beta: is dead", 6)
    alpha.wait_log(r"authtoken does not match|failed authentication|authentication failed", 2)
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "dead"
    assert not beta.heard(src="alpha")
    lab.stop(beta.p)
    assert re.search(r"auth=[1-9]", beta.stderr()), beta.stderr()


@pytest.mark.parametrize("drop", ["wire", "firewall"])
def test_lost_packets_are_retransmitted_both_ways(lab, heartbeat, drop):  # noqa: F811
    """15 % of the UDP heartbeats dropped each way, by nftables: `wire` on input in
    both namespaces (the sender sees nothing, as with a lossy cable); `firewall` on
    beta's output too, where sendto() itself fails (EPERM) for the dropped ones.
    Heartbeat asks hb-beat for what it missed with NS_rexmit and gets it, and
    hb-beat asks Heartbeat; beta is never taken for dead; in the end each has every
    message of the other."""
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    cf = hacf(["alpha", "beta"], keepalive="100ms", warntime="600ms", deadtime="2",
              initdead="3", extra="realtime off\n")
    alpha = heartbeat(a, "alpha", cf, "")
    beta = BeatNode(lab, b, "beta", cf, AUTH["sha1"])
    beta.advertise(st="active", hbv="1")
    beta.start()
    alpha.start()
    alpha.wait_log(r"Status update for node beta: status active", 10)
    wait(lambda: beta.heard(t="status", src="alpha", st="active"), 5, "alpha active",
         lambda: alpha.log())
    hooks = {a: ["input"], b: ["input"]} if drop == "wire" else {b: ["input", "output"]}
    for h, names in hooks.items():
        h.run(["nft", "add", "table", "inet", "loss"])
        for hook in names:
            h.run(["nft", "add", "chain", "inet", "loss", hook,
                   "{ type filter hook %s priority 0; }" % hook])
            h.run(["nft", "add", "rule", "inet", "loss", hook, "udp", "dport", "694",
                   "numgen", "random", "mod", "20", "<", "3", "counter", "drop"])
    time.sleep(6)
    counters = "".join(h.run(["nft", "list", "table", "inet", "loss"]).stdout for h in hooks)
    for h in hooks:
        h.run(["nft", "delete", "table", "inet", "loss"])
    time.sleep(2)
    dropped = [int(n) for n in re.findall(r"counter packets (\d+)", counters)]
    assert len(dropped) == 2 and min(dropped) >= 2, counters

    log = alpha.log()
    assert re.search(r"lost packet\(s\) for \[beta\]", log), log[-3000:]
    assert "No pkts missing from beta!" in log, log[-4000:]
    assert "Irretrievably" not in log and "node beta: is dead" not in log, log[-3000:]
    lab.stop(beta.p)                # every line printed, a retransmission late or not
    beta.reader.join(5)
    seqs = [int(d["seq"], 16) for d in beta.heard(src="alpha") if "seq" in d]
    assert len(seqs) == len(set(seqs)), "a message printed twice"
    missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs))
    m = re.findall(r"rexmit_asked=(\d+) rexmit_sent=(\d+)", beta.stderr())
    assert m and int(m[-1][0]) > 0 and int(m[-1][1]) > 0, beta.stderr()
    # a status recovered after a newer one is not printed (stale: not a heartbeat)
    c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", [
        ln for ln in beta.stderr().splitlines() if "counters:" in ln][-1])}
    assert len(missing) <= c["stale"] and c["lost"] == 0, \
        "alpha's seq %s never recovered\n%s\n%s" % (
            ["%x" % m for m in missing], beta.stderr()[-3000:], log[-3000:])


def test_status_init_up_active_and_startup_dt_both_ways(lab, heartbeat):  # noqa: F811
    """Row 16: both start with st=init, then up, then active, and advertise
    deadtime + 2000 ms for their first 5 s; each accepts the other's."""
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    timing = dict(keepalive="200ms", warntime="600ms", deadtime="1", initdead="3",
                  extra="realtime off\n")
    alpha = heartbeat(a, "alpha", hacf(["alpha", "beta"], ["bcast eth0"], **timing), "",
                      authkeys=AUTH["sha1"])
    beta = BeatNode(lab, b, "beta", hacf(["alpha", "beta"], ["bcast eth0"], **timing),
                    AUTH["sha1"])
    beta.advertise(st="up", hbv="1")         # hb-watch's word before comm is up
    beta.start()                             # first, to hear alpha's first packet

    def show() -> str:
        return "hb-beat lines: %r\nheartbeat log:\n%s" % (beta.lines[-8:], alpha.log()[-4000:])

    wait(lambda: beta.heard(_via="local"), 5, "hb-beat's first status", show)
    alpha.start()

    wait(lambda: beta.heard(t="status", src="alpha", st="active"), 15,
         "alpha's active status", show)
    beta.advertise(st="active", hbv="1")
    wait(lambda: len(beta.heard(_via="local")) > 40, 15, "9 s of hb-beat's status", show)
    alpha.wait_log(r"Status update for node beta: status active", 10)
    for src, got in (("alpha", beta.heard(t="status", src="alpha")),
                     ("beta", beta.heard(t="status", src="beta", _via="local"))):
        words = [d["st"] for d in got]
        assert words[0] == "init", (src, words[:5])
        first_active = words.index("active")
        assert set(words[1:first_active]) == {"up"} and first_active >= 2, (src, words[:20])
        assert "init" not in words[1:] and "up" not in words[first_active:], (src, words)
        # deadtime + 2000 ms first, then deadtime for good; the slack lasts at most
        # 5 s (counted from the sender's own start, which may precede its first
        # status heard here: a loaded machine delays that one, not the end)
        t0 = float(got[0]["_rt"])
        dts = [(float(d["_rt"]) - t0, int(d["dt"], 16)) for d in got]
        n = next((i for i, (_, dt) in enumerate(dts) if dt != 3000), len(dts))
        assert n >= 1 and {dt for _, dt in dts[n:]} == {1000}, (src, dts[:n + 3])
        assert dts[n - 1][0] < 5.5, (src, dts[n - 1])
    # Heartbeat took beta's init and up as they are: no complaint, never dead
    assert not COMPLAINTS.findall(alpha.log()), show()
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "active"


def test_heartbeat_reads_hb_large_serial_message_in_fragments(lab, heartbeat):  # noqa: F811
    """Row 32: a 1.5 KB message that hb-beat writes on the serial line in paced
    512-byte fragments is read whole by a real Heartbeat on the other end."""
    a = host(lab, "alpha", "198.18.0.1/24")
    b = host(lab, "beta", "198.18.0.2/24")
    ma, mb, link, via = media(lab, "serial")
    timing = dict(keepalive="200ms", warntime="600ms", deadtime="2", initdead="4",
                  extra="realtime off\n")
    alpha = heartbeat(a, "alpha", hacf(["alpha", "beta"], ma, **timing), "",
                      authkeys=AUTH["sha1"])
    beta = BeatNode(lab, b, "beta", hacf(["alpha", "beta"], mb, **timing), AUTH["sha1"])
    beta.advertise(st="active", hbv="1")
    beta.start()
    alpha.start()
    alpha.wait_log(r"Status update for node beta: status active", 15)
    mark = alpha.mark()
    pad = "".join("p%02d=%s " % (i, "x" * 40) for i in range(30))
    with open(os.path.join(beta.run, "beat.fifo"), "w") as f:
        f.write("t=ask_resources rsc_hold=all info=me %s\n" % pad)
    alpha.wait_log(r"standby message \[me\] from beta|beta wants to go standby", 5, since=mark)
    assert not COMPLAINTS.findall(alpha.log()), alpha.log()[-3000:]
    assert alpha.cl_status("nodestatus", "beta").stdout.strip() == "active"
