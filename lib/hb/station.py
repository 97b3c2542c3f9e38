"""hb-beat's station: what it sends and receives on every medium.

Beat holds the media, wire.Encoder and receive.Receiver, the retransmission
history, RUNDIR/state, Heartbeat's message fifo and the lines for stdout; its
methods are what hb-beat's loop (beat.run) calls for each event: a beat is due,
a datagram, a line on beat.fifo, a message on Heartbeat's fifo, a signal.
"""

from __future__ import annotations

import os
import time

from hb import (config, hafifo, heard, lines, log as hblog, media, ping, proc, receive,
                runfiles, sequence, settings, wire)

BAD = tuple(k for k in receive.DROPS if k != "dup")     # drops worth a log line
EVENTS = 10         # sequence events (gaps, losses) logged per --stats interval
STALE: dict[str, str] = {}   # a state file its dead writer left: advertise `up` only
FIFO_LOGS = 10     # problems of Heartbeat's fifo logged per minute at most
UNSAID = frozenset(("seq", "ts", "ld", "auth"))   # what a repeated status changes

log = hblog.log


class StdoutClosed(Exception):
    pass


class Beat:
    """The sender/receiver: media, sequencing, history, stdout."""

    def __init__(self, cfg: settings.Config, me: str, rundir: str, gen: int,
                 listen: bool = False, stats: float = 60.0, statedir: str | None = None) -> None:
        self.me, self.rundir, self.gen, self.listen, self.stats = me, rundir, gen, listen, stats
        self.statedir = statedir            # where the high-water marks are kept (None: not)
        self.highwater = runfiles.Highwater(statedir) if statedir is not None else None
        self.next_save, self.save_failed, self.error_logged = 0.0, False, False
        self.events = 0
        self.follow, self.last_beat = False, -1e9
        self.peer_status = -1e9           # when a peer's status was last heard
        self.started: float | None = None  # when the first status went out
        self.next_check = self.next_stats = 0.0
        self.hist, self.statefile = sequence.History(), runfiles.StateReader(rundir)
        self.links: dict[tuple[str, str], float] = {}   # (node, medium) -> last line
        self.mine: dict[bytes, tuple] = {}    # what we sent lately -> (seq, line, said)
        self.mine_max = 0                                 # the longest of them
        self.state: dict[str, str] = {}
        self.logged = dict.fromkeys(receive.COUNTERS, 0)
        self.out_fd = 1
        self.out: list[str] = []          # lines for stdout, written once per wake-up
        self.fixed: list[int] = []        # fds waited on besides the media
        self.ha_fifo = ""                 # Heartbeat's message fifo ("": not read)
        self.fifo_window, self.fifo_logs, self.fifo_quiet = -1e9, 0, 0
        self.board: heard.Board | None = None   # RUNDIR/heard, once offered
        self.board_on = False             # hb-watch reads it: repeats get no line
        self.board_writer: str | None = None    # the hb-watch that said so
        self.said: dict[tuple[str, str], tuple] = {}    # (node, medium) -> (said, when)
        self.configure(cfg)
        if statedir is not None:
            marks, bad = runfiles.load_highwater(statedir)
            for b in bad[:5]:
                log.warning("high-water marks: %s (skipped)", b)
            self.rx.seq.restore(marks)
            if marks:
                log.info("high-water marks of %s restored: older messages are replays",
                         ", ".join("%s %x:%x" % (n, m[0], m[1]) for n, m in sorted(marks.items())))

    def configure(self, cfg: settings.Config) -> None:
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
        self.quiet_gap = min(1.25 * cfg.keepalive, cfg.warntime, cfg.deadtime / 2)
        if self.board is not None:      # the media may have changed: a new file
            self.offer_board(time.monotonic())

    # -- RUNDIR/heard ------------------------------------------------------------
    def offer_board(self, now: float) -> None:
        """A new RUNDIR/heard, offered to hb-watch by a line; until it answers
        (`!heard TOKEN` on beat.fifo) every status is written out as before."""
        names = [(self.me, "local")] + [(self.me, m.name) for m in self.media if m.echoes]
        names += [(n, m.name) for n in self.cfg.nodes if n != self.me for m in self.media]
        old, self.board = self.board, None
        if old is not None:
            old.close()
        try:
            self.board = heard.Board(os.path.join(self.rundir, heard.HEARD), names)
        except OSError as e:
            log.warning("%s: not written (every heartbeat is a line for hb-watch): %s",
                        os.path.join(self.rundir, heard.HEARD), e.strerror or e)
        self.reoffer(now)

    def control(self, line: str, now: float) -> None:
        """A line of hb-watch's on beat.fifo that is not a message: `!heard TOKEN`,
        it reads the RUNDIR/heard offered with that token."""
        word, _, arg = line.strip().partition(" ")
        if word == "!heard" and self.board is not None and arg == self.board.token:
            self.board_on, self.board_writer = True, self.statefile.writer
            self.said.clear()
        elif word != "!heard":
            log.warning("beat.fifo: unknown control line: %.80s", line.strip())

    def unsaid(self, key: tuple[str, str], said: object, now: float) -> bool:
        """A status heard through key (node, medium): True when it only repeats the
        last one written out for key, within quiet_gap of the one before: it gets
        no line, its time goes to RUNDIR/heard."""
        board = self.board
        i = board.index.get(key) if board is not None else None
        if i is None:
            return False
        last = self.said.get(key)
        quiet = last is not None and last[0] == said and now - last[1] <= self.quiet_gap
        self.said[key] = (said, now)
        if quiet:
            board.mark(i, now)
        return quiet

    def reoffer(self, now: float) -> None:
        """A new RUNDIR/heard, or the hb-watch that read it is gone or replaced:
        every status is a line again until the one running now answers the offer."""
        self.board_on, self.board_writer = False, None
        self.said.clear()
        if self.board is not None:
            self.out.append(lines.heard_offer(self.board.path, self.board.names,
                                              self.board.token, now))

    def forget(self, src: str) -> None:
        """A message of src's written out: its next status is written too, after it."""
        for k in [k for k in self.said if k[0] == src]:
            del self.said[k]

    # -- sending ------------------------------------------------------------
    def build(self, fields: "list[tuple[str, str]] | tuple", now: float,
              status: bool = False) -> tuple[bytes, str]:
        """wire.Encoder's packet and line; a sequenced one kept in history, and
        known as ours when it is for us too (heard back, it is not judged again; a
        status keeps its fields, to tell a repeat)."""
        enc = self.enc
        data, line, seq, forus = enc.encode(fields, int(time.time()), proc.loadavg(now))
        if enc.problems:
            for b in enc.problems:
                log.warning("%s", b)
            enc.problems.clear()
        if seq:
            self.hist.add(seq, data)
            if forus:
                self.mine[data] = (seq, line, fields if status else None)
                self.mine_max = max(self.mine_max, len(data))
                if len(self.mine) > 16:
                    del self.mine[next(iter(self.mine))]
        return data, line

    def send(self, data: bytes, now: float, status: bool = False) -> None:
        for m in self.media:
            if not m.send(data, status, now) and m.fileno() >= 0:
                self.rx.counts["unsent"] += 1

    def send_status(self, now: float) -> None:
        """Our status: RUNDIR/state's fields (none when the hb-watch that wrote it is
        gone: STALE), sent on every medium, and its line for stdout."""
        sf = self.statefile
        state, gone = sf.read()
        if gone:                        # its hb-watch is gone (restart, crash, reboot)
            log.info("RUNDIR/state was written by hb-watch %s, no longer running: not "
                     "advertised" % (sf.writer or "").split(":")[0])
        if not sf.writer_ok:
            state = STALE
        if self.started is None:
            # RUNDIR/state says `active`: communication was up when its hb-watch last
            # wrote it (it writes `dead` when it shuts down), whether that hb-watch
            # still runs or was killed a moment ago (an upgrade replaces hb-beat, then
            # hb-watch): this hb-beat was restarted, the node is not starting; no
            # init, no slack (which would add 2 s to the peer's dead timer of us).
            running = sf.fields.get("st") == "active"
            self.started = now - wire.STARTUP_DT if running else now
        phase = (self.started == now, now - self.started < wire.STARTUP_DT)
        if self.status[0] is not state or self.status[2] != phase:
            self.status = (state, tuple(wire.status_fields(state, self.cfg.deadtime, *phase)),
                           phase)
        data, line = self.build(self.status[1], now, status=True)
        self.send(data, now, status=True)
        if self.board_on and (gone or sf.writer != self.board_writer):
            self.reoffer(now)
        if not (self.board_on and self.unsaid((self.me, "local"), self.status[1], now)):
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
            self.mine[data] = (mine[0], None, None)
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
            if self.rx.own(mine[0], now) == "ok" and mine[1] is not None and not (
                    mine[2] is not None and self.board_on
                    and self.unsaid((self.me, via), mine[2], now)):
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
            if self.board_on and not self.listen:
                if t != "status":
                    self.forget(src)        # its next status follows it
                elif verdict == "ok" and self.unsaid(
                        k, tuple(kv for kv in text.items() if kv[0] not in UNSAID), now):
                    return
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
        if self.highwater is None or not (seq.dirty or force) or \
                (now < self.next_save and not seq.urgent and not force):
            return
        self.next_save = now + sequence.PERSIST_EVERY
        try:
            self.highwater.save(seq.snapshot())
        except OSError as e:
            seq.dirty = True
            if not self.save_failed:
                log.warning("unable to write %s: %s (replays older than the last write "
                            "would be accepted after a restart); retrying every %gs",
                            self.highwater.path, e.strerror or e,
                            sequence.PERSIST_EVERY)
            self.save_failed = True
            return
        if self.save_failed:
            log.info("%s written again", self.highwater.path)
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

    def reload(self) -> None:
        hblog.reopen()                # logrotate's postrotate, or by hand
        try:
            cfg = config.load(self.cfg.confdir, node=self.me, check_devices=False)
        except (settings.ConfigError, OSError) as e:
            log.error("SIGHUP: configuration not reloaded: %s", e)
            return
        if cfg.realtime and (cfg.rtprio, cfg.realtime) != (self.cfg.rtprio, self.cfg.realtime):
            proc.set_realtime(cfg.rtprio)
            if not self.cfg.realtime:
                proc.lock_memory()
        self.configure(cfg)
        log.info("SIGHUP: configuration reloaded")
