"""hb-watch --check on connectivity and monitor records of RUNDIR/status."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from hb import runfiles

BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bin", "hb-watch")

STATUS = """\
updated {now} pid=1 node=julius
self julius st=active rsc_hold=local maintenance=off{me}
node julius up since=1 late=0 gen=0 kind=self lates=0 st=active
node caesar {peer} since=1 late=0 gen=5 kind=hb lates=0 st=active cfd=same{there}
link caesar eth0 up since=1
ping 192.0.2.254 {ping} since=1
group 1 {holder} running pref=julius since=1 fails={fails}{restarts} key=198.18.0.100
last 1 started
"""


@pytest.mark.parametrize("kw,code,text", [
    ({}, 0, "OK: julius: groups 1 on julius"),
    ({"restarts": " restarts=0"}, 0, "OK: julius: groups 1 on julius"),
    ({"ping": "dead", "me": " reach=0", "there": " reach=0"}, 1,
     "WARNING: ping node 192.0.2.254 dead"),
    ({"fails": "2", "restarts": " restarts=2"}, 1,
     "WARNING: group 1 restarted 2 times in the last hour"),
    ({"ping": "dead", "me": " reach=0"}, 2,
     "CRITICAL: julius holds groups 1 with no ping node while caesar reaches 1 ping node(s); "
     "ping node 192.0.2.254 dead"),
    ({"me": " reach=-1 nolink=eth0"}, 2,
     "CRITICAL: julius holds groups 1 with no carrier on eth0 while caesar reaches 1 ping "
     "node(s)"),
    ({"me": " reach=-1 nolink=eth0", "holder": "caesar"}, 0,
     "OK: julius: groups 1 on caesar"),
    ({"me": " reach=?"}, 0, "OK: julius: groups 1 on julius"),
    ({"me": " reach=0", "peer": "dead", "ping": "dead"}, 2, "CRITICAL: node caesar dead; "
     "ping node 192.0.2.254 dead"),
])
def test_check_connectivity_and_restarts(tmp_path, kw, code, text):
    f = dict(now=int(time.time()), me=" reach=1", there=" reach=1", peer="up", ping="up",
             holder="julius", fails="0", restarts="")
    f.update(kw)
    runfiles.write_atomic(str(tmp_path / "status"), STATUS.format(**f))
    r = subprocess.run([BIN, "--check", "-r", str(tmp_path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == code, r.stdout
    want = re.sub(r"^(OK|WARNING|CRITICAL|UNKNOWN): ", r"HB \1 - ", text)
    assert r.stdout.split(" | ")[0] == want, r.stdout
