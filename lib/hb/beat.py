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

from hb import (cli, config, exits, hafifo, lines, log as hblog, media, ping, proc, receive,
                runfiles, sequence, wire)

PROG = "hb-beat"
BAD = tuple(k for k in receive.DROPS if k != "dup")     # drops worth a log line
EVENTS = 10         # sequence events (gaps, losses) logged per --stats interval
STALE: dict[str, str] = {}   # a state file its dead writer left: advertise `up` only
HOLD = 0.02        # s our own status line may wait for the peer's answer (keepalive/4 at most)
FIFO_LOGS = 10     # problems of Heartbeat's fifo logged per minute at most

log = hblog.log


class StdoutClosed(Exception):
    pass


class Beat:
    """The sender/receiver: media, sequencing, history, stdout."""

    def __init__(self, cfg: config.Config, me: str, rundir: str, gen: int,
                 listen: bool = False, stats: float = 60.0, statedir: str | None = None) -> None:
        self.me, self.rundir, self.gen, self.listen, self.stats = me, rundir, gen, listen, stats
        self.statedir = statedir            # where the high-water marks are kept (None: not)
        self.next_save, self.save_failed, self.error_logged = 0.0, False, False
        self.events = 0
        self.follow, self.last_beat = False, -1e9
        self.peer_status = -1e9           # when a peer's status was last heard
        self.started: float | None = None  # when the first status went out
        self.next_check = self.next_stats = 0.0
        self.hist, self.statefile = sequence.History(), runfiles.StateReader(rundir)
        self.links: dict[tuple[str, str], float] = {}   # (node, medium) -> last line
        self.mine: dict[bytes, tuple[int, str]] = {}    # what we sent lately -> (seq, line)
        self.mine_max = 0                                 # the longest of them
        self.state: dict[str, str] = {}
        self.logged = dict.fromkeys(receive.COUNTERS, 0)
        self.out_fd = 1
        self.out: list[str] = []          # lines for stdout, written once per wake-up
        self.fixed: list[int] = []        # fds waited on besides the media
        self.ha_fifo = ""                 # Heartbeat's message fifo ("": not read)
        self.fifo_window, self.fifo_logs, self.fifo_quiet = -1e9, 0, 0
        self.configure(cfg)
        if statedir is not None:
            marks, bad = runfiles.load_highwater(statedir)
            for b in bad[:5]:
                log.warning("high-water marks: %s (skipped)", b)
            self.rx.seq.restore(marks)
            if marks:
                log.info("high-water marks of %s restored: older messages are replays",
                         ", ".join("%s %x:%x" % (n, m[0], m[1]) for n, m in sorted(marks.items())))

    def configure(self, cfg: config.Config) -> None:
        self.cfg = cfg
        assert cfg.auth is not None
        self.keys = {n: (k.method, k.key) for n, k in cfg.auth.keys.items()}
        k = cfg.auth.signing
        if getattr(self, "enc", None) is None:
            self.enc = wire.Encoder(self.me, self.gen, 1 + len(cfg.nodes), k.num, k.method, k.key)
        else:
            self.enc.rekey(1 + len(cfg.nodes), k.num, k.method, k.key)
        self.status = (None, [], (False, False))
        self.dup_every = lines.dup_every(cfg.deadtime)
        old = getattr(self, "rx", None)
        self.rx = receive.Receiver(self.me, cfg.nodes, self.keys, self.gen)
        if old is not None:
            self.rx.counts = old.counts
            self.rx.seq.peers.update(old.seq.peers)
            self.rx.seq.lost = old.seq.lost
        for m in getattr(self, "media", []):
            m.close()
        if getattr(self, "pinger", None) is not None:
            self.pinger.close()
        self.media = media.open_media(cfg)
        self.serials = [m for m in self.media if m.kind == "serial"]
        self.pinger = ping.Pinger(cfg.pings) if cfg.pings and not self.listen else None
        self.armed = -1

    # -- sending ------------------------------------------------------------
    def build(self, fields: "list[tuple[str, str]] | tuple", now: float) -> tuple[bytes, str]:
        """wire.Encoder's packet and line; a sequenced one kept in history, and
        known as ours when it is for us too (heard back, it is not judged again)."""
        enc = self.enc
        data, line, seq, forus = enc.encode(fields, int(time.time()), proc.loadavg(now))
        if enc.problems:
            for b in enc.problems:
                log.warning("%s", b)
            enc.problems.clear()
        if seq:
            self.hist.add(seq, data)
            if forus:
                self.mine[data] = (seq, line)
                self.mine_max = max(self.mine_max, len(data))
                if len(self.mine) > 16:
                    del self.mine[next(iter(self.mine))]
        return data, line

    def send(self, data: bytes, now: float, status: bool = False) -> None:
        for m in self.media:
            if not m.send(data, status, now) and m.fileno() >= 0:
                self.rx.counts["unsent"] += 1

    def read_state(self) -> dict[str, str]:
        """RUNDIR/state's fields; STALE when the hb-watch that wrote it is gone."""
        sf = self.statefile
        fields, gone = sf.read()
        if gone:                        # its hb-watch is gone (restart, crash, reboot)
            log.info("RUNDIR/state was written by hb-watch %s, no longer running: not "
                     "advertised" % (sf.writer or "").split(":")[0])
        return fields if sf.writer_ok else STALE

    def send_status(self, now: float) -> None:
        state = self.read_state()
        if self.started is None:
            self.started = now
        phase = (self.started == now, now - self.started < wire.STARTUP_DT)
        if self.status[0] is not state or self.status[2] != phase:
            self.status = (state, tuple(wire.status_fields(state, self.cfg.deadtime, *phase)),
                           phase)
        data, line = self.build(self.status[1], now)
        self.send(data, now, status=True)
        self.out.append("%s _via=local _rt=%.6f _self=1\n" % (line, now))

    def send_line(self, text: str, now: float) -> None:
        fields = list(lines.parse_line(text).items())
        try:
            for k, v in fields:
                wire.check_field(k, wire.STRING, v)
            data, _ = self.build(fields, now)
        except wire.WireError as e:
            log.warning("beat.fifo: message not sent: %s: %.80s", e, text)
            return
        self.send(data, now)

    # -- Heartbeat's message fifo ------------------------------------------------
    def open_ha_fifo(self, path: str) -> tuple[int, int]:
        """Heartbeat's fifo (made, with its directory, when absent); (-1, -1) and a
        warning when it cannot be had: hb runs on without it."""
        if not path or path == "none":
            return -1, -1
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
            return runfiles.open_fifo_reader(path)
        except OSError as e:
            log.warning("%s: not read (messages written there are not sent): %s", path,
                        e.strerror or e)
            return -1, -1

    def read_ha_fifo(self, fd: int, parser: hafifo.FifoParser, now: float) -> None:
        """What scripts wrote (shellfuncs' ha_clustermsg): each complete message is
        sent as ours and, as Heartbeat does, delivered here too."""
        for _ in range(16):             # 1 MiB a wake-up at most
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            msgs, probs = parser.feed(data)
            for p in probs:
                self.fifo_problem(p, now)
            for fields in msgs:
                self.send_fifo_message(fields, now)

    def fifo_problem(self, text: str, now: float) -> None:
        if now - self.fifo_window >= 60.0:
            if self.fifo_quiet:
                log.warning("fifo: %d more problems not logged", self.fifo_quiet)
            self.fifo_window, self.fifo_logs, self.fifo_quiet = now, 0, 0
        if self.fifo_logs < FIFO_LOGS:
            self.fifo_logs += 1
            log.warning("fifo: %s", text)
        else:
            self.fifo_quiet += 1

    def send_fifo_message(self, fields: list[tuple[str, str]], now: float) -> None:
        try:
            data, line = self.build(fields, now)
        except wire.WireError as e:
            self.fifo_problem("message not sent: %s: %.80s" % (e, lines.format_line(dict(fields))),
                              now)
            return
        if len(data) > wire.MAXDGRAM:
            self.fifo_problem("message not sent: %d bytes, more than a datagram" % len(data), now)
            return
        self.send(data, now)
        mine = self.mine.get(data)
        if mine is not None:            # for us too: delivered now, not when heard back
            self.mine[data] = (mine[0], None)
            auth = data[data.rfind(b"\nauth=") + 6:-5].decode()
            self.out.append(lines.with_auth("%s _via=local _rt=%.6f _self=1\n" % (line, now), auth))

    # -- receiving ------------------------------------------------------------
    def flush(self) -> None:
        """Write what this wake-up produced in one write(2)."""
        data = "".join(self.out).encode("utf-8", "surrogateescape")
        self.out.clear()
        try:
            while data:
                data = data[os.write(self.out_fd, data):]
        except BrokenPipeError:
            raise StdoutClosed() from None

    def handle(self, data: bytes, via: str, now: float) -> None:
        mine = self.mine.get(data) if len(data) <= self.mine_max else None
        if mine is not None:        # our own message heard back: known good
            if self.rx.own(mine[0], now) == "ok" and mine[1] is not None:
                self.out.append("%s _via=%s _rt=%.6f _self=1\n" % (mine[1], via, now))
            return
        verdict, pkt = self.rx.receive(data, now, via)
        if pkt is None:
            return
        try:
            self.deliver(verdict, pkt, via, now)
        except Exception as e:          # a bug: never a dead daemon for a message
            c = self.rx.counts
            c["accepted" if verdict != "dup" else "dup"] -= 1
            c["malformed"] += 1
            if self.rx.error is None:
                self.rx.error = "%s: %s" % (type(e).__name__, e)

    def deliver(self, verdict: str, pkt: wire.Packet, via: str, now: float) -> None:
        """An accepted message (or a copy through another medium): a line for
        hb-watch, a link notice, an answer to NS_rexmit."""
        text = pkt.text()
        t = text.get("t") or ""
        src = (text.get("src") or "").lower()
        k = (src, via)
        if verdict == "dup":        # another medium was faster: say this link works
            if src != self.me and now - self.links.get(k, -1e9) >= self.dup_every:
                self.links[k] = now
                self.out.append("src=%s _via=%s _rt=%.6f _dup=1\n" % (
                    lines.quote(src), via, now))
            return
        self.links[k] = now
        if t == "status" and src != self.me and verdict == "ok":
            self.peer_status = now
            if now - self.last_beat >= self.cfg.keepalive / 2:
                self.follow = not self.listen     # send ours now: one wake-up for both
        dest = text.get("dest")
        forus = dest is None or dest == self.me
        if t == "NS_rexmit" and dest == self.me and src != self.me and not self.listen:
            self.answer_rexmit(pkt, src, now)
        elif t == "NS_nak_rexmit" and dest == self.me:
            self.rx.seq.nak(src, sequence.nak_seq(pkt))
        if not forus:
            self.rx.counts["notforus"] += 1
        if self.listen or (forus and not t.startswith("NS_")):
            line = wire.received_line(pkt, via, now, src == self.me)
            if t != "status" and not self.listen:
                line = lines.with_auth(line, text.get("auth"))
            self.out.append(line)

    def answer_rexmit(self, pkt: wire.Packet, src: str, now: float) -> None:
        packets, naks = self.hist.request(*sequence.rexmit_range(pkt), now)
        for data in packets:
            self.send(data, now)
            self.rx.counts["rexmit_sent"] += 1
        for s, why in naks:
            self.send(self.build(sequence.nak_fields(src, s, why), now)[0], now)
            self.rx.counts["nak_sent"] += 1

    def ask_rexmit(self, now: float) -> None:
        for src, s in self.rx.seq.due(now):
            self.send(self.build(sequence.rexmit_fields(src, s), now)[0], now)
            self.rx.counts["rexmit_asked"] += 1

    def save(self, now: float, force: bool = False) -> None:
        """The high-water marks to STATEDIR: at once after a generation changed,
        else at most every sequence.PERSIST_EVERY s while they move; a failure is
        logged once and retried."""
        seq = self.rx.seq
        if self.statedir is None or not (seq.dirty or force) or \
                (now < self.next_save and not seq.urgent and not force):
            return
        self.next_save = now + sequence.PERSIST_EVERY
        try:
            runfiles.save_highwater(self.statedir, seq.snapshot())
        except OSError as e:
            seq.dirty = True
            if not self.save_failed:
                log.warning("unable to write %s: %s (replays older than the last write "
                            "would be accepted after a restart); retrying every %gs",
                            os.path.join(self.statedir, sequence.HIGHWATER), e.strerror or e,
                            sequence.PERSIST_EVERY)
            self.save_failed = True
            return
        if self.save_failed:
            log.info("%s written again", os.path.join(self.statedir, sequence.HIGHWATER))
            self.save_failed = False

    def log_events(self, now: float, force: bool = False) -> None:
        if now < self.next_check and not force:
            return
        self.next_check = now + 0.1
        self.save(now)
        if self.rx.error is not None and not self.error_logged:
            self.error_logged = True
            log.error("a received datagram raised %s (dropped as malformed; a bug)",
                      self.rx.error)
        for e in self.rx.seq.events:
            self.events += 1
            if self.events <= EVENTS:
                log.warning("%s", e)
        self.rx.seq.events.clear()
        c = self.rx.counts
        c["lost"] = self.rx.seq.lost
        changed = any(c[k] != self.logged[k] for k in BAD + ("lost",))
        if force or ((changed or self.events > EVENTS) and now >= self.next_stats):
            if self.events > EVENTS:
                log.warning("%d more sequence events not logged", self.events - EVENTS)
            log.info("counters: %s", " ".join("%s=%d" % (k, c[k]) for k in receive.COUNTERS))
            self.logged = dict(c)
            self.next_stats = now + self.stats
            self.events = 0

    # -- the loop -------------------------------------------------------------
    def beat(self, now: float) -> None:
        """Our status heartbeat (its echo on a broadcast medium is queued by
        the time sendto() returns: read now, not at another wake-up); pings."""
        self.follow, self.last_beat = False, now
        self.send_status(now)
        for m in self.media:
            if m.echoes and m.fileno() >= 0:
                for data in m.recv(now):
                    self.handle(data, m.name, now)
        if self.pinger is not None:
            self.pinger.ping(now)

    def arm(self, now: float) -> None:
        """The fds to wait on, rebuilt only when a medium opens or closes."""
        fixed = self.fixed + (self.pinger.fds() if self.pinger is not None else [])
        self.rl, self.byfd, self.next_open = media.wait_set(self.media, fixed, now)
        self.armed = media.Medium.changes

    def run(self, sigfd: int, flags: dict) -> int:
        """One select() per wake-up, to the next beat exactly; one write per
        wake-up.  A peer's status heard keepalive/2 or more after our last one
        sends ours at once and restarts the schedule there (never later than
        due): a pair then wakes three times per keepalive, not four.  The line
        of our own status waits for the peer's answer (HOLD at most), so that
        hb-watch reads both in one wake-up too."""
        period = self.cfg.keepalive
        fifo = keep = -1
        reader = None
        if not self.listen:
            fifo, keep = runfiles.open_fifo_reader(os.path.join(self.rundir, runfiles.BEAT_FIFO))
            reader = runfiles.LineReader(fifo)
        hafd, hakeep = self.open_ha_fifo(self.ha_fifo) if not self.listen else (-1, -1)
        haparser = hafifo.FifoParser()
        self.fixed = [fd for fd in (sigfd, fifo, hafd) if fd >= 0]
        watch_out = stat.S_ISFIFO(os.fstat(self.out_fd).st_mode)
        mono, select_ = time.monotonic, select.select
        t0 = mono()
        due = t0 if not self.listen else float("inf")
        hold = 0.0
        seq = self.rx.seq
        try:
            while True:
                now = mono()
                if flags:
                    if flags.pop("term", None):
                        return exits.OK
                    if flags.pop("hup", None):
                        self.reload()
                        period = self.cfg.keepalive
                        seq = self.rx.seq
                    if flags.pop("usr1", None):
                        self.log_events(now, force=True)
                if now >= due:
                    self.beat(now)
                    if now - self.peer_status < 1.5 * period:
                        hold = now + min(period / 4, HOLD)  # the peer answers at once:
                    else:                                   # one write, one wake-up
                        self.flush()                        # of hb-watch for both
                    due = wire.next_beat(t0, period, now)
                if now >= seq.next_due:
                    self.ask_rexmit(now)
                if now >= self.next_check:
                    self.log_events(now)
                if self.armed != media.Medium.changes or now >= self.next_open:
                    self.arm(now)
                wait = (due if not self.listen else now + 1.0) - now
                if self.out and hold - now < wait:
                    wait = hold - now
                if seq.next_due - now < wait:
                    wait = seq.next_due - now
                wl, wait = media.serial_waits(self.serials, wait)
                r, w, _ = select_(self.rl, wl, [], wait if wait > 0 else 0.0)
                now = mono()
                for fd in w:
                    self.byfd[fd].flush()
                for fd in r:
                    m = self.byfd.get(fd)
                    if m is not None:
                        for data in m.recv(now):
                            self.handle(data, m.name, now)
                    elif fd == sigfd:
                        proc.drain(sigfd)
                    elif fd == fifo and reader is not None:
                        for line in reader.read():
                            if line.strip():
                                self.send_line(line, now)
                    elif fd == hafd:
                        self.read_ha_fifo(hafd, haparser, now)
                    elif self.pinger is not None:
                        for name, addr in self.pinger.recv(fd):
                            self.out.append("t=ping %s _via=ping _rt=%.6f\n" % (
                                lines.format_line({"src": name, "addr": addr}), now))
                if self.follow:             # a peer's status: ours goes with it
                    self.beat(now)
                    t0, due = now, now + period
                if self.out:
                    self.flush()
                elif watch_out and self.listen and not r and proc.pipe_closed(self.out_fd):
                    return exits.OK
                for m in self.serials:
                    if m.timeout() is not None:
                        m.flush()
        except StdoutClosed:
            return exits.OK
        finally:
            self.save(time.monotonic(), force=True)
            self.log_events(time.monotonic(), force=True)
            for fd in (fifo, keep, hafd, hakeep):
                if fd >= 0:
                    os.close(fd)
            for m in self.media:
                m.close()
            if self.pinger is not None:
                self.pinger.close()

    def reload(self) -> None:
        hblog.reopen()                # logrotate's postrotate, or by hand
        try:
            cfg = config.load(self.cfg.confdir, node=self.me, check_devices=False)
        except (config.ConfigError, OSError) as e:
            log.error("SIGHUP: configuration not reloaded: %s", e)
            return
        if cfg.realtime and (cfg.rtprio, cfg.realtime) != (self.cfg.rtprio, self.cfg.realtime):
            proc.set_realtime(cfg.rtprio, lock=False)
            if not self.cfg.realtime:
                proc.lock_memory()
        self.configure(cfg)
        log.info("SIGHUP: configuration reloaded")


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
    except config.ConfigError as e:
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
    beat = Beat(cfg, me, args["-r"], gen if not listen else -1, listen, stats,
                None if listen or once else args["-s"])
    if once:
        return send_once(beat)
    beat.ha_fifo = args["--fifo"]
    if cfg.realtime and not listen:
        proc.set_realtime(cfg.rtprio, lock=False)
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
    log.info("starting: node %s generation %x, %d media, keepalive %gs%s", me, beat.gen,
             len(beat.media), cfg.keepalive, " (listening only)" if listen else "")
    gc.freeze()     # what start-up made stays: no collection rescans it
    return beat.run(rfd, flags)


def send_once(beat: Beat) -> int:
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
