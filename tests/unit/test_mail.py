"""mail.py's pure parts: addresses, settings, the message, the rate limit."""

import email
import os

import pytest

from hb import mail
from hb.mail import MailError

NOW = 1795689444.0      # 2026-11-26 10:37:24 UTC


def test_parse_addrs():
    assert mail.parse_addrs("root@example.org") == ["root@example.org"]
    assert mail.parse_addrs("a@example.org, b@example.org,") == ["a@example.org", "b@example.org"]
    assert mail.parse_addrs("root") == ["root"]
    for bad in ("", ",", "a b@example.org", "<a@example.org>", "a@b@c"):
        with pytest.raises(MailError):
            mail.parse_addrs(bad)


def test_settings_defaults_file_and_environment():
    s = mail.settings({}, {})
    assert (s["sendmail"], s["host"], s["port"], s["starttls"], s["user"], s["rate"]) == \
        ("/usr/sbin/sendmail", "localhost", 25, False, None, (3, 600.0))
    conf = {"smtp_host": "relay.example.org", "smtp_port": "587", "smtp_starttls": "yes",
            "smtp_user": "hb", "smtp_password": "secret", "rate": "5/60"}
    s = mail.settings(conf, {"HB_SMTP_PORT": "2525", "HB_SENDMAIL": "none"})
    assert (s["sendmail"], s["host"], s["port"], s["starttls"], s["user"], s["password"],
            s["rate"]) == ("none", "relay.example.org", 2525, True, "hb", "secret", (5, 60.0))
    with pytest.raises(MailError, match="unknown setting smtp_hots"):
        mail.settings({"smtp_hots": "x"}, {})
    with pytest.raises(MailError, match="rate"):
        mail.settings({"rate": "often"}, {})
    with pytest.raises(MailError, match="smtp_port"):
        mail.settings({"smtp_port": "smtp"}, {})


def test_compose_headers_and_text():
    m = mail.compose(["root@example.org", "ops@example.org"], "JuliusCaesar", "start",
                     "caesar", NOW)
    assert m["To"] == "root@example.org, ops@example.org"
    assert m["Subject"] == "JuliusCaesar Takeover in progress on caesar"
    assert m["From"] == "hb on caesar <root@caesar>"
    assert m["Auto-Submitted"] == "auto-generated"
    assert m["Message-ID"].startswith("<") and m["Message-ID"].endswith("@caesar>")
    assert email.utils.parsedate_to_datetime(m["Date"]).timestamp() == NOW
    body = m.get_content()
    assert body.startswith("Takeover in progress on caesar at 2026-11-26 10:37:24 UTC.\n")
    m = mail.compose(["root"], "web", "stop", "julius", NOW, sender="hb@example.org")
    assert m["Subject"] == "web Migrating resource away from julius"
    assert m["From"] == "hb@example.org"
    assert m.get_content().startswith("Migrating resource away from julius at 2026-11-26")


def test_compose_summarises_held_back_events():
    held = [(NOW - 30, "Takeover in progress on caesar at X"),
            (NOW - 20, "Migrating resource away from caesar at Y")]
    m = mail.compose(["root"], "web", "start", "caesar", NOW, held=held)
    assert m["Subject"] == "web Takeover in progress on caesar (and 2 earlier events)"
    body = m.get_content()
    assert "Held back by the mail rate limit since the last mail (2):\n" \
           "  Takeover in progress on caesar at X\n" \
           "  Migrating resource away from caesar at Y\n" in body


def test_rate_limit_with_fake_clock():
    state: dict = {}
    rate = (3, 600.0)
    decisions = [mail.rate_decide(state, "root", NOW + t, rate) for t in (0, 1, 2, 3, 4)]
    assert decisions == [True, True, True, False, False]
    assert not mail.rate_decide(state, "root", NOW + 599, rate)
    assert mail.rate_decide(state, "other", NOW + 5, rate)          # per address
    assert mail.rate_decide(state, "root", NOW + 600, rate)          # the first expired
    assert not mail.rate_decide(state, "root", NOW + 600.5, rate)
    assert mail.rate_decide(state, "root", NOW + 1300, rate)
    assert state["root"]["sent"] == [NOW + 1300]


def test_instance_name_is_a_safe_file_name():
    assert mail.instance_name(["root@example.org"], "JuliusCaesar") == \
        "mailto-root@example.org-JuliusCaesar"
    n = mail.instance_name(["a@x", "b@y"], "../../etc passwd")
    assert "/" not in n and " " not in n and n.startswith("mailto-a@x,b@y-")


def test_enqueue_rate_limits_and_summarises(tmp_path):
    cfg = mail.settings({"rate": "1/100"}, {})
    sd = str(tmp_path)
    said = mail.enqueue(sd, ["root"], "web", "start", "caesar", cfg, now=NOW)
    assert said[0].startswith("mail to root spooled as ")
    assert mail.enqueue(sd, ["root"], "web", "stop", "caesar", cfg, now=NOW + 10) == \
        ["rate limit: mail to root held back"]
    assert mail.enqueue(sd, ["root"], "web", "start", "caesar", cfg, now=NOW + 20) == \
        ["rate limit: mail to root held back"]
    assert len(mail.spooled(sd)) == 1
    mail.enqueue(sd, ["root"], "web", "stop", "caesar", cfg, now=NOW + 101)
    names = mail.spooled(sd)
    assert len(names) == 2
    with open(os.path.join(sd, "spool", names[1])) as f:
        m = email.message_from_string(f.read())
    assert m["Subject"] == "web Migrating resource away from caesar (and 2 earlier events)"
    assert "Migrating resource away from caesar at 2026-11-26 10:37:34 UTC" in m.get_payload()
    assert "Takeover in progress on caesar at 2026-11-26 10:37:44 UTC" in m.get_payload()


def test_a_stuck_alert_is_never_held_back(tmp_path):
    """hb-watch's alert that a group's stop failed goes out even within the rate
    limit, with what hb-watch said, and carries the events held back meanwhile."""
    cfg = mail.settings({"rate": "1/100"}, {})
    sd = str(tmp_path)
    mail.enqueue(sd, ["root"], "web", "start", "caesar", cfg, now=NOW)
    assert mail.enqueue(sd, ["root"], "web", "stop", "caesar", cfg, now=NOW + 5) == \
        ["rate limit: mail to root held back"]
    said = mail.enqueue(sd, ["root"], "web", "stuck", "caesar", cfg, now=NOW + 10,
                        detail="group 1 (x): resource stop failure")
    assert said[0].startswith("mail to root spooled as ")
    names = mail.spooled(sd)
    with open(os.path.join(sd, "spool", names[-1])) as f:
        m = email.message_from_string(f.read())
    assert m["Subject"] == "web could not be stopped: held on caesar (and 1 earlier event)"
    assert "group 1 (x): resource stop failure" in m.get_payload()


def test_alert_through_a_groups_mailto_arguments(tmp_path):
    said = mail.alert(["root,admins@example.org", "web"], "caesar", str(tmp_path / "s"),
                      str(tmp_path), "group 1: resource stop failure")
    assert said.startswith("mail to root, admins@example.org spooled as ")
    assert mail.alert([], "caesar", str(tmp_path / "s"), str(tmp_path), "x") == \
        "alert not mailed: MailTo without an address"


def test_load_conf_refuses_a_readable_password(tmp_path):
    p = tmp_path / "mailto.conf"
    p.write_text("# relay\nsmtp_host = relay.example.org\nsmtp_password = secret\n")
    os.chmod(p, 0o644)
    with pytest.raises(MailError, match="readable by others"):
        mail.load_conf(str(tmp_path))
    os.chmod(p, 0o600)
    assert mail.load_conf(str(tmp_path)) == {"smtp_host": "relay.example.org",
                                             "smtp_password": "secret"}
    p.write_text("smtp_host relay\n")
    with pytest.raises(MailError, match=r"mailto.conf:1: want name = value"):
        mail.load_conf(str(tmp_path))
    assert mail.load_conf(str(tmp_path / "none")) == {}


def test_next_release_with_fake_clock():
    rate = (2, 100.0)
    assert mail.next_release({}, rate) is None
    state = {"a": {"sent": [NOW, NOW + 10], "held": [[NOW + 20, "x"]]},
             "b": {"sent": [NOW + 5], "held": []},
             "c": {"sent": [NOW + 1, NOW + 30, NOW + 40], "held": [[NOW + 41, "y"]]}}
    assert mail.next_release(state, rate) == NOW + 100     # a: NOW expires
    state["a"]["held"] = []
    assert mail.next_release(state, rate) == NOW + 130
    state["c"]["sent"] = [NOW + 1]
    assert mail.next_release(state, rate) == 0.0      # may go at once


def test_release_held_sends_a_summary_when_due(tmp_path):
    cfg = mail.settings({"rate": "1/100"}, {})
    sd = str(tmp_path)
    mail.enqueue(sd, ["root"], "web", "start", "caesar", cfg, now=NOW)
    mail.enqueue(sd, ["root"], "web", "stop", "caesar", cfg, now=NOW + 10)
    assert mail.release_held(sd, cfg, "caesar", now=NOW + 50) == ([], NOW + 100)
    said, due = mail.release_held(sd, cfg, "caesar", now=NOW + 100)
    assert len(said) == 1 and said[0].startswith("held-back events for root spooled as ")
    assert due is None
    names = mail.spooled(sd)
    assert len(names) == 2
    with open(os.path.join(sd, "spool", names[1])) as f:
        m = email.message_from_string(f.read())
    assert m["Subject"] == "1 event held back by the mail rate limit on caesar"
    assert m["To"] == "root" and m["Auto-Submitted"] == "auto-generated"
    assert "  web: Migrating resource away from caesar at 2026-11-26 10:37:34 UTC\n" in \
        m.get_payload()
    assert mail.release_held(sd, cfg, "caesar", now=NOW + 300) == ([], None)
