"""wire.Encoder, the encoder hb-beat sends with: its bytes are render_classic's for
the whole field list, Heartbeat's order of the standard fields, its message line."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from hb import wire
from hb.lines import parse_line, quote

KEY = b"s3cr3tKey"
LOAD = b"0.00 0.02 0.00 1/95 8735"
# Heartbeat 3.0.6's status of the netstring vector in test_wire, classic, as hb sends
# it: without srcuuid (hb has no node UUID), every other line in Heartbeat's order.
CLASSIC_S = (b"t=status\nst=active\ndt=1f40\nprotocol=1\nsrc=beta\nseq=6\nhg=6b060abf\n"
             b"ts=6b060ac0\nld=0.00 0.02 0.00 1/95 8735\nttl=3\n")


def encoder(method: str = "sha1", key: bytes = KEY, num: int = 1) -> wire.Encoder:
    return wire.Encoder("beta", 0x6b060abf, 3, num, method, key)


def test_status_is_heartbeats_classic_rendering_byte_for_byte():
    e = encoder()
    e.seq = 5
    own = (("t", "status"), ("st", "active"), ("dt", "1f40"), ("protocol", "1"))
    data, line, seq, forus = e.encode(own, 0x6b060ac0, (LOAD, quote(LOAD.decode())))
    token = wire.auth_token("sha1", KEY, CLASSIC_S).encode()
    assert data == b">>>\n" + CLASSIC_S + b"auth=1 " + token + b"\n<<<\n"
    assert (seq, forus) == (6, True) and e.seq == 6
    p = wire.parse(data)
    assert wire.verify(p, {1: ("sha1", KEY)})
    assert wire.render_classic(p.fields, 1, "sha1", KEY) == data
    assert parse_line(line) == p.strings()
    assert line == ("t=status st=active dt=1f40 protocol=1 src=beta seq=6 hg=6b060abf "
                    "ts=6b060ac0 ld=0.00%200.02%200.00%201/95%208735 ttl=3")


def test_ns_messages_have_no_seq_nor_load_and_do_not_count():
    e = encoder("crc", b"")
    data, line, seq, forus = e.encode([("t", "NS_rexmit"), ("dest", "alpha"), ("firstseq", "5")],
                                      0x10, (LOAD, "x"))
    assert seq == 0 and e.seq == 0 and forus is False       # for alpha, not us (beta)
    p = wire.parse(data)
    assert [n for n, _, _ in p.fields] == ["t", "dest", "firstseq", "src", "hg", "ts", "ttl",
                                           "auth"]
    assert wire.render_classic(p.fields, 1, "crc", b"") == data
    assert e.encode([("t", "resource"), ("dest", "beta")], 0x10, (LOAD, "x"))[2:] == (1, True)


def test_fields_dropped_said_once_t_first_and_no_t_refused():
    e = encoder()
    fields = [("info", "a b\nc"), ("t", "resource"), ("seq", "99"), ("bad", "x\ry"),
              ("a=b", "1")]
    data, line, seq, _ = e.encode(fields, 1, (LOAD, "l"))
    assert len(e.problems) == 2 and "'bad'" in e.problems[0] and "'a=b'" in e.problems[1]
    e.problems.clear()
    assert e.encode(list(fields), 2, (LOAD, "l"))[2] == 2 and e.problems == []  # cached
    p = wire.parse(data)
    assert p.fields[:2] == [("t", 0, "resource"), ("info", 0, "a b\nc")]
    assert p.get("seq") == "1"                  # a message's own seq is not sent
    for bad in ([("info", "x")], [("t", "")], []):
        try:
            e.encode(bad, 3, (LOAD, "l"))
        except wire.WireError:
            continue
        raise AssertionError("sent without t=: %r" % bad)


def test_rekey_signs_with_the_new_key_and_counts_on():
    e = encoder()
    e.encode((("t", "status"),), 1, (LOAD, "l"))
    e.rekey(4, 2, "md5", b"k2")
    data, _, seq, _ = e.encode((("t", "status"),), 1, (LOAD, "l"))
    p = wire.parse(data)
    assert seq == 2 and p.get("ttl") == "4" and wire.verify(p, {2: ("md5", b"k2")})
    assert not wire.verify(p, {1: ("sha1", KEY)})


def test_a_changed_tuple_or_list_is_rendered_again():
    e = encoder()
    a = (("t", "status"), ("st", "up"))
    b = (("t", "status"), ("st", "active"))
    for fields, st_ in ((a, "up"), (a, "up"), (b, "active"), (list(b), "active"),
                        ([("t", "status"), ("st", "dead")], "dead"), (a, "up")):
        assert wire.parse(e.encode(fields, 1, (LOAD, "l"))[0]).get("st") == st_


names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_0123456789-"), min_size=1,
                max_size=12).filter(lambda n: n != "t" and n not in wire.STANDARD)
values = st.text(st.characters(blacklist_characters="\x13\r", blacklist_categories=("Cs",)),
                 max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=8, unique_by=lambda f: f[0]),
       st.sampled_from(["status", "NS_x", "y"]),
       st.sampled_from(["sha1", "md5", "crc", "sha256"]), st.integers(1, 1 << 40),
       st.text(st.characters(blacklist_characters="\n\r\x13",
                             blacklist_categories=("Cs",)), max_size=30))
def test_encoder_is_render_classic_of_its_fields(own, t, method, ts, load):
    """For any message: the packet is render_classic of t, the other own fields,
    then src, seq, hg, ts, ld, ttl (no seq nor ld for NS_); the line parses to its
    fields."""
    key = b"" if method == "crc" else KEY
    e = encoder(method, key, 7)
    e.seq = 41
    ld = load.encode("utf-8")
    data, line, seq, _ = e.encode([("t", t)] + own, ts, (ld, quote(load)))
    std = [("src", "beta"), ("hg", "6b060abf"), ("ts", "%x" % ts)]
    if not t.startswith("NS_"):
        std[1:1] = [("seq", "2a")]
        std.append(("ld", ld.decode()))
    std.append(("ttl", "3"))
    fields = [(n, 0, v) for n, v in [("t", t)] + own + std]
    assert data == wire.render_classic(fields, 7, method, key)
    assert seq == (0 if t.startswith("NS_") else 42)
    assert parse_line(line) == {n: v for n, _, v in fields} == wire.parse(data).strings()
