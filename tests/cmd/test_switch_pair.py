"""hb-switch on a real pair right after its start, with slow timings (keepalive 2 s):
standby is asked while the peer is still settling; hb-switch waits out "in flux"
within --wait (saying so) instead of refusing, and the group moves."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pair import HbPair  # noqa: E402


def test_standby_right_after_start_waits_out_in_flux(lab):
    pair = HbPair(lab, keepalive="2", deadtime="10", warntime="6", initdead="12",
                  auto_failback="off")
    alpha, beta = pair["alpha"], pair["beta"]
    pair.start()
    pair.wait(lambda: alpha.holds() == ["1"], timeout=60, what="alpha holds group 1")
    t0 = time.monotonic()
    r = alpha.switch("standby", "--wait", "40")
    took = time.monotonic() - t0
    assert r.returncode == 0, (r.stdout, r.stderr, pair.logtail())
    assert r.stdout.startswith("ok: standby: group 1 now on beta ("), r.stdout
    assert "Traceback" not in r.stderr
    refused = "refused: other side is in flux" in alpha.logtext() or \
        "refused: local resources in flux" in alpha.logtext()
    if refused:                     # what this test is for: asked again, and said so
        assert "in flux: waiting (at most 40 s)" in r.stderr, r.stderr
    assert refused, "hb-watch never refused 'in flux': the test did not exercise the wait\n" \
        + alpha.logtail()
    assert took < 40
    pair.wait(lambda: beta.holds() == ["1"] and alpha.holds() == [], timeout=10,
              what="both agree")
