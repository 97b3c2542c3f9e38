"""cl_status, hb_standby and hb_takeover under Heartbeat's own names.

Runbooks, cron jobs and monitoring plugins call Heartbeat's
/usr/share/heartbeat/hb_standby, hb_takeover and /usr/bin/cl_status.  hb's package
diverts the three names to itself (Heartbeat's files keep working as NAME.heartbeat)
and these commands answer for whichever daemon runs on the node:

- hb-watch runs (its status file is current): the answer comes from RUNDIR/status
  and the ha.cf hb reads, with Heartbeat 3.0.6's output, error lines and exit codes;
  a standby or takeover is one line to RUNDIR/watch.fifo;
- else Heartbeat runs (the pid in /var/run/heartbeat.pid is a live `heartbeat`) and
  its own program is there: it is exec'd, so that during a migration the name keeps
  talking to the daemon that actually runs;
- else neither runs: cl_status says what Heartbeat's says of a stopped Heartbeat,
  hb_standby and hb_takeover say that nothing reads their request.

The answers are hbapi's (pure: status and ha.cf text in, exit code, stdout and
stderr out); this module finds the daemon and does the I/O.  The environment may
name other places: HB_RUNDIR (the run directory, default /var/run/hb),
HB_CONFDIR (default /etc/ha.d).
"""

from __future__ import annotations

import os
import sys
import time

from hb import access, hbapi, proc, runfiles, status, switching

RUNDIR_ENV, CONFDIR_ENV = "HB_RUNDIR", "HB_CONFDIR"
HEARTBEAT_PIDFILE = "/var/run/heartbeat.pid"
# Heartbeat's programs: the diverted name first (hb's package installs its own in
# their place), then the original path when that is not this very program.
REAL = {
    "cl_status": ["/usr/bin/cl_status.heartbeat", "/usr/bin/cl_status"],
    "hb_standby": ["/usr/share/heartbeat/hb_standby.heartbeat",
                   "/usr/share/heartbeat/hb_standby"],
    "hb_takeover": ["/usr/share/heartbeat/hb_takeover.heartbeat",
                    "/usr/share/heartbeat/hb_takeover"],
}


# ------------------------------------------------------------------ I/O

def rundir() -> str:
    return os.environ.get(RUNDIR_ENV) or runfiles.RUNDIR


def confdir() -> str:
    return os.environ.get(CONFDIR_ENV) or runfiles.CONFDIR


def hb_state(rd: str, now: float) -> tuple[bool, bool, dict | None]:
    """(hb-watch runs, this user may not read its status, the status)."""
    try:
        text = access.read(os.path.join(rd, runfiles.STATUS))
    except access.Unreadable:
        return True, True, None
    if text is None:
        return False, False, None
    st = status.parse(text)
    return (st["updated"] != {} and not status.is_stale(st, now, runfiles.pid_alive)), False, st


def real_program(name: str) -> str | None:
    """Heartbeat's own program NAME, if installed (never this program itself)."""
    me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    for path in REAL[name]:
        if os.access(path, os.X_OK) and os.path.realpath(path) != me \
                and not _is_ours(path):
            return path
    return None


def _is_ours(path: str) -> bool:
    """A launcher of hb's (a Python script importing hb.clstatus), not Heartbeat's."""
    try:
        with open(path, "rb") as f:
            return b"hb.clstatus" in f.read(4096)
    except OSError:
        return False


def _delegate(name: str, argv: list[str]) -> None:
    """exec Heartbeat's NAME when Heartbeat runs here and hb does not."""
    real = real_program(name)
    if real is not None:
        sys.stdout.flush()
        os.execv(real, [real, *argv])


def _cl_log(msg: str) -> str:
    return "%s %s cl_status: [%d]: ERROR: %s\n" % (
        time.strftime("%b %d %H:%M:%S"), os.uname().nodename, os.getpid(), msg)


def cl_status_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rd = rundir()
    runs, refused, st = hb_state(rd, time.time())
    if not runs and proc.runs(HEARTBEAT_PIDFILE, "heartbeat"):
        _delegate("cl_status", argv)
    try:
        with open(os.path.join(confdir(), "ha.cf")) as f:
            hacf = f.read()
    except OSError:
        hacf = ""
    rc, out, err = hbapi.answer(argv, st, hacf, runs, refused, _cl_log)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    return rc


def _standby(takeover: bool, argv: list[str] | None) -> int:
    name = "hb_takeover" if takeover else "hb_standby"
    argv = sys.argv[1:] if argv is None else argv
    prog = sys.argv[0] if sys.argv and sys.argv[0] else name
    rc, out, err, word = hbapi.standby_args(prog, argv, takeover)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    if rc:
        return rc
    rd = rundir()
    runs = hb_state(rd, time.time())[0]
    if not runs and proc.runs(HEARTBEAT_PIDFILE, "heartbeat"):
        _delegate(name, argv)
    why = switching.send(rd, "%s %s" % ("takeover" if takeover else "standby", word))
    if not why and not takeover:
        sys.stderr.write(hbapi.going_standby(word, os.isatty(0), time.time()))
    if why:
        print("%s: %s" % (prog, why), file=sys.stderr)
        return 1
    return 0


def hb_standby_main(argv: list[str] | None = None) -> int:
    return _standby(False, argv)


def hb_takeover_main(argv: list[str] | None = None) -> int:
    return _standby(True, argv)
