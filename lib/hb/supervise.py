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

from hb import access, cli, config, daemons, exits, log, notify, precheck, runfiles
from hb import settings, status
from hb.daemons import STOP, Child

PROG = "hb-supervise"
LOCK = "hb-supervise.lock"
PIDFILE = "hb-supervise.pid"
PIDFILES = {"hb-beat": "hb-beat.pid", "hb-watch": "hb-watch.pid"}
ENV_EXEC = "HB_SUPERVISE_EXEC"   # set by SIGUSR2's re-execution: the fds the new image keeps
QUIET = 30.0          # SIGUSR2: wait at most this for no group to be starting or stopping
ARGV0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def program(name: str) -> str:
    """The launcher next to ours (bin/), else the one on PATH."""
    here = os.path.dirname(ARGV0 or os.path.abspath("."))
    p = os.path.join(here, name)
    return p if os.access(p, os.X_OK) and not os.path.isdir(p) else name


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
    from hb import export         # lazy: only --export pays for hashlib and ElementTree
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


def busy_groups(rundir: str) -> list[str]:
    """Groups RUNDIR/status shows starting or stopping."""
    st = status.parse(runfiles.read_text(os.path.join(rundir, runfiles.STATUS)) or "")
    return [g["index"] for g in st["group"] if g["state"] in ("starting", "stopping")]


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
    rfd, wfd = daemons.new_pipe()
    daemons.end(beat, signal.SIGTERM, STOP)
    beat.done, beat.stdout = False, wfd
    beat.start(time.monotonic())
    daemons.end(watch, signal.SIGKILL, STOP)
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
    log.log.info("SIGUSR2: re-executing %s", daemons.quote(argv))
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
    exe = daemons.preload(list(PIDFILES))      # forked from here once imported
    beat = Child("hb-beat", [program("hb-beat"), *common, "--fifo", args["--fifo"]],
                 orphan_term=False, pidfile=os.path.join(rundir, PIDFILES["hb-beat"]),
                 module=None if "hb-beat" in exe else daemons.MODULES["hb-beat"])
    watch = Child("hb-watch", [program("hb-watch"), *common], orphan_term=False,
                  pidfile=os.path.join(rundir, PIDFILES["hb-watch"]),
                  module=None if "hb-watch" in exe else daemons.MODULES["hb-watch"])
    others = respawns(cfg)
    sd = notify.Notifier(os.path.join(rundir, runfiles.STATUS))    # systemd, when it runs us
    sigr, sigw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sigw, warn_on_full_buffer=False)
    for s in daemons.FORK_BLOCKED:          # the same five the children put back
        signal.signal(s, lambda *_: None)
    now = time.monotonic()
    adopted = [k.name for k in (beat, watch) if k.adopt(rundir, now)]
    pipe: tuple[int, int] | None = (given["rfd"], given["wfd"]) if given else None
    if pipe is None and adopted:
        pipe = daemons.steal_pipe(beat, watch)
        if pipe is None:
            log.log.warning("cannot reach the pipe between the running hb-beat and "
                            "hb-watch: replacing them")
    log.log.info("%s on %s: %s", "re-executed" if given else "starting", cfg.node,
                 daemons.quote(beat.argv))
    if pipe is None:
        if adopted:
            _retire(beat, watch)
        pipe = daemons.new_pipe()
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
        daemons.reap_all()
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
            old = {(k.user, daemons.quote(k.argv)): k for k in others}
            new = {(k.user, daemons.quote(k.argv)): k for k in respawns(cfg)}
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
    daemons.end(beat, signal.SIGTERM, STOP)
    daemons.end(watch, signal.SIGKILL, STOP)


def stop(beat: Child, watch: Child, others: list[Child], rundir: str) -> int:
    watch.kill(signal.SIGTERM)
    daemons.wait_all([watch], daemons.WATCH_STOP)
    for k in (beat, *others):
        k.kill(signal.SIGTERM)
    daemons.wait_all([beat, *others], STOP)
    for name in (runfiles.BEAT_FIFO, runfiles.WATCH_FIFO, PIDFILE, *PIDFILES.values()):
        try:
            os.unlink(os.path.join(rundir, name))
        except FileNotFoundError:
            pass
    log.log.info("stopped")
    return exits.OK


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
