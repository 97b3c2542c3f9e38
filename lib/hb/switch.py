"""hb-switch: move resource groups by hand, and show who holds what.

Usage:
  hb-switch standby [all|local|foreign|failback] [-r RUNDIR] [--wait S | --no-wait] [--force]
  hb-switch takeover [all|local|foreign|failback] [-r RUNDIR] [--wait S | --no-wait]
  hb-switch maintenance on [--for DURATION] [-r RUNDIR] [--wait S | --no-wait]
  hb-switch maintenance off [-r RUNDIR] [--wait S | --no-wait]
  hb-switch status [--format=FMT] [-r RUNDIR]
  hb-switch why [GROUP] [-r RUNDIR]
  hb-switch cl_status (hbstatus|rscstatus) [-r RUNDIR]
  hb-switch cl_status listnodes [-p | -n] [-r RUNDIR]
  hb-switch cl_status nodestatus NODE [-r RUNDIR]
  hb-switch cl_status listhblinks NODE [-r RUNDIR]
  hb-switch cl_status hblinkstatus NODE LINK [-r RUNDIR]
  hb-switch -h | --help | -V | --version

Options:
  -r RUNDIR       run directory of hb-watch [default: /var/run/hb]
  --wait S        wait at most S seconds for the result [default: 30]
  --no-wait       send the request and return at once
  --force         standby even though the peer is dead (then nothing runs the groups)
  --for DURATION  maintenance ends after DURATION (e.g. 600, 90s, 30m, 2h, 1d) [default: 1h]
  --format=FMT    status as text, shell (KEY=VALUE lines), json or prometheus
                  [default: text]
  -p              listnodes: ping nodes only
  -n              listnodes: normal nodes only
  -h --help       show this help
  -V, --version   print the program's name and hb's version
"""

from __future__ import annotations

import os
import sys
import time

from hb import access, cli, exits, runfiles, status, statusview, switching

POLL = 0.01
RETRY = 1.0                          # s between requests refused 'in flux'


def _read(rundir: str) -> dict | None:
    """The parsed status, None when there is none; access.Unreadable without permission."""
    text = access.read(os.path.join(rundir, runfiles.STATUS))
    return status.parse(text) if text is not None else None


def _wait_arg(args: dict) -> float:
    if args["--no-wait"]:
        return 0.0
    try:
        w = float(args["--wait"])
    except ValueError:
        w = -1.0
    if not 0 <= w < 1e6:
        raise ValueError("--wait wants seconds (0 to 999999), not %r" % args["--wait"])
    return w


def request(args: dict) -> int:
    rundir = args["-r"]
    verb = "standby" if args["standby"] else "takeover" if args["takeover"] else "maintenance"
    which = "local" if args["local"] else "foreign" if args["foreign"] else \
        "failback" if args["failback"] else "all"
    line, secs = "%s %s" % (verb, which), 0.0
    which = switching.failback(verb, which)
    try:
        wait = _wait_arg(args)
        if args["maintenance"]:
            try:
                secs = switching.duration(args["--for"]) if args["on"] else 0.0
            except ValueError:
                raise ValueError("--for wants a duration such as 600, 90s, 30m, 2h or 1d, "
                                 "not %r" % args["--for"]) from None
            line = "maintenance on %d" % round(secs) if args["on"] else "maintenance off"
    except ValueError as e:
        print("hb-switch: %s (try 'hb-switch --help')" % e, file=sys.stderr)
        return exits.USAGE
    try:
        st = _read(rundir)
    except access.Unreadable as e:
        print("hb-switch: %s" % e, file=sys.stderr)
        return exits.UNKNOWN
    p = status.peer(st) if st is not None else None
    if verb == "standby" and st is not None and not args["--force"] \
            and any(g.get("holder") in (status.me(st), "both")
                    for g in switching.chosen(st, which)) \
            and (p is None or p.get("status") != "up"):
        print("fail: standby refused: peer %s is %s, nothing would run the groups "
              "(--force stops them anyway)" % (p["name"] if p else "(none)",
                                               p.get("status") if p else "unknown"))
        return exits.SWITCH_REFUSED
    if verb != "maintenance" and st is not None and status.maintenance(st)[0]:
        print("fail: %s refused: maintenance mode is on until %s (hb-switch maintenance off)"
              % (verb, statusview.clock(status.maintenance(st)[1])))
        return exits.SWITCH_REFUSED
    t0, last0 = time.time(), st["last"] if st is not None else {}
    err = switching.send(rundir, line)
    if err:
        print("fail: %s: %s" % (verb, err))
        return exits.SWITCH_REFUSED
    if not wait:
        print("ok: %s requested" % line)
        return exits.SWITCH_DONE
    path = os.path.join(rundir, runfiles.STATUS)
    sig: tuple | None = None
    sent, before, retry_at, said = t0, last0, None, False
    while True:
        now = time.time()
        try:
            s = os.stat(path)
            new = (s.st_ino, s.st_mtime_ns)
        except FileNotFoundError:
            new = None
        if new != sig:
            sig, st = new, _read(rundir)
            res = None if st is None else switching.maint_outcome(st, secs, t0) \
                if verb == "maintenance" else switching.outcome(st, verb, which, sent, before)
            why = switching.flux(st) if res is not None and res[0] == "fail" else None
            if why and now + RETRY < t0 + wait:
                if not said:        # a transition is under way: ask again once it is over
                    print("hb-switch: %s: %s: waiting (at most %g s)" % (verb, why, wait),
                          file=sys.stderr)
                    said = True
                before, retry_at = st["last"], now + RETRY
            elif res is not None:
                print("%s: %s (%.2f s)" % (res[0], res[1], time.time() - t0))
                return exits.SWITCH_DONE if res[0] == "ok" else exits.SWITCH_REFUSED
        if retry_at is not None and now >= retry_at:
            retry_at = None
            if switching.flux(st):            # still the refusal (not yet accepted meanwhile)
                err = switching.send(rundir, line)
                if err:
                    print("fail: %s: %s" % (verb, err))
                    return exits.SWITCH_REFUSED
                sent = now
                retry_at = now + RETRY    # an identical refusal within the second is not new
        if now - t0 >= wait:
            break
        time.sleep(POLL)
    what = ", ".join("group %s %s on %s" % (g["index"], g.get("state"), g.get("holder"))
                     for g in switching.chosen(st, which)) \
        if st is not None and verb != "maintenance" else ""
    a = status.age(st, time.time()) if st is not None else None
    stale = "; status is stale (last written %.0f s ago)" % (a or 0) \
        if st is not None and status.is_stale(st, time.time(), runfiles.pid_alive) else ""
    print("timeout: %s%s after %g s%s" % (line, ": " + what if what else "", wait, stale))
    return exits.SWITCH_TIMEOUT


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    if args["status"] and args["--format"] not in statusview.FORMATS:
        print("hb-switch: --format is one of %s, not %r (try 'hb-switch --help')"
              % (", ".join(statusview.FORMATS), args["--format"]), file=sys.stderr)
        return exits.USAGE
    if not (args["status"] or args["cl_status"] or args["why"]):
        return request(args)
    try:
        st = _read(args["-r"])
    except access.Unreadable as e:
        print("hb-switch: %s" % e, file=sys.stderr)
        return exits.UNKNOWN
    if args["status"]:
        rc, out = statusview.show(st, args["--format"], time.time())
        sys.stdout.write(out)
        return rc
    if args["why"]:
        rc, out = statusview.why(st, args["GROUP"])
        sys.stdout.write(out)
        return rc
    rc, out, err = statusview.cl_status(args, st, time.time())
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc
