"""Heartbeat's API as cl_status, hb_standby and hb_takeover see it: the answers.

Pure: hb-watch's parsed status (status.parse) and the text of ha.cf in, Heartbeat
3.0.6's output, error lines and exit codes out.  answer() is cl_status's every
sub-command; parameters() what Heartbeat's get_parameter answers for an ha.cf (also
the HA_* environment of rc.d hooks, harc.base_env); Cluster the nodes, links and
resources cl_status asks about; standby_args() and going_standby() the argument
check and log line of hb_standby and hb_takeover.
"""

from __future__ import annotations

import re
import time
from typing import Callable

HBVERSION = "3.0.6 (node: 958e11be8686759f1b99204c17812f2c2633b169)"   # hbparameter

# cl_status's exit codes (tools/cl_status.c); it gives up after ALARM seconds
OK, NORMAL_FAIL, PARAMETER_ERROR, TIMEOUT, UNKNOWN_ERROR = 0, 1, 11, 12, 13
ALARM = 5

HELP = """\
Usage: cl_status <sub-command> [<options>] [<parameters>]

Sub-commands:
clientstatus <node-name> <client-id> [<timeout>]
\tShow the status of heartbeat clients.
hblinkstatus <node-name> <link-name>
\tShow the status of a heartbeat link
hbstatus
\tIndicate if heartbeat is running on the local system.
\tOptions:
\t\t-v\tverbose: also add "listnodes -v" output
listnodes [<option>]
\tList the nodes in the cluster.
\tOptions:
\t\t-p\tlist only 'ping' type nodes
\t\t-n\tlist only 'normal' type nodes
\t\t-v\tverbose: also list type and status,
\t\t\tthen add "listhblinks -v" output
listhblinks <node-name>
\tList the network interfaces used as hearbeat links.
\tOptions:
\t\t-v\tverbose: list link status as well
nodestatus <node-name>
\tList the node status.
nodeweight <node-name>
\tList the node weight.
nodesite <node-name>
\tList the node site.
nodetype <node-name>
\tList the nodes of a given type.
rscstatus
\tShow the status of cluster resources.
hbparameter -p <parameter-name>
\tRetrieve the value of a cluster parameter.
\tAs for the valid parameter names, please refer to the man page.
"""

# sub-command -> (getopt string, needs a running daemon)
COMMANDS: dict[str, tuple[str, bool]] = {
    "hbstatus": ("mv", False), "listnodes": ("mpnv", True), "nodestatus": ("m", True),
    "nodeweight": ("m", True), "nodesite": ("m", True), "nodetype": ("m", True),
    "listhblinks": ("mv", True), "hblinkstatus": ("m", True),
    "clientstatus": ("m", True), "rscstatus": ("m", True), "hbparameter": ("mp:", True),
    "test": ("", True),
}

NOSIGNON = "hb_api_signon: Can't initiate connection to heartbeat"


# ------------------------------------------------------------------ ha.cf as Heartbeat records it

# Directives whose every value Heartbeat records for get_parameter, with the defaults
# it records when ha.cf does not set them (heartbeat/config.c, Directives[]).
RECORDED: dict[str, str | None] = {
    "cluster": "linux-ha", "hopfudge": "1", "keepalive": "1000ms", "deadtime": "30000ms",
    "deadping": None, "initdead": None, "warntime": None, "watchdog": None, "baud": "19200",
    "udpport": None, "logfacility": None, "logfile": None, "debugfile": None,
    "auto_failback": "legacy", "rtprio": None, "hbgenmethod": "file", "realtime": "true",
    "debug": None, "msgfmt": "classic", "use_logd": None, "conn_logd_time": "60",
    "log_badpack": "true", "syslogmsgfmt": "true", "coredumps": "true", "coreroot": None,
    "crm_daemon_dir": None, "crmd_spawns_pengine": None, "pacemaker": "false",
    "autojoin": "none", "uuidfrom": "file", "compression": "zlib",
    "compression_threshold": "2", "traditional_compression": "no",
    "max_rexmit_delay": "250", "record_config_changes": "on",
    "record_pengine_inputs": "on", "enable_config_writes": "on", "memreserve": "6500",
    "quorum_server": None,
}
DELIMS = re.compile(r"[ \t,]+")


def _ms(text: str) -> int:
    """Heartbeat's time value (s by default, ms, us) in ms."""
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|s)?", text.strip().lower())
    if not m:
        return -1
    v = float(m.group(1))
    unit = m.group(2) or "s"
    return int(v * 1000) if unit == "s" else int(v) if unit == "ms" else int(v / 1000)


def parameters(hacf: str) -> dict[str, str]:
    """What Heartbeat 3.0.6's get_parameter answers for this ha.cf: each recorded
    directive's last value as written, else its default; warntime, initdead and
    deadping computed as Heartbeat does; udpport 694; debug 0; hbversion."""
    rec: dict[str, str] = {}
    for line in hacf.splitlines():
        line = line.split("#", 1)[0].strip()
        toks = [t for t in DELIMS.split(line) if t]
        if len(toks) < 2:
            continue
        d = toks[0]
        if d == "crm":
            d = "pacemaker"
        if d in RECORDED:
            rec[d] = toks[-1]
        elif d == "nice_failback":        # set_nice_failback records auto_failback
            rec["auto_failback"] = "on" if toks[-1].lower() in (
                "on", "yes", "true", "y", "1") else "legacy"
    logging_set = "logfile" in rec or "debugfile" in rec or \
        rec.get("logfacility", "none") != "none"
    for k, v in RECORDED.items():
        if v is not None and k not in rec:
            rec[k] = v
    rec.setdefault("debug", "0")
    dead = _ms(rec["deadtime"])
    if "warntime" not in rec:
        rec["warntime"] = "%dms" % (dead // 2)
    if "initdead" not in rec:
        rec["initdead"] = "%dms" % (dead if dead > 10000 else 12000 if dead < 6000
                                    else 2 * dead)
    if "deadping" not in rec:
        rec["deadping"] = "%dms" % dead
    rec.setdefault("udpport", "694")
    if not logging_set and "use_logd" not in rec:
        rec["use_logd"] = "yes"
    if rec.get("logfacility", "none") != "none":
        rec.setdefault("logfile", "/dev/null")
        rec.setdefault("debugfile", "/dev/null")
    rec["hbversion"] = HBVERSION
    return rec


def cluster_nodes(hacf: str) -> list[tuple[str, str]]:
    """(name, 'normal'|'ping') as cl_status walks them: ha.cf's order reversed (the
    API client library prepends each node it receives)."""
    out: list[tuple[str, str]] = []
    for line in hacf.splitlines():
        line = line.split("#", 1)[0].strip()
        toks = [t for t in DELIMS.split(line) if t]
        if not toks:
            continue
        if toks[0] == "node":
            out += [(t.lower(), "normal") for t in toks[1:]]
        elif toks[0] == "ping":
            out += [(t.lower(), "ping") for t in toks[1:]]
        elif toks[0] == "ping_group" and len(toks) > 1:
            out.append((toks[1].lower(), "ping"))
    return _uniq(out)[::-1]


def _uniq(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first pair of each name, in order."""
    seen: set[str] = set()
    out = []
    for name, v in pairs:
        if name not in seen:
            seen.add(name)
            out.append((name, v))
    return out


# ------------------------------------------------------------------ the answers

class Cluster:
    """What cl_status asks about, from hb-watch's status and ha.cf."""

    def __init__(self, st: dict, hacf: str) -> None:
        self.st, self.params = st, parameters(hacf)
        self.me = st["self"].get("name") or st["updated"].get("node", "")
        nodes = cluster_nodes(hacf)
        known = {n for n, _ in nodes}
        for n in st["node"]:              # nodes the status has and ha.cf does not (none)
            if n.get("name") and n["name"] not in known:
                nodes.append((n["name"], "normal"))
        for p in st["ping"]:
            if p.get("name") and p["name"] not in known | {n for n, _ in nodes}:
                nodes.append((p["name"], "ping"))
        if self.me and self.me not in {n for n, _ in nodes}:
            nodes.append((self.me, "normal"))
        self.nodes = nodes

    def kind(self, node: str) -> str | None:
        return dict(self.nodes).get(node)

    def node_status(self, node: str) -> str | None:
        kind = self.kind(node)
        if kind is None:
            return None
        if kind == "ping":
            p = next((p for p in self.st["ping"] if p.get("name") == node), {})
            return "ping" if p.get("status") == "up" else "dead"
        if node == self.me:
            return self.st["self"].get("st") or "active"
        n = next((n for n in self.st["node"] if n.get("name") == node), None)
        if n is None:
            return "dead"
        s = n.get("st") if n.get("status") == "up" and n.get("st") else n.get("status")
        return s if s in ("init", "up", "active", "dead") else \
            "dead" if s != "up" else "up"

    def links(self, node: str) -> list[tuple[str, str]] | None:
        """(medium, up|dead) of each link to NODE, in the order cl_status lists them
        (the reverse of the media's); None for an unknown node.  A ping node has one
        link, named by its address."""
        kind = self.kind(node)
        if kind is None:
            return None
        if kind == "ping":
            p = next((p for p in self.st["ping"] if p.get("name") == node), {})
            return [(node, "up" if p.get("status") == "up" else "dead")]
        own = [(ln.get("medium", ""), ln.get("status", "dead")) for ln in self.st["link"]
               if ln.get("node") == node]
        if node == self.me and not own:
            media = []
            for ln in self.st["link"]:
                if ln.get("medium") not in media:
                    media.append(ln.get("medium"))
            own = [(m, "up") for m in media]
        return [(m, "up" if s == "up" else "dead") for m, s in _uniq(own)][::-1]

    def resources(self) -> str:
        """rscstatus: none, local, foreign, all, or transition while unstable.  After
        the peer died (or left) Heartbeat holds its class too: all."""
        s = self.st["self"]
        if s.get("stable") == "0" or any(g.get("state") in ("starting", "stopping")
                                         for g in self.st["group"]):
            return "transition"
        hold = s.get("rsc_hold", "none")
        peers = [n for n in self.st["node"] if n.get("name") != self.me
                 and n.get("kind") != "self"]
        if peers and all(n.get("status") == "dead" for n in peers) \
                and s.get("st") == "active":
            return "all"
        return hold


Err = list[str]      # lines for stderr, each either a cl_log message or raw text


def answer(argv: list[str], st: dict | None, hacf: str, runs: bool,
           refused: bool = False, log: Callable[[str], str] | None = None,
           wait: Callable[[float], None] = time.sleep) -> tuple[int, str, str]:
    """cl_status ARGV -> (exit code, stdout, stderr), as Heartbeat 3.0.6's.

    runs: hb-watch runs (its status is current); refused: it runs but this user may
    not read its status (Heartbeat refuses such an API client).  log(msg) formats a
    cl_log line for stderr (time, host, pid)."""
    log = log or (lambda m: "cl_status: ERROR: %s\n" % m)
    if len(argv) == 0 or (len(argv) == 1 and argv[0] == "-h"):
        return OK, HELP, ""
    cmd = argv[0]
    if cmd not in COMMANDS:
        return PARAMETER_ERROR, "", log("%s: invalid sub-command." % cmd)
    optstr, needsignon = COMMANDS[cmd]
    signon = runs and not refused and st is not None
    if not signon and needsignon:
        why = NOSIGNON if not runs else "signon: permission denied"
        return NORMAL_FAIL, "", log("Cannot signon with heartbeat") + log("REASON: %s" % why)
    out, err = [], []
    opts, args, bad = _getopt(cmd, argv[1:], optstr)
    human = any(o == "-m" for o, _ in opts)
    if bad is not None:
        err.append(bad)
        if cmd in ("listnodes", "listhblinks", "hbparameter"):
            return PARAMETER_ERROR, "", "".join(err) + log(
                "Error: getopt returnedcharacter code ?.")
        if cmd != "hbstatus":
            return PARAMETER_ERROR, "", "".join(err) + log("Error: getopt returnedcharacter ?.")
    verbose = any(o == "-v" for o, _ in opts)

    def done(rc: int) -> tuple[int, str, str]:
        return rc, "".join(out), "".join(err)

    if cmd == "hbstatus":
        if not signon:
            if runs:
                out.append("Heartbeat is apparently running on this machine, but refuses "
                           "my connection\n")
                if verbose:
                    out.append("(signon: permission denied)\n")
                return done(OK)
            out.append("Heartbeat is stopped on this machine.\n")
            if verbose:
                out.append("(%s)\n" % NOSIGNON)
            return done(NORMAL_FAIL)
        if not verbose:
            out.append("Heartbeat is running on this machine.\n")
            return done(OK)
    assert st is not None
    c = Cluster(st, hacf)
    if cmd == "hbstatus":
        if human:
            out.append("Heartbeat version %s\nResources controlled by \"haresources\"\n"
                       % HBVERSION)
        else:
            out.append("version:\t%s\nmanaged by:\t\"haresources\"\n" % HBVERSION)
        _listnodes(c, out, False, False, True, human)
        return done(OK)
    if cmd == "listnodes":
        p, n = any(o == "-p" for o, _ in opts), any(o == "-n" for o, _ in opts)
        return done(_listnodes(c, out, n, p, verbose, human))
    if cmd == "test":
        out.append("Dead time: %d\n keeplive time: %d\n mynodeid: %s\n rsc: %s\n" % (
            _ms(c.params["deadtime"]), _ms(c.params["keepalive"]), c.me, c.resources()))
        return done(OK)
    if cmd == "rscstatus":
        r = c.resources()
        out.append("This node is holding %s resources.\n" % r if human else r + "\n")
        return done(OK)
    if cmd == "hbparameter":
        name = next((v for o, v in opts if o == "-p"), None)
        if name is None:
            err.append(log("parameter name required"))
            return done(PARAMETER_ERROR)
        value = c.params.get("pacemaker" if name == "crm" else name)
        if value is None:
            err.append(log("Cannot get parameter %s's value" % name))
            err.append(log("REASON: "))
            return done(NORMAL_FAIL)
        out.append("Heartbeat parameter %s's value: %s\n" % (name, value) if human
                   else value + "\n")
        return done(OK)
    need = 2 if cmd in ("hblinkstatus", "clientstatus") else 1
    if len(args) < need:
        err.append({"nodestatus": "Not enough parameters.\n",
                    "nodeweight": "Not enough parameters.\n",
                    "nodesite": "Not enough parameters.\n"}.get(cmd, "No enough parameter.\n"))
        return done(PARAMETER_ERROR)
    node = args[0]
    key = node.lower()
    if cmd == "nodestatus":
        s = c.node_status(key)
        if s is None:
            err.append("Error. May be due to incorrect node name\n")
            return done(PARAMETER_ERROR)
        out.append("The cluster node %s is %s\n" % (node, s) if human else s + "\n")
        return done(OK if s in ("active", "up", "ping") else NORMAL_FAIL)
    if cmd == "nodeweight":
        if c.kind(key) is None:
            err.append("Error. Maybe due to incorrect node name.\n")
            return done(PARAMETER_ERROR)
        out.append("The weight of the cluster node %s is 100\n" % node if human else "100\n")
        return done(OK)
    if cmd == "nodesite":
        if c.kind(key) is None:
            err.append("Error. May be due to incorrect node name\n")
            return done(PARAMETER_ERROR)
        out.append("The site of the cluster node %s is \n" % node if human else "\n")
        return done(OK)
    if cmd == "nodetype":
        k = c.kind(key)
        if k is None:
            err.append("Error. May be due to incorrect node name\n")
            return done(PARAMETER_ERROR)
        out.append("The node %s's type: %s\n" % (node, k) if human else k + "\n")
        return done(OK)
    if cmd == "listhblinks":
        links = c.links(key)
        if links is None:
            err.append(log("Cannot start heartbeat link interface walk."))
            err.append(log("REASON: EINVAL"))
            return done(UNKNOWN_ERROR)
        if human:
            out.append("\tthis node has the following heartbeat links:\n")
        out += ["\t%s\t%s\n" % (m, s) if verbose else "\t%s\n" % m for m, s in links]
        return done(OK)
    if cmd == "hblinkstatus":
        s = dict(c.links(key) or []).get(args[1])
        if s is None:
            err.append(log("Cannot get heartbeat link status"))
            err.append(log("REASON: "))
            return done(UNKNOWN_ERROR)
        out.append("The node %s's heartbeat link %s is %s\n" % (node, args[1], s) if human
                   else s + "\n")
        return done(OK if s == "up" else NORMAL_FAIL)
    # clientstatus: hb has no API clients; Heartbeat waits TIMEOUT ms for an answer
    try:
        ms = int(re.match(r"\s*[-+]?\d*", args[2]).group(0) or 0) if len(args) > 2 else 500
    except ValueError:
        ms = 0
    if ms >= ALARM * 1000:           # cl_status's own alarm(5) ends it first: exit 12
        wait(ALARM)
        return done(TIMEOUT)
    wait(max(0, ms) / 1000)
    err.append(log("Cannot get heartbeat client %s's status" % args[1]))
    err.append(log("REASON: No timely response."))
    return done(UNKNOWN_ERROR)


def _listnodes(c: Cluster, out: list[str], normal: bool, ping: bool, verbose: bool,
               human: bool) -> int:
    if normal and ping:
        normal = ping = False
    if human:
        out.append("The nodes are as follow:\n")
    for name, kind in c.nodes:
        if (normal and kind != "normal") or (ping and kind != "ping"):
            continue
        if verbose:
            out.append("\n%s\t%s\t(nodetype: %s)\n" % (name, c.node_status(name), kind))
            if human:
                out.append("\tthis node has the following heartbeat links:\n")
            out += ["\t%s\t%s\n" % (m, s) for m, s in c.links(name) or []]
        else:
            out.append(name + "\n")
    return OK


def _getopt(cmd: str, args: list[str], optstr: str
            ) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """GNU getopt as cl_status calls it (options anywhere, argv[0] = the sub-command):
    (options up to the first bad one, the other words, glibc's message or None)."""
    opts: list[tuple[str, str]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i + 1:]
            break
        if not a.startswith("-") or a == "-":
            rest.append(a)
            i += 1
            continue
        j = 1
        while j < len(a):
            ch = a[j]
            k = optstr.find(ch)
            if k < 0 or ch == ":":
                return opts, rest + [x for x in args[i + 1:]], \
                    "%s: invalid option -- '%s'\n" % (cmd, ch)
            if optstr[k + 1:k + 2] == ":":
                if j + 1 < len(a):
                    opts.append(("-" + ch, a[j + 1:]))
                elif i + 1 < len(args):
                    i += 1
                    opts.append(("-" + ch, args[i]))
                else:
                    return opts, rest, "%s: option requires an argument -- '%s'\n" % (cmd, ch)
                break
            opts.append(("-" + ch, ""))
            j += 1
        i += 1
    return opts, rest, None


# ------------------------------------------------------------------ hb_standby, hb_takeover

WORDS = ("all", "foreign", "local", "failback")


def standby_args(prog: str, argv: list[str], takeover: bool) -> tuple[int, str, str, str]:
    """Heartbeat's argument check of hb_standby/hb_takeover: (exit code, stdout,
    stderr, the word to send).  Default all; one word of WORDS; else usage, exit 1."""
    usage_out, usage_err = "usage:\n", "%s [all|foreign|local|failback]\n" % prog
    if len(argv) >= 2:
        return 1, "%s: too many arguments\n" % prog + usage_out, usage_err, ""
    word = argv[0] if argv else "all"
    if word == "--help":
        return 1, usage_out, usage_err, ""
    if word not in WORDS:
        return 1, "%s: wrong resources(%s).\n" % (prog, word) + usage_out, usage_err, ""
    return 0, "", "", word


def going_standby(word: str, tty: bool, now: float) -> str:
    """The line Heartbeat's hb_standby logs (ha_log without a log file or facility:
    stderr, dated unless stdin is a terminal); failback is said as foreign."""
    what = "foreign" if word == "failback" else word
    return "%sGoing standby [%s].\n" % (
        "" if tty else time.strftime("%b %d %H:%M:%S ", time.localtime(now)), what)
