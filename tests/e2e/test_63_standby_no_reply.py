"""A standby request the peer never answers is cancelled after 10 s and nothing
moves (Heartbeat's "No reply to standby request.  Standby request cancelled.").

A real hb pair (tests/pair.py): alpha holds the VIP; beta's hb-watch is stopped
(SIGSTOP) while its hb-beat keeps beating, so beta looks alive and stable but
never answers.  hb-switch standby on alpha reports the cancel; a client probing
the VIP every 10 ms is answered by alpha only, before, during and after.
"""

from __future__ import annotations

import os
import signal
import time

from lab.pair import HbPair


def test_standby_to_a_peer_that_never_answers_is_cancelled_after_10s(lab):
    pair = HbPair(lab, keepalive="100ms", deadtime="1", initdead="2")
    prober = pair.prober(duration=90)
    pair.start("alpha")
    prober.wait_served("alpha", timeout=15)
    pair.start("beta")
    pair.wait_up()
    alpha, beta = pair["alpha"], pair["beta"]
    pair.wait(lambda: alpha.holds() == ["1"], 10, "alpha holding group 1")
    # frozen while it still said it was in flux, beta would keep saying so (its
    # hb-beat sends what its hb-watch last wrote) and the standby be refused for that
    pair.wait(lambda: alpha.node("beta").get("stable") == "1", 10, "beta stable to alpha")
    watch = beta.wait_children()["hb-watch"]
    os.kill(watch, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = alpha.switch("standby", timeout=40)
        took = time.monotonic() - t0
        assert r.returncode != 0, (r.stdout, r.stderr, pair.logtail())
        assert "cancelled" in r.stdout and "did not answer within 10 s" in r.stdout, r.stdout
        assert 9.5 <= took < 20, took
        assert "no reply to standby request: standby request cancelled" in alpha.log()
        assert alpha.holds() == ["1"] and alpha.has_vip() and not beta.has_vip()
    finally:
        os.kill(watch, signal.SIGCONT)
    pair.wait(lambda: alpha.peer_status() == "up", 10, "beta still up")
    probes = prober.stop()
    assert probes
    others = [p for p in probes if (set(p.served) | set(p.holders)) - {"alpha"}]
    assert not others, others[:5]
    lost = [p for p in probes if p.t > t0 and not p.served]
    assert len(lost) <= 5, "an outage: %d probes unanswered" % len(lost)


def test_standby_right_after_a_restart_that_kept_rundir_is_answered(lab):
    """A node restarted without emptying its RUNDIR (a daemon restart, or a reboot
    that keeps /run) must not advertise its previous run's state (active, stable):
    a standby sent to it in that moment would be ignored by its new hb-watch (still
    starting) and cancelled 10 s later.  hb-switch standby sent as soon as the peer
    sees it up moves the VIP to it, without a cancel."""
    pair = HbPair(lab, keepalive="100ms", deadtime="1", initdead="2")
    pair.start("alpha")
    pair.start("beta")
    pair.wait_up()
    alpha, beta = pair["alpha"], pair["beta"]
    pair.wait(lambda: alpha.holds() == ["1"], 10, "alpha holding group 1")
    pair.wait(lambda: os.path.exists(os.path.join(beta.run, "state")), 5, "beta's state")
    beta.power_loss()                       # kill -9 of every process: RUNDIR stays
    assert os.path.exists(os.path.join(beta.run, "state"))
    pair.wait(lambda: alpha.peer_status() == "dead", 10, "beta dead")
    beta.reboot()
    beta.start()
    pair.wait(lambda: alpha.peer_status() == "up", 15, "beta up again")
    t0 = time.monotonic()
    r = alpha.switch("standby", timeout=40)
    took = time.monotonic() - t0
    assert r.returncode == 0, (r.stdout, r.stderr, pair.logtail(60))
    assert "no reply to standby request" not in alpha.log()
    assert took < 9, (took, r.stdout)
    pair.wait(lambda: beta.holds() == ["1"] and beta.has_vip() and not alpha.has_vip(), 10,
              "the VIP on beta")
