"""hb-mailto as a command, against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import os
import stat
import subprocess
import time

import pytest

from lab.wait import until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = os.path.join(ROOT, "bin", "hb-mailto")


@pytest.fixture
def dirs(tmp_path):
    return {"-c": str(tmp_path / "etc"), "-r": str(tmp_path / "run"),
            "-s": str(tmp_path / "lib")}


def hbm(dirs, *args, smtp=None, env=None, node="caesar"):
    argv = [AGENT, "--node", node]
    for k, v in dirs.items():
        argv += [k, v]
    if smtp:
        argv += ["--smtp", "127.0.0.1:%d" % smtp.port]
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OCF_", "HB_"))}
    e.update(env or {})
    return subprocess.run(argv + list(args), capture_output=True, text=True, env=e,
                          timeout=30)


def test_help():
    r = subprocess.run([AGENT, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "hb-mailto [options] EMAIL SUBJECT ACTION" in r.stdout
    r = subprocess.run([AGENT, "a", "b", "c", "d"], capture_output=True, text=True)
    assert r.returncode == 2


def test_meta_data_is_valid_ocf():
    r = subprocess.run([AGENT, "meta-data"], capture_output=True, text=True)
    assert r.returncode == 0 and '<parameter name="email" required="1"' in r.stdout
    for check in (["xmllint", "--noout", "--valid", "-"],
                  ["xmllint", "--noout", "--relaxng",
                   "/usr/share/resource-agents/metadata.rng", "-"]):
        v = subprocess.run(check, input=r.stdout, capture_output=True, text=True,
                           cwd="/usr/share/resource-agents")
        assert v.returncode == 0, v.stderr


def test_start_status_stop_delivers_mail(dirs, smtpd):
    out = []
    for action in ("status", "start", "status", "stop", "status"):
        r = hbm(dirs, "root@example.org,ops@example.org", "JuliusCaesar", action, smtp=smtpd)
        out.append("%s: %s%d" % (action, r.stdout, r.returncode))
    assert out == ["status: stopped\n3", "start: 0", "status: running\n0", "stop: 0",
                   "status: stopped\n3"]
    assert [e.rcpt_tos for e in smtpd.envelopes] == [["root@example.org", "ops@example.org"]] * 2
    start, stop = smtpd.messages
    assert start["Subject"] == "JuliusCaesar Takeover in progress on caesar"
    assert stop["Subject"] == "JuliusCaesar Migrating resource away from caesar"
    assert start["To"] == "root@example.org, ops@example.org"
    assert start["Auto-Submitted"] == "auto-generated"
    assert start["Message-ID"] != stop["Message-ID"]
    assert abs(email.utils.parsedate_to_datetime(start["Date"]).timestamp() - time.time()) < 30
    assert start.get_payload().startswith("Takeover in progress on caesar at ")
    assert stop.get_payload().startswith("Migrating resource away from caesar at ")
    state = os.path.join(dirs["-r"], "mailto-root@example.org,ops@example.org-JuliusCaesar")
    assert not os.path.exists(state)
    assert sorted(os.listdir(os.path.join(dirs["-s"], "spool"))) == [".lock", ".rate"]


def test_server_down_spools_then_next_run_delivers(dirs, smtpd):
    smtpd.stop()
    r = hbm(dirs, "root@example.org", "web", "start", smtp=smtpd)
    assert r.returncode == 0
    assert "kept in the spool" in r.stderr and "Connection refused" in r.stderr
    spool = os.path.join(dirs["-s"], "spool")
    names = [n for n in os.listdir(spool) if n.endswith(".eml")]
    assert len(names) == 1
    assert stat.S_IMODE(os.stat(os.path.join(spool, names[0])).st_mode) == 0o600
    assert hbm(dirs, "root@example.org", "web", "status").stdout == "running\n"
    smtpd.start()
    r = hbm(dirs, "root@example.org", "web", "stop", smtp=smtpd)
    assert r.returncode == 0 and "2 mails delivered" in r.stderr
    assert [m["Subject"] for m in smtpd.messages] == [
        "web Takeover in progress on caesar", "web Migrating resource away from caesar"]
    assert not [n for n in os.listdir(spool) if n.endswith(".eml")]
    # --flush alone, with nothing to send, is quiet and succeeds
    r = hbm(dirs, "--flush", smtp=smtpd)
    assert (r.returncode, r.stderr) == (0, "")


def test_rate_limit_summarises_held_back_events(dirs, smtpd):
    env = {"HB_MAIL_RATE": "2/1.5"}
    t0 = time.monotonic()
    for action in ("start", "stop", "start", "stop"):
        assert hbm(dirs, "root", "web", action, smtp=smtpd, env=env).returncode == 0
    assert len(smtpd.messages) == 2
    time.sleep(max(0, 1.6 - (time.monotonic() - t0)))   # the point: the 1.5 s window passes
    assert hbm(dirs, "root", "web", "start", smtp=smtpd, env=env).returncode == 0
    last = smtpd.messages[-1]
    assert len(smtpd.messages) == 3
    assert last["Subject"] == "web Takeover in progress on caesar (and 2 earlier events)"
    body = last.get_payload()
    assert body.count("Takeover in progress on caesar at") == 2       # this one + held
    assert body.count("Migrating resource away from caesar at") == 1


def test_sendmail_is_used_when_present(dirs, tmp_path, smtpd):
    fake = tmp_path / "sendmail"
    got = tmp_path / "got"
    fake.write_text("#!/bin/sh\necho \"$@\" > %s.args\ncat > %s\n" % (got, got))
    fake.chmod(0o755)
    r = hbm(dirs, "root@example.org", "start", env={"HB_SENDMAIL": str(fake)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "got.args").read_text() == "-t -oi\n"
    m = email.message_from_string(got.read_text())
    assert m["To"] == "root@example.org"
    assert m["Subject"] == "Resource Group Takeover in progress on caesar"
    assert not smtpd.envelopes
    # --smtp overrides a present sendmail
    r = hbm(dirs, "root@example.org", "stop", smtp=smtpd, env={"HB_SENDMAIL": str(fake)})
    assert r.returncode == 0 and len(smtpd.envelopes) == 1


def test_config_file_and_errors(dirs, smtpd):
    os.makedirs(dirs["-c"])
    conf = os.path.join(dirs["-c"], "mailto.conf")
    with open(conf, "w") as f:
        f.write("sendmail = none\nsmtp_host = 127.0.0.1\nsmtp_port = %d\n"
                "from = cluster@example.org\n" % smtpd.port)
    r = hbm(dirs, "root", "start")
    assert r.returncode == 0, r.stderr
    assert smtpd.messages[0]["From"] == "cluster@example.org"
    with open(conf, "a") as f:
        f.write("smtp_password = x\n")
    os.chmod(conf, 0o644)
    r = hbm(dirs, "root", "start")
    assert r.returncode == 2 and "readable by others" in r.stderr
    r = hbm(dirs, "root", "stop")
    assert r.returncode == 0        # a stop never fails for want of a mail
    assert hbm(dirs, "root", "status").stdout == "stopped\n"
    r = hbm(dirs, "no body@example.org", "start")
    assert r.returncode == 2 and r.stderr.startswith("hb-mailto: fatal: unable to start")


def test_ocf_convention_and_ocf_tester(dirs, smtpd, tmp_path):
    env = {"OCF_RESKEY_email": "root@example.org", "OCF_RESKEY_subject": "web",
           "HB_SENDMAIL": "none", "HB_SMTP_HOST": "127.0.0.1", "HB_SMTP_PORT": str(smtpd.port)}
    codes = [hbm(dirs, a, env=env).returncode for a in
             ("validate-all", "monitor", "start", "monitor", "stop", "monitor", "notify")]
    assert codes == [0, 7, 0, 0, 0, 7, 3]
    assert hbm(dirs, "validate-all", env={}).returncode == 6
    assert len(smtpd.messages) == 2
    e = dict(os.environ, OCF_ROOT="/usr/lib/ocf", HB_RUNDIR=dirs["-r"], HB_STATEDIR=dirs["-s"],
             HB_CONFDIR=dirs["-c"], **{k: v for k, v in env.items() if k.startswith("HB_")})
    r = subprocess.run(["ocf-tester", "-n", "mail", "-o", "email=root@example.org", AGENT],
                       capture_output=True, text=True, env=e, cwd="/tmp", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed all tests" in r.stdout


def test_flush_releases_held_back_events_when_due(dirs, smtpd):
    env = {"HB_MAIL_RATE": "1/1"}
    for action in ("start", "stop"):
        assert hbm(dirs, "root", "web", action, smtp=smtpd, env=env).returncode == 0
    r = hbm(dirs, "--flush", smtp=smtpd, env=env)
    assert (r.returncode, r.stderr, len(smtpd.messages)) == (0, "", 1)     # not yet due
    runs = []                           # --flush, again and again, until it is due (1 s)
    until(lambda: runs.append(hbm(dirs, "--flush", smtp=smtpd, env=env))
          or "delivered" in runs[-1].stderr, 10, lambda: "delivery: %r" % runs[-1:], step=0.1)
    r = runs[-1]
    assert r.returncode == 0 and "1 mail delivered" in r.stderr
    assert [(x.returncode, x.stderr) for x in runs[:-1]] == [(0, "")] * (len(runs) - 1)
    assert smtpd.messages[1]["Subject"] == "1 event held back by the mail rate limit on caesar"
    assert "web: Migrating resource away from caesar at" in smtpd.messages[1].get_payload()
