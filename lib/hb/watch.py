"""hb-watch: judge liveness from hb-beat's message lines and decide who holds each group.

Usage:
  hb-watch [-c CONFDIR] [-r RUNDIR] [-s STATEDIR] [--node NAME]
  hb-watch --check [-r RUNDIR] [--warn-age S] [--max-age S]
  hb-watch -h | --help | -V | --version

Options:
  -c CONFDIR     configuration directory [default: /etc/ha.d]
  -r RUNDIR      run directory: state, status, beat.fifo, watch.fifo [default: /var/run/hb]
  -s STATEDIR    persistent state (mail spool, peer-stuck) [default: /var/lib/hb]
  --node NAME    this node's name (default: uname -n, lower-cased)
  --check        read RUNDIR/status, print one line, exit with a Nagios code
  --warn-age S   with --check: status older than S seconds is a warning [default: 10]
  --max-age S    with --check: status older than S seconds is critical [default: 30]
  -h --help      show this help
  -V, --version  print the program's name and hb's version
"""

from __future__ import annotations

import errno
import gc
import os
import select
import selectors
import shlex
import signal
import subprocess
import sys
import time

from hb import access, agents, checks, cli, config, exits, harc, heard, log as hblog, \
    owner, proc, runfiles, settings, status
from hb.actions import Alert, Check, Exit, Log, Reboot, Run, Save, Send, Watchdog
from hb.lines import format_line, heard_slots, parse_line

PROG = "hb-watch"
WRITE_RETRY = 1.0         # s: a failed write of RUNDIR/state or status is tried again
WRITE_LOG_EVERY = 60.0    # s: and logged at most this often
REBOOT_WAIT = 30.0        # s: after the reboot command, before giving up on the reboot
STDIN_READS = 64          # reads of 64 KiB at most per wake-up
AWAKE_EVERY = 5.0         # s: the longest sleep once RUNDIR/heard is read (the owner's
#                           deadlines, and the status file's 5 s, wake it before)
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
log = hblog.log


def check(rundir: str, max_age: float, warn_age: float) -> tuple[int, str]:
    """hb-watch --check: (Nagios code, one line) on RUNDIR/status (status.verdict)."""
    path = os.path.join(rundir, runfiles.STATUS)
    try:
        text = access.read(path)
    except access.Unreadable as e:
        return exits.NAGIOS_UNKNOWN, "HB UNKNOWN - %s" % e
    return status.verdict(text, path, time.time(), max_age, warn_age, runfiles.pid_alive)


class Watch:
    """The I/O around owner.Owner: stdin, watch.fifo, agents, beat.fifo, files."""

    def __init__(self, cfg: settings.Config, rundir: str, statedir: str) -> None:
        self.cfg, self.rundir, self.statedir = cfg, rundir, statedir
        self.now = time.monotonic()
        self.ifaces, self.byip = checks.addresses(cfg.groups, cfg.confdir)
        self.stuck_path = os.path.join(statedir, runfiles.PEER_STUCK)
        held = status.held_before(runfiles.read_text(os.path.join(rundir, runfiles.STATUS))
                                  or "", cfg.node)
        stuck = runfiles.read_peer_stuck(self.stuck_path, cfg.peers[0] if cfg.peers else None)
        self.ow = owner.Owner(cfg, self.now, config.digest(cfg), held, self.ifaces, stuck)
        self.stuck_text = ""
        self.hooks = harc.Hooks(harc.base_env(cfg))
        env = harc.agent_env(cfg)
        self.events = self.scan_hooks()
        self.runner = agents.Runner(checks.Caller(cfg.confdir, cfg.node, rundir, statedir,
                                                  env=env))
        self.checker = checks.Checker(agents.Caller(cfg.confdir, cfg.node, rundir, statedir,
                                                    timeout=self.ow.mon.timeout, env=env))
        self.nbr_pipe: tuple[int, int] | None = None
        if self.byip:                 # the neighbour check's results wake the loop
            from hb import address     # lazy: only with addresses to watch
            self.nbr_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            address.on_neighbour = self.neighbour_heard
        self.netlink = None
        if self.ifaces or self.byip:
            from hb import netlink
            try:
                self.netlink = netlink.LinkWatcher()
            except OSError as e:
                log.error("no netlink events (carrier, addresses): %s", e.strerror or e)
        self.beat = runfiles.FifoWriter(os.path.join(rundir, runfiles.BEAT_FIFO), "hb-beat",
                                        log)
        self.wd_fd: int | None = None
        self.sheet: heard.Sheet | None = None    # RUNDIR/heard, as hb-beat offered it
        self.slots: list[tuple[str, str]] = []
        self.applied: list[tuple[float, int]] = []   # what was taken of each slot
        self.said: dict[str, dict] = {}           # node -> its last status line
        self.state_text = ""
        self.writer = runfiles.writer_id()      # this hb-watch, as RUNDIR/state names it
        self.next_status = 0.0
        self.epoch = status.Epoch()      # RUNDIR/status: one `since` reads the same
        self.exit: int | None = None
        self.write_failed: float | None = None    # since when RUNDIR/state cannot be written
        self.write_logged = -1e9
        self.deferred: list[Run] = []        # starts waiting for the state to be written
        self.reboot: subprocess.Popen | None = None
        self.reboot_due = 0.0

    def scan_hooks(self) -> harc.Events:
        hooks, skipped = harc.scan(self.cfg.confdir)
        for why in skipped:
            log.info("rc.d: %s", why)
        if hooks:
            log.info("rc.d: hooks for %s", ", ".join(sorted(hooks)))
        self.hook_paths = hooks
        ev = harc.Events(self.cfg.node, hooks)
        old = getattr(self, "events", None)
        if old is not None:
            ev.status = old.status
        return ev

    def message(self, f: dict, at: float | None = None) -> bool:
        """One line from hb-beat: to the owner, then (as Heartbeat) to rc.d.  True
        when it only repeated a status and fed the watchdog: only time moved.
        at: when it was heard, for a line made of RUNDIR/heard (else now)."""
        if f.get("t") == "status":
            if "_dup" not in f:
                self.said[f.get("src", "").lower()] = f
        elif f.get("t") == "heard":
            slots = heard_slots(f)
            if slots is not None:
                self.take_board(f, slots)
                return True
        actions = self.ow.message(f, self.now if at is None else at)
        self.apply(actions)
        ev = self.events.message(f)
        if ev is not None:
            self.run_hook(*ev)
        return self.ow.repeated and ev is None and all(isinstance(a, Watchdog)
                                                       for a in actions)

    def take_board(self, f: dict, slots: list[tuple[str, str]]) -> None:
        """hb-beat offers RUNDIR/heard: mapped, checked, and answered on beat.fifo
        (from then on it writes no line for a status that only repeats).  When it
        cannot be read, no answer: every status stays a line."""
        token = f.get("token", "")
        if self.sheet is not None and self.sheet.token == token:
            self.beat.send("!heard " + token, self.now)
            return
        try:
            sheet = heard.Sheet(f.get("file", ""), token, len(slots))
        except (OSError, ValueError) as e:
            log.warning("RUNDIR/heard offered by hb-beat not read (every heartbeat stays a "
                        "line): %s", getattr(e, "strerror", None) or e)
            return
        if self.sheet is not None:
            self.sheet.close()
        self.sheet, self.slots = sheet, slots
        self.applied = [sheet.read(i) for i in range(len(slots))]
        self.beat.send("!heard " + token, self.now)

    def read_board(self, drain) -> bool:
        """The statuses hb-beat wrote no line for since the last look (RUNDIR/heard),
        oldest first: their times to the owner, or, when it wants a whole status, the
        node's last line again as heard then.  drain() first reads the lines hb-beat
        wrote before those statuses came (still in the pipe).  True when only clocks
        moved."""
        sheet = self.sheet
        if sheet is None:
            return True
        new = []
        applied = self.applied
        for i in range(len(applied)):
            t, c = sheet.read(i)
            if c != applied[i][1]:
                new.append((t, i, c - applied[i][1]))
                applied[i] = (t, c)
        if not new:
            return True
        quiet = drain() is not False
        new.sort()
        for t, i, count in new:
            src, via = self.slots[i]
            if self.ow.heard(src, via, t, count):
                if src == self.cfg.node and via == "local":
                    self.feed_watchdog()
                continue
            f = self.said.get(src)
            if f is not None:
                quiet = self.message(dict(f, _via=via, _rt="%.6f" % t), at=t) and quiet
        return quiet

    def deaths(self) -> None:
        """A node the owner has just judged dead: Heartbeat's st=dead status event."""
        for name, n in self.ow.nodes.items():
            if n.kind != "self" and n.status == "dead" and \
                    self.events.status.get(name) != "dead":
                ev = self.events.dead(name)
                if ev is not None:
                    self.run_hook(*ev)

    def run_hook(self, typ: str, fields: dict, ostatus: str | None) -> None:
        path = self.hook_paths.get(typ)
        if path is not None:
            self.hooks.queue(path, typ, harc.message_env(fields, self.cfg.node, ostatus))

    def apply(self, actions: list) -> None:
        save = False
        for a in actions:
            if isinstance(a, Save):
                save = True
            elif isinstance(a, Log):
                log.log(LEVELS.get(a.level, 20), "%s", a.text)
        if save or self.write_failed is not None:    # state first: later heartbeats
            self.save()                               # must show the change
        for a in actions:
            if isinstance(a, Send):
                self.beat.send(format_line(a.fields), self.now)
            elif isinstance(a, Run) and a.action == "start" and (
                    self.write_failed is not None or self.deferred):
                self.deferred.append(a)   # not before the state file says we hold it
            elif isinstance(a, Run):
                self.run_group(a)
            elif isinstance(a, Reboot):
                self.run_reboot(a.group)
            elif isinstance(a, Alert):
                self.alert(a.group, a.text)
            elif isinstance(a, Check):
                self.checker.run(self.ow.gs[a.group].group, a.token)
            elif isinstance(a, Watchdog):
                self.feed_watchdog()
            elif isinstance(a, Exit):
                self.exit = a.code

    def run_group(self, a: Run) -> None:
        """A group action in a worker; a start of one of our own (local) groups while
        the peer is not up gets HA_DONTASK=yes, as Heartbeat's req_our_resources
        when alone (a dead peer's groups are taken without it, as by mach_down)."""
        g = self.ow.gs[a.group].group
        peer = self.ow.peer
        alone = a.action == "start" and g.node == self.cfg.node and (
            peer is None or peer.status != "up")
        self.runner.run(g, a.action,
                        {"HA_DONTASK": "yes"} if alone else None)

    def alert(self, group: int, text: str) -> None:
        """Mail a group's stop failure through its MailTo resources (none: the log's
        CRIT line and hb-watch --check's CRITICAL are the alert)."""
        for r in self.ow.gs[group].group.resources:
            a = agents.lookup(r.name, self.cfg.confdir)
            if a is not None and a.module == "mail":
                from hb import mail        # lazy: only to send an alert
                log.info("group %d: %s", group, mail.alert(
                    r.args, self.cfg.node, self.statedir, self.cfg.confdir, text))

    def save(self) -> None:
        """RUNDIR/state (what our heartbeats advertise), then status.  A write that fails
        (disk full, read-only) is logged and retried every WRITE_RETRY s; meanwhile the
        starts decided wait (the peer must read that we hold a group before it runs
        here), everything else goes on."""
        # watch=PID:START is read by hb-beat only: a dead writer's state is stale
        text = runfiles.format_kv(dict(self.ow.state_fields(), watch=self.writer))
        if text != self.state_text:
            path = os.path.join(self.rundir, runfiles.STATE)
            try:
                runfiles.write_atomic(path, text)
            except OSError as e:
                if not (e.errno == errno.ENOSPC and runfiles.write_in_place(path, text)):
                    self.write_error(runfiles.STATE, e)
                    return
            self.state_text = text
        self.save_peer_stuck()
        if self.write_failed is not None:
            log.warning("RUNDIR/state written again after %.1f s", self.now - self.write_failed)
            self.write_failed = None
        runs, self.deferred = self.deferred, []
        for a in runs:
            if self.ow.gs[a.group].busy == a.action:
                self.run_group(a)
        self.write_status()

    def save_peer_stuck(self) -> None:
        """STATEDIR/peer-stuck: the groups the peer said may still run there, kept
        across restarts of this node (a reboot included): never started here
        meanwhile, even if the peer is not running when this node starts."""
        p = self.ow.peer
        if p is None:
            return
        text = "node=%s\nstuck=%s\n" % (p.name, ",".join(map(str, sorted(p.stuck))) or "none")
        if text == self.stuck_text:
            return
        try:
            runfiles.write_atomic(self.stuck_path, text, 0o600)
            self.stuck_text = text
        except OSError as e:
            self.write_error(runfiles.PEER_STUCK, e)

    def write_error(self, name: str, e: OSError) -> None:
        if self.write_failed is None and name == runfiles.STATE:
            self.write_failed = self.now
        if self.now - self.write_logged >= WRITE_LOG_EVERY:
            self.write_logged = self.now
            log.error("cannot write %s: %s: retrying every %g s%s", os.path.join(
                self.rundir, name), e.strerror or e, WRITE_RETRY,
                "; starting nothing meanwhile" if name == runfiles.STATE else "")

    def neighbour_heard(self, ip: str, ok: bool, seconds: float, detail: str) -> None:
        """address.on_neighbour, called on the neighbour thread: wake the loop."""
        try:
            os.write(self.nbr_pipe[1], b"n")
        except (BlockingIOError, OSError, TypeError):
            pass                      # a wake-up is pending already

    def neighbour_fields(self) -> dict[int, dict[str, str]]:
        """`nbr=` for each group held here whose addresses were checked."""
        if self.nbr_pipe is None:
            return {}
        from hb import address         # lazy: as in __init__
        ips: dict[int, list[str]] = {}
        for ip, groups in self.byip.items():
            for i in groups:
                ips.setdefault(i, []).append(ip)
        out = {}
        for i in self.ow.held():
            field = address.neighbour_field(ips.get(i, ()))
            if field is not None:
                out[i] = {"nbr": field}
        return out

    def write_status(self) -> None:
        self.next_status = self.now + (runfiles.STATUS_EVERY if self.write_failed is None
                                       else WRITE_RETRY)
        try:
            runfiles.write_atomic(os.path.join(self.rundir, runfiles.STATUS),
                                  self.ow.status_text(
                                      self.now,
                                      self.epoch.wall(self.now, time.time() - time.monotonic()),
                                      os.getpid(), self.neighbour_fields()),
                                  mode=access.mode())
        except OSError as e:
            self.next_status = self.now + WRITE_RETRY
            self.write_error(runfiles.STATUS, e)

    def run_reboot(self, group: int) -> None:
        """stop_failure reboot: run the reboot command (Heartbeat: `reboot -nf`); if it
        fails, or this process still runs REBOOT_WAIT s after it succeeded, hold instead."""
        argv = shlex.split(self.cfg.reboot_command)
        log.critical("group %d could not be stopped: running %s", group, " ".join(argv))
        try:
            self.reboot = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True,
                                           start_new_session=True)
        except OSError as e:
            self.apply(self.ow.reboot_failed("%s: %s" % (argv[0], e.strerror or e), self.now))
            return
        self.reboot_due = self.now + REBOOT_WAIT

    def check_reboot(self) -> None:
        rc = self.reboot.poll()
        if rc is None and self.now < self.reboot_due:
            return
        if rc == 0 and self.now < self.reboot_due:
            return                    # exited 0: the reboot is under way
        why = ("still running after %g s" % REBOOT_WAIT if rc == 0 or rc is None
               else "%s exited %d" % (self.cfg.reboot_command.split()[0], rc))
        self.reboot = None
        self.apply(self.ow.reboot_failed(why, self.now))

    def feed_watchdog(self) -> None:
        if not self.cfg.watchdog:
            return
        try:
            if self.wd_fd is None:
                self.wd_fd = os.open(self.cfg.watchdog, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.write(self.wd_fd, b"\0")
        except OSError as e:
            if self.wd_fd is None:
                log.error("cannot open watchdog %s: %s", self.cfg.watchdog, e.strerror)

    def close(self, disarm: bool) -> None:
        if self.wd_fd is not None:
            try:
                if disarm:
                    os.write(self.wd_fd, b"V")
                os.close(self.wd_fd)
            except OSError:
                pass
        self.beat.close()

    def netlink_events(self) -> None:
        """Carrier of the groups' interfaces; addresses removed under us."""
        for ev in self.netlink.read():
            if ev[0] == "link":
                self.apply(self.ow.link(ev[1], ev[2], self.now))
            elif ev[0] == "addr" and not ev[3]:
                for i in sorted(self.byip.get(ev[2], ())):
                    self.apply(self.ow.addr_gone(i, ev[2], self.now))

    def reload(self) -> None:
        hblog.reopen()                # logrotate's postrotate, or by hand
        try:
            cfg = config.load(self.cfg.confdir, self.cfg.node)
        except (settings.ConfigError, OSError) as e:
            log.error("SIGHUP: keeping the running configuration: %s", e)
            return
        hblog.setup(PROG, cfg)
        self.cfg = cfg
        self.apply(self.ow.reconfigure(cfg, self.now, config.digest(cfg)))
        self.hooks.env = dict(os.environ, **harc.base_env(cfg))
        self.events = self.scan_hooks()
        self.checker.caller.timeout = self.ow.mon.timeout

    def run(self) -> int:
        sel = selectors.DefaultSelector()
        os.set_blocking(0, False)
        stdin = runfiles.LineReader(0)
        fifo_r, fifo_keep = runfiles.open_fifo_reader(os.path.join(self.rundir,
                                                                   runfiles.WATCH_FIFO))
        fifo = runfiles.LineReader(fifo_r)
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for s in proc.HANDLED:
            signal.signal(s, lambda *_: None)
        if EARLY:                     # signals that came while we were starting
            os.write(sig_w, bytes(EARLY))
        sel.register(0, selectors.EVENT_READ, "stdin")
        sel.register(fifo_r, selectors.EVENT_READ, "fifo")
        sel.register(self.runner.fileno(), selectors.EVENT_READ, "agents")
        sel.register(sig_r, selectors.EVENT_READ, "signal")
        sel.register(self.checker.fileno(), selectors.EVENT_READ, "checks")
        if self.netlink is not None:
            sel.register(self.netlink.fileno(), selectors.EVENT_READ, "netlink")
        if self.nbr_pipe is not None:
            sel.register(self.nbr_pipe[0], selectors.EVENT_READ, "neighbours")
        step = max(0.01, min(1.0, self.cfg.deadtime / 4))   # Owner.next_wake() has the rest

        def read_stdin() -> bool:
            """All the lines that wait (so that the silence check sees our last
            beat); True when they only repeated statuses."""
            quiet = True
            for _ in range(STDIN_READS):
                lines = stdin.read()
                for line in lines:
                    quiet = self.message(parse_line(line)) and quiet
                if not lines or stdin.eof:
                    break
            if stdin.eof and 0 in sel.get_map():
                quiet = False
                log.warning("stdin closed: no heartbeat of ours will be sent: "
                            "releasing every group, then exiting")
                sel.unregister(0)
                self.apply(self.ow.beat_gone(self.now))
            return quiet

        def drain() -> bool:
            """The lines still in the pipe, read before RUNDIR/heard's slots."""
            return (0 not in sel.get_map() or not select.select([0], [], [], 0)[0]
                    or read_stdin())

        self.apply(self.ow.begin(self.now))
        for iface in self.ifaces:
            if self.netlink is not None and self.netlink.carrier(iface) is False:
                self.apply(self.ow.link(iface, False, self.now))
        while self.exit is None:
            wake = self.ow.next_wake()
            due = min(wake, self.next_status,    # RUNDIR/heard read: the deadlines only
                      self.now + (step if self.sheet is None else AWAKE_EVERY),
                      self.now + 1.0 if self.reboot is not None else float("inf"))
            events = sel.select(max(0.001, due - self.now))
            # only repeated statuses, or a wake-up for a deadline that RUNDIR/heard
            # moved: no tick before the owner's next deadline (AWAKE_EVERY at most)
            quiet = bool(events) or self.sheet is not None
            self.now = time.monotonic()
            # RUNDIR/heard first: whatever this wake-up decides (an agent's result
            # asks whether our own heartbeat is current) sees the latest heartbeats
            quiet = self.read_board(drain) and quiet
            for key, _ in events:
                self.now = time.monotonic()
                quiet = quiet and key.data == "stdin"
                if key.data == "stdin":
                    quiet = read_stdin() and quiet
                elif key.data == "fifo":
                    for line in fifo.read():
                        log.info("request: %s", line.strip())
                        self.apply(self.ow.request(line, self.now))
                elif key.data == "agents":
                    for i, action, rc in self.runner.collect():
                        self.apply(self.ow.agent_done(i, action, rc, self.now))
                elif key.data == "checks":
                    for i, token, ok, why in self.checker.collect():
                        self.apply(self.ow.check_done(i, token, ok, why, self.now))
                elif key.data == "netlink":
                    self.netlink_events()
                elif key.data == "neighbours":
                    try:
                        os.read(self.nbr_pipe[0], 512)
                    except BlockingIOError:
                        pass
                    self.write_status()
                elif key.data == "signal":
                    sigs = os.read(sig_r, 64)
                    if signal.SIGHUP in sigs:
                        self.reload()
                    if signal.SIGTERM in sigs or signal.SIGINT in sigs:
                        self.apply(self.ow.shutdown(self.now))
            self.now = time.monotonic()
            if quiet and self.sheet is not None:
                awake = self.ow.awake(self.now)     # a freeze shows as a gap
                if awake:
                    self.apply(awake)
                    quiet = False
            if self.exit is None:
                if not quiet or self.now >= (wake if self.sheet is None else
                                             self.ow.next_wake()) \
                        or self.now - self.ow.last_tick >= (1.0 if self.sheet is None
                                                            else AWAKE_EVERY):
                    self.apply(self.ow.tick(self.now))
                    self.deaths()
                if self.beat.pending:
                    self.beat.flush(self.now)
                if self.reboot is not None:
                    self.check_reboot()
                if self.now >= self.next_status - 1.0:      # with a wake-up due anyway
                    self.write_status()
        self.close(disarm=self.ow.exited)
        self.hooks.wait_idle(5.0)          # a last event's hook (our own status dead)
        self.hooks.close()
        for fd in (fifo_r, fifo_keep, sig_r, sig_w):
            os.close(fd)
        return self.exit


EARLY: list[int] = []


def main(argv: list[str] | None = None) -> int:
    for s in proc.HANDLED:
        signal.signal(s, lambda n, _: EARLY.append(n))
    proc.signals_ready()
    argv = sys.argv[1:] if argv is None else argv
    args = cli.parse(__doc__, argv)
    if isinstance(args, int):       # a check's usage error is UNKNOWN, as for a plugin
        if args == exits.USAGE and "--check" in argv:
            print("HB UNKNOWN - %s (try '%s --help')" % (cli.usage_error(__doc__, argv), PROG))
            return exits.NAGIOS_UNKNOWN
        return args
    if args["--check"]:
        try:
            warn_age, max_age = float(args["--warn-age"]), float(args["--max-age"])
            if not (0 < warn_age < 1e9 and 0 < max_age < 1e9):
                raise ValueError
        except ValueError:
            print("HB UNKNOWN - --warn-age and --max-age want seconds, not %r and %r "
                  "(try '%s --help')" % (args["--warn-age"], args["--max-age"], PROG))
            return exits.NAGIOS_UNKNOWN
        warn_age = min(warn_age, max_age)
        code, line = check(args["-r"], max_age, warn_age)
        print(line)
        return code
    try:
        cfg = config.load(args["-c"], args["--node"])
    except settings.ConfigError as e:
        print(e, file=sys.stderr)
        return exits.CONFIG
    except OSError as e:
        print(hblog.fatal(PROG, "read", e.filename or args["-c"], e.strerror), file=sys.stderr)
        return exits.FAIL
    hblog.setup(PROG, cfg)
    for p in agents.preload(cfg.groups, cfg.confdir, [a for p in cfg.pings for a in p.addrs]):
        log.error("%s", p)
    try:
        os.makedirs(args["-r"], exist_ok=True)
        access.prepare_rundir(args["-r"])
        w = Watch(cfg, args["-r"], args["-s"])
    except OSError as e:
        print(hblog.fatal(PROG, "use", args["-r"], e.strerror), file=sys.stderr)
        return exits.FAIL
    log.info("starting: node %s, %d groups, auto_failback %s, deadtime %g s", cfg.node,
             len(cfg.groups), cfg.auto_failback, cfg.deadtime)
    gc.freeze()     # what start-up made stays: no collection rescans it
    return w.run()
