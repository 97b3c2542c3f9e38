"""Logging where ha.cf says: syslog (logfacility), logfile, debugfile.

One line per event, prefixed with the program name; stderr when run by hand.
Files follow rotation: before each line the path is stat'ed and, when it no longer
names the open file (moved or removed by logrotate without copytruncate), reopened;
reopen() (each daemon's SIGHUP) reopens every file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hb.settings import Config

FACILITIES = {
    "auth", "authpriv", "cron", "daemon", "kern", "lpr", "mail", "news", "user",
    "uucp", "syslog", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
}

log = logging.getLogger("hb")


def setup(prog: str, cfg: Config | None = None, stderr: bool | None = None,
          debug: int | None = None) -> logging.Logger:
    """Configure the 'hb' logger for program prog from a settings.Config.

    stderr defaults to on when stderr is a terminal or no other destination is set.
    """
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    logfile, debugfile = (cfg.logfile, cfg.debugfile) if cfg else (None, None)
    level_debug = debug if debug is not None else cfg.debug if cfg else 0
    log.setLevel(logging.DEBUG if level_debug else logging.INFO)
    fmt = logging.Formatter(prog + "[%(process)d]: %(levelname)s: %(message)s")
    tfmt = logging.Formatter("%(asctime)s " + prog + "[%(process)d]: %(levelname)s: %(message)s")
    dests = 0
    facility = cfg.logfacility if cfg else None
    if facility is None and not logfile and not debugfile and \
            os.environ.get("HB_LOG_DEFAULT") == "syslog":
        facility = "daemon"               # sysvinit: no journal to catch stderr
    if facility and facility != "none" and os.path.exists("/dev/log"):
        from logging.handlers import SysLogHandler
        try:
            h: logging.Handler = SysLogHandler(
                address="/dev/log", facility=facility)
            h.setFormatter(fmt)
            h.setLevel(logging.INFO)
            log.addHandler(h)
            dests += 1
        except OSError:
            pass
    if logfile:
        h = FollowingFileHandler(logfile)
        h.setFormatter(tfmt)
        h.setLevel(logging.INFO)
        log.addHandler(h)
        dests += 1
    if debugfile:
        h = FollowingFileHandler(debugfile)
        h.setFormatter(tfmt)
        h.setLevel(logging.DEBUG)
        log.addHandler(h)
        log.setLevel(logging.DEBUG)
        dests += 1
    if stderr is None:
        stderr = dests == 0 or sys.stderr.isatty()
    if stderr:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        h.setLevel(logging.DEBUG if level_debug else logging.INFO)
        log.addHandler(h)
    return log


class FollowingFileHandler(logging.handlers.WatchedFileHandler):
    """A log file that follows rotation: each record first compares the path's
    (st_dev, st_ino) with the open file's (one stat) and reopens the path when they
    differ or it is gone.  A file that cannot be (re)opened costs the line, not the
    daemon: logging's handleError reports it on stderr."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.flush()
                self.stream.close()
                self.stream = None
            self.stream = self._open()
            self._statstream()
        finally:
            self.release()


def reopen() -> None:
    """SIGHUP: reopen every log file (after a rotation, or by hand).  The syslog handler
    needs nothing: it reconnects by itself when /dev/log went away."""
    for h in log.handlers:
        if isinstance(h, FollowingFileHandler):
            try:
                h.reopen()
            except OSError as e:
                sys.stderr.write("cannot reopen log %s: %s\n" % (h.baseFilename,
                                                                 e.strerror or e))


def fatal(prog: str, verb: str, obj: str, reason: object) -> str:
    """daemontools style: 'prog: fatal: unable to VERB OBJECT: reason'."""
    return "%s: fatal: unable to %s %s: %s" % (prog, verb, obj, reason)
