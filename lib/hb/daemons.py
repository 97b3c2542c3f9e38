"""The daemons hb-supervise runs: started, adopted, watched, signalled, reaped.

A Child is one program (hb-beat, hb-watch, a `respawn` line), known by PID and a
pidfd, so that one started by an earlier hb-supervise (one that crashed, or the
same process before SIGUSR2 re-executed it) is watched and signalled as safely as
one started here; its pid file RUNDIR/NAME.pid holds "PID STARTTIME" (the start
time from /proc/PID/stat tells it from a later process with the same PID).  The
pipe from hb-beat's stdout to hb-watch's stdin stays open in hb-supervise
(new_pipe), or is opened again through /proc (steal_pipe) after a restart.

hb-beat and hb-watch are forked from hb-supervise, which has imported their
modules once (preload): the child renames itself (/proc/self/comm), takes its
stdin and stdout, closes every other descriptor and runs the program's main(),
so the three interpreters share the pages of the modules they have in common.
It rewrites its command line too (retitle), so that ps, pgrep -f and adopt()
see `hb-beat -r RUNDIR ...` as if it had been executed.  A program whose module
cannot be imported is executed instead.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import os
import select
import shlex
import signal
import subprocess
import sys
import time

from hb import log, proc, runfiles

THROTTLE = 1.0        # a program that dies within this of its start waits out the rest
WATCH_STOP = 300.0    # bounded wait for hb-watch to hand over the groups (ten stop tries)
STOP = 5.0            # then for the others
FORK_BLOCKED = proc.HANDLED | {signal.SIGUSR2, signal.SIGCHLD}   # all hb-supervise handles
F_SETPIPE_SZ = 1031
DEFAULT_RUNDIR = "/var/run/hb"   # hb-supervise's -r default: a forked daemon's RUNDIR
#                                   when hb-supervise's command line has no -r
MODULES = {"hb-beat": "hb.beat", "hb-watch": "hb.watch"}    # forked, not executed
SUPERVISOR = "hb-supervise"


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
                 pidfile: str | None = None, module: str | None = None) -> None:
        self.name, self.argv, self.user = name, argv, user
        self.module = module              # forked to run module.main() (preload)
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
        if self.module and self.module in sys.modules and not kw:
            self.fork(now)
            return
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=self.stdin if self.stdin is not None else subprocess.DEVNULL,
                stdout=self.stdout if self.stdout is not None else subprocess.DEVNULL,
                process_group=0, preexec_fn=proc.pdeathsig if self.orphan_term else None, **kw)
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

    def fork(self, now: float) -> None:
        """Start the program as a child of this process running its module's main():
        the pages of the modules already imported here stay shared."""
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        gc.freeze()                 # our objects stay out of the child's collections
        # blocked across the fork: until the child's own handlers are in, a signal
        # to it would run ours (lost, or read as our own) or kill it before it can
        # release anything; the child's main() unblocks them (proc.signals_ready)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log.log.error("unable to start %s: %s", self.name, e)
            self.started, self.due = now, now + THROTTLE
            return
        if pid == 0:
            _child(self.name, self.module or "", self.argv, self.stdin, self.stdout)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.proc, self.pid, self.ours, self.status = None, pid, True, None
        self.pidfd = _pidfd(pid)
        self.started = now
        log.log.info("started %s (pid %d)", self.name, pid)
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
        if len(words) == 2 and words[0].isascii() and words[0].isdigit() and len(words[0]) <= 10:
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
        """pid is this program (argv[0] or, for an interpreter, argv[1]; or comm, for
        one forked by hb-supervise that could not retitle itself) run with `-r RUNDIR`
        (no -r: DEFAULT_RUNDIR), and not a zombie nor ourselves."""
        if pid == os.getpid() or proc_stat(pid) is None:
            return False
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().rstrip("\n")
        except OSError:
            return False
        names = [os.path.basename(a) for a in argv[:2]]
        forked = SUPERVISOR in names and comm == self.name[:15]
        if self.name not in names and not forked:
            return False
        want = os.path.normpath(rundir)
        given = [os.path.normpath(b) for a, b in zip(argv, argv[1:]) if a == "-r"]
        if not given and "-r" not in argv:
            given = [DEFAULT_RUNDIR]
        return want in given

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


def preload(names: list[str]) -> list[str]:
    """Import the modules of the programs in names (MODULES) so that they are forked
    from here; the names whose module failed to import (they are executed)."""
    failed = []
    for name in names:
        try:
            importlib.import_module(MODULES[name])
        except Exception as e:             # a broken install: executed, and it says why
            log.log.warning("%s is executed, not forked: %s: %s", name, MODULES[name], e)
            failed.append(name)
    return failed


def retitle(argv: list[str]) -> bool:
    """Show argv (the program, `-r RUNDIR` first) as this process's command line in
    /proc/PID/cmdline, ps and pgrep -f, by rewriting the inherited argument area in
    place (/proc/self/mem): the words that do not fit are left out, the rest is NUL
    bytes; the interpreter's own path, when it leads, stays.  `-r RUNDIR` always fits
    when hb-supervise was given it (its own name is longer than the programs').
    False when that cannot be done."""
    try:
        with open("/proc/self/stat", "rb") as f:
            w = f.read().rsplit(b")", 1)[1].split()
        start, end = int(w[45]), int(w[46])          # arg_start, arg_end (fields 48, 49)
        with open("/proc/self/cmdline", "rb") as f:
            old = f.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return False
    if end <= start:
        return False
    lead = [old[0]] if old and os.path.basename(old[0]).startswith(b"python") else []
    args = list(argv[1:])
    if "-r" in args[:-1]:
        i = args.index("-r")
        args = args[i:i + 2] + args[:i] + args[i + 2:]
    size, data = end - start, b""
    for a in lead + [os.fsencode(a) for a in [argv[0], *args]]:
        if len(data) + len(a) + 1 > size:
            break
        data += a + b"\0"
    data += b"\0" * (size - len(data))
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as f:
            f.seek(start)
            f.write(data)
    except (OSError, ValueError, OverflowError):
        return False
    return True


def _child(name: str, module: str, argv: list[str], stdin: int | None,
           stdout: int | None) -> None:
    """In the forked child: become the program (name, stdin, stdout, nothing else
    open, signals as at a start), run its main(argv[1:]), exit.  Never returns."""
    rc = 1
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for s in FORK_BLOCKED:          # every signal the supervisor handles
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT
                          else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED - proc.HANDLED)
        for h in list(log.log.handlers):
            log.log.removeHandler(h)
            h.close()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(stdin if stdin is not None else null, 0)
        os.dup2(stdout if stdout is not None else null, 1)
        for fd in [int(d) for d in os.listdir("/proc/self/fd")]:
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
        retitle(argv)
        sys.argv = list(argv)
        ALL.clear()
        rc = importlib.import_module(module).main(list(argv[1:]))
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            rc = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        os._exit(0 if rc is None else rc if isinstance(rc, int) else 1)   # as sys.exit


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


def end(k: Child, sig: int, limit: float) -> None:
    """End one daemon for good (sig, then SIGKILL after limit) and forget it."""
    if k.pid is None:
        return
    k.kill(sig)
    if not k.wait(limit):
        k.kill(signal.SIGKILL)
        k.wait(STOP)
    log.log.info("%s %s", k.name, k.forget())


def wait_all(kids: list[Child], limit: float) -> None:
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
