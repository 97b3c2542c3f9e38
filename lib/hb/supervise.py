"""hb-supervise: check the configuration, then run hb-beat | hb-watch and keep them running.

Usage:
  hb-supervise [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME] [--daemon]
  hb-supervise --check [-c CONFDIR] [--node NAME]
  hb-supervise --export pacemaker [-c CONFDIR] [--node NAME] [-o DIR] [--addr NODE=ADDR]...
  hb-supervise -h | --help

Options:
  -c CONFDIR   configuration: ha.cf, haresources, authkeys [default: /etc/ha.d]
  -r RUNDIR    run directory: fifos, state, status, lock [default: /var/run/hb]
  -s STATEDIR  persistent state: generation counter, mail spool [default: /var/lib/hb]
  --node NAME  this node's name (default: uname -n, lower-cased)
  --daemon     detach from the terminal and write RUNDIR/hb-supervise.pid
  --check      validate the three files, print the effective settings, and exit
  --export pacemaker  write the cluster as Corosync + Pacemaker configuration into DIR
  -o DIR       where --export writes [default: pacemaker]
  --addr NODE=ADDR  --export: the address Corosync uses for NODE (default: found)
  -h --help    show this help
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shlex
import signal
import subprocess
import sys
import time

from hb import cli, config, exits, log, notify, runfiles

PROG = "hb-supervise"
LOCK = "hb-supervise.lock"
PIDFILE = "hb-supervise.pid"
THROTTLE = 1.0        # a program that dies within this of its start waits out the rest
WATCH_STOP = 60.0     # bounded wait for hb-watch to hand over the groups
STOP = 5.0            # then for the others
F_SETPIPE_SZ = 1031


def _pdeathsig() -> None:
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG


def program(name: str) -> str:
    """The launcher next to ours (bin/), else the one on PATH."""
    here = os.path.dirname(os.path.abspath(sys.argv[0] or "."))
    p = os.path.join(here, name)
    return p if os.access(p, os.X_OK) and not os.path.isdir(p) else name


class Child:
    """One supervised program: started, reaped, restarted with a one-second throttle."""

    def __init__(self, name: str, argv: list[str], user: str | None = None,
                 stdin: int | None = None, stdout: int | None = None,
                 final: int | None = None, orphan_term: bool = True) -> None:
        self.name, self.argv, self.user = name, argv, user
        self.stdin, self.stdout, self.final = stdin, stdout, final
        self.orphan_term = orphan_term    # SIGTERM if hb-supervise dies (not hb-beat: it
        #                                   must carry hb-watch's hand-over, then sees EPIPE)
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.due = 0.0
        self.done = False
        self.hup = False          # SIGHUP owed, sent once the program catches it

    def pass_hup(self) -> None:
        """Send an owed SIGHUP unless the program is still starting (SIGHUP would kill it)."""
        if not self.hup or self.proc is None:
            self.hup = False
            return
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                caught = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))
        except (OSError, StopIteration, ValueError):
            caught = 0
        if caught >> (signal.SIGHUP - 1) & 1:
            self.kill(signal.SIGHUP)
            self.hup = False

    def start(self, now: float) -> None:
        kw: dict = {}
        if self.user and self.user != _whoami():
            import pwd
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                log.log.error("not running %s: no user %s", self.name, self.user)
                self.done = True
                return
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=self.stdin if self.stdin is not None else subprocess.DEVNULL,
                stdout=self.stdout if self.stdout is not None else subprocess.DEVNULL,
                process_group=0, preexec_fn=_pdeathsig if self.orphan_term else None, **kw)
        except OSError as e:
            log.log.error("unable to start %s: %s", quote(self.argv), e)
            self.proc = None
            self.started, self.due = now, now + THROTTLE
            return
        self.started = now
        log.log.info("started %s (pid %d)", self.name, self.proc.pid)

    def reap(self, now: float, stopping: bool) -> bool:
        """True when the program ended (and is then scheduled again unless stopping)."""
        if self.proc is None or self.proc.poll() is None:
            return False
        rc = self.proc.returncode
        how = "killed by signal %d" % -rc if rc < 0 else "exited %d" % rc
        self.proc = None
        if stopping:
            log.log.info("%s %s", self.name, how)
            return True
        if self.final is not None and rc == self.final:
            log.log.info("%s %s: not restarted", self.name, how)
            self.done = True
            return True
        self.due = max(now, self.started + THROTTLE)
        log.log.warning("%s %s; restarting%s", self.name, how,
                        " in %.1f s" % (self.due - now) if self.due > now else "")
        return True

    def kill(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


def _whoami() -> str:
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def respawns(cfg: config.Config) -> list[Child]:
    """The ha.cf `respawn USER PROGRAM` lines; ipfail is hb-watch's own job."""
    out = []
    for r in cfg.respawns:
        argv = shlex.split(r.command)
        if not argv or os.path.basename(argv[0]) == "ipfail":
            continue
        out.append(Child(argv[0], argv, user=r.user, final=100))
    return out


def check(confdir: str, node: str | None) -> int:
    try:
        cfg = config.load(confdir, node, check_devices=False)
    except config.ConfigError as e:
        for line in getattr(e, "errors", None) or [str(e)]:
            print(line, file=sys.stderr)
        return exits.CONFIG_INVALID
    sys.stdout.write(config.describe(cfg).rstrip("\n") + "\n")
    return exits.CONFIG_VALID


def do_export(args: dict) -> int:
    if args["--export"] != "pacemaker":
        print("%s: --export knows only pacemaker, not %r" % (PROG, args["--export"]),
              file=sys.stderr)
        return exits.USAGE
    addrs = {}
    for a in args["--addr"]:
        node, sep, addr = a.partition("=")
        if not sep or not node or not addr:
            print("%s: --addr wants NODE=ADDR, not %r" % (PROG, a), file=sys.stderr)
            return exits.USAGE
        addrs[node.lower()] = addr
    try:
        cfg = config.load(args["-c"], args["--node"], check_devices=False)
    except config.ConfigError as e:
        print(e, file=sys.stderr)
        return exits.CONFIG_INVALID
    from hb import export
    return export.main_export(cfg, args["-o"], addrs)


def prepare(rundir: str, statedir: str) -> tuple[int, int]:
    """RUNDIR (0700, ours), the lock (non-blocking: a second instance is refused), the fifos.

    Returns (lock fd, an fd holding beat.fifo open so hb-beat can restart without losses).
    """
    os.makedirs(rundir, mode=0o700, exist_ok=True)
    st = os.stat(rundir)
    if st.st_uid != os.geteuid() or st.st_gid != os.getegid():
        os.chown(rundir, os.geteuid(), os.getegid())
    os.chmod(rundir, 0o700)
    os.makedirs(statedir, mode=0o700, exist_ok=True)
    path = os.path.join(rundir, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EWOULDBLOCK, "another hb-supervise is running", path) from None
    for name in (runfiles.BEAT_FIFO, runfiles.WATCH_FIFO):
        runfiles.make_fifo(os.path.join(rundir, name))
    keep = os.open(os.path.join(rundir, runfiles.BEAT_FIFO),
                   os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return fd, keep


def reload(args: dict, cfg: config.Config, kids: list[Child]) -> config.Config:
    try:
        new = config.load(args["-c"], cfg.node)
    except config.ConfigError as e:
        log.log.error("SIGHUP: keeping the running configuration, the new one is broken: %s", e)
        return cfg
    log.setup(PROG, new, stderr=False if args["--daemon"] else None)
    log.log.info("SIGHUP: configuration re-read; passing it on")
    for k in kids:
        k.hup = k.proc is not None
    return new


def run(args: dict, cfg: config.Config, keep: int) -> int:
    rundir, statedir = args["-r"], args["-s"]
    common = ["-c", args["-c"], "-r", rundir, "-s", statedir, "--node", cfg.node]
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    beat = Child("hb-beat", [program("hb-beat"), *common], stdout=wfd, orphan_term=False)
    watch = Child("hb-watch", [program("hb-watch"), *common], stdin=rfd)
    others = respawns(cfg)
    sd = notify.Notifier(os.path.join(rundir, runfiles.STATUS))    # systemd, when it runs us
    sigr, sigw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sigw, warn_on_full_buffer=False)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(s, lambda *_: None)
    log.log.info("starting on %s: %s", cfg.node, quote([program("hb-beat"), *common]))
    while True:
        now = time.monotonic()
        kids = [beat, watch, *others]
        for k in kids:
            if k.proc is None and not k.done and now >= k.due:
                k.start(now)
        waits = [k.due - now for k in kids if k.proc is None and not k.done]
        waits += [0.02 for k in kids if k.hup] + [60.0, sd.wait()]
        try:
            select.select([sigr], [], [], max(0.0, min(waits)))  # SIGCHLD wakes us
            sigs = os.read(sigr, 512)
        except BlockingIOError:
            sigs = b""
        except InterruptedError:
            continue
        if signal.SIGTERM in sigs or signal.SIGINT in sigs:
            log.log.info("stopping: hb-watch hands the groups over first" if watch.proc
                         else "stopping: hb-watch is not running, nothing is handed over")
            sd.stopping()
            return stop(beat, watch, others, rundir)
        if signal.SIGHUP in sigs:
            cfg = reload(args, cfg, [beat, watch])
            old = {(k.user, quote(k.argv)): k for k in others}
            new = {(k.user, quote(k.argv)): k for k in respawns(cfg)}
            for key, k in old.items():
                if key not in new:
                    k.done = True
                    k.kill(signal.SIGTERM)
            others = [old.get(key, k) for key, k in new.items()] + \
                [k for key, k in old.items() if key not in new and k.proc is not None]
        now = time.monotonic()
        for k in [beat, watch, *others]:
            k.reap(now, stopping=k.done)
            k.pass_hup()
        others = [k for k in others if not (k.done and k.proc is None)]
        sd.tick(beat.proc is not None and watch.proc is not None)


def stop(beat: Child, watch: Child, others: list[Child], rundir: str) -> int:
    watch.kill(signal.SIGTERM)
    _wait([watch], WATCH_STOP)
    for k in (beat, *others):
        k.kill(signal.SIGTERM)
    _wait([beat, *others], STOP)
    for name in (runfiles.BEAT_FIFO, runfiles.WATCH_FIFO, PIDFILE):
        try:
            os.unlink(os.path.join(rundir, name))
        except FileNotFoundError:
            pass
    log.log.info("stopped")
    return exits.OK


def _wait(kids: list[Child], limit: float) -> None:
    deadline = time.monotonic() + limit
    for k in kids:
        if k.proc is None:
            continue
        try:
            k.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.log.error("%s (pid %d) did not stop within %.0f s: killing it",
                          k.name, k.proc.pid, limit)
            k.kill(signal.SIGKILL)
            k.proc.wait()
        k.reap(time.monotonic(), stopping=True)


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    if args["--check"]:
        return check(args["-c"], args["--node"])
    if args["--export"] is not None:
        return do_export(args)
    try:
        cfg = config.load(args["-c"], args["--node"])
    except config.ConfigError as e:
        for line in getattr(e, "errors", None) or [str(e)]:
            print(line, file=sys.stderr)
        print("%s: refusing to start with a broken configuration" % PROG, file=sys.stderr)
        return exits.CONFIG_INVALID
    log.setup(PROG, cfg, stderr=None if not args["--daemon"] else False)
    try:
        lockfd, keep = prepare(args["-r"], args["-s"])
    except OSError as e:
        msg = log.fatal(PROG, "lock" if e.errno == errno.EWOULDBLOCK else "prepare",
                        e.filename or args["-r"], e.strerror)
        print(msg, file=sys.stderr)
        return exits.FAIL
    if args["--daemon"]:
        import daemon
        for h in list(log.log.handlers):      # their files are closed by detaching
            log.log.removeHandler(h)
            h.close()
        with daemon.DaemonContext(files_preserve=[lockfd, keep], umask=0o022,
                                  signal_map={}):
            for fd in (0, 1, 2):                # /dev/null, but close-on-exec there
                os.set_inheritable(fd, True)
            log.setup(PROG, cfg, stderr=False)
            runfiles.write_atomic(os.path.join(args["-r"], PIDFILE), "%d\n" % os.getpid())
            return run(args, cfg, keep)
    return run(args, cfg, keep)
