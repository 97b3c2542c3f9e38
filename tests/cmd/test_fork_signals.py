"""hb-supervise forks hb-beat and hb-watch with SIGTERM, SIGINT and SIGHUP blocked
until the program's own handlers are in (proc.signals_ready): a stop sent right
after a start or an upgrade reaches the program's handler.  Without that, a SIGTERM
just after the fork ran the supervisor's inherited handler (lost: hb-watch never
stopped) or killed the child before it could release its groups."""

import os
import signal
import sys
import time

from hb import daemons

PROBE = '''
import signal, time
from hb import proc

def main(argv):
    time.sleep(0.3)                 # start-up: the stop comes meanwhile
    got = []
    signal.signal(signal.SIGTERM, lambda n, _: got.append(n))
    signal.signal(signal.SIGHUP, lambda n, _: got.append(n))
    proc.signals_ready()
    deadline = time.monotonic() + 2.0
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(argv[0], "w") as f:
        f.write(" ".join(map(str, sorted(got))))
    return 0
'''


def test_a_signal_right_after_the_fork_reaches_the_programs_handler(tmp_path):
    (tmp_path / "hbsigprobe.py").write_text(PROBE)
    sys.path.insert(0, str(tmp_path))
    try:
        __import__("hbsigprobe")
        for _ in range(5):
            out = tmp_path / "got"
            child = daemons.Child("probe", ["probe", str(out)], module="hbsigprobe")
            daemons.ALL.remove(child)
            child.fork(time.monotonic())
            os.kill(child.pid, signal.SIGTERM)      # at once: before its handlers
            os.kill(child.pid, signal.SIGHUP)
            _, status = os.waitpid(child.pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, \
                "killed by the signal before its handler was in"
            assert out.read_text() == "%d %d" % (signal.SIGHUP, signal.SIGTERM)
            # the parent's own signals are not left blocked
            assert not signal.pthread_sigmask(signal.SIG_BLOCK, []) & daemons.FORK_BLOCKED
            out.unlink()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hbsigprobe", None)
