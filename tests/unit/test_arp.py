"""arp.py: frames, announcement schedules, reading answers and conflicts, repeats."""

import socket
import struct

import pytest

from hb import addrspec as S
from hb import arp
from hb.addrspec import AF_INET, AF_INET6


def raw(ip):
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


MAC = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("020000000002")


def test_garp_frames_are_request_and_reply():
    req, rep = arp.garp_frames(MAC, raw("198.18.0.100"))
    assert len(req) == len(rep) == 60
    assert req[:6] == rep[:6] == b"\xff" * 6 and req[6:12] == MAC
    assert req[12:22] == bytes.fromhex("08060001080006040001")
    assert rep[20:22] == b"\x00\x02"
    for f in (req, rep):
        assert f[22:28] == MAC and f[28:32] == f[38:42] == raw("198.18.0.100")
    assert req[32:38] == b"\0" * 6 and rep[32:38] == MAC
    probe = arp.arp_probe_frame(MAC, raw("198.18.0.100"))
    assert probe[28:32] == b"\0" * 4 and probe[38:42] == raw("198.18.0.100")


def _icmp6_ok(frame):
    ip6 = frame[14:54]
    src, dst, body = ip6[8:24], ip6[24:40], frame[54:]
    assert struct.unpack("!H", ip6[4:6])[0] == len(body) and ip6[6] == 58 and ip6[7] == 255
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    return arp._csum(pseudo + body) == 0


def test_na_frame():
    f = arp.na_frame(MAC, raw("2001:db8::100"))
    assert f[:6] == bytes.fromhex("333300000001") and f[6:12] == MAC
    assert f[22:38] == raw("2001:db8::100") and f[38:54] == raw("ff02::1")
    assert f[54] == 136 and f[58] == 0x20          # override, not router, not solicited
    assert f[62:78] == raw("2001:db8::100") and f[78:80] == b"\x02\x01" and f[80:86] == MAC
    assert _icmp6_ok(f)
    assert arp.na_frame(MAC, raw("2001:db8::100"), router=True)[58] == 0xA0
    assert _icmp6_ok(arp.na_frame(MAC, raw("2001:db8::100"), router=True))


def test_dad_ns_frame():
    f = arp.dad_ns_frame(MAC, raw("2001:db8::12:3456"))
    assert f[:6] == bytes.fromhex("3333ff123456")
    assert f[22:38] == b"\0" * 16 and f[38:54] == raw("ff02::1:ff12:3456")
    assert f[54] == 135 and f[62:78] == raw("2001:db8::12:3456") and len(f) == 78
    assert _icmp6_ok(f)


def test_conflict():
    ip4, ip6 = raw("198.18.0.100"), raw("2001:db8::100")
    theirs = arp.garp_frames(OTHER, ip4)
    assert all(arp.conflict(f, AF_INET, ip4, MAC) for f in theirs)
    assert not any(arp.conflict(f, AF_INET, ip4, MAC) for f in arp.garp_frames(MAC, ip4))
    assert not arp.conflict(arp.arp_probe_frame(OTHER, ip4), AF_INET, ip4, MAC)
    assert not arp.conflict(theirs[1], AF_INET, raw("198.18.0.101"), MAC)
    assert arp.conflict(arp.na_frame(OTHER, ip6), AF_INET6, ip6, MAC)
    assert not arp.conflict(arp.na_frame(MAC, ip6), AF_INET6, ip6, MAC)
    assert not arp.conflict(arp.na_frame(OTHER, raw("2001:db8::1")), AF_INET6, ip6, MAC)
    assert not arp.conflict(arp.dad_ns_frame(OTHER, ip6), AF_INET6, ip6, MAC)
    assert not arp.conflict(b"short", AF_INET, ip4, MAC)


def test_repeats_are_abandoned_when_the_process_was_frozen(monkeypatch):
    """A repeat that wakes far too late (SIGSTOP, a hung VM) is stale: none is sent."""
    spec = S.parse("198.18.0.100/24/eth0::arp_count=2::arp_interval=20")
    plan = arp.schedule(spec.family, spec.arp_count, spec.arp_interval)
    sent = []
    monkeypatch.setattr(arp, "send_announcement", lambda s, i, k: sent.append(k) or True)
    assert arp.repeat_announce(spec, "eth0", plan, lambda: False) == 3
    assert sent == [arp.REPLY, arp.REQUEST, arp.REPLY]
    real_sleep = arp.time.sleep
    monkeypatch.setattr(arp.time, "sleep",
                        lambda s: real_sleep(s + arp.FROZEN + 0.05))
    assert arp.repeat_announce(spec, "eth0", plan, lambda: False) == 0
    assert len(sent) == 3


@pytest.mark.parametrize("family,count,interval,want", [
    # Heartbeat's IPaddr: send_arp -i 500 -r 10: 20 frames 250 ms apart, 4.75 s
    (AF_INET, 10, 0.5, (20, 0.25, 4.75)),
    # IPaddr2: send_arp -i 200 -r 5: 10 frames 100 ms apart, 0.9 s
    (AF_INET, 5, 0.2, (10, 0.1, 0.9)),
    (AF_INET, 1, 0.2, (2, 0.1, 0.1)),
    # IPv6: unsolicited advertisements, the same count, interval apart
    (AF_INET6, 5, 0.2, (5, 0.2, 0.8)),
    (AF_INET6, 10, 0.5, (10, 0.5, 4.5)),
])
def test_schedule(family, count, interval, want):
    plan = arp.schedule(family, count, interval)
    offsets = [o for o, _k in plan]
    gaps = {round(b - a, 6) for a, b in zip(offsets, offsets[1:])}
    assert (len(plan), gaps.pop(), round(offsets[-1], 6)) == want and not gaps
    kinds = [k for _o, k in plan]
    if family == AF_INET:
        assert kinds == [arp.REQUEST, arp.REPLY] * count
    else:
        assert kinds == [arp.NA] * count
    assert arp.schedule(family, 0, interval) == []


def test_announcement_frames_as_send_arp():
    spec = S.parse("198.18.0.100")
    assert arp.announcement(arp.REQUEST, MAC, spec) == arp.garp_frames(MAC, spec.raw)[0]
    assert arp.announcement(arp.REPLY, MAC, spec) == arp.garp_frames(MAC, spec.raw)[1]
    v6 = S.parse("2001:db8::100::router=yes")
    assert arp.announcement(arp.NA, MAC, v6) == arp.na_frame(MAC, v6.raw, router=True)


def test_ns_frame_and_answers():
    vip, gw = raw("2001:db8::100"), raw("2001:db8::1")
    f = arp.ns_frame(MAC, vip, gw)
    assert f[:6] == bytes.fromhex("3333ff000001") and f[6:12] == MAC
    assert f[22:38] == vip and f[38:54] == raw("ff02::1:ff00:1")
    assert f[54] == 135 and f[62:78] == gw and f[78:80] == b"\x01\x01" and f[80:86] == MAC
    assert _icmp6_ok(f)
    na = arp.na_frame(OTHER, gw)
    assert arp.answers(na, AF_INET6, vip, gw)
    assert not arp.answers(arp.na_frame(OTHER, raw("2001:db8::2")), AF_INET6, vip, gw)
    assert not arp.answers(f, AF_INET6, vip, gw)
    ip4, gw4 = raw("198.18.0.100"), raw("198.18.0.254")
    reply = arp.arp_frame(2, OTHER, gw4, ip4, MAC)
    assert arp.answers(reply, AF_INET, ip4, gw4)
    assert not arp.answers(arp.arp_frame(1, OTHER, gw4, ip4), AF_INET, ip4, gw4)    # a request
    assert not arp.answers(arp.arp_frame(2, OTHER, gw4, raw("198.18.0.1"), MAC), AF_INET, ip4, gw4)
    assert not arp.answers(b"short", AF_INET, ip4, gw4)
