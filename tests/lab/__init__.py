"""The test lab: hb nodes, Heartbeat nodes and clients in network namespaces.

One lab for the tests, demo/run and the benchmarks (bench/):
  netns      namespaces, veths, bridges, ptys (Lab, Host); finding and killing every
             process of a namespace (by /proc/PID/ns/net and ns/mnt); the session check
  wait       waiting for a condition with a deadline (until, wait_until, steady)
  node       one hb node: its files, its hb-supervise, what its status file says
  pair       two hb nodes and a client on one bridge (HbPair), their ha.cf
  heartbeat  a real Heartbeat 3.0.6 node, hb-supervise beside it, a wire tap; fixtures
  probe      who serves an address: the UDP responder/prober (a program too), the
             address-holder sampler (Holders), ICMP echo (Ping)
  smtpserver a real SMTP server on loopback

The directory holding this package (tests/) must be on sys.path; source_tree() puts
the repository's lib/ and bin/ on the paths so that every process runs this tree.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "lib")
BIN = os.path.join(ROOT, "bin")


def source_tree() -> None:
    """This repository's lib/ first on sys.path and PYTHONPATH, its bin/ first on PATH."""
    if LIB not in sys.path:
        sys.path.insert(0, LIB)
    path = os.environ.get("PYTHONPATH", "")
    if path.split(":")[0] != LIB:
        os.environ["PYTHONPATH"] = LIB + (":" + path if path else "")
    if os.environ.get("PATH", "").split(":")[0] != BIN:
        os.environ["PATH"] = BIN + ":" + os.environ.get("PATH", "/usr/bin:/bin")


def compiled_tree() -> None:
    """hb as the .deb installs it: byte-compiled (dh_python3), so that no daemon or
    command compiles its modules at each start (1-2 MB of RSS and 5-10 ms a start).
    For the benchmarks, which measure those costs."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", LIB],
                   stdout=subprocess.DEVNULL, check=True)
