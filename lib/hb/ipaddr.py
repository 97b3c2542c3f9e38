"""hb-ipaddr: a floating IPv4 or IPv6 address, as Heartbeat's IPaddr and as an OCF agent.

Usage:
  hb-ipaddr [options] ADDRESS ACTION
  hb-ipaddr [options] ACTION
  hb-ipaddr -h | --help | -V | --version

ADDRESS is IP[/PREFIX[/IFACE[:LABEL][/BROADCAST]]], Heartbeat's IPaddr and IPaddr2
argument, optionally followed by ::NAME=VALUE parameters (arp_count=10);
ACTION is start, stop, status or monitor.  Without ADDRESS, hb-ipaddr is
an OCF resource agent: the address comes from OCF_RESKEY_ip, OCF_RESKEY_cidr_netmask,
OCF_RESKEY_nic and the other parameters that meta-data lists, and ACTION may also be
meta-data or validate-all.

Options:
  --agent NAME       announce as IPaddr (10 ARP pairs 500 ms apart) or IPaddr2
                     (5 pairs 200 ms apart) does [default: IPaddr2]
  --arp-count N      request+reply pairs (IPv6: advertisements) sent at start
  --arp-interval MS  milliseconds between pairs (a reply half-way between)
  --no-dad           start without duplicate address detection
  --dad-timeout MS   how long start waits for another holder to answer (default 100)
  --router           IPv6: set the router flag in the neighbour advertisements
  -h, --help         show this help
  -V, --version      print the program's name and hb's version
"""

from __future__ import annotations

import os
import sys

from hb import addrspec, cli, exits, netlink

PROG = "hb-ipaddr"
ACTIONS = ("start", "stop", "status", "monitor")
OCF_ACTIONS = ACTIONS + ("meta-data", "validate-all")


def _say(text: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, text))


def _fatal(verb: str, obj: str, reason: object) -> None:
    sys.stderr.write("%s: fatal: unable to %s %s: %s\n" % (PROG, verb, obj, reason))


def _options(spec: addrspec.Spec, args: dict) -> None:
    for opt, name in (("--arp-count", "arp_count"), ("--arp-interval", "arp_interval"),
                      ("--dad-timeout", "dad_timeout")):
        if args[opt] is not None:
            addrspec.set_param(spec, name, args[opt], opt)
    if args["--no-dad"]:
        spec.dad = False
    if args["--router"]:
        spec.router = True


def _agent(args: dict) -> str:
    name = args["--agent"] or addrspec.DEFAULT_AGENT
    if name not in addrspec.AGENTS:
        raise addrspec.SpecError("--agent: %r is neither IPaddr nor IPaddr2" % name)
    return name


def meta_data() -> str:
    """OCF 1.1 meta-data (valid against ra-api-1.dtd)."""
    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace('"', "&quot;")
    params = []
    for name, typ, default, desc in addrspec.OCF_PARAMS:
        req = ' required="1" unique="1"' if name == "ip" else ""
        params.append(
            '<parameter name="%s"%s>\n<longdesc lang="en">%s</longdesc>\n'
            '<shortdesc lang="en">%s</shortdesc>\n<content type="%s" default="%s" />\n'
            '</parameter>' % (name, req, esc(desc), esc(desc.split(";")[0].rstrip(".")),
                              typ, esc(default)))
    return """<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="IPaddr" version="1.0">
<version>1.1</version>
<longdesc lang="en">
hb's floating address agent (hb-ipaddr).  Adds an IPv4 or IPv6 address to an
interface through netlink, after checking that no other host on the link answers
for it (ARP probe, or neighbour solicitation for IPv6), and announces it with
gratuitous ARP requests and replies (IPv4) or unsolicited neighbour advertisements
(IPv6): the first at once, the others arp_interval apart.  Removes it on stop.
Start of a held address announces it again; stop of an absent one succeeds.
</longdesc>
<shortdesc lang="en">Manages a floating IPv4 or IPv6 address</shortdesc>
<parameters>
%s
</parameters>
<actions>
<action name="start" timeout="20s" />
<action name="stop" timeout="20s" />
<action name="status" timeout="20s" interval="10s" depth="0" />
<action name="monitor" timeout="20s" interval="10s" depth="0" />
<action name="meta-data" timeout="5s" />
<action name="validate-all" timeout="20s" />
</actions>
</resource-agent>
""" % "\n".join(params)


def _heartbeat(spec_text: str, action: str, args: dict) -> int:
    """Heartbeat's convention: LSB codes; status prints running or stopped."""
    if action not in ACTIONS:
        _fatal("run", action, "unknown action (start, stop, status or monitor)")
        return exits.OCF_ERR_UNIMPLEMENTED if action in OCF_ACTIONS else exits.USAGE
    try:
        spec = addrspec.parse(spec_text, _agent(args))
        _options(spec, args)
    except addrspec.SpecError as e:
        _fatal(action, spec_text, e)
        return exits.LSB_UNKNOWN if action == "status" else exits.OCF_ERR_ARGS
    if action in ("status", "monitor"):
        try:
            up = netlink.find_held(spec) is not None
        except OSError as e:
            _fatal("query", spec_text, e)
            return exits.LSB_UNKNOWN if action == "status" else exits.OCF_ERR_GENERIC
        print("running" if up else "stopped")
        if up:
            return exits.LSB_OK
        return exits.LSB_NOT_RUNNING if action == "status" else exits.OCF_NOT_RUNNING
    return _change(spec, action, spec_text)


def _change(spec: addrspec.Spec, action: str, what: str) -> int:
    from hb import address     # here: status and monitor need only netlink
    try:
        if action == "start":
            _say(address.start(spec, "fork"))
        else:
            _say(address.stop(spec))
        return exits.OK
    except addrspec.SpecError as e:
        _fatal(action, what, e)
        return exits.OCF_ERR_CONFIGURED
    except address.Refused as e:
        _fatal(action, what, e)
        return exits.OCF_ERR_GENERIC
    except PermissionError as e:
        _fatal(action, what, e)
        return exits.OCF_ERR_PERM
    except Exception as e:      # OSError, pyroute2's NetlinkError
        _fatal(action, what, e)
        return exits.OCF_ERR_GENERIC


def _ocf(action: str, args: dict) -> int:
    """The OCF convention: parameters from OCF_RESKEY_*, OCF exit codes."""
    if action == "meta-data":
        sys.stdout.write(meta_data())
        return exits.OCF_SUCCESS
    if action not in OCF_ACTIONS:
        _fatal("run", action, "unimplemented action")
        return exits.OCF_ERR_UNIMPLEMENTED
    try:
        spec = addrspec.from_ocf(os.environ, _agent(args))
        _options(spec, args)
    except addrspec.SpecError as e:
        _fatal(action, os.environ.get("OCF_RESKEY_ip", "address"), e)
        return exits.OCF_ERR_CONFIGURED
    if action == "validate-all":
        from hb import address     # here: status and monitor need only netlink
        try:
            iface, prefix = address.validate(spec)
        except addrspec.SpecError as e:
            _fatal("validate", spec.ip, e)
            return exits.OCF_ERR_CONFIGURED
        _say("%s/%d on %s: valid" % (spec.ip, prefix, iface))
        return exits.OCF_SUCCESS
    if action in ("status", "monitor"):
        try:
            up = netlink.find_held(spec) is not None
            if up and spec.arp_count_refresh:
                from hb import address     # here: a plain monitor needs only netlink
                address.refresh(spec)
        except OSError as e:
            _fatal("query", spec.ip, e)
            return exits.OCF_ERR_GENERIC
        return exits.OCF_SUCCESS if up else exits.OCF_NOT_RUNNING
    return _change(spec, action, spec.ip)


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    if args["ADDRESS"] is not None:
        return _heartbeat(args["ADDRESS"], args["ACTION"], args)
    return _ocf(args["ACTION"], args)
