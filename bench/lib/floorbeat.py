"""The least a heartbeat written in Python does, as a yardstick for hb-beat's cost.

Usage: python3 floorbeat.py ME PEER KEEPALIVE

Every KEEPALIVE seconds (on a fixed schedule, as hb-beat keeps it) one signed
status of about hb's size goes to PEER:694 by UDP; whatever arrives is read,
its HMAC-SHA1 checked and its fields split.  One select() per wake-up, nothing
else: no state, no output but one line once it runs.  bench/footprint runs a pair
of it beside hb: what this costs is the interpreter's part of a beat, which no
change to hb's own code can take away.
"""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import sys
import time


def main(argv: list[str]) -> int:
    me, peer, period = argv[0], argv[1], float(argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 694))
    key = b"bench"
    head = (">>>\nt=status\nst=active\ndt=2710\nprotocol=1\nsrc=%s\n" % me).encode()
    print("running: %s beating to %s every %gs" % (me, peer, period), flush=True)
    t0 = time.monotonic()
    due, seq = t0, 0
    while True:
        now = time.monotonic()
        if now >= due:
            seq += 1
            body = head + b"seq=%x\nhg=1\nts=%x\nld=0.00\nttl=3\n" % (seq, int(time.time()))
            mac = hmac.new(key, body, hashlib.sha1).hexdigest().encode()
            try:
                s.sendto(body + b"auth=1 " + mac + b"\n<<<\n", (peer, 694))
            except OSError:
                pass
            due = t0 + (int((now - t0) / period) + 1) * period
        r, _, _ = select.select([s], [], [], max(0.0, due - time.monotonic()))
        while r:
            try:
                data = s.recv(1500, socket.MSG_DONTWAIT)
            except OSError:
                break
            i = data.rfind(b"auth=")
            if i > 0 and hmac.compare_digest(
                    hmac.new(key, data[:i], hashlib.sha1).hexdigest().encode(),
                    data[i + 7:i + 47]):
                dict(kv.split(b"=", 1) for kv in data[4:i].split(b"\n") if b"=" in kv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
