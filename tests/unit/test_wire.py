"""The Heartbeat codec: reference §3.4 vectors byte for byte, framing, round trips,
fuzzing, and sequencing/replay/retransmission logic with a fake clock.

Hostile input: the suite feeds 100,000 hostile datagrams through Receiver.receive
(test_fuzz_receive_100k_only_counted_drops, ~2 s); a bigger run by hand:
  HB_FUZZ=1000000 python3 tests/unit/test_wire.py
"""

from __future__ import annotations

import base64
import os
import random
import time

import pytest
from hypothesis import given, settings, strategies as st

from hb import receive, sequence, serial, wire
from hb.lines import format_line, parse_line

KEY = b"s3cr3tKey"
KEYS = {1: ("sha1", KEY)}

VECTOR = (
    b'###\n11:(0)t=status,12:(0)st=active,10:(0)dt=1f40,13:(0)protocol=1,11:(0)src=beta,'
    b'27:(1)srcuuid=\x8a\x8d\x8e/\xa1aAZ\x88W\x01\xa5sm\x08\x81,8:(0)seq=6,14:(0)hg=6b060abf,'
    b'14:(0)ts=6b060ac0,30:(0)ld=0.00 0.02 0.00 1/95 8735,8:(0)ttl=3,'
    b'50:(0)auth=1 96ef285505f6f4e3736e7409502d3e689abc1598,%%%\n'
    b'42:1 be0fe3e0bf5c262ce8aa0311528c99025fc33e9d,')
CLASSIC_S = (b"t=status\nst=active\ndt=1f40\nprotocol=1\nsrc=beta\n"
             b"(1)srcuuid=io2OL6FhQVqIVwGlc20IgQ==\nseq=6\nhg=6b060abf\nts=6b060ac0\n"
             b"ld=0.00 0.02 0.00 1/95 8735\nttl=3\n")
SYNTH = b"t=status\nst=up\nsrc=alpha\nseq=1\nhg=1\nts=5f5e100\n"

# The million packets: `python3 tests/unit/test_wire.py` runs them all;
# the suite stops after FUZZ_SECONDS (about 800,000 here).
FUZZ_PACKETS = 1_000_000
FUZZ_SECONDS = 15.0


# -- reference vectors -------------------------------------------------------

def test_netstring_vector_parses_and_verifies():
    assert len(VECTOR) == 308
    p = wire.parse(VECTOR)
    assert p.framing == "netstring"
    assert p.trailer == (1, "be0fe3e0bf5c262ce8aa0311528c99025fc33e9d")
    assert p.signed == VECTOR[:VECTOR.index(b"%%%\n") + 4]
    assert wire.auth_token("sha1", KEY, p.signed) == "be0fe3e0bf5c262ce8aa0311528c99025fc33e9d"
    assert wire.verify(p, KEYS)
    assert p.get("src") == "beta" and p.get("seq") == "6" and p.get("hg") == "6b060abf"
    assert [f[0] for f in p.fields][:5] == ["t", "st", "dt", "protocol", "src"]
    assert p.fields[5] == ("srcuuid", 1, b"\x8a\x8d\x8e/\xa1aAZ\x88W\x01\xa5sm\x08\x81")


def test_netstring_vector_renders_byte_for_byte():
    p = wire.parse(VECTOR)
    assert wire.render_netstring(p.fields, 1, "sha1", KEY) == VECTOR


def test_classic_string_of_vector_and_embedded_auth():
    p = wire.parse(VECTOR)
    assert wire.classic_string(p.fields) == CLASSIC_S
    assert wire.auth_token("sha1", KEY, CLASSIC_S) == "96ef285505f6f4e3736e7409502d3e689abc1598"
    assert p.get("auth") == "1 96ef285505f6f4e3736e7409502d3e689abc1598"


def test_classic_render_of_vector_verifies():
    p = wire.parse(VECTOR)
    c = wire.render_classic(p.fields, 1, "sha1", KEY)
    assert c == (b">>>\n" + CLASSIC_S
                 + b"auth=1 96ef285505f6f4e3736e7409502d3e689abc1598\n<<<\n")
    q = wire.parse(c)
    assert q.framing == "classic" and wire.verify(q, KEYS)
    assert [f for f in q.fields if f[0] != "auth"] == [f for f in p.fields if f[0] != "auth"]


@pytest.mark.parametrize("method,token", [
    ("sha1", "c96374697db538a8cb36ffd89ff79409840789d3"),
    ("md5", "e1aa2316e81384c053aeca8cf5d5e090"),
    ("crc", "7266e687"),
])
def test_synthetic_vectors(method, token):
    assert wire.auth_token(method, KEY, SYNTH) == token


def test_crc_check_value_and_no_leading_zeros():
    assert wire.auth_token("crc", b"", b"123456789") == "765e7680"
    tokens = {wire.auth_token("crc", b"", b"x%d" % i) for i in range(2000)}
    assert all(not t.startswith("0") for t in tokens)
    assert min(len(t) for t in tokens) < 8       # some CRCs are short: %lx, no padding


def test_sha256_and_long_keys():
    import hashlib
    import hmac
    long = b"k" * 73
    assert wire.auth_token("sha256", KEY, SYNTH) == hmac.new(KEY, SYNTH, hashlib.sha256).hexdigest()
    assert wire.auth_token("sha1", long, SYNTH) == hmac.new(long, SYNTH, hashlib.sha1).hexdigest()
    assert wire.auth_token("md5", long, SYNTH) == hmac.new(long, SYNTH, hashlib.md5).hexdigest()
    with pytest.raises(wire.WireError):
        wire.auth_token("rot13", KEY, SYNTH)


# -- classic framing ---------------------------------------------------------

def test_classic_trailing_nul_blank_lines_and_tail_ignored():
    pkt = wire.render_classic([("t", 0, "status"), ("src", 0, "alpha")], 1, "md5", KEY)
    for data in (pkt + b"\0", pkt.replace(b"\nsrc", b"\n\n\nsrc"), pkt + b"junk after\n"):
        p = wire.parse(data)
        assert p.get("src") == "alpha" and wire.verify(p, {1: ("md5", KEY)})


def test_classic_newline_as_0x13_and_typed_fields():
    fields = [("t", 0, "x"), ("info", 0, "two\nlines"), ("blob", 1, b"\0\xff"),
              ("empty", 0, "")]
    data = wire.render_classic(fields, 3, "crc", b"")
    assert b"info=two\x13lines\n" in data and b"(1)blob=AP8=\n" in data
    p = wire.parse(data)
    assert p.fields[:4] == fields and wire.verify(p, {3: ("crc", b"")})
    assert p.strings()["blob"] == "AP8="


def test_classic_value_split_at_first_equals():
    p = wire.parse(b">>>\nt=a=b=c\n<<<\n")
    assert p.get("t") == "a=b=c"


@pytest.mark.parametrize("bad", [
    b"", b"hello", b">>>\nt=status\n", b">>>\n=novalue\n<<<\n", b">>>\nnoequals\n<<<\n",
    b">>>\n(0)t=x\n<<<\n", b">>>\n(9)t=x\n<<<\n", b">>>\n(1)b=!!!\n<<<\n",
    b">>>\n(x)t=x\n<<<\n", b"###\n", b"###\n5:(0)t=x,%%%\n", b"###\n99:(0)t=x,%%%\n",
    b"###\nab:(0)t=x,%%%\n", b"###\n8:(0)t=x,%%%\n4:1 x,", b"###\n8:(0)t=xy,%%%\n9:x,",
    b"###\n8:(0)t=xy,%%%\n3:1 x",
])
def test_bad_packets_raise_wire_error(bad):
    with pytest.raises(wire.WireError):
        wire.parse(bad)


def test_wrong_key_and_missing_auth_fail():
    pkt = wire.render_classic([("t", 0, "status"), ("src", 0, "alpha")], 1, "sha1", KEY)
    assert not wire.verify(wire.parse(pkt), {1: ("sha1", b"other")})
    assert not wire.verify(wire.parse(pkt), {2: ("sha1", KEY)})
    assert not wire.verify(wire.parse(b">>>\nt=x\n<<<\n"), KEYS)
    assert not wire.verify(wire.parse(b">>>\nt=x\nauth=junk\n<<<\n"), KEYS)
    unsigned = VECTOR[:VECTOR.index(b"%%%\n") + 4]
    assert not wire.verify(wire.parse(unsigned), KEYS)
    tampered = VECTOR.replace(b"st=active", b"st=standy")
    assert not wire.verify(wire.parse(tampered), KEYS)


def test_netstring_accepted_without_embedded_auth():
    fields = [("t", 0, "status"), ("src", 0, "beta"), ("seq", 0, "1")]
    p = wire.parse(wire.render_netstring(fields, 2, "md5", KEY))
    assert wire.verify(p, {2: ("md5", KEY)}) and p.fields == fields


# -- serial framing ----------------------------------------------------------

def test_serial_framer_resyncs_and_splits():
    a = wire.render_classic([("t", 0, "a"), ("src", 0, "x")], 1, "sha1", KEY)
    b = wire.render_classic([("t", 0, "b"), ("src", 0, "x")], 1, "sha1", KEY)
    stream = b"garbage\x00\xff>>" + a + b">>>\nt=half" + b"noise\r\n" + b.replace(b"\n", b"\r\n")
    f = serial.SerialFramer()
    got = []
    for i in range(0, len(stream), 7):
        got += f.feed(stream[i:i + 7])
    assert got == [a, b]
    assert f.garbage > 0
    assert all(wire.verify(wire.parse(x), KEYS) for x in got)


def test_serial_framer_bounded():
    f = serial.SerialFramer(limit=1000)
    assert f.feed(b">>>\n" + b"x=y\n" * 1000) == []
    assert len(f.buf) < 1100
    good = wire.render_classic([("t", 0, "a")])
    assert f.feed(good) == [good]


# -- property tests ----------------------------------------------------------

names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_0123456789-"), min_size=1,
                max_size=12)
svalues = st.text(st.characters(blacklist_characters="\x13\r", blacklist_categories=("Cs",)),
                  max_size=40)
fieldlists = st.lists(st.one_of(st.tuples(names, st.just(0), svalues),
                                st.tuples(names, st.sampled_from([1, 2, 3, 4, 5]),
                                          st.binary(max_size=40))),
                      min_size=1, max_size=12).map(lambda fs: [f for f in fs if f[0] != "auth"])
methods = st.sampled_from(["sha1", "md5", "crc", "sha256"])


@settings(max_examples=300, deadline=None)
@given(fieldlists, methods, st.binary(min_size=1, max_size=80), st.integers(0, 15))
def test_classic_round_trip(fields, method, key, num):
    key = b"" if method == "crc" else key
    data = wire.render_classic(fields, num, method, key)
    p = wire.parse(data)
    assert [f for f in p.fields if f[0] != "auth"] == fields
    assert wire.verify(p, {num: (method, key)})
    assert wire.render_classic(p.fields, num, method, key) == data


@settings(max_examples=300, deadline=None)
@given(fieldlists, methods, st.binary(min_size=1, max_size=80))
def test_netstring_round_trip(fields, method, key):
    data = wire.render_netstring(fields, 1, method, key)
    p = wire.parse(data)
    assert p.fields == fields and wire.verify(p, {1: (method, key)})
    assert wire.render_netstring(p.fields, 1, method, key) == data


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, st.text(st.characters(blacklist_categories=("Cs",)),
                                      max_size=30), max_size=8))
def test_message_line_round_trip(d):
    assert parse_line(format_line(d)) == d


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_wire_error(data):
    for d in (data, b">>>\n" + data, b"###\n" + data):
        try:
            wire.verify(wire.parse(d), KEYS)
        except wire.WireError:
            pass


# -- fuzz --------------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[i % len(b)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del b[i:i + rng.randint(1, 20)]
        elif op == 3:
            b[i:i] = rng.choice([b"\n", b",", b":", b"=", b"(1)", b"<<<\n", b"%%%\n", b"99:"])
        else:
            del b[i:]
    return bytes(b)


def fuzz(n: int, seconds: float, seed: int = 1) -> int:
    """Parse and verify n random and mutated packets (or until seconds pass)."""
    rng = random.Random(seed)
    seeds = [VECTOR, wire.render_classic(wire.parse(VECTOR).fields, 1, "sha1", KEY),
             wire.render_classic([("t", 0, "x"), ("b", 1, b"\x00" * 30)], 2, "crc", b"")]
    keys = {1: ("sha1", KEY), 2: ("crc", b"")}
    rx = receive.Receiver("alpha", ["alpha", "beta"], keys)
    deadline = time.monotonic() + seconds
    done = 0
    while done < n and time.monotonic() < deadline:
        if done % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        else:
            data = _mutate(rng, rng.choice(seeds))
        try:
            wire.verify(wire.parse(data), keys)
        except wire.WireError:
            pass
        rx.receive(data, float(done))
        done += 1
    return done


def test_fuzz_only_wire_error():
    done = fuzz(FUZZ_PACKETS, FUZZ_SECONDS)
    assert done > 10000


def _per_byte(data: bytes) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        try:
            wire.verify(wire.parse(data), KEYS)
        except wire.WireError:
            pass
        best = min(best, time.perf_counter() - t)
    return best / len(data)


@pytest.mark.parametrize("head,unit,tail", [
    (b">>>\n", b"x=y\n", b"<<<\n"), (b">>>\n", b"(1)b=AAAA\n", b"<<<\n"),
    (b">>>\n", b"\n", b"<<<\n"), (b">>>\n", b"x=" + b"\x13" * 50 + b"\n", b""),
    (b"###\n", b"7:(0)x=yz,", b"%%%\n"), (b"###\n", b"7:(0)x=yz,", b""),
    (b">>>\n", b"x=y\n", b"auth=1 00\n<<<\n"),
])
def test_parse_time_is_linear(head, unit, tail):
    t = time.perf_counter()
    _per_byte(head + unit * 16000 + tail)      # a quadratic parse would take minutes
    assert time.perf_counter() - t < 30.0
    f = serial.SerialFramer(limit=1 << 20)
    t = time.perf_counter()
    for _ in range(2000):
        f.feed(b"x=y\n" * 25)
    assert time.perf_counter() - t < 30.0


# -- sequencing (fake clock) ------------------------------------------------

def pkt(src="beta", seq=1, gen=5, t="status", key=KEY, **extra) -> bytes:
    fields = [("t", 0, t)] + [(k, 0, v) for k, v in extra.items()] + [("src", 0, src)]
    if seq is not None:
        fields.append(("seq", 0, "%x" % seq))
    fields += [("hg", 0, "%x" % gen), ("ts", 0, "6b060ac0")]
    return wire.render_classic(fields, 1, "sha1", key)


def rx():
    return receive.Receiver("alpha", ["alpha", "beta"], KEYS, my_gen=9, rng=lambda: 0.5)


def test_receiver_verdicts_and_counts():
    r = rx()
    assert r.receive(pkt(seq=1), 0.0, "eth0")[0] == "ok"
    assert r.receive(pkt(seq=1), 0.1, "eth1")[0] == "dup"       # same packet, other medium
    assert r.receive(pkt(seq=1), 0.15, "eth1")[0] == "again"    # a second copy there
    assert r.receive(pkt(seq=2), 0.2)[0] == "ok"
    assert r.receive(pkt(seq=1), 10.0)[0] == "replay"       # captured and resent later
    assert r.receive(pkt(seq=3, gen=4), 10.1)[0] == "replay"  # older generation
    assert r.receive(pkt(seq=3, key=b"forged"), 10.2)[0] == "auth"
    assert r.receive(pkt(src="mallory", seq=3), 10.3)[0] == "unknown"
    assert r.receive(b"\x00garbage", 10.4)[0] == "garbage"
    assert r.receive(pkt(seq=None), 10.5)[0] == "malformed"  # status without seq
    assert r.receive(pkt(seq=None, t="NS_rexmit"), 10.6)[0] == "ok"
    assert r.receive(pkt(src="alpha", seq=1, gen=8), 10.7)[0] == "replay"  # our old self
    c = r.counts
    assert (c["accepted"], c["dup"], c["replay"], c["auth"], c["unknown"], c["garbage"],
            c["malformed"]) == (3, 2, 3, 1, 1, 1, 1)
    assert c["received"] == 12
    assert c["received"] == c["accepted"] + sum(c[k] for k in receive.DROPS)


def test_restart_resets_and_gap_requests():
    r = rx()
    s = r.seq
    assert r.receive(pkt(seq=1), 0.0)[0] == "ok"
    assert r.receive(pkt(seq=5), 1.0)[0] == "ok"
    assert s.missing("beta") == [2, 3, 4]
    assert any("3 lost packet(s) for beta" in e for e in s.events)
    assert s.due(1.1) == []
    assert s.due(1.16) == [("beta", 2), ("beta", 3), ("beta", 4)]   # 50 + 0.5*200 ms
    assert s.due(1.2) == []
    assert s.due(1.45) == [("beta", 2), ("beta", 3), ("beta", 4)]
    assert r.receive(pkt(seq=3, t="x"), 1.5)[0] == "late"          # fills the gap
    assert r.receive(pkt(seq=3, t="x"), 1.6)[0] == "again"
    assert s.missing("beta") == [2, 4]
    assert s.nak("beta", 2) and s.missing("beta") == [4]
    for i in range(sequence.REXMIT_TRIES + 1):
        s.due(2.0 + i)
    assert s.missing("beta") == []
    assert any("irretrievably lost packet 4" in e for e in s.events)
    assert s.lost == 2
    assert r.receive(pkt(seq=1, gen=6), 20.0)[0] == "ok"           # restart: new generation
    assert r.receive(pkt(seq=2, gen=5), 20.1)[0] == "replay"


def test_big_gap_not_asked():
    r = rx()
    r.receive(pkt(seq=1), 0.0)
    r.receive(pkt(seq=1000), 0.1)
    assert r.seq.missing("beta") == []
    assert r.receive(pkt(seq=999), 0.2)[0] == "replay"


def test_own_messages_never_asked_for():
    r = rx()
    r.receive(pkt(src="alpha", seq=1, gen=9), 0.0)
    r.receive(pkt(src="alpha", seq=9, gen=9), 0.1)
    assert r.seq.missing("alpha") == [] and r.seq.due(5.0) == []


def test_history_resends_original_bytes_and_naks():
    h = sequence.History(size=5)
    for s in range(1, 9):
        h.add(s, b"msg%d" % s)
    out, naks = h.request(3, 5, 0.0)
    assert out == [b"msg4", b"msg5"] and naks == [(3, "seqno too low")]
    out, naks = h.request(4, 4, 0.1)           # resent less than 240 ms ago
    assert out == [] and naks == []
    out, naks = h.request(4, 4, 0.5)
    assert out == [b"msg4"]
    out, naks = h.request(9, 9, 1.0)
    assert out == [] and naks == [(9, "seqno not found")]
    out, naks = h.request(1, 10**9, 2.0)
    assert len(out) + len(naks) == sequence.REXMIT_MAX


def test_base64_of_binary_in_strings():
    p = wire.parse(VECTOR)
    assert p.strings()["srcuuid"] == base64.b64encode(p.fields[5][2]).decode()
    assert "auth" not in p.strings()


if __name__ == "__main__":
    t0 = time.monotonic()
    n = fuzz(FUZZ_PACKETS, float("inf"))
    print("fuzz: %d packets, only WireError, %.1f s" % (n, time.monotonic() - t0))


def test_heartbeat_306_packet_becomes_a_line():
    r = receive.Receiver("alpha", ["alpha", "beta"], KEYS, my_gen=1)
    verdict, p = r.receive(VECTOR, 1.0)
    assert verdict == "ok" and p is not None
    line = format_line(dict(p.strings(), _via="eth1", _rt="1.000000"))
    assert line == ("t=status st=active dt=1f40 protocol=1 src=beta "
                    "srcuuid=io2OL6FhQVqIVwGlc20IgQ%3D%3D seq=6 hg=6b060abf ts=6b060ac0 "
                    "ld=0.00%200.02%200.00%201/95%208735 ttl=3 _via=eth1 _rt=1.000000")
    assert r.receive(VECTOR, 1.1)[0] == "again"


def test_rexmit_messages():
    assert sequence.rexmit_fields("beta", 55) == [
        ("t", "NS_rexmit"), ("dest", "beta"), ("firstseq", "55"), ("lastseq", "55")]
    assert sequence.nak_fields("beta", 55, "seqno too low") == [
        ("t", "NS_nak_rexmit"), ("firstseq", "37"), ("dest", "beta"), ("info", "seqno too low")]

    def req(**kw):
        return wire.parse(wire.render_classic([("t", 0, "NS_rexmit")]
                                              + [(k, 0, v) for k, v in kw.items()]))
    assert sequence.rexmit_range(req(firstseq="55", lastseq="60")) == (55, 60)
    assert sequence.rexmit_range(req(firstseq="55")) == (55, 55)
    for bad in ({}, {"firstseq": "x"}, {"firstseq": "0"}, {"firstseq": "-3"},
                {"firstseq": "5", "lastseq": "z"}):
        first, last = sequence.rexmit_range(req(**bad))
        assert last < first
    assert sequence.nak_seq(req(firstseq="37")) == 55 and sequence.nak_seq(req()) == -1


def test_packet_line_is_format_line_of_strings():
    """The fast rendering of a received message is exactly the general one."""
    from hypothesis import given, settings, strategies as st
    names = st.sampled_from(["t", "src", "seq", "auth", "info", "a b", "x=y", "n%", "_via"])
    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
        lambda v: "\n" not in v and "\r" not in v and "\x13" not in v)
    values = st.one_of(st.sampled_from(["status", "1", "", "a b", "x=1", "%", "\t", "é"]), text)
    fields = st.lists(st.tuples(names, st.sampled_from([0, 0, 0, 1]), values), max_size=8)

    @settings(max_examples=500, deadline=None)
    @given(fields, st.sampled_from(["classic", "netstring"]))
    def run(fs, framing):
        fs = [(n, t, v.encode() if t else v) for n, t, v in fs]
        render = wire.render_classic if framing == "classic" else wire.render_netstring
        try:
            p = wire.parse(render(fs, 1, "sha1", b"k"))
        except wire.WireError:
            return
        assert p.line() == format_line(p.strings())

    run()
    p = wire.parse(wire.render_classic([("t", 0, "status"), ("src", 0, "beta")], 1, "sha1", b"k"))
    assert p.line() == "t=status src=beta"


def test_classic_fast_parse_is_the_line_parser():
    """The regex parse of a plain classic body equals the line-by-line parser,
    for any bytes (fields, signed bytes, or the error)."""
    from hypothesis import given, settings, strategies as st
    piece = st.sampled_from([b"t=status", b"src=beta", b"auth=1 ab", b"", b"(1)x=YQ==", b"=v",
                             b"noeq", b"a=b=c", b"v=\x13x", b"n\xc3\xa9=1", b"x=\xff\xfe",
                             b"<<<", b">>>", b"k=\r", b"\0", b"auth", b"x=auth=1", b"(x"])
    body = st.lists(st.one_of(piece, st.binary(max_size=8)), max_size=8)

    def outcome(f, data):
        try:
            p = f(data)
            return p.fields, p.signed
        except wire.WireError:
            return "error"

    @settings(max_examples=600, deadline=None)
    @given(body, st.sampled_from([b"\n<<<\n", b"\n<<<", b"\n<<<\n\0", b"\n", b"<<<\nx"]))
    def run(lines, tail):
        data = b">>>\n" + b"\n".join(lines) + tail
        assert outcome(wire._parse_classic, data) == outcome(wire._parse_classic_lines, data)

    run()


# -- hostile input: authenticated before parsed, never an exception -----------

HOSTILE_OUTCOMES = set(receive.DROPS) | {"ok", "late", "again"}


def signed(lines: list[bytes], key: bytes = KEY, num: bytes = b"1") -> bytes:
    """A classic frame of raw lines (anything at all), with a valid authenticator."""
    s = b"".join(ln + b"\n" for ln in lines)
    return b">>>\n" + s + b"auth=" + num + b" " + wire.auth_token("sha1", key, s).encode() \
        + b"\n<<<\n"


def good(seq: int = 1, gen: int = 5, src: bytes = b"beta", t: bytes = b"status",
         over: dict | None = None, **more: bytes) -> list[bytes]:
    """A status's lines; over/more replace fields (None: left out)."""
    f = {b"t": t, b"st": b"up", b"src": src, b"seq": b"%x" % seq, b"hg": b"%x" % gen,
         b"ts": b"6b060ac0", b"ttl": b"3"}
    f.update({k.encode(): v for k, v in dict(over or {}, **more).items()})
    return [k + b"=" + v for k, v in f.items() if v is not None]


def test_authenticate_reference_vectors_and_signed_bytes():
    assert receive.authenticate(VECTOR, KEYS) == "ok"
    classic = wire.render_classic(wire.parse(VECTOR).fields, 1, "sha1", KEY)
    assert receive.authenticate(classic, KEYS) == "ok"
    assert receive.classic_signed(classic) == (
        CLASSIC_S, b"1 96ef285505f6f4e3736e7409502d3e689abc1598")
    assert receive.netstring_signed(VECTOR) == (VECTOR[:VECTOR.index(b"%%%\n") + 4],
                                                b"42:1 be0fe3e0bf5c262ce8aa0311528c99025fc33e9d,")
    for data in (classic + b"\0", classic.replace(b"\nsrc", b"\n\n\nsrc"), classic[:-1],
                 classic + b"junk after\n",
                 classic.replace(b"auth=", b"x=1\nauth=").replace(b"\n<<<", b"\n<<<")):
        ok = receive.authenticate(data, KEYS)
        assert (ok == "ok") == (b"x=1" not in data), data
    assert receive.authenticate(classic.replace(b"auth=1 ", b"auth=2 "), KEYS) == "auth"
    assert receive.authenticate(VECTOR.replace(b"st=active", b"st=standy"), KEYS) == "auth"


@pytest.mark.parametrize("auth", [
    "² 00", "1² 00", "١ 00", "1" * 5000 + " 00", "1 " + "0" * 5000, " 1 00", "+1 00",
    "1_0 00", "0x1 00", "1  00", "1 ABCDEF", "1\t00", "", "1", "1 ", "-1 00", "16 00",
    "1 " + "a" * 39 + "\x00"])
def test_malformed_auth_number_is_an_auth_drop(auth):
    data = b">>>\n" + b"\n".join(good()) + b"\nauth=" + auth.encode() + b"\n<<<\n"
    r = rx()
    assert r.receive(data, 1.0) == ("auth", None)
    assert not wire.verify(wire.parse(data), KEYS)
    ns = wire.render_netstring([("t", 0, "status")]) + b"%d:%s," % (len(auth.encode()),
                                                                    auth.encode())
    assert r.receive(ns, 1.1) == ("auth", None)
    ns = wire.render_netstring([("t", 0, "status")]) + b"9" * 5000 + b":1 00,"
    assert r.receive(ns, 1.2) == ("auth", None)
    assert r.error is None


BAD_FIELDS = [
    dict(hg="²"), dict(hg="1" * 5000), dict(hg="1" * 9), dict(hg="100000000"), dict(hg="-1"),
    dict(hg=" 5"), dict(hg="5_0"), dict(hg="0x5"), dict(hg=""), dict(hg="١"),
    dict(seq="²"), dict(seq="f" * 5000), dict(seq="1000000000000"), dict(seq=None),
    dict(seq=""), dict(seq="1 "), dict(seq="g"),
    dict(ts="0"), dict(ts=None), dict(ts="f" * 17), dict(ts="²"), dict(ts="-5"),
    dict(ttl="²"), dict(ttl="9" * 5000), dict(ttl="256"), dict(ttl="x"),
    dict(t=""), dict(t=None), dict(t="x" * 65), dict(src=""), dict(src=None),
    dict(src="b" * 65)]


@pytest.mark.parametrize("bad", BAD_FIELDS, ids=[repr(b)[:40] for b in BAD_FIELDS])
def test_every_standard_field_malformed_is_a_malformed_drop(bad):
    r = rx()
    assert r.receive(signed(good(seq=1)), 0.0)[0] == "ok"
    over = {k: (v.encode() if v is not None else None) for k, v in bad.items()}
    data = signed(good(seq=2, over=over))
    assert receive.authenticate(data, KEYS) == "ok"
    assert r.receive(data, 0.1) == ("malformed", None)
    assert r.error is None and r.counts["malformed"] == 1
    assert r.seq.peers["beta"].last == 1 and r.seq.peers["beta"].gen == 5   # unmoved
    assert r.receive(signed(good(seq=2)), 0.2)[0] == "ok"


def test_malformed_fields_of_ns_messages_and_rexmit_numbers():
    r = rx()
    for v in ("²", "1" * 5000, "١٢", " 3", "-3", "3_0", "0x3"):
        p = wire.parse(signed([b"t=NS_rexmit", b"firstseq=" + v.encode(),
                               b"lastseq=" + v.encode()]))
        assert sequence.rexmit_range(p) == (1, 0) and sequence.nak_seq(p) == -1
    for lines in ([b"t=NS_rexmit", b"src=beta", b"hg=5", b"ts=0"],
                  [b"t=NS_rexmit", b"src=beta", b"hg=\xc2\xb2", b"ts=6b060ac0"],
                  [b"t=NS_rexmit", b"src=beta", b"hg=5", b"ts=" + b"1" * 5000]):
        assert r.receive(signed(lines), 0.0) == ("malformed", None)
    assert r.error is None


def test_bad_binary_and_framing_after_authentication_are_malformed():
    r = rx()
    for lines in (good() + [b"(1)b=!!!"], good() + [b"noequals"], good() + [b"(9)x=1"],
                  good() + [b"=v"], good() + [b"\xff\xfe=1"]):
        assert r.receive(signed(lines), 0.0) == ("malformed", None), lines
    assert r.error is None


def test_truncated_frames_never_raise():
    r = rx()
    for data in (signed(good(seq=1)), wire.render_netstring(
            [("t", 0, "status"), ("src", 0, "beta"), ("seq", 0, "2"), ("hg", 0, "5"),
             ("ts", 0, "1")], 1, "sha1", KEY)):
        for n in range(len(data) + 1):
            v, p = r.receive(data[:n], 1.0)
            assert v in HOSTILE_OUTCOMES
            assert v in ("auth", "garbage") or n >= len(data) - 1, (n, v)
    assert r.error is None
    c = r.counts
    assert c["received"] == c["accepted"] + sum(c[k] for k in receive.DROPS)


def test_size_cap_and_no_parse_before_authentication(monkeypatch):
    calls = []
    real = wire.auth_token
    monkeypatch.setattr(wire, "auth_token", lambda *a: calls.append(len(a[2])) or real(*a))
    monkeypatch.setattr(receive, "parse", lambda *a: pytest.fail("parsed before authentication"))
    r = rx()
    big = b">>>\n" + b"x=y\n" * 16360 + b"auth=1 " + b"0" * 40 + b"\n<<<\n"
    assert 65000 < len(big) <= wire.MAXDGRAM
    assert r.receive(b">>>\n" + b"x" * wire.MAXDGRAM + b"\n<<<\n", 0.0) == ("toobig", None)
    assert r.receive(b"\0" * (wire.MAXDGRAM + 1), 0.0) == ("toobig", None)
    assert calls == []
    for data in (b">>>\n" + b"x=y\n" * 16000 + b"<<<\n",                  # no auth at all
                 b">>>\n" + b"x=y\n" * 16000 + b"auth=7 " + b"0" * 40 + b"\n<<<\n",  # no key 7
                 b">>>\n" + b"x=y\n" * 16000 + b"auth=1 zz\n<<<\n",
                 b"###\n" + b"3:x=y," * 10000 + b"%%%\n",
                 b"###\n" + b"3:x=y," * 10000 + b"%%%\n5:1 00,",                  # bad length
                 b"\xff" * 65000):
        assert r.receive(data, 0.0)[0] in ("auth", "garbage")
    assert calls == []                                  # not one HMAC
    assert r.receive(big, 0.0) == ("auth", None)
    assert r.receive(b"###\n" + b"3:x=y," * 10000 + b"%%%\n42:1 " + b"0" * 40 + b",",
                     0.0) == ("auth", None)
    assert len(calls) == 2 and min(calls) > 60000       # one HMAC each, over the frame


def test_unauthenticated_64k_costs_one_hmac_and_no_parse(monkeypatch):
    """A forged 64 KiB datagram is judged by one token check over its bytes and
    nothing else (what that costs is bench/reject's figure)."""
    data = b">>>\n" + b"x=y\n" * 16360 + b"auth=1 " + b"0" * 40 + b"\n<<<\n"
    assert len(data) <= wire.MAXDGRAM
    calls: list[int] = []
    real = receive.check_token

    def counted(keys, num, signed, token):
        calls.append(len(signed))
        return real(keys, num, signed, token)

    def no_parse(*a, **k):
        raise AssertionError("parsed before authentication")
    monkeypatch.setattr(receive, "check_token", counted)
    monkeypatch.setattr(receive, "parse", no_parse)
    assert receive.authenticate(data, KEYS) == "auth"
    assert len(calls) == 1 and calls[0] > 60000
    assert receive.authenticate(data.replace(b"auth=1 ", b"auth=9 "), KEYS) == "auth"


def test_serial_framer_buffer_bounded_by_the_cap():
    f = serial.SerialFramer()
    for _ in range(40):                           # 2.6 MB of one endless frame
        assert f.feed(b">>>\n" + b"x=y\n" * 16384) == []
        assert len(f.buf) <= wire.MAXDGRAM + 4 * 16384 + 4
    assert f.feed(b"\n<<<\n") == []               # its end: too long, dropped
    one = signed(good())
    assert f.feed(one) == [one]
    assert f.feed(b"\xbe\xbe\x8d>>>\n" + one[4:]) == [one]     # 8th bit stripped, CR dropped


# -- replay ------------------------------------------------------------------

def test_replay_after_restart_and_peer_restart_accepted_at_once(tmp_path):
    from hb import runfiles
    r = rx()
    captured = [signed(good(seq=s)) for s in range(1, 30)]
    for i, data in enumerate(captured):
        assert r.receive(data, i * 0.1)[0] == "ok"
    assert r.seq.dirty
    runfiles.save_highwater(str(tmp_path), r.seq.snapshot())
    assert not r.seq.dirty
    assert (tmp_path / "highwater").read_text().splitlines()[1:] == ["beta 5 1d 6b060ac0"]
    assert oct((tmp_path / "highwater").stat().st_mode & 0o777) == "0o600"
    # hb-beat restarts: a new generation of its own, the marks from the file
    r2 = receive.Receiver("alpha", ["alpha", "beta"], KEYS, my_gen=10, rng=lambda: 0.5)
    marks, bad = runfiles.load_highwater(str(tmp_path))
    assert bad == [] and marks == {"beta": (5, 0x1d, 0x6b060ac0)}
    r2.seq.restore(marks)
    for data in captured:
        assert r2.receive(data, 100.0)[0] == "replay"
    assert r2.receive(signed(good(seq=0x40)), 100.1)[0] == "ok"   # the peer went on
    assert r2.seq.missing("beta") == [] and r2.seq.due(200.0) == []  # no gap to ask for
    assert r2.receive(signed(good(seq=0x3f)), 100.2)[0] == "replay"
    # the peer restarts: a higher generation, seq from 1, accepted at once
    assert r2.receive(signed(good(seq=1, gen=6)), 100.3)[0] == "ok"
    assert r2.receive(signed(good(seq=2, gen=6)), 100.4)[0] == "ok"
    assert r2.receive(signed(good(seq=0x41, gen=5)), 100.5)[0] == "replay"
    assert r2.seq.urgent
    # what this run heard wins over a file read later
    r2.seq.restore({"beta": (5, 0x99, 0)})
    assert r2.seq.peers["beta"].gen == 6


def test_highwater_file_tolerant(tmp_path):
    from hb import runfiles
    (tmp_path / "highwater").write_text(
        "# comment\nbeta 5 1d 6b060ac0\nbeta2 ² 1 1\ngamma 1 2\ndelta " + "1" * 5000
        + " 1 1\nepsilon 100000000 1 1\n\x00\xff junk\nzeta 7 8 9\n")
    marks, bad = runfiles.load_highwater(str(tmp_path))
    assert marks == {"beta": (5, 0x1d, 0x6b060ac0), "zeta": (7, 8, 9)}
    assert len(bad) == 5 and all("highwater:" in b for b in bad)
    r = rx()
    r.seq.restore(marks)                            # zeta is not a node: ignored
    assert set(r.seq.peers) == {"alpha", "beta"}
    assert runfiles.load_highwater(str(tmp_path / "missing")) == ({}, [])
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(OSError):
                runfiles.save_highwater(str(tmp_path / "ro"), {"beta": (1, 2, 3)})
        with pytest.raises(OSError):
            runfiles.save_highwater(str(tmp_path / "highwater"), {"beta": (1, 2, 3)})  # a file
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    assert os.listdir(tmp_path / "ro") == []


def ns(t: bytes = b"NS_rexmit", gen: int = 5, ts: int = 0x6b060ac0, **extra: bytes) -> bytes:
    lines = [b"t=" + t] + [k.encode() + b"=" + v for k, v in extra.items()] + [
        b"src=beta", b"hg=%x" % gen, b"ts=%x" % ts, b"ttl=3"]
    return signed(lines)


def test_ns_messages_are_replay_checked():
    r = rx()
    assert r.receive(signed(good(seq=1, ts=b"6b060ac0")), 0.0)[0] == "ok"
    a = ns(dest=b"alpha", firstseq=b"1", lastseq=b"1")
    assert r.receive(a, 0.1)[0] == "ok"
    assert r.receive(a, 0.2)[0] == "again"                   # a copy, or replayed soon
    assert r.receive(a, 0.35)[0] == "ok"                     # a request repeated
    assert r.receive(a, 0.4, "eth1")[0] == "again"           # its copy through eth1
    assert r.receive(ns(gen=4), 0.3)[0] == "replay"          # older generation
    assert r.receive(signed(good(seq=2, ts=b"6b060b00")), 64.0)[0] == "ok"
    assert r.receive(a, 64.1)[0] == "replay"                 # 64 s older than the newest
    assert r.receive(ns(ts=0x6b060aff, x=b"1"), 64.2)[0] == "ok"   # within NS_SLACK
    for i in range(3 * sequence.NS_KEEP):                        # bounded memory
        assert r.receive(ns(ts=0x6b060b00 + i // 10, n=b"%d" % i), 65.0)[0] == "ok"
    assert len(r.seq.peers["beta"].ns) <= sequence.NS_KEEP
    assert r.receive(ns(t=b"NS_ackmsg", gen=6), 66.0)[0] == "ok"    # a restart
    assert r.receive(signed(good(seq=3, gen=5)), 66.1)[0] == "replay"
    r.seq.restore({})
    assert r.counts["replay"] == 3 and r.counts["dup"] == 2


def test_only_fresh_messages_refresh_liveness():
    """A stale status (a gap filled late) is dropped: hb-watch would take it for a
    heartbeat; other late messages are delivered (the protocol needs them)."""
    r = rx()
    assert r.receive(signed(good(seq=1)), 0.0)[0] == "ok"
    assert r.receive(signed(good(seq=4)), 0.1)[0] == "ok"
    assert r.seq.missing("beta") == [2, 3]
    assert r.receive(signed(good(seq=2)), 0.2) == ("stale", None)
    assert r.receive(signed(good(seq=3, t=b"ip-request")), 0.3)[0] == "late"
    assert r.receive(signed(good(seq=3, t=b"ip-request")), 0.4)[0] == "again"
    assert r.counts["stale"] == 1


# -- fuzz: the receive path, ≥ 100,000 inputs ---------------------------------

HOSTILE_VALUES = [b"\xc2\xb2", b"1" * 5000, b"f" * 5000, b"", b" ", b"-1", b"0", b"\xd9\xa1",
                  b"ffffffffffffffffff", b"1_0", b"0x10", b"\x00", b"\xff\xfe", b"=", b"%",
                  b"6b060ac0", b"5", b"1", b"beta", b"alpha", b"status", b"NS_rexmit"]
HOSTILE_NAMES = [b"t", b"src", b"seq", b"hg", b"ts", b"ttl", b"dest", b"firstseq", b"lastseq",
                 b"auth", b"(1)srcuuid", b"(2)x", b"", b"(", b"\xff", b"st", b"dt"]


def hostile(rng: random.Random, captured: list[bytes]) -> bytes:
    """One hostile datagram: random bytes, every field malformed (signed with the
    key or not), auth numbers in other scripts' digits or 5,000 digits long,
    truncated, oversized, or a replay of captured traffic."""
    k = rng.randrange(9)
    if k == 0:
        return rng.randbytes(rng.randrange(300))
    if k == 1:
        return rng.choice([b">>>\n", b"###\n"]) + rng.randbytes(rng.randrange(300))
    if k in (2, 3):
        lines = [rng.choice(HOSTILE_NAMES) + b"=" + rng.choice(HOSTILE_VALUES)
                 for _ in range(rng.randrange(10))]
        if k == 2:
            return signed(lines)
        return b">>>\n" + b"\n".join(lines) + b"\nauth=" + rng.choice(
            [b"\xc2\xb2 00", b"1" * 5000 + b" 00", b"1 " + b"0" * 40, b"\xd9\xa1 0"]) + b"\n<<<\n"
    if k == 4:
        data = rng.choice(captured)
        return data[:rng.randrange(len(data) + 1)]
    if k == 5:
        return _mutate(rng, rng.choice(captured))
    if k == 6:
        return rng.choice(captured)
    if k == 7:
        return b"###\n" + b"".join(b"%d:%s," % (len(v) + rng.randrange(-2, 3), v) for v in (
            rng.choice(HOSTILE_NAMES) + b"=" + rng.choice(HOSTILE_VALUES)
            for _ in range(rng.randrange(6)))) + b"%%%\n" + rng.choice(
            [b"", b"42:1 " + b"0" * 40 + b",", b"9" * 5000 + b":1 0,", b"4:\xc2\xb2 0,"])
    return rng.choice([b">>>\n", b"###\n", b""]) + b"x" * rng.choice(
        [wire.MAXDGRAM - 4, wire.MAXDGRAM + 1, 70000])


def fuzz_receive(n: int, seed: int = 7) -> receive.Receiver:
    rng = random.Random(seed)
    r = rx()
    captured = [signed(good(seq=s)) for s in range(1, 50)] + [
        ns(ts=0x6b060ac0, n=b"%d" % i) for i in range(5)] + [VECTOR]
    for i, data in enumerate(captured[:30]):
        r.receive(data, i * 0.1)
    for i in range(n):
        v, p = r.receive(hostile(rng, captured), 10.0 + i * 1e-4, rng.choice(["eth0", "eth1"]))
        assert v in HOSTILE_OUTCOMES
    return r


def test_fuzz_receive_100k_only_counted_drops():
    t0 = time.monotonic()
    r = fuzz_receive(100_000)
    c = r.counts
    assert r.error is None
    assert c["received"] == 100_030
    assert c["received"] == c["accepted"] + sum(c[k] for k in receive.DROPS)
    assert all(c[k] > 100 for k in ("auth", "garbage", "malformed", "replay", "toobig"))
    assert c["accepted"] < 30 + 40                # the captured ones, each once at most
    assert r.seq.peers["beta"].gen in (5, 0x6b060abf)    # VECTOR: beta's real generation
    assert time.monotonic() - t0 < 120


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(HOSTILE_NAMES), st.binary(max_size=6)), max_size=8),
       st.lists(st.one_of(st.sampled_from(HOSTILE_VALUES), st.binary(max_size=12)), max_size=8),
       st.booleans(), st.sampled_from([b"", b"\0", b"junk"]))
def test_hypothesis_signed_fields_only_counted_drops(names_, values, sign, tail):
    lines = [n + b"=" + v for n, v in zip(names_, values)]
    data = signed(lines) if sign else b">>>\n" + b"\n".join(lines) + b"\n<<<\n"
    r = rx()
    v, _ = r.receive(data + tail, 1.0)
    assert v in HOSTILE_OUTCOMES and r.error is None


if __name__ == "__main__" and os.environ.get("HB_FUZZ"):
    n = int(os.environ["HB_FUZZ"])
    t0 = time.monotonic()
    r = fuzz_receive(n, seed=int(time.time()))
    print("receive fuzz: %d datagrams in %.1f s, no exception; %s" % (
        n, time.monotonic() - t0, r.counts))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([b"t=status", b"src=beta", b"seq=1", b"", b"(1)b=AP8=",
                                 b"v=a\x13b", b"auth=1 00", b"auth=2 ff", b"x=auth=1",
                                 b"authx=1", b"auth=", b"k=\xff"]), max_size=10),
       st.sampled_from([b"\n<<<\n", b"\n<<<", b"\n<<<\n\0", b"\n<<<\nafter\n"]))
def test_classic_signed_is_what_heartbeat_signs(lines, tail):
    """Without parsing: S and the first auth value, as the parser finds them."""
    data = b">>>\n" + b"\n".join(lines) + tail
    got = receive.classic_signed(data)
    try:
        p = wire.parse(data)
    except wire.WireError:
        return
    assert got is not None
    assert got[0] == wire.classic_string(p.fields)
    assert got[1] == wire._enc(p.get("auth") or "")


def test_a_corrupt_huge_number_does_not_poison_the_mark_for_ever():
    """An authentic message with a generation or seq far too high (a corrupt peer)
    moves the mark; the node's next message, newer by its ts, is taken again;
    replays, never newer than what was accepted, still are not."""
    r = rx()
    old = [signed(good(seq=s, ts=b"6b060a%02x" % s)) for s in range(1, 4)]
    for d in old:
        assert r.receive(d, 0.0)[0] == "ok"
    assert r.receive(signed(good(seq=4, gen=0xfffffff0, ts=b"6b060a10")), 1.0)[0] == "ok"
    assert r.receive(signed(good(seq=5, ts=b"6b060a10")), 1.1)[0] == "replay"  # same second
    assert r.receive(old[2], 1.2)[0] == "replay"
    assert r.receive(signed(good(seq=5, ts=b"6b060a11")), 1.3)[0] == "ok"      # newer: back
    assert r.seq.peers["beta"].gen == 5 and r.seq.peers["beta"].last == 5
    assert any("generation of beta went back" in e for e in r.seq.events)
    assert r.receive(signed(good(seq=sequence.MAX_SEQ, ts=b"6b060a12")), 2.0)[0] == "ok"
    assert r.receive(signed(good(seq=6, ts=b"6b060a12")), 2.1)[0] == "replay"
    assert r.receive(old[0], 2.2)[0] == "replay"
    assert r.receive(signed(good(seq=6, ts=b"6b060a13")), 2.3)[0] == "ok"
    assert r.receive(signed(good(seq=7, ts=b"6b060a13")), 2.4)[0] == "ok"
    assert r.seq.missing("beta") == [] and r.seq.peers["beta"].last == 7
    assert any("sequence of beta went back" in e for e in r.seq.events)
    for d in old:
        assert r.receive(d, 3.0)[0] == "replay"


def _crc_bitwise(data: bytes) -> int:
    c = 0
    for b in data:
        c ^= b << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
            c &= 0xFFFFFFFF
    return c ^ 0xFFFFFFFF


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_crc_is_the_bitwise_definition(data):
    assert wire.crc32_posix(data) == _crc_bitwise(data)


def test_crc_of_64k_is_the_bitwise_crc():
    """The CRC of a full datagram is computed at C speed (binascii) and is the
    bitwise definition's value (its cost beside an HMAC: bench/reject)."""
    data = bytes(range(256)) * 255
    assert wire.crc32_posix(data) == _crc_bitwise(data)
