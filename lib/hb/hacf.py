"""ha.cf text -> Config: every directive, its FILE:LINE errors and warnings.

Pure: this machine's own addresses come in as a parameter (config.load reads them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from hb.settings import FALSE, Config, ConfigError, Medium, PingNode, Respawn, cut, \
    format_time, number, numbered_lines, parse_bool, parse_time, short, strip_comment, suggest

FACILITIES = {
    "auth", "authpriv", "cron", "daemon", "kern", "lpr", "mail", "news", "user",
    "uucp", "syslog", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7", "none",
}
BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800)
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")
_SPLIT = re.compile(r"[\s,]+")


NO_EFFECT = {
    "hopfudge": "hb relays nothing (nor does Heartbeat 3)",
    "apiauth": "hb has no client API; hb-switch talks to hb-watch through its fifo",
    "compression": "hb never compresses (only large CRM messages were compressed)",
    "compression_threshold": "hb never compresses",
    "traditional_compression": "hb never compresses",
    "coredumps": "hb leaves core dumps to the system's settings",
    "coreroot": "hb leaves core dumps to the system's settings",
    "use_logd": "hb logs through logfile, debugfile and logfacility itself",
    "conn_logd_time": "hb does not use ha_logd",
    "log_badpack": "hb-beat's logging of bad packets is fixed",
    "syslogmsgfmt": "hb's syslog format is fixed",
    "msgfmt": "hb sends classic messages and receives both formats",
    "hbgenmethod": "hb keeps its generation counter in STATEDIR",
    "uuidfrom": "hb sends no node UUID",
    "cluster": "a two-node hb pair needs no cluster name",
    "memreserve": "hb has no heap to pre-grow",
    "max_rexmit_delay": "hb-beat times its retransmission requests itself",
    "use_apphbd": "hb does not use apphbd",
    "quorum_server": "only a CRM cluster uses a quorum server",
    "crm_daemon_dir": "only a CRM cluster uses it",
    "crmd_spawns_pengine": "only a CRM cluster uses it",
    "record_config_changes": "only a CRM cluster uses it",
    "record_pengine_inputs": "only a CRM cluster uses it",
    "enable_config_writes": "only a CRM cluster uses it",
}

_PACEMAKER = ("a CRM cluster is Pacemaker's job: remove the line to run the haresources "
              "groups with hb, or move to Corosync + Pacemaker (hb-supervise --export "
              "pacemaker)")
_STONITH = ("hb has no STONITH: remove the line (give each node two heartbeat media "
            "instead), or move to Pacemaker, which fences (hb-supervise --export pacemaker)")

_SCALARS = ("keepalive", "deadtime", "warntime", "initdead", "deadping", "udpport", "baud",
            "auto_failback", "logfile", "debugfile", "logfacility", "debug", "realtime",
            "rtprio", "watchdog", "monitor", "stop_failure", "resource_order")


class _HaCf:
    def __init__(self, cfg: Config, filename: str, local_addrs: Iterable[str]) -> None:
        self.cfg = cfg
        self.fn = filename
        self.local = {str(a).lower() for a in local_addrs}
        self.line = 0
        self.media_seen: dict[tuple, int] = {}

    def err(self, msg: str, line: int | None = None) -> ConfigError:
        return ConfigError("%s:%d: %s" % (self.fn, self.line if line is None else line,
                                          cut(msg)))

    def warn(self, msg: str, line: int | None = None) -> None:
        where = self.line if line is None else line
        self.cfg.warnings.append("%s:%d: %s" % (self.fn, where, cut(msg)))

    def info(self, msg: str) -> None:
        self.cfg.infos.append("%s:%d: %s" % (self.fn, self.line, msg))

    # -- helpers
    def one(self, word: str, toks: list[str]) -> str:
        if not toks:
            raise self.err("%s needs a value" % word)
        if len(toks) > 1:
            self.warn("%s given %d values: the last, %s, is used (as Heartbeat does)"
                      % (word, len(toks), toks[-1]))
        return toks[-1]

    def setting(self, name: str, value) -> None:
        if name in self.cfg.lines:
            self.warn("%s set again (line %d): this value wins"
                      % (name, self.cfg.lines[name]))
        self.cfg.lines[name] = self.line
        setattr(self.cfg, name, value)

    def time(self, word: str, rest: str) -> float:
        try:
            t = parse_time(rest)
        except ValueError as e:
            toks = _SPLIT.split(rest.strip())
            try:
                t = parse_time(self.one(word, toks))
            except ValueError:
                raise self.err("%s: %s" % (word, e)) from None
        if t <= 0:
            raise self.err("%s must be at least 1ms" % word)
        return t

    def integer(self, word: str, toks: list[str], lo: int, hi: int) -> int:
        v = self.one(word, toks)
        n = number(v, lo, hi)
        if n is None:
            raise self.err("%s: bad value %s: a whole number from %d to %d"
                           % (word, short(v), lo, hi))
        return n

    def add_medium(self, m: Medium) -> None:
        m.line = self.line
        key = (m.kind, m.dev, m.addr.lower())
        if key in self.media_seen:
            self.warn("%s %s %s repeats line %d: ignored"
                      % (m.kind, m.dev, m.addr, self.media_seen[key]))
            return
        self.media_seen[key] = self.line
        self.cfg.media.append(m)

    def iface(self, word: str, dev: str) -> str:
        if not _IFNAME.match(dev):
            raise self.err("%s: bad interface name %r" % (word, dev))
        return dev

    def host(self, word: str, addr: str, version: int | None) -> str:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            if re.match(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$", addr) and \
                    not re.match(r"^[0-9.]+$", addr):
                return addr                     # a host name, resolved when used
            raise self.err("%s: %r is neither an IP%s address nor a host name"
                           % (word, addr, "v%d" % version if version else ""))
        if version and ip.version != version:
            other = {"ucast": "ucast6", "ucast6": "ucast", "ping": "ping6",
                     "ping6": "ping"}.get(word, word)
            raise self.err("%s takes an IPv%d address: %s is IPv%d; use %s"
                           % (word, version, addr, ip.version, other))
        return str(ip)

    # -- directives
    def d_node(self, word, rest, toks):
        if not toks:
            raise self.err("node needs at least one node name")
        for t in toks:
            n = t.lower()
            if n in self.cfg.nodes:
                self.warn("node %s listed twice" % n)
                continue
            if len(self.cfg.nodes) == 2:
                raise self.err("node %s: hb runs pairs and %s are listed already; a larger "
                               "cluster is Pacemaker's job (hb-supervise --export pacemaker)"
                               % (n, " and ".join(self.cfg.nodes)))
            self.cfg.nodes.append(n)
        self.cfg.lines.setdefault("node", self.line)

    def d_time(self, word, rest, toks):
        self.setting(word, self.time(word, rest))

    def d_monitor(self, word, rest, toks):
        if len(toks) == 1 and toks[0].lower() in FALSE:
            self.setting("monitor", None)
            return
        m = re.match(r"^\s*(\d+\.?\d*|\.\d+)\s*(s|sec)\s*$", rest, re.ASCII)   # hb-only: 5s too
        self.setting("monitor", self.time(word, m.group(1) if m else rest))

    def d_udpport(self, word, rest, toks):
        self.setting("udpport", self.integer(word, toks, 1, 65535))
        if any(m.kind in ("bcast", "ucast", "ucast6") for m in self.cfg.media):
            self.warn("udpport after a bcast or ucast line: those media keep the port they "
                      "were given (Heartbeat reads udpport when a medium is created); move "
                      "udpport before them")

    def d_baud(self, word, rest, toks):
        v = self.one(word, toks)
        rate = number(v, 0, max(BAUDS))
        if rate not in BAUDS:
            raise self.err("baud: bad rate %s: one of %s"
                           % (short(v), " ".join(map(str, BAUDS))))
        self.setting("baud", rate)
        if any(m.kind == "serial" for m in self.cfg.media):
            old = [m.baud for m in self.cfg.media if m.kind == "serial"][-1]
            self.warn("baud after a serial line: those ports keep %d bps; move baud before "
                      "serial" % old)

    def d_serial(self, word, rest, toks):
        if not toks:
            raise self.err("serial needs a device, e.g. serial /dev/ttyS0")
        for dev in toks:
            if not dev.startswith("/"):
                raise self.err("serial: %r is not a full path name such as /dev/ttyS0" % dev)
            self.add_medium(Medium("serial", dev, baud=self.cfg.baud))

    def d_bcast(self, word, rest, toks):
        if not toks:
            raise self.err("%s needs an interface, e.g. bcast eth1" % word)
        if word == "udp":
            self.info("udp is the old name of bcast")
        for dev in toks:
            self.add_medium(Medium("bcast", self.iface(word, dev), port=self.cfg.udpport))

    def d_ucast(self, word, rest, toks):
        toks = rest.split()
        v = 6 if word == "ucast6" else 4
        if len(toks) < 2:
            raise self.err("%s needs an interface and a peer: %s eth0 %s"
                           % (word, word, "2001:db8::2" if v == 6 else "192.0.2.2"))
        if len(toks) > 2:
            self.warn("%s takes one peer per line: %s ignored (repeat the line for more peers)"
                      % (word, " ".join(toks[2:])))
        dev = self.iface(word, toks[0])
        peer = self.host(word, toks[1], v)
        if peer.lower() in self.local or peer.lower() == self.cfg.node:
            self.info("%s to this node's own address %s: ignored" % (word, peer))
            return
        self.add_medium(Medium(word, dev, addr=peer, port=self.cfg.udpport))

    def d_mcast(self, word, rest, toks):
        toks = rest.split()
        v = 6 if word == "mcast6" else 4
        if len(toks) != 5:
            example = "ff02::694" if v == 6 else "239.0.0.1"
            raise self.err("%s needs 5 values: %s IFACE GROUP PORT TTL LOOP, e.g. %s eth1 %s "
                           "694 1 0" % (word, word, word, example))
        dev = self.iface(word, toks[0])
        try:
            group = ipaddress.ip_address(toks[1])
        except ValueError:
            group = None
        if group is None or group.version != v or not group.is_multicast:
            raise self.err("%s: %r is not an IPv%d multicast group (%s)"
                           % (word, toks[1], v, "ff00::/8" if v == 6 else "224.0.0.0/4"))
        port = self.integer(word + " port", [toks[2]], 1, 65535)
        ttl = self.integer(word + " ttl", [toks[3]], 0, 4 if v == 4 else 255)
        loop = self.integer(word + " loop", [toks[4]], 0, 1)
        self.add_medium(Medium(word, dev, addr=str(group), port=port, ttl=ttl, loop=loop))

    def d_auto_failback(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v == "legacy":
            self.warn("auto_failback legacy: Heartbeat's old ip-request protocol; prefer on "
                      "or off")
            self.setting("auto_failback", "legacy")
            return
        try:
            self.setting("auto_failback", "on" if parse_bool(v) else "off")
        except ValueError:
            raise self.err("auto_failback: bad value %r: on, off or legacy" % v) from None

    def d_stop_failure(self, word, rest, toks):
        v = toks[0].lower() if toks else ""
        if v == "hold" and len(toks) == 1:
            self.setting("stop_failure", "hold")
        elif v == "reboot":
            self.setting("stop_failure", "reboot")
            command = rest.strip()[len(toks[0]):].strip()
            if command and not command.startswith("/"):
                raise self.err("stop_failure reboot: %r is not a full path name"
                               % command.split()[0])
            self.cfg.reboot_command = command or "reboot -nf"
        else:
            raise self.err("stop_failure: want hold, or reboot [/path/to/command args]")

    def d_resource_order(self, word, rest, toks):
        v = toks[0].lower() if len(toks) == 1 else ""
        if v not in ("serial", "parallel"):
            raise self.err("resource_order: want serial (groups one after another, as "
                           "Heartbeat) or parallel (all at once), not %r" % rest.strip())
        self.setting("resource_order", v)

    def d_nice_failback(self, word, rest, toks):
        try:
            on = parse_bool(self.one(word, toks))
        except ValueError as e:
            raise self.err("nice_failback: %s" % e) from None
        new = "off" if on else "legacy"
        self.warn("nice_failback is obsolete: write auto_failback %s" % new)
        self.setting("auto_failback", new)

    def d_ping(self, word, rest, toks):
        if not toks:
            raise self.err("ping needs an address, e.g. ping 192.0.2.254")
        for t in toks:
            addr = self.host(word, t, 6 if word == "ping6" else None)
            if any(p.name == addr for p in self.cfg.pings):
                self.warn("ping %s listed twice" % addr)
                continue
            self.cfg.pings.append(PingNode(addr, [addr], line=self.line))

    def d_ping_group(self, word, rest, toks):
        if len(toks) < 2:
            raise self.err("ping_group needs a name and addresses: ping_group NAME ADDR...")
        name = toks[0]
        if any(p.name == name for p in self.cfg.pings) or name.lower() in self.cfg.nodes:
            raise self.err("ping_group %s: the name is already used" % name)
        addrs = [self.host(word, t, None) for t in toks[1:]]
        self.cfg.pings.append(PingNode(name, addrs, group=True, line=self.line))

    def d_respawn(self, word, rest, toks):
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise self.err("respawn needs a user and a program: respawn USER /path/to/program")
        user, command = parts
        prog = command.split()[0]
        if prog.rsplit("/", 1)[-1] == "ipfail":
            self.cfg.ipfail = True
            self.cfg.lines["ipfail"] = self.line
            self.info("respawn ipfail: hb-watch itself moves the groups away from a node "
                      "that lost its ping nodes (deadping), as ipfail did; not run")
            return
        if not prog.startswith("/"):
            raise self.err("respawn: %r is not a full path name" % prog)
        self.cfg.respawns.append(Respawn(user, command.strip(), line=self.line))

    def d_failfast(self, word, rest, toks):
        raise self.err("failfast is not supported (it reboots when the program dies): use "
                       "respawn, which restarts it")

    def d_path(self, word, rest, toks):
        v = self.one(word, toks)
        if word != "watchdog" and v.lower() in ("none", "/dev/null"):
            self.setting(word, None)
            return
        if not v.startswith("/"):
            raise self.err("%s: %r is not a full path name" % (word, v))
        self.setting(word, v)

    def d_logfacility(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v not in FACILITIES:
            raise self.err("logfacility: unknown facility %r%s" % (v, suggest(v, FACILITIES)))
        self.setting("logfacility", v)

    def d_debug(self, word, rest, toks):
        self.setting("debug", self.integer(word, toks, 0, 255))

    def d_rtprio(self, word, rest, toks):
        self.setting("rtprio", self.integer(word, toks, 1, 99))

    def d_realtime(self, word, rest, toks):
        try:
            self.setting("realtime", parse_bool(self.one(word, toks)))
        except ValueError as e:
            raise self.err("realtime: %s" % e) from None

    def d_env(self, word, rest, toks):
        name, eq, value = rest.strip().partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise self.err("env: write env NAME=value")
        self.cfg.env[name] = value

    def d_crm(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if "crm" in self.cfg.lines:
            raise self.err("%s: crm or pacemaker already given (line %d): say it once, as "
                           "Heartbeat requires" % (word, self.cfg.lines["crm"]))
        self.cfg.lines["crm"] = self.line
        if v in FALSE:
            return
        raise self.err("%s %s: %s" % (word, v, _PACEMAKER))

    def d_autojoin(self, word, rest, toks):
        v = self.one(word, toks).lower()
        if v == "none":
            return
        if v in ("any", "other"):
            raise self.err("autojoin %s: nodes joining by themselves conflicts with haresources "
                           "(as in Heartbeat): remove the line and list both nodes with node"
                           % v)
        raise self.err("autojoin: bad value %r: none, other or any" % v)

    def d_stonith(self, word, rest, toks):
        raise self.err("%s: %s" % (word, _STONITH))

    def d_hbaping(self, word, rest, toks):
        raise self.err("hbaping (Fibre Channel ping) is not supported: use ping or ping_group")

    def d_no_effect(self, word, rest, toks):
        self.info("%s has no effect in hb: %s" % (word, NO_EFFECT[word]))

    def dispatch(self):
        return {
            "node": self.d_node, "keepalive": self.d_time, "deadtime": self.d_time,
            "warntime": self.d_time, "initdead": self.d_time, "deadping": self.d_time,
            "monitor": self.d_monitor, "stop_failure": self.d_stop_failure,
            "resource_order": self.d_resource_order,
            "udpport": self.d_udpport, "baud": self.d_baud,
            "serial": self.d_serial, "bcast": self.d_bcast, "udp": self.d_bcast,
            "ucast": self.d_ucast, "ucast6": self.d_ucast, "mcast": self.d_mcast,
            "mcast6": self.d_mcast, "auto_failback": self.d_auto_failback,
            "nice_failback": self.d_nice_failback, "ping": self.d_ping,
            "ping6": self.d_ping, "ping_group": self.d_ping_group, "respawn": self.d_respawn,
            "failfast": self.d_failfast, "logfile": self.d_path, "debugfile": self.d_path,
            "watchdog": self.d_path, "logfacility": self.d_logfacility, "debug": self.d_debug,
            "rtprio": self.d_rtprio, "realtime": self.d_realtime, "env": self.d_env,
            "crm": self.d_crm, "pacemaker": self.d_crm, "autojoin": self.d_autojoin,
            "stonith": self.d_stonith, "stonith_host": self.d_stonith,
            "hbaping": self.d_hbaping,
            **{w: self.d_no_effect for w in NO_EFFECT},
        }

    def finish(self, last: int) -> None:
        cfg = self.cfg
        L = cfg.lines
        for name in _SCALARS:
            if name not in L:
                cfg.defaulted.add(name)
        if "warntime" not in L:
            cfg.warntime = cfg.deadtime / 2
        if "initdead" not in L:
            d = cfg.deadtime
            cfg.initdead = d if d > 10 else 12.0 if d < 6 else 2 * d
        if "deadping" not in L:
            cfg.deadping = cfg.deadtime

        def at(*names: str) -> int:
            return max([L[n] for n in names if n in L] or [last])

        ka = format_time(cfg.keepalive)
        if cfg.deadtime <= 2 * cfg.keepalive:
            raise self.err("deadtime %s must be more than twice keepalive %s"
                           % (format_time(cfg.deadtime), ka), at("deadtime", "keepalive"))
        if cfg.warntime <= cfg.keepalive or cfg.warntime > cfg.deadtime:
            raise self.err("warntime %s must be between keepalive %s and deadtime %s"
                           % (format_time(cfg.warntime), ka, format_time(cfg.deadtime)),
                           at("warntime", "keepalive", "deadtime"))
        if cfg.warntime == cfg.deadtime:
            self.warn("warntime equals deadtime: no late-heartbeat warning before a node is "
                      "declared dead", at("warntime", "deadtime"))
        if cfg.initdead < cfg.deadtime:
            raise self.err("initdead %s must be at least deadtime %s"
                           % (format_time(cfg.initdead), format_time(cfg.deadtime)),
                           at("initdead", "deadtime"))
        if cfg.initdead < 10 and "initdead" in L:
            self.warn("initdead %s is under 10s: a peer booting at the same time may not be "
                      "heard yet" % format_time(cfg.initdead), L["initdead"])
        if cfg.deadping <= 2 * cfg.keepalive:
            raise self.err("deadping %s must be more than twice keepalive %s"
                           % (format_time(cfg.deadping), ka), at("deadping", "keepalive"))
        if not cfg.nodes:
            raise self.err("no node lines: list both nodes, e.g. node %s PEER"
                           % (cfg.node or "NAME"), last)
        if cfg.node not in cfg.nodes:
            raise self.err("this node %s is not listed in node (%s): the names must match "
                           "uname -n (or use --node)" % (cfg.node, " ".join(cfg.nodes)),
                           L["node"])
        if len(cfg.nodes) == 1:
            self.warn("only one node listed: there is no peer to fail over to", L["node"])
        if not cfg.media:
            what = " (ping nodes only answer pings: they are not a medium)" if cfg.pings else ""
            raise self.err("no heartbeat medium: add serial, bcast, mcast or ucast%s" % what,
                           last)
        if "auto_failback" not in L:
            self.warn("auto_failback not set: legacy, as in Heartbeat; set it to on or off",
                      last)
        for p in cfg.pings:
            if p.name.lower() in cfg.nodes:
                raise self.err("ping %s: a cluster node cannot be a ping node" % p.name,
                               p.line)
        if not (cfg.logfile or cfg.debugfile or cfg.logfacility):
            self.cfg.infos.append("%s:%d: no logfile, debugfile or logfacility: hb logs to "
                                  "stderr only (Heartbeat would use ha_logd)" % (self.fn, last))
        if cfg.ipfail and not cfg.pings:
            self.warn("respawn ipfail without ping or ping_group: nothing to judge "
                      "connectivity by", L["ipfail"])
        names: dict[str, Medium] = {}
        for m in cfg.media:
            if m.name in names and m.kind != names[m.name].kind:
                self.warn("%s %s and %s %s (line %d) share the link name %s"
                          % (m.kind, m.dev, names[m.name].kind, names[m.name].dev,
                             names[m.name].line, m.name), m.line)
            names.setdefault(m.name, m)


def parse_hacf(text: str, filename: str, node: str,
               local_addrs: Iterable[str] = ()) -> Config:
    """ha.cf text -> Config (everything but groups and auth).

    node is this node's name; local_addrs this machine's addresses (ucast lines
    naming one of them are ignored)."""
    cfg = Config(node=node.lower())
    p = _HaCf(cfg, filename, local_addrs)
    table = p.dispatch()
    last = 1
    errors: list[str] = []
    for n, raw in numbered_lines(text, filename, cfg.warnings):
        p.line = n
        line = strip_comment(raw)
        if not line:
            continue
        last = n
        word, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip()
        fn = table.get(word)
        try:
            if fn is None:
                raise p.err("unknown directive %r%s" % (word, suggest(word, table)))
            fn(word, rest, [t for t in _SPLIT.split(rest) if t])
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError(errors[0], errors)
    p.line = last
    p.finish(last)
    return cfg
