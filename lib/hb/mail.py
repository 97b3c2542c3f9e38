"""Alert mail for MailTo: compose, rate-limit, spool, deliver.

Every mail is first written to the spool (STATEDIR/spool), then delivered from
there in order, through `/usr/sbin/sendmail -t` when it exists, else SMTP
(localhost:25 unless mailto.conf or the environment say otherwise, with
STARTTLS and AUTH when configured).  A mail that cannot be delivered stays in
the spool and goes with the next run.  Mails to one address are rate-limited
(`rate = COUNT/SECONDS`, default 3/600); events held back are summarised in the
next mail that goes out.  compose() and the rate limit are pure (clock passed in).
"""

from __future__ import annotations

import fcntl
import os
import re
import time

from hb import exits, runfiles

TYPE_CHECKING = False
if TYPE_CHECKING:       # status must start quickly: email, json, typing load on use
    from collections.abc import Mapping
    from email.message import EmailMessage
    from typing import Any

SENDMAIL = "/usr/sbin/sendmail"
CONFFILE = "mailto.conf"
RATE = (3, 600.0)
DEFAULT_SUBJECT = "Resource Group"

# mailto.conf name -> environment variable that overrides it
SETTINGS = {
    "sendmail": "HB_SENDMAIL",          # path, or "none" to always use SMTP
    "smtp_host": "HB_SMTP_HOST",
    "smtp_port": "HB_SMTP_PORT",
    "smtp_starttls": "HB_SMTP_STARTTLS",
    "smtp_cafile": "HB_SMTP_CAFILE",
    "smtp_user": "HB_SMTP_USER",
    "smtp_password": "HB_SMTP_PASSWORD",
    "smtp_timeout": "HB_SMTP_TIMEOUT",
    "from": "HB_MAIL_FROM",
    "rate": "HB_MAIL_RATE",
}


class MailError(Exception):
    """Configuration or arguments that cannot work (a config error, not a delivery one)."""


# -- pure ---------------------------------------------------------------------

def parse_addrs(text: str) -> list[str]:
    """'a@x,b@y' -> ['a@x', 'b@y']; MailError when empty or malformed."""
    addrs = [a.strip() for a in text.split(",") if a.strip()]
    if not addrs:
        raise MailError("no mail address given")
    for a in addrs:
        if not re.fullmatch(r"[^\s@<>,;\"()]+(@[A-Za-z0-9.-]+)?", a):
            raise MailError("bad mail address %r" % a)
    return addrs


def parse_rate(text: str) -> tuple[int, float]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text)
    if not m or int(m.group(1)) < 1:
        raise MailError("rate: want COUNT/SECONDS, e.g. 3/600, not %r" % text)
    return int(m.group(1)), float(m.group(2))


def settings(conf: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Any]:
    """Effective delivery settings: the environment over mailto.conf over defaults."""
    unknown = set(conf) - set(SETTINGS)
    if unknown:
        raise MailError("%s: unknown setting %s" % (CONFFILE, sorted(unknown)[0]))
    s: dict[str, str] = dict(conf)
    for name, var in SETTINGS.items():
        if env.get(var):
            s[name] = env[var]
    try:
        port = int(s.get("smtp_port", "25"))
        timeout = float(s.get("smtp_timeout", "10"))
    except ValueError as e:
        raise MailError("smtp_port/smtp_timeout: %s" % e) from None
    return {
        "sendmail": s.get("sendmail", SENDMAIL),
        "host": s.get("smtp_host", "localhost"), "port": port, "timeout": timeout,
        "starttls": s.get("smtp_starttls", "no").lower() in ("yes", "on", "true", "1"),
        "cafile": s.get("smtp_cafile"), "user": s.get("smtp_user"),
        "password": s.get("smtp_password"), "from": s.get("from"),
        "rate": parse_rate(s["rate"]) if "rate" in s else RATE,
    }


def stamp(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))


# the subject's words for an event; `stuck`: hb-watch's alert when a stop failed
WHAT = {"start": "Takeover in progress on", "stop": "Migrating resource away from",
        "stuck": "could not be stopped: held on"}


def event_text(action: str, node: str, now: float) -> str:
    return "%s %s at %s" % (WHAT.get(action, WHAT["stop"]), node, stamp(now))


def compose(addrs: list[str], subject: str, action: str, node: str, now: float,
            sender: str | None = None, held: list[tuple[float, str]] = (),
            detail: str = "") -> EmailMessage:
    """The alert mail for action (start|stop) of group `subject` on node at now."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid
    what = WHAT.get(action, WHAT["stop"])
    msg = EmailMessage()
    msg["Date"] = formatdate(now, localtime=True)
    msg["From"] = sender or "hb on %s <root@%s>" % (node, node)
    msg["To"] = ", ".join(addrs)
    msg["Subject"] = "%s %s %s" % (subject, what, node) + (
        " (and %d earlier event%s)" % (len(held), "s" * (len(held) != 1)) if held else "")
    msg["Message-ID"] = make_msgid("hb", domain=node)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-hb-event"] = "%s %s %s" % (action, node, int(now))
    body = ["%s." % event_text(action, node, now), "",
            "Resource group: %s" % subject,
            "Node:           %s" % node,
            "Action:         %s" % action,
            "Time:           %s" % formatdate(now, localtime=True)]
    if detail:
        body += ["", detail]
    if held:
        body += ["", "Held back by the mail rate limit since the last mail (%d):" % len(held)]
        body += ["  %s" % text for _t, text in held]
    body += ["", "-- ", "hb-mailto on %s" % node]
    msg.set_content("\n".join(body) + "\n")
    return msg


def rate_decide(state: dict[str, Any], addr: str, now: float,
                rate: tuple[int, float]) -> bool:
    """Whether a mail to addr may go now (and record it); else the caller holds it back.

    state[addr] = {"sent": [times within the window], "held": [[time, text], ...]}
    """
    count, window = rate
    st = state.setdefault(addr, {"sent": [], "held": []})
    st["sent"] = [t for t in st["sent"] if now - t < window]
    if len(st["sent"]) >= count:
        return False
    st["sent"].append(now)
    return True


def next_release(state: dict[str, Any], rate: tuple[int, float]) -> float | None:
    """When the first address with held-back events may be mailed again (None: none held)."""
    count, window = rate
    due = [sorted(st["sent"])[-count] + window if len(st["sent"]) >= count else 0.0
           for st in state.values() if st["held"]]
    return min(due) if due else None


def compose_summary(addr: str, node: str, now: float, sender: str | None,
                    held: list[tuple[float, str]]) -> EmailMessage:
    """The mail that releases events held back for addr when no new event came."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid
    msg = EmailMessage()
    msg["Date"] = formatdate(now, localtime=True)
    msg["From"] = sender or "hb on %s <root@%s>" % (node, node)
    msg["To"] = addr
    msg["Subject"] = "%d event%s held back by the mail rate limit on %s" % (
        len(held), "s" * (len(held) != 1), node)
    msg["Message-ID"] = make_msgid("hb", domain=node)
    msg["Auto-Submitted"] = "auto-generated"
    body = ["Held back by the mail rate limit since the last mail (%d):" % len(held)]
    body += ["  %s" % text for _t, text in held]
    body += ["", "-- ", "hb-mailto on %s" % node]
    msg.set_content("\n".join(body) + "\n")
    return msg


def instance_name(addrs: list[str], subject: str) -> str:
    """File-name-safe name of one MailTo resource, for its state file."""
    raw = ",".join(addrs) + ("-" + subject if subject else "")
    return "mailto-" + re.sub(r"[^A-Za-z0-9@.,_+-]", "_", raw)[:200]


# -- I/O: config, state, spool, delivery ---------------------------------------

def load_conf(confdir: str) -> dict[str, str]:
    """CONFDIR/mailto.conf as name=value; refused if it holds a password others can read."""
    path = os.path.join(confdir, CONFFILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        conf: dict[str, str] = {}
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise MailError("%s:%d: want name = value" % (path, n))
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip()
    if "smtp_password" in conf and st.st_mode & 0o077:
        raise MailError("%s:1: holds smtp_password but is readable by others; chmod 600"
                        % path)
    return conf


def set_state(rundir: str, name: str, started: bool) -> None:
    os.makedirs(rundir, exist_ok=True)
    path = os.path.join(rundir, name)
    if started:
        runfiles.write_atomic(path, "started %d\n" % time.time())
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def is_started(rundir: str, name: str) -> bool:
    return os.path.exists(os.path.join(rundir, name))


class _Locked:
    """An exclusive flock on STATEDIR/spool/.lock, with the spool directory made."""

    def __init__(self, statedir: str) -> None:
        self.spool = os.path.join(statedir, "spool")

    def __enter__(self) -> str:
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.spool, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.spool

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def enqueue(statedir: str, addrs: list[str], subject: str, action: str, node: str,
            cfg: dict[str, Any], now: float | None = None, detail: str = "") -> list[str]:
    """Rate-limit and spool the mail(s) for one event; what was decided, as text lines."""
    import json
    now = time.time() if now is None else now
    said = []
    with _Locked(statedir) as spool:
        path = os.path.join(spool, ".rate")
        state = json.loads(runfiles.read_text(path) or "{}")
        go, held = [], []
        for a in addrs:
            if rate_decide(state, a, now, cfg["rate"]) or action == "stuck":   # never held
                go.append(a)
                held.extend(tuple(h) for h in state[a]["held"])
                state[a]["held"] = []
            else:
                text = "%s: %s" % (subject, event_text(action, node, now))
                state[a]["held"].append([now, text])
                said.append("rate limit: mail to %s held back" % a)
        if go:
            held = sorted(set(held))
            msg = compose(go, subject, action, node, now, cfg["from"], held, detail)
            said.append("mail to %s spooled as %s" % (", ".join(go), _spool(spool, msg, now)))
        runfiles.write_atomic(path, json.dumps(state), 0o600)
    return said


def _spool(spool: str, msg: EmailMessage, now: float) -> str:
    name = "%.6f.%d.eml" % (now, os.getpid())
    while os.path.exists(os.path.join(spool, name)):
        now += 1e-6
        name = "%.6f.%d.eml" % (now, os.getpid())
    runfiles.write_atomic(os.path.join(spool, name), msg.as_string(), 0o600)
    return name


def release_held(statedir: str, cfg: dict[str, Any], node: str,
                 now: float | None = None) -> tuple[list[str], float | None]:
    """Spool a summary for each address whose held-back events may go now.

    Returns (what was done, when the next may go or None)."""
    import json
    now = time.time() if now is None else now
    said = []
    with _Locked(statedir) as spool:
        path = os.path.join(spool, ".rate")
        state = json.loads(runfiles.read_text(path) or "{}")
        changed = False
        for a, st in sorted(state.items()):
            if st["held"] and rate_decide(state, a, now, cfg["rate"]):
                held = sorted(tuple(h) for h in st["held"])
                st["held"] = []
                name = _spool(spool, compose_summary(a, node, now, cfg["from"], held), now)
                said.append("held-back events for %s spooled as %s" % (a, name))
                changed = True
        if changed:
            runfiles.write_atomic(path, json.dumps(state), 0o600)
        return said, next_release(state, cfg["rate"])


def deliver(data: bytes, cfg: dict[str, Any]) -> str:
    """Hand one message to sendmail or an SMTP server; raises OSError on failure."""
    sm = cfg["sendmail"]
    if sm and sm != "none" and os.access(sm, os.X_OK):
        import subprocess
        r = subprocess.run([sm, "-t", "-oi"], input=data, capture_output=True,
                           timeout=cfg["timeout"])
        if r.returncode != 0:
            raise OSError("%s -t exited %d: %s" % (sm, r.returncode,
                                                   r.stderr.decode(errors="replace").strip()))
        return "sendmail"
    import smtplib
    from email import message_from_bytes
    try:
        with smtplib.SMTP(cfg["host"], cfg["port"], timeout=cfg["timeout"]) as s:
            if cfg["starttls"]:
                import ssl
                s.starttls(context=ssl.create_default_context(cafile=cfg["cafile"]))
            if cfg["user"]:
                s.login(cfg["user"], cfg["password"] or "")
            s.send_message(message_from_bytes(data))
    except (smtplib.SMTPException, ValueError) as e:
        raise OSError("SMTP %s:%d: %s" % (cfg["host"], cfg["port"], e)) from None
    return "SMTP %s:%d" % (cfg["host"], cfg["port"])


def flush(statedir: str, cfg: dict[str, Any]) -> tuple[int, str | None]:
    """Deliver the spool in order; (mails delivered, error that stopped it or None)."""
    done = 0
    with _Locked(statedir) as spool:
        for name in sorted(n for n in os.listdir(spool) if n.endswith(".eml")):
            path = os.path.join(spool, name)
            with open(path, "rb") as f:
                data = f.read()
            try:
                deliver(data, cfg)
            except Exception as e:      # OSError, SMTP errors, a sendmail timeout
                return done, "%s kept in the spool: %s" % (name, e)
            os.unlink(path)
            done += 1
    return done, None


def spooled(statedir: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(os.path.join(statedir, "spool"))
                      if n.endswith(".eml"))
    except FileNotFoundError:
        return []


def act(addrs: list[str], subject: str, action: str, node: str, rundir: str,
        statedir: str, confdir: str, env: Mapping[str, str]) -> tuple[list[str], dict]:
    """start/stop without delivering: the state file, then the mail into the spool.

    A stop always records the state; a start only once its mail is spooled.
    Returns (what was done, delivery settings); raises MailError or OSError.
    """
    name = instance_name(addrs, subject)
    if action == "stop":
        set_state(rundir, name, False)
    cfg = settings(load_conf(confdir), env)
    said = enqueue(statedir, addrs, subject, action, node, cfg)
    if action == "start":
        set_state(rundir, name, True)
    return said, cfg


# -- in-process, for hb-watch ---------------------------------------------------

_queue: Any = None
_idle: Any = None       # threading.Condition over _state, once the thread runs
_state = [0, False]     # [requests not yet handled, a held-back event awaits release]


def _worker() -> None:
    """Deliver the spool when asked, and release held-back events when they are due."""
    import logging
    import queue
    log = logging.getLogger("hb")
    last, due = None, None
    while True:
        got = False
        try:
            last = _queue.get(timeout=None if due is None else max(0.0, due - time.time()))
            got = True
        except queue.Empty:
            pass
        statedir, cfg, node = last
        try:
            said, due = release_held(statedir, cfg, node)
            n, err = flush(statedir, cfg)
        except Exception as e:      # a full disk must not end the thread
            log.warning("MailTo: %s", e)
            said, due, n, err = [], None, 0, None
        for line in said:
            log.info("MailTo: %s", line)
        if n:
            log.info("MailTo: %d mail%s delivered", n, "s" * (n != 1))
        if err:
            log.warning("MailTo: %s", err)
        with _idle:
            _state[0] -= got
            _state[1] = due is not None
            _idle.notify_all()


def _background_flush(statedir: str, cfg: dict[str, Any], node: str) -> None:
    global _queue, _idle
    if _queue is None:
        import queue
        import threading
        _queue = queue.Queue()
        _idle = threading.Condition()
        threading.Thread(target=_worker, name="mailto", daemon=True).start()
    with _idle:
        _state[0] += 1
    _queue.put((statedir, cfg, node))


def wait_idle(timeout: float) -> bool:
    """Until every delivery asked for was tried and no held-back event awaits its
    release (tests, shutdown); False on timeout."""
    if _idle is None:
        return True
    with _idle:
        return _idle.wait_for(lambda: _state[0] == 0 and not _state[1], timeout)


def alert(args: list[str], node: str, statedir: str, confdir: str, detail: str) -> str:
    """hb-watch's `stuck` alert through a group's MailTo (its addresses and subject,
    the rate limit and the spool as for its own mails); what was done, as text."""
    try:
        addrs = parse_addrs(args[0]) if args else []
        if not addrs:
            raise MailError("MailTo without an address")
        subject = args[1] if len(args) > 1 else DEFAULT_SUBJECT
        cfg = settings(load_conf(confdir), os.environ)
        said = enqueue(statedir, addrs, subject, "stuck", node, cfg, detail=detail)
    except (MailError, OSError, ValueError) as e:
        return "alert not mailed: %s" % e
    _background_flush(statedir, cfg, node)
    return "; ".join(said)


def run_agent(args: list[str], action: str, node: str, rundir: str, statedir: str,
              confdir: str = runfiles.CONFDIR) -> tuple[int, str]:
    """MailTo in-process: (LSB exit code, text).  args = [addr[,addr], subject?].

    start/stop record the state and spool the mail, and return at once; a
    background thread delivers the spool.  status prints running/stopped (0/3).
    """
    try:
        if not 1 <= len(args) <= 2:
            raise MailError("MailTo takes an address list and a subject, got %d args"
                            % len(args))
        addrs = parse_addrs(args[0])
        subject = args[1] if len(args) > 1 else DEFAULT_SUBJECT
        if action in ("status", "monitor"):
            if is_started(rundir, instance_name(addrs, subject)):
                return exits.OK, "running"
            return (exits.LSB_NOT_RUNNING if action == "status"
                    else exits.OCF_NOT_RUNNING), "stopped"
        if action not in ("start", "stop"):
            return exits.OCF_ERR_UNIMPLEMENTED, "unknown action %s" % action
        said, cfg = act(addrs, subject, action, node, rundir, statedir, confdir, os.environ)
    except (MailError, OSError, ValueError) as e:
        if action == "stop":        # a stop never fails for want of a mail
            return exits.OK, "MailTo %s: %s" % (action, e)
        return exits.FAIL, "MailTo %s: %s" % (action, e)
    _background_flush(statedir, cfg, node)
    return exits.OK, "; ".join(said)
