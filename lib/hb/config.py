"""Load an hb pair's settings from CONFDIR, check them against this machine, show them.

load() reads CONFDIR/{ha.cf,haresources,authkeys} and hands the text to the pure
parsers (hacf, haresources, authkeys) with what they need from the system (this
node's name, its addresses from /proc); then it checks the file system: the
authkeys mode, serial devices, interfaces, the watchdog, respawn programs.
describe() is the --check output, digest() what both nodes must agree on.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat

from hb import addrspec
from hb.authkeys import parse_authkeys
from hb.hacf import parse_hacf
from hb.haresources import parse_haresources
from hb.settings import DIGEST_PARTS, Config, ConfigError, format_time


def default_node(confdir: str = "/etc/ha.d") -> str:
    """CONFDIR/nodeinfo's first line (as Heartbeat), else uname -n; lower-cased."""
    try:
        with open(os.path.join(confdir, "nodeinfo")) as f:
            name = f.readline().strip()
        if name:
            return name.lower()
    except OSError:
        pass
    return os.uname().nodename.lower()


def local_addresses() -> set[str]:
    """This network namespace's own addresses (from /proc; no netlink library)."""
    addrs: set[str] = set()
    try:
        with open("/proc/net/fib_trie") as f:
            last = ""
            for line in f:
                s = line.strip()
                if s.startswith("|--"):
                    last = s[3:].strip()
                elif s.startswith("/32 host LOCAL") and last:
                    addrs.add(last)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                h = line.split()[0]
                addrs.add(str(ipaddress.IPv6Address(bytes.fromhex(h))))
    except (OSError, ValueError, IndexError):
        pass
    return addrs


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ConfigError("%s:0: cannot read: %s" % (path, e.strerror)) from None


def authkeys_mode_problem(path: str) -> str | None:
    """Why authkeys may not be used: not mode 600 (or stricter), or not owned by root."""
    try:
        st = os.stat(path)
    except OSError as e:
        return "%s:0: cannot read: %s" % (path, e.strerror)
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~0o600:
        return "%s:0: mode %03o: the keys must be readable by root only: chmod 600 %s" \
            % (path, mode, path)
    if st.st_uid != 0:
        return "%s:0: owned by uid %d: the keys must be owned by root: chown root %s" \
            % (path, st.st_uid, path)
    return None


def load(confdir: str = "/etc/ha.d", node: str | None = None,
         check_devices: bool = True) -> Config:
    """Read and check CONFDIR/{ha.cf,haresources,authkeys}.

    A missing serial device, interface, watchdog or respawn program, and an authkeys file
    others may read or not owned by root, are errors when check_devices
    (starting), warnings otherwise (--check)."""
    node = (node or default_node(confdir)).lower()
    hacf = os.path.join(confdir, "ha.cf")
    har = os.path.join(confdir, "haresources")
    ak = os.path.join(confdir, "authkeys")
    errors: list[str] = []
    cfg: Config | None = None
    try:
        cfg = parse_hacf(_read(hacf), hacf, node, local_addresses())
        cfg.confdir = confdir
        cfg.groups = parse_haresources(_read(har), har, cfg.nodes, cfg.warnings)
    except ConfigError as e:
        errors += e.errors
    warnings = cfg.warnings if cfg else []
    try:
        text = _read(ak)
        why = authkeys_mode_problem(ak)
        if why:
            (errors if check_devices else warnings).append(why)
        auth = parse_authkeys(text, ak, warnings)
    except ConfigError as e:
        errors += e.errors
    if errors or cfg is None:
        raise ConfigError(errors[0], errors)
    cfg.auth = auth
    _check_system(cfg, hacf, har, check_devices)
    return cfg


def _check_system(cfg: Config, hacf: str, har: str, strict: bool) -> None:
    try:
        ifaces = {name for _, name in socket.if_nameindex()}
    except OSError:
        ifaces = set()

    errors: list[str] = []

    def problem(fn: str, line: int, msg: str) -> None:
        (errors if strict else cfg.warnings).append("%s:%d: %s" % (fn, line, msg))

    def chardev(path: str, fifo: bool = False) -> str | None:
        try:
            st = os.stat(path)
        except OSError as e:
            return e.strerror
        if stat.S_ISCHR(st.st_mode) or (fifo and stat.S_ISFIFO(st.st_mode)):
            return None
        return "not a character device"

    for m in cfg.media:
        if m.kind == "serial":
            why = chardev(m.dev)
            if why:
                problem(hacf, m.line, "serial device %s: %s" % (m.dev, why))
        elif m.dev not in ifaces:
            problem(hacf, m.line, "%s: no interface %s on this machine" % (m.kind, m.dev))
    if cfg.watchdog:
        why = chardev(cfg.watchdog, fifo=True)
        if why:
            problem(hacf, cfg.lines["watchdog"], "watchdog %s: %s" % (cfg.watchdog, why))
    for r in cfg.respawns:
        prog = r.command.split()[0]
        if not os.access(prog, os.X_OK):
            problem(hacf, r.line, "respawn: %s is not an executable file" % prog)
    for g in cfg.groups:
        for r in g.resources:
            if r.name in ("IPaddr", "IPaddr2"):
                a = addrspec.parse(r.args[0], "IPaddr")
                if a.iface and a.iface not in ifaces:
                    problem(har, r.line, "%s: no interface %s on this machine"
                            % (r.text, a.iface))
    if errors:
        raise ConfigError(errors[0], errors)


# ---------------------------------------------------------------- output

def describe(cfg: Config) -> str:
    """The effective settings, one per line, with units and '(default)'."""
    out = []

    def put(name: str, value: str) -> None:
        out.append("%s %s%s" % (name, value, " (default)" if name in cfg.defaulted else ""))

    out.append("# hb settings from %s for node %s" % (cfg.confdir, cfg.node))
    for n in cfg.nodes:
        out.append("node %s%s" % (n, " (this node)" if n == cfg.node else ""))
    for m in cfg.media:
        if m.kind == "serial":
            out.append("medium %s serial %s %d bps" % (m.name, m.dev, m.baud))
        elif m.kind == "bcast":
            out.append("medium %s bcast port %d" % (m.name, m.port))
        elif m.kind.startswith("ucast"):
            out.append("medium %s %s %s port %d" % (m.name, m.kind, m.addr, m.port))
        else:
            out.append("medium %s %s %s port %d ttl %d loop %d"
                       % (m.name, m.kind, m.addr, m.port, m.ttl, m.loop))
    for k in ("keepalive", "warntime", "deadtime", "initdead", "deadping"):
        put(k, format_time(getattr(cfg, k)))
    put("udpport", str(cfg.udpport))
    put("baud", "%d bps" % cfg.baud)
    put("auto_failback", cfg.auto_failback)
    put("monitor", "off" if cfg.monitor is None else "every " + format_time(cfg.monitor))
    put("stop_failure", cfg.stop_failure + (" " + cfg.reboot_command
                                            if cfg.stop_failure == "reboot" else ""))
    put("resource_order", cfg.resource_order)
    for p in cfg.pings:
        if p.group:
            out.append("ping_group %s %s" % (p.name, " ".join(p.addrs)))
        else:
            out.append("ping %s" % p.name)
    if not cfg.pings:
        out.append("ping none (default)")
    out.append("ipfail %s%s" % ("yes" if cfg.ipfail else "no",
                                "" if cfg.ipfail else " (default)"))
    for r in cfg.respawns:
        out.append("respawn %s %s" % (r.user, r.command))
    for name in ("logfile", "debugfile", "logfacility", "watchdog"):
        put(name, getattr(cfg, name) or "none")
    put("debug", str(cfg.debug))
    put("realtime", "on" if cfg.realtime else "off")
    put("rtprio", "minimum" if cfg.rtprio is None else str(cfg.rtprio))
    for k, v in cfg.env.items():
        out.append("env HA_%s=%s" % (k, v))
    for g in cfg.groups:
        out.append("group %d %s %s" % (g.index, g.node, " ".join(r.text for r in g.resources)))
    if cfg.auth:
        listed = " ".join(map(str, sorted(cfg.auth.keys)))
        out.append("auth %d %s (keys %s)" % (cfg.auth.use, cfg.auth.signing.method, listed))
    out.append("digest %s" % digest(cfg))
    out += ["warning: " + w for w in cfg.warnings]
    out += ["info: " + i for i in cfg.infos]
    return "\n".join(out) + "\n"


def digest(cfg: Config) -> str:
    """Short hex digest of what both nodes must agree on: the groups,
    auto_failback and the timings; one fixed-width piece each (DIGEST_PARTS),
    so that digest_diff() can name what differs."""
    values = {"haresources": "\n".join("%s %s" % (g.node, " ".join(r.text for r in g.resources))
                                       for g in cfg.groups),
              "auto_failback": cfg.auto_failback}
    from hb.wire import hasher          # not hashlib: OpenSSL costs 3.7 MB per daemon
    sha256 = hasher("sha256")
    for k in ("keepalive", "deadtime", "warntime", "initdead"):
        values[k] = "%d" % int(round(getattr(cfg, k) * 1000))
    return "".join(sha256(("%s=%s" % (k, values[k])).encode()).hexdigest()[:n]
                   for k, n in DIGEST_PARTS)
