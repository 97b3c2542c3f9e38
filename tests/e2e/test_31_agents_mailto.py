"""MailTo in-process (as hb-watch runs it) and over STARTTLS + AUTH: a mail never
blocks a takeover, and what could not be delivered goes with the next run."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from lab.smtpserver import Smtpd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = os.path.join(ROOT, "bin", "hb-mailto")


IN_PROCESS = r"""
import json, os, sys, time
from hb import mail
d = sys.argv[1]
out = []
for action, port in json.loads(sys.argv[2]):
    os.environ["HB_SMTP_PORT"] = str(port)
    t = time.monotonic()
    code, text = mail.run_agent(["root@example.org", "JuliusCaesar"], action, "caesar",
                                d + "/run", d + "/lib", confdir=d + "/etc")
    out.append([action, code, text, time.monotonic() - t])
    time.sleep(float(sys.argv[3]))
assert mail.wait_idle(float(sys.argv[4])), "the mail thread is still busy"
print(json.dumps(out))
"""


def run_in_process(tmp_path, steps, pause, rate="1/1.5", settle=30.0):
    """settle: how long the mail thread may take to finish what it was given."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"), HB_SENDMAIL="none",
               HB_SMTP_HOST="127.0.0.1", HB_SMTP_TIMEOUT="1", HB_MAIL_RATE=rate)
    r = subprocess.run(["/usr/bin/python3", "-c", IN_PROCESS, str(tmp_path), json.dumps(steps),
                        str(pause), str(settle)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def test_in_process_never_blocks_and_delivers_later(tmp_path, smtpd):
    # a server that accepts the connection and never says a word
    black = socket.socket()
    black.bind(("127.0.0.1", 0))
    black.listen(5)
    try:
        out, err = run_in_process(tmp_path, [["status", 0],
                                             ["start", black.getsockname()[1]],
                                             ["status", 0]], 0, rate="5/60")
    finally:
        black.close()
    assert [o[:2] for o in out] == [["status", 3], ["start", 0], ["status", 0]]
    assert out[1][2].startswith("mail to root@example.org spooled as ")
    assert out[1][3] < 0.25, out        # spooled, not waiting for the server (1 s timeout)
    assert "kept in the spool" in err and "timed out" in err
    assert len([n for n in os.listdir(tmp_path / "lib" / "spool") if n.endswith(".eml")]) == 1

    out, err = run_in_process(tmp_path, [["stop", smtpd.port], ["status", 0]], 0,
                              rate="5/60")
    assert [o[:2] for o in out] == [["stop", 0], ["status", 3]]
    assert out[0][3] < 0.25
    assert [m["Subject"] for m in smtpd.messages] == [
        "JuliusCaesar Takeover in progress on caesar",
        "JuliusCaesar Migrating resource away from caesar"]
    assert not [n for n in os.listdir(tmp_path / "lib" / "spool") if n.endswith(".eml")]


def test_starttls_and_auth_from_root_only_config(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    srv = Smtpd(tls=(str(cert), str(key)), users={"hb": "s3cret"})
    srv.start()
    try:
        etc = tmp_path / "etc"
        etc.mkdir()
        conf = etc / "mailto.conf"
        conf.write_text("sendmail = none\nsmtp_host = 127.0.0.1\nsmtp_port = %d\n"
                        "smtp_starttls = yes\nsmtp_cafile = %s\nsmtp_user = hb\n"
                        "smtp_password = wrong\n" % (srv.port, cert))
        conf.chmod(0o600)
        argv = [AGENT, "-c", str(etc), "-r", str(tmp_path / "run"), "-s", str(tmp_path / "lib"),
                "--node", "julius", "ops@example.org", "web"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HB_")}
        r = subprocess.run(argv + ["start"], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and "kept in the spool" in r.stderr
        assert "Authentication" in r.stderr or "535" in r.stderr
        assert not srv.envelopes
        conf.write_text(conf.read_text().replace("wrong", "s3cret"))
        r = subprocess.run(argv + ["stop"], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and "2 mails delivered" in r.stderr, r.stderr
        assert [m["Subject"] for m in srv.messages] == [
            "web Takeover in progress on julius", "web Migrating resource away from julius"]
        assert srv.logins[-1][1] == "hb"
    finally:
        srv.stop()


def test_start_fails_only_when_the_mail_cannot_be_spooled(tmp_path, smtpd):
    lib = tmp_path / "lib"
    lib.write_text("not a directory")
    env = dict(os.environ, HB_SENDMAIL="none", HB_SMTP_HOST="127.0.0.1",
               HB_SMTP_PORT=str(smtpd.port))
    base = [AGENT, "-c", str(tmp_path), "-r", str(tmp_path / "run"), "-s", str(lib), "root"]
    r = subprocess.run(base + ["start"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "fatal: unable to start MailTo" in r.stderr
    r = subprocess.run(base + ["status"], capture_output=True, text=True, env=env)
    assert (r.stdout, r.returncode) == ("stopped\n", 3)
    r = subprocess.run(base + ["stop"], capture_output=True, text=True, env=env)
    assert r.returncode == 0


def test_in_process_releases_held_back_events_when_due(tmp_path, smtpd):
    """A flapping group, then quiet: the events held back by the rate limit are mailed
    by hb-watch's mail thread when the window opens, not left for the next event."""
    out, err = run_in_process(tmp_path, [["start", smtpd.port], ["stop", smtpd.port],
                                         ["start", smtpd.port]], 0.0, rate="1/0.8")
    assert [o[1] for o in out] == [0, 0, 0]
    assert out[1][2] == out[2][2] == "rate limit: mail to root@example.org held back"
    assert [m["Subject"] for m in smtpd.messages] == [
        "JuliusCaesar Takeover in progress on caesar",
        "2 events held back by the mail rate limit on caesar"]
    body = smtpd.messages[1].get_payload()
    assert "JuliusCaesar: Migrating resource away from caesar at " in body
    assert "JuliusCaesar: Takeover in progress on caesar at " in body
