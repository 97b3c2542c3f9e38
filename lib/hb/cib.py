"""haresources, ping and respawn lines as a Pacemaker CIB (cib.xml) for `--export pacemaker`.

Pure: what this machine has (the scripts in CONFDIR/resource.d and /etc/init.d)
comes in as sets of names; what Pacemaker cannot express is ConfigError("FILE:LINE: ...").
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from posixpath import basename, join        # path strings only: no file is read here

from hb import addrspec
from hb.settings import Config, ConfigError, Group, Resource

LOCATION_SCORE = 100          # preference for a group's preferred node
STICKY = 200                  # auto_failback off: more than the preference
PING_SCORE = 1000             # per reachable ping node: more than both
SCHEMA = "pacemaker-3.0"

# Heartbeat's resource.d wrappers (heartbeat 3.0.6) and, in order, the parameters of
# the ocf:heartbeat agent their arguments set; "nodelist*": all arguments as one,
# "ip/nic": one IP/IFACE argument.
WRAPPERS: dict[str, list[str]] = {
    "AudibleAlarm": ["nodelist*"],
    "Delay": ["startdelay", "stopdelay"],
    "Filesystem": ["device", "directory", "fstype", "options"],
    "ICP": ["driveid", "device"],
    "IPsrcaddr": ["ipaddress"],
    "IPv6addr": ["ipv6addr"],
    "LVM": ["volgrpname"],
    "LinuxSCSI": ["scsi"],
    "Raid1": ["raidconf", "raiddev"],
    "SendArp": ["ip/nic"],
    "ServeRAID": ["serveraid", "mergegroup"],
    "WAS": ["config"],
    "WinPopup": ["hostfile"],
    "Xinetd": ["service"],
    "apache": ["configfile"],
    "db2": ["instance"],
    "ids": ["informixdir", "informixserver", "onconfig"],
    "portblock": ["protocol", "portno", "action"],
}


def error(cfg: Config, fname: str, line: int, msg: str) -> ConfigError:
    """ConfigError for line of CONFDIR/fname."""
    return ConfigError("%s:%d: %s" % (join(cfg.confdir, fname), line, msg))


def _safe(text: str) -> str:
    """Text fit for an XML comment (no double hyphen)."""
    return re.sub(r"-(?=-)", "- ", text).rstrip("-")


def _ident(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return s if s and s[0].isalpha() else "r" + s


def _nv(parent: ET.Element, tag: str, pid: str, pairs: list[tuple[str, str]]) -> None:
    if not pairs:
        return
    box = ET.SubElement(parent, tag, id=pid)
    for k, v in pairs:
        ET.SubElement(box, "nvpair", id="%s-%s" % (pid, _ident(k)), name=k, value=v)


def ip_params(cfg: Config, r: Resource) -> list[tuple[str, str]]:
    """Heartbeat's IP[/NETMASK[/IFACE[/BROADCAST]]] as hb-ipaddr's OCF parameters."""
    if len(r.args) != 1:
        raise error(cfg, "haresources", r.line, "%s takes one argument, not %d"
                    % (r.name, len(r.args)))
    try:
        a = addrspec.parse(r.args[0], "IPaddr")
    except ValueError as e:
        raise error(cfg, "haresources", r.line, str(e)) from None
    out = [("ip", a.ip)]
    for name, v in (("cidr_netmask", a.prefix), ("nic", a.iface), ("iflabel", a.label),
                    ("broadcast", a.broadcast)):
        if v is not None:
            out.append((name, str(v)))
    return out


def primitive(cfg: Config, r: Resource, resource_d: set[str], init_d: set[str],
              notes: list[str]) -> tuple[str, str, str, list[tuple[str, str]], str]:
    """(class, provider, type, params, id-hint) for one haresources entry."""
    where = "%s:%d" % (join(cfg.confdir, "haresources"), r.line)
    if r.name in ("IPaddr", "IPaddr2"):
        p = ip_params(cfg, r)
        return "ocf", "hb", "IPaddr", p, "ip-" + p[0][1]
    if r.name == "MailTo":
        if not 1 <= len(r.args) <= 2:
            raise error(cfg, "haresources", r.line, "MailTo takes an address list and "
                        "an optional subject")
        p = [("email", r.args[0])] + ([("subject", r.args[1])] if len(r.args) > 1 else [])
        return "ocf", "hb", "MailTo", p, "mailto"
    in_rd = r.name in resource_d
    if r.name in WRAPPERS and (in_rd or r.name not in init_d):
        names = WRAPPERS[r.name]
        if names == ["ip/nic"]:
            if len(r.args) != 1 or "/" not in r.args[0]:
                raise error(cfg, "haresources", r.line, "SendArp takes IP/IFACE")
            ip, nic = r.args[0].split("/", 1)
            p = [("ip", ip), ("nic", nic)]
        elif names == ["nodelist*"]:
            p = [("nodelist", " ".join(r.args))] if r.args else []
        else:
            if len(r.args) > len(names):
                raise error(cfg, "haresources", r.line, "%s takes at most %d arguments"
                            % (r.name, len(names)))
            p = list(zip(names, r.args))
        return "ocf", "heartbeat", r.name, p, r.name.lower()
    if r.args:
        raise error(cfg, "haresources", r.line, "%s has arguments, but Pacemaker's lsb "
                    "class passes none and no OCF agent takes its place" % r.text)
    if in_rd and r.name in init_d:
        raise error(cfg, "haresources", r.line, "resource.d/%s hides /etc/init.d/%s, "
                    "which lsb:%s would run instead" % (r.name, r.name, r.name))
    if in_rd:
        notes.append("%s: resource.d/%s becomes lsb:%s: copy it to /etc/init.d/%s on "
                     "every node (Pacemaker judges its status by LSB exit code)"
                     % (where, r.name, r.name, r.name))
    elif r.name not in init_d:
        notes.append("%s: %s found in neither resource.d nor /etc/init.d here; exported "
                     "as lsb:%s" % (where, r.name, r.name))
    return "lsb", "", r.name, [], r.name


def _group(cfg: Config, g: Group, resource_d: set[str], init_d: set[str], notes: list[str],
           res: ET.Element, ids: set[str]) -> str:
    gid = _ident("g%d-%s" % (g.index, g.node))
    ge = ET.SubElement(res, "group", id=gid)
    for r in g.resources:
        cls, prov, typ, params, hint = primitive(cfg, r, resource_d, init_d, notes)
        pid = _ident("%s-%s" % (gid, hint))
        n = 2
        while pid in ids:
            pid, n = _ident("%s-%s-%d" % (gid, hint, n)), n + 1
        ids.add(pid)
        attrs = {"id": pid, "class": cls, "type": typ}
        if prov:
            attrs["provider"] = prov
        pe = ET.SubElement(ge, "primitive", attrs)
        pe.append(ET.Comment(" haresources:%d %s " % (r.line, _safe(r.text))))
        _nv(pe, "instance_attributes", pid + "-instance_attributes", params)
        if cfg.monitor:
            ops = ET.SubElement(pe, "operations")
            ET.SubElement(ops, "op", id="%s-monitor-%gs" % (pid, cfg.monitor),
                          name="monitor", interval="%gs" % cfg.monitor,
                          timeout="%gs" % max(20.0, cfg.monitor))
    return gid


def cib_xml(cfg: Config, resource_d: set[str], init_d: set[str], notes: list[str]) -> str:
    """cib.xml: the groups with their location preferences, the ping rules, the respawns."""
    cib = ET.Element("cib", {"validate-with": SCHEMA, "admin_epoch": "1", "epoch": "1",
                             "num_updates": "0"})
    conf = ET.SubElement(cib, "configuration")
    crm = ET.SubElement(conf, "crm_config")
    crm.append(ET.Comment(
        " FENCING: hb had none, and neither has this cluster (stonith-enabled=false):"
        " if the nodes lose sight of each other, both run the resources, as with hb."
        " Before production, decide: configure a fence device for every node"
        " (fence_ipmilan, fence_virsh, sbd...), then set stonith-enabled=true."
        " no-quorum-policy=stop is safe here because corosync's two_node keeps the"
        " surviving node quorate. "))
    _nv(crm, "cluster_property_set", "cib-bootstrap-options",
        [("stonith-enabled", "false"), ("no-quorum-policy", "stop"),
         ("cluster-name", "hb")])
    ET.SubElement(conf, "nodes")
    res = ET.SubElement(conf, "resources")
    cons = ET.SubElement(conf, "constraints")
    ids: set[str] = set()
    gids = []
    for g in cfg.groups:
        if g.node not in cfg.nodes:
            raise error(cfg, "haresources", g.line, "unknown node %s" % g.node)
        gid = _group(cfg, g, resource_d, init_d, notes, res, ids)
        gids.append(gid)
        ET.SubElement(cons, "rsc_location", id="%s-prefers-%s" % (gid, _ident(g.node)),
                      rsc=gid, node=g.node, score=str(LOCATION_SCORE))
    _pings(cfg, res, cons, gids)
    _respawns(cfg, res)
    defaults = ET.SubElement(conf, "rsc_defaults")
    sticky = STICKY if cfg.auto_failback == "off" else 0
    defaults.append(ET.Comment(
        " auto_failback %s: resource-stickiness %d %s the preferred node's score %d "
        % (cfg.auto_failback, sticky, "outweighs" if sticky else "does not outweigh",
           LOCATION_SCORE)))
    meta = [("resource-stickiness", str(sticky))]
    if cfg.monitor:
        meta += [("migration-threshold", "3"),
                 ("failure-timeout", "%gs" % (10 * cfg.monitor))]
    _nv(defaults, "meta_attributes", "rsc-options", meta)
    ET.SubElement(cib, "status")
    ET.indent(cib, "  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!-- cib.xml: the resources of %s for Pacemaker, exported by\n'
            '     hb-supervise; README.export says how to check and load it. -->\n'
            % _safe(cfg.confdir)) + ET.tostring(cib, encoding="unicode") + "\n"


def _pings(cfg: Config, res: ET.Element, cons: ET.Element, gids: list[str]) -> None:
    """Each ping node or ping_group as a cloned ocf:pacemaker:ping whose attribute
    adds PING_SCORE to every group's location on a node that reaches it."""
    for i, p in enumerate(cfg.pings, 1):
        cid = "ping%d" % i
        clone = ET.SubElement(res, "clone", id=cid + "-clone")
        pe = ET.SubElement(clone, "primitive", {"id": cid, "class": "ocf",
                                                "provider": "pacemaker", "type": "ping"})
        pe.append(ET.Comment(_safe(" ha.cf:%d %s %s " % (
            p.line, "ping_group " + p.name if p.group else "ping", " ".join(p.addrs)))))
        interval = max(1.0, cfg.deadping / 2)
        _nv(pe, "instance_attributes", cid + "-instance_attributes",
            [("host_list", " ".join(p.addrs)), ("name", "hb-" + cid), ("multiplier", "1"),
             ("dampen", "%gs" % (cfg.deadping / 2))])
        ops = ET.SubElement(pe, "operations")
        ET.SubElement(ops, "op", id=cid + "-monitor", name="monitor",
                      interval="%gs" % interval, timeout="%gs" % max(20.0, interval))
        for gid in gids:
            loc = ET.SubElement(cons, "rsc_location", id="%s-%s" % (gid, cid), rsc=gid)
            rule = ET.SubElement(loc, "rule", id="%s-%s-rule" % (gid, cid),
                                 score=str(PING_SCORE))
            ET.SubElement(rule, "expression", id="%s-%s-expr" % (gid, cid),
                          attribute="hb-" + cid, operation="gt", value="0", type="number")


def _respawns(cfg: Config, res: ET.Element) -> None:
    """`respawn USER PROGRAM` as a cloned ocf:heartbeat:anything (ipfail excepted:
    the ping constraints do its job)."""
    for i, r in enumerate(cfg.respawns, 1):
        words = r.command.split()
        if not words or basename(words[0]) == "ipfail":
            continue
        cid = "respawn%d" % i
        clone = ET.SubElement(res, "clone", id=cid + "-clone")
        pe = ET.SubElement(clone, "primitive", {"id": cid, "class": "ocf",
                                                "provider": "heartbeat", "type": "anything"})
        pe.append(ET.Comment(_safe(" ha.cf:%d respawn %s %s " % (r.line, r.user, r.command))))
        p = [("binfile", words[0]), ("user", r.user)]
        if words[1:]:
            p.append(("cmdline_options", " ".join(words[1:])))
        _nv(pe, "instance_attributes", cid + "-instance_attributes", p)
        ops = ET.SubElement(pe, "operations")
        ET.SubElement(ops, "op", id=cid + "-monitor", name="monitor", interval="10s",
                      timeout="20s")
