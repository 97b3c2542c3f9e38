"""Export an hb cluster as Corosync 3 + Pacemaker configuration.

`hb-supervise --export pacemaker` calls main_export().  export() is pure: from a
Config, the node addresses given on the command line and a System (what this
machine knows: its interface addresses, name resolution, which scripts exist,
where each ha.cf directive stands), it returns the files to write --
corosync.conf, authkey, cib.xml, README.export -- and notes for stderr, or
raises ConfigError("FILE:LINE: ...") for what Pacemaker cannot express.  The
Corosync files and the README are made here, cib.xml by hb.cib.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

from hb import cib, exits
from hb.settings import Config, ConfigError, Medium


@dataclass
class System:
    """What export() may know about this machine; tests build their own."""
    local: dict[str, list[str]] = field(default_factory=dict)  # iface -> ["a/p"]
    resolve: Callable[[str], list[str]] = lambda name: []
    resource_d: set[str] = field(default_factory=set)   # CONFDIR/resource.d
    init_d: set[str] = field(default_factory=set)       # /etc/init.d


@dataclass
class Export:
    files: dict[str, str | bytes]
    notes: list[str]


def _line(cfg: Config, directive: str) -> int:
    return cfg.lines.get(directive, 0)


# ---------------------------------------------------------------- corosync


@dataclass
class Link:
    number: int
    dev: str | None
    media: list[Medium]
    addrs: dict[str, str] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.media[0].line if self.media else 0


def _network(sys_: System, dev: str | None):
    for a in sys_.local.get(dev or "", []):
        return ipaddress.ip_interface(a).network
    return None


def _pick(cands: list[str], net) -> str | None:
    """The first candidate inside net (the link's subnet, when known)."""
    for a in cands:
        if net is not None and ipaddress.ip_address(a) in net:
            return a
    return None


def _literal(sys_: System, text: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(text))]
    except ValueError:
        return sys_.resolve(text)


def links(cfg: Config, given: dict[str, str], sys_: System) -> tuple[list[Link], list[str]]:
    """One knet link per interface carrying a UDP medium, with every node's address."""
    notes: list[str] = []
    out: list[Link] = []
    for m in cfg.media:
        if m.kind == "serial":
            notes.append("%s:%d: serial medium %s has no Corosync equivalent; not exported"
                         % (os.path.join(cfg.confdir, "ha.cf"), m.line, m.dev))
            continue
        same = [k for k in out if k.dev == m.dev]
        if same:
            same[0].media.append(m)
        else:
            out.append(Link(len(out), m.dev, [m]))
    if not out:
        out.append(Link(0, None, []))
    local_all = {str(ipaddress.ip_interface(a).ip) for v in sys_.local.values() for a in v}
    for k in out:
        net = _network(sys_, k.dev)
        mine = [str(ipaddress.ip_interface(a).ip) for a in sys_.local.get(k.dev or "", [])]
        if mine and cfg.node in cfg.nodes:
            k.addrs[cfg.node] = mine[0]
        for n in cfg.nodes:
            cands = []
            for text in filter(None, given.get(n, "").split(",")):
                found = _literal(sys_, text)
                if not found:
                    raise cib.error(cfg, "ha.cf", _line(cfg, "node"), "--addr %s=%s: not "
                                    "an address, and the name does not resolve" % (n, text))
                cands.append(found[0])
            a = _pick(cands, net)
            if a is None and cands:     # one link: as given; several: one per link, in order
                a = cands[0] if len(out) == 1 else (cands[k.number:] or [None])[0]
            if a:
                k.addrs[n] = a
        ucast: list[str] = []
        for m in k.media:
            if m.kind in ("ucast", "ucast6") and m.addr:
                ucast.extend(_literal(sys_, m.addr)[:1])
        ucast = [a for a in ucast if a not in local_all and a not in k.addrs.values()]
        missing = [n for n in cfg.nodes if n not in k.addrs]
        if len(missing) == 1 and missing[0] != cfg.node and len(set(ucast)) == 1:
            k.addrs[missing[0]] = ucast[0]
        for n in cfg.nodes:
            if n not in k.addrs:
                found = sys_.resolve(n)
                a = _pick(found, net)
                if a is None and found and net is None and len(out) == 1:
                    a = found[0]
                if a:
                    k.addrs[n] = a
        for n in cfg.nodes:
            if n not in k.addrs:
                where = ("link %d (%s)" % (k.number, k.dev)) if k.dev else "link 0"
                raise cib.error(cfg, "ha.cf", k.line or _line(cfg, "node"),
                                "no address for node %s on %s: give --addr %s=ADDRESS%s"
                                % (n, where, n,
                                   "[,ADDRESS] (one per link)" if len(out) > 1 else ""))
        fams = {ipaddress.ip_address(a).version for a in k.addrs.values()}
        if len(fams) > 1:
            raise cib.error(cfg, "ha.cf", k.line, "link %d mixes IPv4 and IPv6 addresses: %s"
                            % (k.number, " ".join(sorted(k.addrs.values()))))
    return out, notes


def timing(deadtime: float) -> tuple[int, int]:
    """Corosync token and consensus (ms): a node is lost after token + consensus
    = deadtime, as hb declares it dead after deadtime."""
    token = max(100, round(deadtime * 1000 / 2.2))
    return token, max(120, round(deadtime * 1000) - token)


def corosync_conf(cfg: Config, ls: list[Link]) -> str:
    token, consensus = timing(cfg.deadtime)
    src = os.path.join(cfg.confdir, "ha.cf")
    crypto = cfg.auth is not None and cfg.auth.signing.method != "crc"
    w = ["# corosync.conf for Corosync 3 (knet), exported by hb-supervise --export pacemaker",
         "# from %s.  Install as /etc/corosync/corosync.conf on every node." % src, "",
         "totem {", "    version: 2", "    cluster_name: hb", "    transport: knet",
         "    # hb deadtime %gs: Corosync declares a node lost after token + consensus."
         % cfg.deadtime,
         "    token: %d" % token, "    consensus: %d" % consensus]
    if crypto:
        w += ["    # authkey is derived from the signing key of authkeys.",
              "    crypto_cipher: aes256", "    crypto_hash: sha256"]
    else:
        w += ["    # authkeys signs with crc (no secret): Corosync runs unauthenticated too.",
              "    crypto_cipher: none", "    crypto_hash: none"]
    for k in ls:
        origin = ", ".join("ha.cf:%d %s %s" % (m.line, m.kind, m.dev) for m in k.media)
        w += ["", "    # link %d: %s" % (k.number, origin or "node addresses"),
              "    interface {", "        linknumber: %d" % k.number, "    }"]
    w.append("}")
    for m in cfg.media:
        if m.kind == "serial":
            w += ["", "# ha.cf:%d serial %s: Corosync has no serial transport; this link is"
                  % (m.line, m.dev),
                  "# not exported.  Give the cluster a second network link instead."]
    w += ["", "nodelist {"]
    for i, n in enumerate(cfg.nodes, 1):
        w += ["    node {", "        name: %s" % n, "        nodeid: %d" % i]
        w += ["        ring%d_addr: %s" % (k.number, k.addrs[n]) for k in ls]
        w.append("    }")
    w += ["}", "", "quorum {", "    provider: corosync_votequorum"]
    if len(cfg.nodes) == 2:
        w += ["    # two_node implies wait_for_all: a node booting alone waits to see its",
              "    # peer once before it runs anything (hb took over after initdead).",
              "    two_node: 1"]
    w += ["}", "", "logging {", "    to_logfile: yes",
          "    logfile: /var/log/corosync/corosync.log", "    timestamp: on"]
    if cfg.logfacility and cfg.logfacility != "none":
        w += ["    to_syslog: yes", "    syslog_facility: %s" % cfg.logfacility]
    else:
        w.append("    to_syslog: no")
    w += ["}", ""]
    return "\n".join(w)


def authkey(cfg: Config) -> bytes:
    """256 bytes for /etc/corosync/authkey, derived from authkeys' signing key."""
    secret = cfg.auth.signing.key if cfg.auth else b""
    return hashlib.shake_256(b"hb export corosync authkey\0" + secret).digest(256)


# ---------------------------------------------------------------- README


def readme(cfg: Config, ls: list[Link], notes: list[str]) -> str:
    a, b = (cfg.nodes + ["PEER"])[:2]
    w = ["hb -> Corosync + Pacemaker: exported from %s" % cfg.confdir, "",
         "Files: corosync.conf, authkey, cib.xml (this directory).", "",
         "Nodes and addresses:"]
    for n in cfg.nodes:
        w.append("  %-12s %s" % (n, "  ".join("link%d=%s" % (k.number, k.addrs[n])
                                              for k in ls)))
    w += ["", "Steps (as root):", "",
          "1. On every node, install the cluster stack and this package's agents:",
          "     apt-get install corosync pacemaker pacemaker-cli-utils resource-agents hb",
          "     systemctl stop corosync pacemaker",
          "2. On every node, install the Corosync files:",
          "     install -m 0644 corosync.conf /etc/corosync/corosync.conf",
          "     install -m 0400 authkey /etc/corosync/authkey",
          "3. Check the resource configuration (no errors allowed):",
          "     crm_verify --xml-file cib.xml -V",
          "4. On every node, start the cluster stack; hb keeps running meanwhile",
          "   (Corosync uses UDP 5405, hb its own port) and Pacemaker has no resources yet:",
          "     systemctl start corosync pacemaker",
          "     crm_mon -1          # until every node is Online",
          "5. Hand everything to one node, then stop hb (the interruption starts with",
          "   the second stop and ends when Pacemaker has started the groups):",
          "     %s$ hb-switch standby all       # %s now holds every group" % (a, b),
          "     %s$ systemctl stop hb" % a,
          "     %s$ systemctl stop hb" % b,
          "     %s$ cibadmin --replace --xml-file cib.xml" % b,
          "     crm_mon -1          # every group Started",
          "6. On every node: systemctl disable hb; systemctl enable corosync pacemaker",
          "", "Before production: read the FENCING comment in cib.xml.",
          "cib.xml has admin_epoch 1 so that it replaces the empty configuration of",
          "a new cluster.  Rolling back: on every node systemctl stop pacemaker",
          "corosync, then systemctl start hb."]
    if notes:
        w += ["", "Notes from the export:"] + ["  " + n for n in notes]
    return "\n".join(w) + "\n"


def export(cfg: Config, addrs: dict[str, str], sys_: System) -> Export:
    """Every output file's content, or ConfigError for what cannot be expressed."""
    if cfg.watchdog:
        raise cib.error(cfg, "ha.cf", _line(cfg, "watchdog"), "watchdog has no Corosync 3 "
                        "equivalent: remove it and use sbd for a watchdog with Pacemaker")
    for n in addrs:
        if n not in cfg.nodes:
            raise cib.error(cfg, "ha.cf", _line(cfg, "node"), "--addr names %s, not a node" % n)
    ls, notes = links(cfg, addrs, sys_)
    if cfg.ipfail:
        notes.append("ipfail: replaced by the ping location rules in cib.xml")
    files: dict[str, str | bytes] = {
        "corosync.conf": corosync_conf(cfg, ls),
        "authkey": authkey(cfg),
        "cib.xml": cib.cib_xml(cfg, sys_.resource_d, sys_.init_d, notes),
    }
    files["README.export"] = readme(cfg, ls, notes)
    return Export(files, notes)


# ---------------------------------------------------------------- I/O


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_UDP)
    except OSError:
        return []
    return list(dict.fromkeys(i[4][0] for i in infos))


def _local_addrs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        text = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                              text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return out
    for line in text.splitlines():
        w = line.split()
        if len(w) > 3 and w[2] in ("inet", "inet6") and not w[3].startswith("fe80:"):
            out.setdefault(w[1].split("@")[0], []).append(w[3])
    return out


def _names(path: str) -> set[str]:
    try:
        return {n for n in os.listdir(path) if os.access(os.path.join(path, n), os.X_OK)}
    except OSError:
        return set()


def system(cfg: Config) -> System:
    """This machine, as export() sees it; its interfaces only if it is cfg.node."""
    here = cfg.node == os.uname().nodename.lower()
    return System(local=_local_addrs() if here else {}, resolve=_resolve,
                  resource_d=_names(os.path.join(cfg.confdir, "resource.d")),
                  init_d=_names("/etc/init.d"))


def _write(path: str, data: str | bytes, mode: int) -> None:
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def main_export(cfg: Config, outdir: str, addrs: dict[str, str],
                sys_: System | None = None) -> int:
    """Write the export into outdir; print the paths written on stdout."""
    try:
        ex = export(cfg, addrs, sys_ or system(cfg))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return exits.CONFIG_INVALID
    for n in ex.notes:
        print("hb-supervise: note: %s" % n, file=sys.stderr)
    try:
        os.makedirs(outdir, exist_ok=True)
        for name, data in ex.files.items():
            _write(os.path.join(outdir, name), data, 0o400 if name == "authkey" else 0o644)
            print(os.path.join(outdir, name))
    except OSError as e:
        print("hb-supervise: fatal: unable to write %s: %s" % (outdir, e.strerror),
              file=sys.stderr)
        return exits.FAIL
    return exits.OK
