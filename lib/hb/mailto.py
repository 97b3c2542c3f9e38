"""hb-mailto: mail the admins when a resource group starts or stops here (MailTo).

Usage:
  hb-mailto [options] EMAIL ACTION
  hb-mailto [options] EMAIL SUBJECT ACTION
  hb-mailto [options] ACTION
  hb-mailto [options] --flush
  hb-mailto -h | --help | -V | --version

EMAIL is an address, or several joined by commas; SUBJECT names the resource
group (default "Resource Group"); ACTION is start, stop or status, Heartbeat's
MailTo convention.  Without EMAIL, hb-mailto is an OCF resource agent: it reads
OCF_RESKEY_email and OCF_RESKEY_subject, and ACTION may also be monitor,
meta-data or validate-all.  start and stop put the mail in the spool, then
deliver the spool; what cannot be delivered waits there for the next run (or
--flush), and the action still succeeds.  HB_CONFDIR, HB_RUNDIR and HB_STATEDIR
in the environment change the directories' defaults (for Pacemaker).

Options:
  -c CONFDIR          configuration directory, for mailto.conf (default: /etc/ha.d)
  -r RUNDIR           run directory, for the state file (default: /var/run/hb)
  -s STATEDIR         state directory, for the mail spool (default: /var/lib/hb)
  --node NAME         this node's name (default: uname -n, lower-cased)
  --smtp HOST[:PORT]  deliver by SMTP to HOST (port 25) even when sendmail exists
  --flush             only deliver the spool and the held-back events now due
  -h, --help          show this help
  -V, --version       print the program's name and hb's version
"""

from __future__ import annotations

import os
import sys

from hb import cli, exits, mail, runfiles

PROG = "hb-mailto"


def _say(text: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, text))


def _fatal(verb: str, obj: str, reason: object) -> None:
    sys.stderr.write("%s: fatal: unable to %s %s: %s\n" % (PROG, verb, obj, reason))


def meta_data() -> str:
    """OCF 1.1 meta-data (valid against ra-api-1.dtd)."""
    return """<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="MailTo" version="1.0">
<version>1.1</version>
<longdesc lang="en">
hb's MailTo agent (hb-mailto).  Mails the given addresses when the resource
starts ("Takeover in progress on NODE") or stops ("Migrating resource away
from NODE"), through /usr/sbin/sendmail -t or SMTP as /etc/ha.d/mailto.conf
says.  Mails are spooled and retried, rate-limited per address; start and stop
never fail for want of delivery.
</longdesc>
<shortdesc lang="en">Mails the admins when resources start or stop</shortdesc>
<parameters>
<parameter name="email" required="1" unique="0">
<longdesc lang="en">Address(es) to mail, separated by commas.</longdesc>
<shortdesc lang="en">Mail address(es)</shortdesc>
<content type="string" default="" />
</parameter>
<parameter name="subject" unique="0">
<longdesc lang="en">The resource group named in the subject of the mails.</longdesc>
<shortdesc lang="en">Subject</shortdesc>
<content type="string" default="%s" />
</parameter>
</parameters>
<actions>
<action name="start" timeout="10s" />
<action name="stop" timeout="10s" />
<action name="status" timeout="10s" />
<action name="monitor" timeout="10s" interval="10s" depth="0" />
<action name="meta-data" timeout="5s" />
<action name="validate-all" timeout="5s" />
</actions>
</resource-agent>
""" % mail.DEFAULT_SUBJECT


def _env(args: dict) -> dict[str, str]:
    env = dict(os.environ)
    if args["--smtp"]:
        host, _, port = args["--smtp"].partition(":")
        env.update(HB_SENDMAIL="none", HB_SMTP_HOST=host, HB_SMTP_PORT=port or "25")
    return env


def _flush(statedir: str, cfg: dict, node: str) -> None:
    for line in mail.release_held(statedir, cfg, node)[0]:
        _say(line)
    n, err = mail.flush(statedir, cfg)
    if n:
        _say("%d mail%s delivered" % (n, "s" * (n != 1)))
    if err:
        _say("warning: " + err)


def run(addrs: list[str], subject: str, action: str, args: dict, ocf: bool) -> int:
    node = args["--node"] or os.uname().nodename.lower()
    rundir, statedir = args["-r"], args["-s"]
    if action in ("status", "monitor"):
        up = mail.is_started(rundir, mail.instance_name(addrs, subject))
        if not ocf:
            print("running" if up else "stopped")
        if up:
            return exits.OK
        return exits.LSB_NOT_RUNNING if action == "status" and not ocf \
            else exits.OCF_NOT_RUNNING
    if action == "validate-all":
        mail.settings(mail.load_conf(args["-c"]), _env(args))
        return exits.OCF_SUCCESS
    if action not in ("start", "stop"):
        _fatal("run", action, "unimplemented action")
        return exits.OCF_ERR_UNIMPLEMENTED
    try:
        said, cfg = mail.act(addrs, subject, action, node, rundir, statedir, args["-c"],
                             _env(args))
    except OSError as e:
        _fatal(action, "MailTo", e)
        return exits.OCF_ERR_GENERIC if action == "start" else exits.OK
    for line in said:
        _say(line)
    _flush(statedir, cfg, node)
    return exits.OK


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    for opt, var, default in (("-c", "HB_CONFDIR", runfiles.CONFDIR),
                              ("-r", "HB_RUNDIR", runfiles.RUNDIR),
                              ("-s", "HB_STATEDIR", runfiles.VARDIR)):
        args[opt] = args[opt] or os.environ.get(var) or default
    action = args["ACTION"]
    ocf = args["EMAIL"] is None
    try:
        if args["--flush"]:
            _flush(args["-s"], mail.settings(mail.load_conf(args["-c"]), _env(args)),
                   args["--node"] or os.uname().nodename.lower())
            return exits.OK
        if ocf and action == "meta-data":
            sys.stdout.write(meta_data())
            return exits.OCF_SUCCESS
        if ocf and action not in ("start", "stop", "status", "monitor", "validate-all"):
            _fatal("run", action, "unimplemented action")
            return exits.OCF_ERR_UNIMPLEMENTED
        if not ocf and action not in ("start", "stop", "status", "monitor"):
            _fatal("run", action, "unknown action (start, stop or status)")
            return exits.USAGE
        if ocf:
            email = os.environ.get("OCF_RESKEY_email", "")
            subject = os.environ.get("OCF_RESKEY_subject") or mail.DEFAULT_SUBJECT
        else:
            email, subject = args["EMAIL"], args["SUBJECT"] or mail.DEFAULT_SUBJECT
        addrs = mail.parse_addrs(email)
        return run(addrs, subject, action, args, ocf)
    except mail.MailError as e:
        _fatal(action or "flush", "MailTo", e)
        if action == "stop":
            return exits.OK
        return exits.OCF_ERR_CONFIGURED if ocf else exits.USAGE
