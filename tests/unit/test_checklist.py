"""Rows of DESIGN.md's "Heartbeat compatibility, row by row" that no other test
showed on its own: each test names its row."""

from __future__ import annotations

import os
import termios

from hb import actions, owner, serial, settings, station, wire
from hb.hacf import parse_hacf
from hb.lines import parse_line
from hb.settings import Config, Group, Medium, Resource

KEY = b"s3cr3tKey"
J, C = "julius", "caesar"


def signed(lines: list[bytes]) -> bytes:
    """A classic frame of these lines, signed with key 1 (sha1)."""
    s = b"".join(ln + b"\n" for ln in lines)
    return b">>>\n" + s + b"auth=1 " + wire.auth_token("sha1", KEY, s).encode() + b"\n<<<\n"


def a_beat(tmp_path) -> station.Beat:
    keys = {1: settings.AuthKey(1, "sha1", KEY)}
    cfg = Config(node="alpha", nodes=["alpha", "beta"], auth=settings.Auth(1, keys))
    return station.Beat(cfg, "alpha", str(tmp_path), gen=5)


# ---------------------------------------------------------------- row 1

def test_row01_comments_anywhere_commas_tabs_and_case():
    cfg = parse_hacf("node\tAlpha,BETA# the pair\n#bcast eth9\nbcast eth1 # link\n"
                     "keepalive 2# seconds\nauto_failback on\n", "ha.cf", "alpha")
    assert cfg.nodes == ["alpha", "beta"]
    assert [m.name for m in cfg.media] == ["eth1"] and cfg.keepalive == 2


# ---------------------------------------------------------------- row 15

def test_row15_a_peer_without_srcuuid_hg_ld_ttl_or_protocol_is_accepted(tmp_path):
    """Heartbeat 1.x and other peers leave out the optional standard fields: the
    message is accepted and reaches hb-watch."""
    b = a_beat(tmp_path)
    b.handle(signed([b"t=status", b"st=up", b"dt=7530", b"src=beta", b"seq=1",
                     b"ts=6b060ac0"]), "eth0", 1.0)
    assert b.rx.counts["accepted"] == 1 and b.rx.counts["malformed"] == 0
    (line,) = b.out
    fields = parse_line(line.rstrip("\n"))
    assert [fields[k] for k in ("t", "st", "src", "seq")] == ["status", "up", "beta", "1"]
    assert not {"hg", "ld", "ttl", "srcuuid", "protocol"} & set(fields)


# ---------------------------------------------------------------- row 20

def test_row20_a_message_for_another_node_is_not_delivered_but_its_seq_counts(tmp_path):
    b = a_beat(tmp_path)
    std = [b"src=beta", b"hg=5", b"ts=6b060ac0"]
    b.handle(signed([b"t=status", b"st=up", b"seq=1"] + std), "eth0", 1.0)
    b.handle(signed([b"t=ask_resources", b"dest=caesar", b"rsc_hold=all", b"seq=2"] + std),
             "eth0", 1.1)
    b.handle(signed([b"t=status", b"st=active", b"seq=3"] + std), "eth0", 1.2)
    b.handle(signed([b"t=ask_resources", b"dest=alpha", b"rsc_hold=all", b"seq=4"] + std),
             "eth0", 1.3)
    lines = [parse_line(x.rstrip("\n")) for x in b.out]
    assert [(f["t"], f["seq"]) for f in lines] == [("status", "1"), ("status", "3"),
                                                   ("ask_resources", "4")]
    assert b.rx.counts["notforus"] == 1
    assert b.rx.seq.missing("beta") == [] and b.rx.seq.due(5.0) == []   # seq 2 not lost
    for missing in ([b"t=status", b"st=up", b"seq=5", b"hg=5", b"ts=6b060ac0"],   # no src
                    [b"st=up", b"src=beta", b"seq=5", b"hg=5", b"ts=6b060ac0"],   # no t
                    [b"t=status", b"src=beta", b"seq=5", b"hg=5"]):               # no ts
        b.handle(signed(missing), "eth0", 1.4)
    b.handle(signed([b"t=status", b"src=brutus", b"seq=1", b"hg=5", b"ts=6b060ac0"]),
             "eth0", 1.5)
    bad = wire.render_classic([("t", 0, "status"), ("src", 0, "beta"), ("seq", 0, "6"),
                               ("hg", 0, "5"), ("ts", 0, "6b060ac0")], 1, "sha1", b"other")
    b.handle(bad, "eth0", 1.6)
    c = b.rx.counts
    assert (c["malformed"], c["unknown"], c["auth"]) == (3, 1, 1)
    assert len(b.out) == 3


# ---------------------------------------------------------------- row 24

def _config(af: str) -> Config:
    gs = [Group(1, J, [Resource("IPaddr", ["198.18.0.100"], "198.18.0.100")]),
          Group(2, C, [Resource("IPaddr", ["198.18.0.101"], "198.18.0.101")])]
    return Config(node=C, nodes=[J, C], keepalive=0.1, deadtime=0.5, warntime=0.3,
                  initdead=1.0, auto_failback=af, media=[Medium("bcast", "eth0")],
                  groups=gs)


def _standby_with_peer(af: str, hb: bool) -> tuple[list, list]:
    ow = owner.Owner(_config(af), 0.0, "d")
    seq = 0
    for t in (0.1, 0.2, 0.3):
        seq += 1
        f = {"t": "status", "st": "active", "src": J, "hg": "5", "seq": "%x" % seq,
             "_via": "eth0"}
        if hb:
            f.update(hbv="1", grps="none", isstable="1")
        ow.message(f, t)
        ow.tick(t)
    out = ow.request("standby all", 0.4)
    logs = [a.text for a in out if isinstance(a, actions.Log)]
    asks = [a.fields for a in out if isinstance(a, actions.Send)
            and a.fields["t"] == "ask_resources"]
    return logs, asks


def test_row24_legacy_refuses_standby_with_a_heartbeat_peer():
    """auto_failback legacy: Heartbeat's hb_standby refuses; hb refuses the same
    request when the peer is Heartbeat (whose legacy mode has no handshake)."""
    logs, asks = _standby_with_peer("legacy", hb=False)
    assert asks == []
    assert any("refused: standby needs auto_failback on or off with a Heartbeat peer" in x
               for x in logs), logs
    logs, _ = _standby_with_peer("off", hb=False)
    assert not any("standby needs auto_failback" in x for x in logs), logs


def test_row24_legacy_standby_between_hb_nodes_is_not_refused_for_it():
    logs, _ = _standby_with_peer("legacy", hb=True)
    assert not any("standby needs auto_failback" in x for x in logs), logs


# ---------------------------------------------------------------- row 32

def test_row32_serial_port_is_19200_8n1_rts_cts_and_ignores_cr(tmp_path, monkeypatch):
    """The port as Heartbeat sets it: the baud of ha.cf (default 19200), 8 data
    bits, no parity, one stop bit, RTS/CTS; a CR inside a frame is dropped."""
    monkeypatch.setattr(serial, "LOCKDIR", str(tmp_path))
    master, slave = os.openpty()
    try:
        m = serial.Serial(settings.Medium("serial", os.ttyname(slave)), 19200)
        m.open()
        try:
            _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(m.fileno())
        finally:
            m.close()
    finally:
        os.close(master)
        os.close(slave)
    assert ispeed == ospeed == termios.B19200
    assert cflag & termios.CSIZE == termios.CS8
    assert not cflag & (termios.PARENB | termios.CSTOPB)
    assert cflag & termios.CRTSCTS
    frame = wire.render_classic([("t", 0, "status"), ("src", 0, "beta")], 1, "sha1", KEY)
    assert serial.SerialFramer().feed(frame.replace(b"\n", b"\r\n")) == [frame]
