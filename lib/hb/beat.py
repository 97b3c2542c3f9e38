"""hb-beat: signed heartbeats on every medium; each accepted message on stdout.

Usage:
  hb-beat [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME] [--stats SECONDS] [--fifo PATH]
  hb-beat [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME] --listen
  hb-beat [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME] --send-once
  hb-beat -h | --help | -V | --version

Options:
  -c CONFDIR       configuration directory [default: /etc/ha.d]
  -r RUNDIR        run directory: state, beat.fifo [default: /var/run/hb]
  -s STATEDIR      persistent state: generation, high-water marks [default: /var/lib/hb]
  --node NAME      this node's name (default: uname -n, lower-cased)
  --stats SECONDS  log drop counters at most this often [default: 60]
  --fifo PATH      Heartbeat's message fifo, read for messages to send (`none`: not)
                   [default: /var/lib/heartbeat/fifo]
  --listen         send nothing; print every verified message that arrives
  --send-once      send one status heartbeat on every medium and exit
  -h --help        show this help
  -V, --version    print the program's name and hb's version
"""

from __future__ import annotations

import gc
import os
import select
import signal
import stat
import sys
import time

from hb import cli, config, exits, hafifo, lines, log as hblog, media, proc, runfiles, settings
from hb import station, wire

PROG = "hb-beat"
HOLD = 0.02        # s our own status line may wait for the peer's answer (keepalive/4 at most)

log = hblog.log


def run(b: station.Beat, sigfd: int, flags: dict) -> int:
    """One select() per wake-up, to the next beat exactly; one write per
    wake-up.  A peer's status heard keepalive/2 or more after our last one
    sends ours at once and restarts the schedule there (never later than
    due): a pair then wakes three times per keepalive, not four.  The line
    of our own status waits for the peer's answer (HOLD at most), so that
    hb-watch reads both in one wake-up too."""
    period = b.cfg.keepalive
    fifo = keep = -1
    reader = None
    if not b.listen:
        fifo, keep = runfiles.open_fifo_reader(os.path.join(b.rundir, runfiles.BEAT_FIFO))
        reader = runfiles.LineReader(fifo)
    hafd, hakeep = b.open_ha_fifo(b.ha_fifo) if not b.listen else (-1, -1)
    haparser = hafifo.FifoParser()
    b.fixed = [fd for fd in (sigfd, fifo, hafd) if fd >= 0]
    watch_out = stat.S_ISFIFO(os.fstat(b.out_fd).st_mode)
    mono, select_ = time.monotonic, select.select
    t0 = mono()
    due = t0 if not b.listen else float("inf")
    if not b.listen:
        b.offer_board(t0)
    hold = 0.0
    seq = b.rx.seq
    try:
        while True:
            now = mono()
            if flags:
                if flags.pop("term", None):
                    return exits.OK
                if flags.pop("hup", None):
                    b.reload()
                    period = b.cfg.keepalive
                    seq = b.rx.seq
                if flags.pop("usr1", None):
                    b.log_events(now, force=True)
            if now >= due:
                b.beat(now)
                if now - b.peer_status < 1.5 * period:
                    hold = now + min(period / 4, HOLD)  # the peer answers at once:
                else:                                   # one write, one wake-up
                    b.flush()                        # of hb-watch for both
                due = wire.next_beat(t0, period, now)
            if now >= seq.next_due:
                b.ask_rexmit(now)
            if now >= b.next_check:
                b.log_events(now)
            if b.armed != media.Medium.changes or now >= b.next_open:
                b.arm(now)
            wait = (due if not b.listen else now + 1.0) - now
            if b.out and hold - now < wait:
                wait = hold - now
            if seq.next_due - now < wait:
                wait = seq.next_due - now
            wl, wait = media.serial_waits(b.serials, wait)
            r, w, _ = select_(b.rl, wl, [], wait if wait > 0 else 0.0)
            now = mono()
            for fd in w:
                b.byfd[fd].flush()
            for fd in r:
                m = b.byfd.get(fd)
                if m is not None:
                    for data in m.recv(now):
                        b.handle(data, m.name, now)
                elif fd == sigfd:
                    proc.drain(sigfd)
                elif fd == fifo and reader is not None:
                    for line in reader.read():
                        if line.startswith("!"):
                            b.control(line, now)
                        elif line.strip():
                            b.send_line(line, now)
                elif fd == hafd:
                    b.read_ha_fifo(hafd, haparser, now)
                elif b.pinger is not None:
                    for name, addr in b.pinger.recv(fd):
                        b.out.append("t=ping %s _via=ping _rt=%.6f\n" % (
                            lines.format_line({"src": name, "addr": addr}), now))
            if b.follow:             # a peer's status: ours goes with it
                b.beat(now)
                t0, due = now, now + period
            if b.out:
                b.flush()
            elif watch_out and b.listen and not r and proc.pipe_closed(b.out_fd):
                return exits.OK
            for m in b.serials:
                if m.timeout() is not None:
                    m.flush()
    except station.StdoutClosed:
        return exits.OK
    finally:
        b.save(time.monotonic(), force=True)
        b.log_events(time.monotonic(), force=True)
        for fd in (fifo, keep, hafd, hakeep):
            if fd >= 0:
                os.close(fd)
        for m in b.media:
            m.close()
        if b.pinger is not None:
            b.pinger.close()


def fatal(verb: str, obj: str, e: OSError) -> int:
    print(hblog.fatal(PROG, verb, obj, e.strerror or e), file=sys.stderr)
    return exits.FAIL


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):
        return args
    me = (args["--node"] or os.uname().nodename).lower()
    try:
        stats = float(args["--stats"])
    except ValueError:
        print("%s: --stats wants seconds, not %r (try '%s --help')" % (
            PROG, args["--stats"], PROG), file=sys.stderr)
        return exits.USAGE
    try:
        cfg = config.load(args["-c"], node=me, check_devices=False)
    except settings.ConfigError as e:
        print(e, file=sys.stderr)
        return exits.CONFIG
    except OSError as e:
        return fatal("read", args["-c"], e)
    hblog.setup(PROG, cfg)
    listen, once = args["--listen"], args["--send-once"]
    if not listen:
        try:
            gen, problem = runfiles.next_generation(args["-s"])
        except OSError as e:
            return fatal("write", os.path.join(args["-s"], "generation"), e)
        if problem:
            log.warning("cannot keep Heartbeat's generation counter current: %s", problem)
    beat = station.Beat(cfg, me, args["-r"], gen if not listen else -1, listen, stats,
                        None if listen or once else args["-s"])
    if once:
        return send_once(beat)
    beat.ha_fifo = args["--fifo"]
    if cfg.realtime and not listen:
        proc.set_realtime(cfg.rtprio)
        proc.lock_memory()
    if not listen:
        try:
            os.makedirs(args["-r"], exist_ok=True)
            runfiles.make_fifo(os.path.join(args["-r"], runfiles.BEAT_FIFO))
        except OSError as e:
            return fatal("create", os.path.join(args["-r"], runfiles.BEAT_FIFO), e)
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    flags: dict[str, bool] = {}
    for sig, name in ((signal.SIGTERM, "term"), (signal.SIGINT, "term"),
                      (signal.SIGHUP, "hup"), (signal.SIGUSR1, "usr1")):
        signal.signal(sig, lambda s, f, n=name: flags.__setitem__(n, True))
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    proc.signals_ready()
    log.info("starting: node %s generation %x, %d media, keepalive %gs%s", me, beat.gen,
             len(beat.media), cfg.keepalive, " (listening only)" if listen else "")
    gc.freeze()     # what start-up made stays: no collection rescans it
    return run(beat, rfd, flags)


def send_once(beat: station.Beat) -> int:
    now = time.monotonic()
    beat.started = now - wire.STARTUP_DT        # a running node's status: no init, no slack
    beat.send_status(now)
    beat.out.clear()
    deadline = now + 1.0
    while any(m.wants_write() or m.timeout() for m in beat.media) and time.monotonic() < deadline:
        for m in beat.media:
            m.flush()
        time.sleep(0.01)
    bad = [m for m in beat.media if m.failed or not m.sent]
    for m in beat.media:
        m.close()
    return exits.FAIL if len(bad) == len(beat.media) else exits.OK
