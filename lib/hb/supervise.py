"""hb-supervise: check the configuration, then run hb-beat | hb-watch and keep them running.

Usage:
  hb-supervise [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME] [--fifo PATH] [--daemon]
  hb-supervise --check [-c CONFDIR] [--node NAME]
  hb-supervise --export pacemaker [-c CONFDIR] [--node NAME] [-o DIR] [--addr NODE=ADDR]...
  hb-supervise -h | --help | -V | --version

Options:
  -c CONFDIR   configuration: ha.cf, haresources, authkeys [default: /etc/ha.d]
  -r RUNDIR    run directory: fifos, state, status, lock [default: /var/run/hb]
  -s STATEDIR  persistent state: generation counter, mail spool [default: /var/lib/hb]
  --node NAME  this node's name (default: uname -n, lower-cased)
  --fifo PATH  Heartbeat's message fifo, passed to hb-beat (`none`: not read)
               [default: /var/lib/heartbeat/fifo]
  --daemon     detach from the terminal and write RUNDIR/hb-supervise.pid
  --check      validate the three files, print the effective settings, and exit
  --export pacemaker  write the cluster as Corosync + Pacemaker configuration into DIR
  -o DIR       where --export writes [default: pacemaker]
  --addr NODE=ADDR  --export: the address Corosync uses for NODE (default: found)
  -h --help    show this help
  -V, --version  print the program's name and hb's version
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shlex
import signal
import stat
import subprocess
import sys
import time

from hb import access, cli, config, exits, log, notify, precheck, runfiles, settings

PROG = "hb-supervise"
LOCK = "hb-supervise.lock"
PIDFILE = "hb-supervise.pid"
PIDFILES = {"hb-beat": "hb-beat.pid", "hb-watch": "hb-watch.pid"}
ENV_EXEC = "HB_SUPERVISE_EXEC"   # set by SIGUSR2's re-execution: the fds the new image keeps
THROTTLE = 1.0        # a program that dies within this of its start waits out the rest
WATCH_STOP = 300.0    # bounded wait for hb-watch to hand over the groups (ten stop tries)
STOP = 5.0            # then for the others
QUIET = 30.0          # SIGUSR2: wait at most this for no group to be starting or stopping
F_SETPIPE_SZ = 1031
ARGV0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def _pdeathsig() -> None:
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG


def program(name: str) -> str:
    """The launcher next to ours (bin/), else the one on PATH."""
    here = os.path.dirname(ARGV0 or os.path.abspath("."))
    p = os.path.join(here, name)
    return p if os.access(p, os.X_OK) and not os.path.isdir(p) else name


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks since boot) of a live process, or None.
    The start time tells a process from a later one that got its PID."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            w = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not w or w[0] in ("Z", "X"):
        return None
    return int(w[1]), w[19]


def _pids() -> list[int]:
    try:
        return [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return []


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Child:
    """One supervised program: started, reaped, restarted with a one-second throttle.

    Known by PID and a pidfd, so that a program started by an earlier hb-supervise
    (one that crashed, or this same process before SIGUSR2 re-executed it) is watched
    and signalled as safely as one started here; only our own children are reaped."""

    def __init__(self, name: str, argv: list[str], user: str | None = None,
                 stdin: int | None = None, stdout: int | None = None,
                 final: int | None = None, orphan_term: bool = True,
                 pidfile: str | None = None) -> None:
        self.name, self.argv, self.user = name, argv, user
        self.stdin, self.stdout, self.final = stdin, stdout, final
        self.orphan_term = orphan_term    # SIGTERM if hb-supervise dies: the respawn
        #                                   programs only; hb-beat and hb-watch outlive it
        self.pidfile = pidfile            # RUNDIR/NAME.pid: "PID STARTTIME"
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.ours = False                 # our child: reaped with its exit status
        self.status: int | None = None    # set by reap_all() when it ended
        self.started = 0.0
        self.due = 0.0
        self.done = False
        self.hup = False          # SIGHUP owed, sent once the program catches it
        ALL.append(self)

    def pass_hup(self) -> None:
        """Send an owed SIGHUP unless the program is still starting (SIGHUP would kill it)."""
        if not self.hup or self.pid is None:
            self.hup = False
            return
        try:
            with open("/proc/%d/status" % self.pid) as f:
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
        self.pid, self.ours, self.status = self.proc.pid, True, None
        self.pidfd = _pidfd(self.pid)
        self.started = now
        log.log.info("started %s (pid %d)", self.name, self.pid)
        self.write_pidfile()

    def write_pidfile(self) -> None:
        st = proc_stat(self.pid) if self.pid else None
        if self.pidfile and st:
            try:
                runfiles.write_atomic(self.pidfile, "%d %s\n" % (self.pid, st[1]), 0o600)
            except OSError as e:
                log.log.error("cannot write %s: %s", self.pidfile, e.strerror)

    def adopt(self, rundir: str, now: float) -> bool:
        """Watch the program an earlier hb-supervise started: the process its pid file
        names if that is this program for this RUNDIR with the recorded start time;
        without a usable pid file, the one process that is this program for this RUNDIR."""
        words = (runfiles.read_text(self.pidfile) or "").split() if self.pidfile else []
        pid = 0
        if len(words) == 2 and settings.digits(words[0]) and len(words[0]) <= 10:
            st = proc_stat(int(words[0]))
            if st is not None and st[1] == words[1] and self.runs_here(int(words[0]), rundir):
                pid = int(words[0])
        how = ""
        if not pid:
            found = [p for p in _pids() if self.runs_here(p, rundir)]
            if len(found) > 1:
                log.log.error("%s runs %d times for %s (pids %s): adopting none",
                              self.name, len(found), rundir, " ".join(map(str, found)))
            if len(found) != 1:
                return False
            pid, how = found[0], " (found without its pid file)"
        st = proc_stat(pid)
        fd = _pidfd(pid)
        if st is None or fd is None or proc_stat(pid) != st:    # gone (or reused) meanwhile
            if fd is not None:
                os.close(fd)
            return False
        self.pid, self.pidfd, self.ours, self.status = pid, fd, st[0] == os.getpid(), None
        self.proc = None
        self.started = now - THROTTLE
        log.log.info("%s (pid %d) is running: watching it%s%s", self.name, pid,
                     "" if self.ours else " (started by an earlier hb-supervise)", how)
        if how:
            self.write_pidfile()
        return True

    def runs_here(self, pid: int, rundir: str) -> bool:
        """pid is this program (argv[0] or, for an interpreter, argv[1]) run with
        `-r RUNDIR`, and not a zombie nor ourselves."""
        if pid == os.getpid() or proc_stat(pid) is None:
            return False
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            return False
        if not any(os.path.basename(a) == self.name for a in argv[:2]):
            return False
        want = os.path.normpath(rundir)
        return any(a == "-r" and os.path.normpath(b) == want for a, b in zip(argv, argv[1:]))

    def ended(self) -> bool:
        """True once the program has ended (our child: reaped by reap_all())."""
        if self.pid is None:
            return False
        if self.ours:
            return self.status is not None
        if self.pidfd is not None:
            r, _, _ = select.select([self.pidfd], [], [], 0)
            return bool(r)
        return proc_stat(self.pid) is None

    def forget(self) -> str:
        how = "ended" if self.status is None else \
            "killed by signal %d" % -self.status if self.status < 0 \
            else "exited %d" % self.status
        if self.pidfd is not None:
            os.close(self.pidfd)
        if self.proc is not None:
            self.proc.returncode = self.status if self.status is not None else 0
        self.proc, self.pid, self.pidfd = None, None, None
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass
        return how

    def reap(self, now: float, stopping: bool) -> bool:
        """True when the program ended (and is then scheduled again unless stopping)."""
        if not self.ended():
            return False
        rc = self.status
        how = self.forget()
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
        if self.pid is None or self.ended():
            return
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, OSError):
            pass

    def wait(self, limit: float) -> bool:
        """Until the program ended (True) or limit seconds passed (False)."""
        deadline = time.monotonic() + limit
        while self.pid is not None and not self.ended():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            fds = [self.pidfd] if self.pidfd is not None else []
            select.select(fds, [], [], min(left, 0.05))
            reap_all()
        return True


ALL: list[Child] = []


def reap_all() -> None:
    """Collect the exit status of every child of ours that ended (strays included)."""
    mine = {k.pid: k for k in ALL if k.pid is not None and k.ours}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        k = mine.get(pid)
        if k is not None:
            k.status = os.waitstatus_to_exitcode(status)


def _whoami() -> str:
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def respawns(cfg: settings.Config) -> list[Child]:
    """The ha.cf `respawn USER PROGRAM` lines; ipfail is hb-watch's own job."""
    out = []
    for r in cfg.respawns:
        argv = shlex.split(r.command)
        if not argv or os.path.basename(argv[0]) == "ipfail":
            continue
        out.append(Child(argv[0], argv, user=r.user, final=100))
    return out


def check(confdir: str, node: str | None) -> int:
    """--check: refuses what a start refuses (precheck.load); the effective settings on
    stdout, warnings on stderr."""
    try:
        cfg, warnings = precheck.load(confdir, node)
    except settings.ConfigError as e:
        for line in getattr(e, "errors", None) or [str(e)]:
            print(line, file=sys.stderr)
        return exits.CONFIG_INVALID
    for line in config.describe(cfg).rstrip("\n").splitlines():
        print(line, file=sys.stderr if line.startswith("warning: ") else sys.stdout)
    for w in warnings:
        print("warning: " + w, file=sys.stderr)
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
    except settings.ConfigError as e:
        print(e, file=sys.stderr)
        return exits.CONFIG_INVALID
    from hb import export
    return export.main_export(cfg, args["-o"], addrs)


def prepare(rundir: str, statedir: str) -> tuple[int, int]:
    """RUNDIR (ours; 2755 group haclient, or 0755: access.py), the lock (non-blocking:
    a second instance is refused), the fifos.

    Returns (lock fd, an fd holding beat.fifo open so hb-beat can restart without losses).
    """
    os.makedirs(rundir, mode=0o700, exist_ok=True)
    st = os.lstat(rundir)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory", rundir)
    if st.st_uid != os.geteuid():
        os.chown(rundir, os.geteuid(), os.getegid())
    access.prepare_rundir(rundir)         # set-gid haclient: members read status
    os.makedirs(statedir, mode=0o700, exist_ok=True)
    path = os.path.join(rundir, LOCK)
    fd = runfiles.open_owned(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EWOULDBLOCK, "another hb-supervise is running", path) from None
    for name in (runfiles.BEAT_FIFO, runfiles.WATCH_FIFO):
        runfiles.make_fifo(os.path.join(rundir, name))
    keep = os.open(os.path.join(rundir, runfiles.BEAT_FIFO),
                   os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    return fd, keep


def reload(args: dict, cfg: settings.Config, kids: list[Child]) -> settings.Config:
    log.reopen()                      # logrotate's postrotate, or by hand
    try:
        new = config.load(args["-c"], cfg.node)
    except settings.ConfigError as e:
        log.log.error("SIGHUP: keeping the running configuration, the new one is broken: %s", e)
        return cfg
    log.setup(PROG, new, stderr=False if args["--daemon"] else None)
    log.log.info("SIGHUP: configuration re-read; passing it on")
    for k in kids:
        k.hup = k.pid is not None
    return new


def inherited() -> dict[str, int] | None:
    """The fds an hb-supervise that re-executed itself (SIGUSR2) left us: lock, keep,
    rfd, wfd; None when we were not started that way."""
    text = os.environ.pop(ENV_EXEC, "")
    if not text:
        return None
    try:
        fds = dict(zip(("lock", "keep", "rfd", "wfd"), map(int, text.split(",")[:4])))
        for fd in fds.values():
            os.fstat(fd)
            os.set_inheritable(fd, False)
        fcntl.flock(fds["lock"], fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ValueError, OSError):
        return None
    return fds if len(fds) == 4 else None


def new_pipe() -> tuple[int, int]:
    """The pipe from hb-beat's stdout to hb-watch's stdin; both ends stay with us."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    return rfd, wfd


def steal_pipe(beat: Child, watch: Child) -> tuple[int, int] | None:
    """Both ends of the pipe that adopted daemons share, opened again through
    /proc/PID/fd (hb-watch's stdin or hb-beat's stdout); None when that cannot be."""
    ends: list[tuple[str, str]] = []
    for k, n in ((watch, 0), (beat, 1)):
        if k.pid is None:
            continue
        path = "/proc/%d/fd/%d" % (k.pid, n)
        try:
            link = os.readlink(path)
        except OSError:
            return None
        if not link.startswith("pipe:"):
            return None
        ends.append((path, link))
    if not ends or len({link for _, link in ends}) != 1:
        return None
    path = ends[0][0]
    try:
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(rfd)
        return None
    if os.fstat(rfd).st_ino != os.fstat(wfd).st_ino:
        os.close(rfd)
        os.close(wfd)
        return None
    for fd in (rfd, wfd):
        os.set_blocking(fd, True)       # our own open file descriptions: theirs unchanged
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    return rfd, wfd


def busy_groups(rundir: str) -> list[str]:
    """Groups RUNDIR/status shows starting or stopping (`group N HOLDER STATE ...`)."""
    out = []
    for line in (runfiles.read_text(os.path.join(rundir, runfiles.STATUS)) or "").splitlines():
        w = line.split()
        if len(w) >= 4 and w[0] == "group" and w[3] in ("starting", "stopping"):
            out.append(w[1])
    return out


def _end(k: Child, sig: int, limit: float) -> None:
    """End one daemon for good (sig, then SIGKILL after limit) and forget it."""
    if k.pid is None:
        return
    k.kill(sig)
    if not k.wait(limit):
        k.kill(signal.SIGKILL)
        k.wait(STOP)
    log.log.info("%s %s", k.name, k.forget())


def replace(beat: Child, watch: Child, pipe: tuple[int, int], rundir: str,
            why: str) -> tuple[int, int]:
    """Replace hb-beat, then hb-watch, with the programs installed now, each as a
    respawn does: nothing is handed over and the peer sees no death.

    Done while no group is starting or stopping (waited for, at most QUIET seconds).
    The old hb-beat is stopped (SIGTERM) and the new one started at once on a new
    pipe, advertising RUNDIR/state as before; the old hb-watch is then ended with
    SIGKILL, which neither hands over nor releases anything (what a crash does, and a
    respawn is made for), and the new one takes the node's groups over from
    RUNDIR/status and the agents' status."""
    deadline = time.monotonic() + QUIET
    while busy_groups(rundir) and time.monotonic() < deadline:
        time.sleep(0.05)
    log.log.info("%s: replacing hb-beat, then hb-watch, with the installed programs", why)
    rfd, wfd = new_pipe()
    _end(beat, signal.SIGTERM, STOP)
    beat.done, beat.stdout = False, wfd
    beat.start(time.monotonic())
    _end(watch, signal.SIGKILL, STOP)
    watch.done, watch.stdin = False, rfd
    watch.start(time.monotonic())
    for fd in pipe:
        os.close(fd)
    return rfd, wfd


def cfg_node(args: dict) -> str:
    return args.get("_node") or args["--node"] or config.default_node(args["-c"])


def reexec(args: dict, fds: dict[str, int], others: list[Child]) -> None:
    """SIGUSR2: run the installed hb-supervise in this process (same PID, same argv,
    the lock kept); it replaces hb-beat and hb-watch.  Returns only if exec failed."""
    if not ARGV0:
        log.log.error("SIGUSR2: not re-executing: hb-supervise's own path is unknown")
        return
    base = [ARGV0] if os.access(ARGV0, os.X_OK) else [sys.executable, ARGV0]
    exe, argv = base[0], [*base, *sys.argv[1:]]
    check = [*base, "--check", "-c", args["-c"], "--node", cfg_node(args)]
    try:
        r = subprocess.run(check, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        ok, said = r.returncode == exits.CONFIG_VALID, r.stderr.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, said = False, [str(e)]
    if not ok:
        log.log.error("SIGUSR2: not re-executing: the installed hb-supervise refuses the "
                      "configuration: %s", "; ".join(said[:3]) or "no reason given")
        return
    for k in others:                     # the respawn programs start again afterwards
        k.done = True
        k.kill(signal.SIGTERM)
    for k in others:
        if not k.wait(STOP):
            k.kill(signal.SIGKILL)
            k.wait(STOP)
    for fd in fds.values():
        os.set_inheritable(fd, True)
    env = dict(os.environ)
    env[ENV_EXEC] = "%d,%d,%d,%d" % (fds["lock"], fds["keep"], fds["rfd"], fds["wfd"])
    log.log.info("SIGUSR2: re-executing %s", quote(argv))
    for h in log.log.handlers:
        h.flush()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    try:
        os.execve(exe, argv, env)
    except OSError as e:
        log.log.error("SIGUSR2: cannot execute %s: %s; running on", exe, e.strerror)
        for fd in fds.values():
            os.set_inheritable(fd, False)
        for k in others:
            k.done = False


def run(args: dict, cfg: settings.Config, lockfd: int, keep: int,
        given: dict[str, int] | None = None) -> int:
    rundir, statedir = args["-r"], args["-s"]
    args["_node"] = cfg.node
    common = ["-c", args["-c"], "-r", rundir, "-s", statedir, "--node", cfg.node]
    beat = Child("hb-beat", [program("hb-beat"), *common, "--fifo", args["--fifo"]],
                 orphan_term=False,
                 pidfile=os.path.join(rundir, PIDFILES["hb-beat"]))
    watch = Child("hb-watch", [program("hb-watch"), *common], orphan_term=False,
                  pidfile=os.path.join(rundir, PIDFILES["hb-watch"]))
    others = respawns(cfg)
    sd = notify.Notifier(os.path.join(rundir, runfiles.STATUS))    # systemd, when it runs us
    sigr, sigw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sigw, warn_on_full_buffer=False)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR2):
        signal.signal(s, lambda *_: None)
    now = time.monotonic()
    adopted = [k.name for k in (beat, watch) if k.adopt(rundir, now)]
    pipe: tuple[int, int] | None = (given["rfd"], given["wfd"]) if given else None
    if pipe is None and adopted:
        pipe = steal_pipe(beat, watch)
        if pipe is None:
            log.log.warning("cannot reach the pipe between the running hb-beat and "
                            "hb-watch: replacing them")
    log.log.info("%s on %s: %s", "re-executed" if given else "starting", cfg.node,
                 quote(beat.argv))
    if pipe is None:
        if adopted:
            _retire(beat, watch)
        pipe = new_pipe()
    elif given:
        pipe = replace(beat, watch, pipe, rundir, "SIGUSR2")
    beat.stdout, watch.stdin = pipe[1], pipe[0]
    while True:
        now = time.monotonic()
        kids = [beat, watch, *others]
        for k in kids:
            if k.pid is None and not k.done and now >= k.due:
                k.start(now)
        waits = [k.due - now for k in kids if k.pid is None and not k.done]
        waits += [0.02 for k in kids if k.hup] + [60.0, sd.wait()]
        fds = [sigr] + [k.pidfd for k in kids if k.pidfd is not None and not k.ours]
        try:
            select.select(fds, [], [], max(0.0, min(waits)))  # SIGCHLD wakes us
            sigs = os.read(sigr, 512)
        except BlockingIOError:
            sigs = b""
        except InterruptedError:
            continue
        reap_all()
        if signal.SIGTERM in sigs or signal.SIGINT in sigs:
            log.log.info("stopping: hb-watch hands the groups over first" if watch.pid
                         else "stopping: hb-watch is not running, nothing is handed over")
            sd.stopping()
            return stop(beat, watch, others, rundir)
        if signal.SIGUSR2 in sigs:
            reexec(args, {"lock": lockfd, "keep": keep, "rfd": pipe[0], "wfd": pipe[1]},
                   others)
        if signal.SIGHUP in sigs:
            cfg = reload(args, cfg, [beat, watch])
            old = {(k.user, quote(k.argv)): k for k in others}
            new = {(k.user, quote(k.argv)): k for k in respawns(cfg)}
            for key, k in old.items():
                if key not in new:
                    k.done = True
                    k.kill(signal.SIGTERM)
            others = [old.get(key, k) for key, k in new.items()] + \
                [k for key, k in old.items() if key not in new and k.pid is not None]
        now = time.monotonic()
        for k in [beat, watch, *others]:
            k.reap(now, stopping=k.done)
            k.pass_hup()
        others = [k for k in others if not (k.done and k.pid is None)]
        sd.tick(beat.pid is not None and watch.pid is not None)


def _retire(beat: Child, watch: Child) -> None:
    """Adopted daemons whose pipe cannot be reached: ended as replace() ends them
    (hb-beat stopped, hb-watch killed, nothing handed over or released), to be
    started again on a new pipe."""
    _end(beat, signal.SIGTERM, STOP)
    _end(watch, signal.SIGKILL, STOP)


def stop(beat: Child, watch: Child, others: list[Child], rundir: str) -> int:
    watch.kill(signal.SIGTERM)
    _wait([watch], WATCH_STOP)
    for k in (beat, *others):
        k.kill(signal.SIGTERM)
    _wait([beat, *others], STOP)
    for name in (runfiles.BEAT_FIFO, runfiles.WATCH_FIFO, PIDFILE, *PIDFILES.values()):
        try:
            os.unlink(os.path.join(rundir, name))
        except FileNotFoundError:
            pass
    log.log.info("stopped")
    return exits.OK


def _wait(kids: list[Child], limit: float) -> None:
    deadline = time.monotonic() + limit
    for k in kids:
        if k.pid is None:
            continue
        if not k.wait(max(0.0, deadline - time.monotonic())):
            log.log.error("%s (pid %d) did not stop within %.0f s: killing it",
                          k.name, k.pid, limit)
            k.kill(signal.SIGKILL)
            k.wait(STOP)
        k.reap(time.monotonic(), stopping=True)


def write_pid(rundir: str) -> None:
    try:
        runfiles.write_atomic(os.path.join(rundir, PIDFILE), "%d\n" % os.getpid())
    except OSError as e:
        log.log.error("cannot write %s: %s", os.path.join(rundir, PIDFILE), e.strerror)


def main(argv: list[str] | None = None) -> int:
    given = inherited()
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    if args["--check"]:
        return check(args["-c"], args["--node"])
    if args["--export"] is not None:
        return do_export(args)
    try:
        cfg, warnings = precheck.load(args["-c"], args["--node"])
    except settings.ConfigError as e:
        for line in getattr(e, "errors", None) or [str(e)]:
            print(line, file=sys.stderr)
        print("%s: refusing to start with a broken configuration" % PROG, file=sys.stderr)
        return exits.CONFIG_INVALID
    log.setup(PROG, cfg, stderr=False if args["--daemon"] else None)
    for w in warnings:
        log.log.warning("%s", w)
    if given:                 # re-executed by SIGUSR2: no new lock, no detaching again
        lockfd, keep = given["lock"], given["keep"]
        try:
            held, there = os.fstat(lockfd), os.stat(os.path.join(args["-r"], LOCK))
        except OSError:
            held = there = None
        if held is None or there is None or (held.st_dev, held.st_ino) != (
                there.st_dev, there.st_ino):
            print("%s: %s does not name this RUNDIR's lock" % (PROG, ENV_EXEC),
                  file=sys.stderr)
            return exits.FAIL
        if args["--daemon"]:
            write_pid(args["-r"])
        return run(args, cfg, lockfd, keep, given)
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
            write_pid(args["-r"])
            return run(args, cfg, lockfd, keep)
    return run(args, cfg, lockfd, keep)
