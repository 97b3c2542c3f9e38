"""Heartbeat packets: classic and netstring framing, authenticators, and the
encoder hb-beat sends with.  Pure.
"""

from __future__ import annotations

import base64
import binascii
import re
from _operator import _compare_digest     # hmac.compare_digest, without hashlib
from typing import Any

from hb.lines import format_line, quote

# ---------------------------------------------------------------------------
# Heartbeat packets: classic and netstring framing, authentication.


MAXMSG = 256 * 1024
MAXDGRAM = 65535        # the largest message a peer can send: a whole UDP payload
STRING, BINARY = 0, 1
CLASSIC_START = b">>>\n"
CLASSIC_END = b"<<<"
NS_START = b"###\n"
NS_END = b"%%%\n"
METHODS = ("sha1", "md5", "crc", "sha256")
_HMAC = ("sha1", "md5", "sha256")
STANDARD = ("destuuid", "src", "srcuuid", "seq", "hg", "ts", "ld", "ttl", "auth")


# The authenticator: key number (ASCII digits, 0-15 in authkeys) and lowercase hex.
AUTH_FIELD = re.compile(rb"([0-9]{1,2}) ([0-9a-f]{1,128})")


class WireError(ValueError):
    """Anything wrong with a packet: framing, field syntax, encoding, size."""


class Packet:
    """A parsed Heartbeat message: ordered (name, type, value) fields.

    value is str for type 0 (bytes decoded utf-8 with surrogateescape, so the
    original bytes come back exactly) and bytes for every other type.
    signed is what the authenticator covers: for netstring packets the exact
    bytes from '###\\n' through '%%%\\n' (trailer: the (N, hex) of the auth
    trailer, if any); for classic ones every line but auth, as received.
    """

    def __init__(self, fields: list[tuple[str, int, "str | bytes"]] | None = None,
                 framing: str = "classic", signed: bytes = b"",
                 trailer: tuple[int, str] | None = None) -> None:
        self.fields = fields if fields is not None else []
        self.framing = framing
        self.signed = signed
        self.trailer = trailer
        self._text: dict[str, str] | None = None

    def __repr__(self) -> str:
        return "Packet(%r, %r)" % (self.framing, self.fields)

    def text(self) -> dict[str, str]:
        """Fields as text (binary ones base64), first of each name; built once."""
        m = self._text
        if m is None:
            m = {}
            for n, t, v in self.fields:
                if n not in m:
                    m[n] = v if t == STRING else _b64(v)       # type: ignore[arg-type]
            self._text = m
        return m

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.text().get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.text()

    def strings(self) -> dict[str, str]:
        """Fields as a dict of text (binary ones base64), auth left out."""
        out = dict(self.text())
        out.pop("auth", None)
        return out

    def line(self) -> str:
        """format_line(self.strings()); for a classic message of unique, plain
        fields with nothing to quote but spaces: its signed lines, joined."""
        s = self.signed
        if self.framing == "classic" and s[:1] not in (b"(", b"") and b"\n(" not in s \
                and len(self.fields) == len(self.text()):
            t = s[:-1].decode("utf-8", "surrogateescape")
            if t.count("=") == t.count("\n") + 1 and "%" not in t \
                    and "\t" not in t and "\r" not in t and "\x13" not in t:
                return t.replace(" ", "%20").replace("\n", " ")
        return format_line(self.strings())


def received_line(pkt: Packet, via: str, rt: float, own: bool) -> str:
    """hb-beat's output line for a received message: its fields but auth, then
    _via, _rt and (own message) _self=1; newline-terminated."""
    text = pkt.text()
    if "_via" in text or "_rt" in text or "_self" in text:
        line = pkt.strings()
        line.update(_via=via, _rt="%.6f" % rt)
        if own:
            line["_self"] = "1"
        return format_line(line) + "\n"
    return "%s _via=%s _rt=%.6f%s\n" % (pkt.line(), via, rt, " _self=1" if own else "")


def _b64(v: bytes) -> str:
    return base64.b64encode(v).decode("ascii")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


_REV8 = bytes(int("{:08b}".format(i)[::-1], 2) for i in range(256))


def crc32_posix(data: bytes) -> int:
    """CRC-32, poly 0x04C11DB7 MSB-first, init 0, final complement, no length:
    binascii's reflected CRC-32 (C speed: 64 KiB in 50 us, not 10 ms) of the
    bit-reversed bytes, started at internal state 0, its result bit-reversed."""
    c = binascii.crc32(bytes(data).translate(_REV8), 0xFFFFFFFF)
    return int("{:032b}".format(c)[::-1], 2)


_PADS: dict[tuple[str, bytes], tuple] = {}


def hasher(method: str) -> Any:
    """The interpreter's own implementation of a digest: hashlib would map
    OpenSSL's libcrypto into every daemon, 3.7 MB of RSS each, and a message
    is a few hundred bytes (1 us either way)."""
    try:
        if method == "sha1":
            from _sha1 import sha1
            return sha1
        if method == "md5":
            from _md5 import md5
            return md5
        if method == "sha256":
            from _sha256 import sha256
            return sha256
    except ImportError:
        pass
    import hashlib
    return getattr(hashlib, method)


def _pads(method: str, key: bytes) -> tuple:
    """RFC 2104's keyed inner and outer hash states, kept for the next message."""
    new = hasher(method)
    k = new(key).digest() if len(key) > 64 else key
    k = k.ljust(64, b"\0")
    pads = (new(bytes(b ^ 0x36 for b in k)), new(bytes(b ^ 0x5C for b in k)))
    if len(_PADS) > 64:
        _PADS.clear()
    _PADS[(method, key)] = pads
    return pads


def auth_token(method: str, key: bytes, data: bytes) -> str:
    """The authenticator token Heartbeat computes for data (lowercase hex)."""
    if method in _HMAC:
        pads = _PADS.get((method, key))
        if pads is None:
            pads = _pads(method, key)
        i = pads[0].copy()
        i.update(data)
        o = pads[1].copy()
        o.update(i.digest())
        return o.hexdigest()
    if method == "crc":
        return "%x" % crc32_posix(data)
    raise WireError("unknown auth method %r" % method)


def _classic_line(name: str, typ: int, value: "str | bytes") -> bytes:
    if typ == STRING:
        assert isinstance(value, str)
        return _enc(name) + b"=" + _enc(value).replace(b"\n", b"\x13") + b"\n"
    assert isinstance(value, bytes)
    return b"(%d)" % typ + _enc(name) + b"=" + base64.b64encode(value) + b"\n"


def classic_string(fields: list[tuple[str, int, "str | bytes"]]) -> bytes:
    """S of reference §3.3: every field but auth as classic lines, in order."""
    return b"".join(_classic_line(n, t, v) for n, t, v in fields if n != "auth")


def message_head(fields: list[tuple[str, str]], me: str
                 ) -> tuple[bytes, str, bool, bool, list[str]]:
    """A message's own fields for sending: standard ones dropped, t first, each
    checked.  (classic lines, message line, NS_ message, for us, problems)."""
    fields = [f for f in fields if f[0] not in STANDARD]
    fields.sort(key=lambda f: f[0] != "t")
    typed: list[tuple[str, int, "str | bytes"]] = []
    bad = []
    for k, v in fields:
        try:
            check_field(k, STRING, v)
            typed.append((k, STRING, v))
        except WireError as e:
            bad.append("field %r not sent: %s" % (k, e))
    if not typed or typed[0][0] != "t" or not typed[0][2]:
        raise WireError("no t=")
    d = {k: v for k, _, v in typed}
    return (classic_string(typed), format_line(d),  # type: ignore[arg-type]
            str(typed[0][2]).startswith("NS_"), d.get("dest", me) == me, bad)


def check_field(name: str, typ: int, value: "str | bytes") -> None:
    """WireError unless the field can be sent in classic framing."""
    if not name or "=" in name or "\n" in name or name.startswith("("):
        raise WireError("bad field name %r" % name)
    if typ == STRING and ("\x13" in value or "\r" in value):  # type: ignore[operator]
        raise WireError("field %s: value not representable" % name)


def render_classic(fields: list[tuple[str, int, "str | bytes"]],
                   num: int | None = None, method: str = "", key: bytes = b"") -> bytes:
    """A classic packet; with num, an auth=N HEX field is computed and appended."""
    fields = [f for f in fields if f[0] != "auth"]
    for f in fields:
        check_field(*f)
    s = classic_string(fields)
    if num is not None:
        return signed_classic(s, num, method, key)
    return CLASSIC_START + s + b"<<<\n"


def signed_classic(s: bytes, num: int, method: str, key: bytes) -> bytes:
    """The classic frame of S (its fields' lines) with its auth line."""
    return b">>>\n%sauth=%d %s\n<<<\n" % (s, num, auth_token(method, key, s).encode())


def render_netstring(fields: list[tuple[str, int, "str | bytes"]],
                     num: int | None = None, method: str = "", key: bytes = b"") -> bytes:
    """A netstring packet as Heartbeat 3.0.6 sends it (fields taken as given)."""
    body = [NS_START]
    for n, t, v in fields:
        item = b"(%d)" % t + _enc(n) + b"=" + (_enc(v) if isinstance(v, str) else v)
        body.append(b"%d:%s," % (len(item), item))
    body.append(NS_END)
    signed = b"".join(body)
    if num is None:
        return signed
    tr = b"%d %s" % (num, auth_token(method, key, signed).encode())
    return signed + b"%d:%s," % (len(tr), tr)


def _typed(item: bytes, classic: bool) -> tuple[str, int, "str | bytes"]:
    typ = STRING
    if item[:1] == b"(":
        if len(item) < 3 or item[2:3] != b")" or not item[1:2].isdigit():
            raise WireError("bad field type")
        typ = item[1] - 0x30
        if typ > 5 or (classic and typ == 0):
            raise WireError("bad field type %d" % typ)
        item = item[3:]
    eq = item.find(b"=")
    if eq <= 0:
        raise WireError("field without name")
    try:
        name = item[:eq].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("bad field name") from None
    raw = item[eq + 1:]
    if typ == STRING:
        if classic:
            raw = raw.replace(b"\x13", b"\n")
        return name, typ, _dec(raw)
    if classic:
        try:
            dec = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("field %s: bad base64" % name) from None
        if base64.b64encode(dec) != raw:
            raise WireError("field %s: base64 not in canonical form" % name)
        return name, typ, dec
    return name, typ, raw


# A classic body of plain lines only: name (ASCII, not starting with '(')=value.
_PLAIN = re.compile(rb"(?:(?:[\x00-\x09\x0b-\x27\x29-\x3c\x3e-\x7f]"
                    rb"[\x00-\x09\x0b-\x3c\x3e-\x7f]*=[^\n]*)?\n)*")
_FIELD = re.compile(r"([^=\n]+)=([^\n]*)")


def _parse_classic(data: bytes) -> Packet:
    """Fields up to the <<< line; signed = their lines as sent (= Heartbeat's S)."""
    if data.endswith(b"\0"):
        data = data[:-1]
    end = data.find(b"\n<<<\n", 3)
    if end < 0 and data.endswith(b"\n<<<"):
        end = len(data) - 4
    if end >= 3:                   # the common message, in a few C calls
        body = data[4:end + 1]
        if _PLAIN.fullmatch(body):
            fields = [(n, STRING, v.replace("\x13", "\n") if "\x13" in v else v)
                      for n, v in _FIELD.findall(body.decode("utf-8", "surrogateescape"))]
            signed = body
            if b"auth=" in body or b"\n\n" in body or body[:1] == b"\n":
                i = body.rfind(b"\n", 0, -1) + 1          # auth is usually the last line
                if i and body.startswith(b"auth=", i) and body.count(b"\nauth=") == 1 \
                        and b"\n\n" not in body and body[:1] != b"\n" \
                        and not body.startswith(b"auth="):
                    signed = body[:i]
                else:
                    signed = b"".join(ln + b"\n" for ln in body.split(b"\n")
                                      if ln and not ln.startswith(b"auth="))
            return Packet(fields, "classic", signed)
    return _parse_classic_lines(data)


def _parse_classic_lines(data: bytes) -> Packet:
    fields = []
    signed = []
    lines = data.split(b"\n")
    for k in range(1, len(lines)):
        line = lines[k]
        if not line:
            continue
        if line == CLASSIC_END:
            break
        eq = line.find(b"=")
        if eq > 0 and line[0] != 0x28:          # name=value, the common case
            try:
                name = line[:eq].decode("ascii")
            except UnicodeDecodeError:
                raise WireError("bad field name") from None
            v = line[eq + 1:]
            if b"\x13" in v:
                v = v.replace(b"\x13", b"\n")
            f = (name, STRING, v.decode("utf-8", "surrogateescape"))
        else:
            f = _typed(line, classic=True)
        fields.append(f)
        if f[0] != "auth":
            signed.append(line)
    else:
        raise WireError("classic message without <<<")
    signed.append(b"")
    return Packet(fields, "classic", b"\n".join(signed))


def _parse_netstring(data: bytes) -> Packet:
    pkt = Packet(framing="netstring")
    pos = len(NS_START)
    n = len(data)
    while True:
        if data.startswith(NS_END, pos):
            pos += len(NS_END)
            break
        item, pos = _netstring(data, pos, n)
        pkt.fields.append(_typed(item, classic=False))
    pkt.signed = data[:pos]
    if pos < n:
        tr, pos = _netstring(data, pos, n)
        sp = tr.find(b" ")
        if sp <= 0 or not tr[:sp].isdigit() or sp > 3:
            raise WireError("bad auth trailer")
        try:
            pkt.trailer = (int(tr[:sp]), tr[sp + 1:].decode("ascii"))
        except UnicodeDecodeError:
            raise WireError("bad auth trailer") from None
    return pkt


def _netstring(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    colon = data.find(b":", pos, pos + 8)
    if colon <= pos or not data[pos:colon].isdigit():
        raise WireError("bad netstring length at %d" % pos)
    ln = int(data[pos:colon])
    end = colon + 1 + ln
    if end >= n or data[end:end + 1] != b",":
        raise WireError("netstring overruns the packet at %d" % pos)
    return data[colon + 1:end], end + 1


def parse(data: bytes) -> Packet:
    """Parse one datagram or serial frame, classic or netstring; WireError if bad."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("not bytes")
    data = bytes(data)
    if len(data) > MAXMSG:
        raise WireError("message too long")
    if data.startswith(CLASSIC_START):
        return _parse_classic(data)
    if data.startswith(NS_START):
        return _parse_netstring(data)
    raise WireError("neither classic nor netstring framing")


def verify(pkt: Packet, keys: dict[int, tuple[str, bytes]]) -> bool:
    """True when the packet's authenticator matches a key it names.

    keys: N -> (method, key).  Netstring packets are judged by their trailer
    only (as Heartbeat does), classic ones by their auth field.
    """
    if pkt.framing == "netstring":
        if pkt.trailer is None:
            return False
        num, token = pkt.trailer
        data = pkt.signed
    else:
        a = pkt.text().get("auth")
        m = AUTH_FIELD.fullmatch(_enc(a)) if a is not None else None
        if m is None:
            return False
        num, token = int(m[1]), m[2].decode("ascii")
        data = pkt.signed or classic_string(pkt.fields)
    return check_token(keys, num, data, _enc(token))


def check_token(keys: dict[int, tuple[str, bytes]], num: int, data: bytes, token: bytes) -> bool:
    """token is data's authenticator under key num of keys (compared in constant time)."""
    k = keys.get(num)
    if k is None or k[0] not in METHODS:
        return False
    return _compare_digest(auth_token(k[0], k[1], data).encode(), token)


# ---------------------------------------------------------------------------
# Sending: hb-beat's encoder, the status heartbeat and its schedule.

class Encoder:
    """hb-beat's sender: each message as a signed classic packet, and as a line.

    A message's own fields (t first, standard ones dropped, each checked: see
    message_head) are rendered once while they stay the same; then come src, seq
    and ld (sequenced messages: not NS_ ones), hg, ts, ttl and auth, in Heartbeat's
    order.  The bytes are render_classic's for that whole field list (a test holds
    the two to it); one formatting per message, as hb-beat builds a status every
    keepalive (given as the same tuple while it does not change, they are not
    even compared).  seq counts on across rekey()."""

    def __init__(self, me: str, gen: int, ttl: int, num: int, method: str, key: bytes) -> None:
        self.me, self.gen, self.seq = me, gen, 0
        self.me_b = me.encode()
        self.me_q = quote(me)
        self.head: tuple = (None,)
        self.problems: list[str] = []       # fields not sent, for the caller to log
        self.rekey(ttl, num, method, key)

    def rekey(self, ttl: int, num: int, method: str, key: bytes) -> None:
        """A new configuration: ttl (1 + the number of nodes) and the signing key."""
        self.ttl, self.ttl_b = str(ttl), str(ttl).encode()
        self.num, self.method, self.key = num, method, key

    def encode(self, fields: list[tuple[str, str]], ts: int, load: tuple[bytes, str]
               ) -> tuple[bytes, str, int, bool]:
        """(packet, message line without _via/_rt, its seq (0: an NS_ message, not
        sequenced), whether it is for us too).  ts: time() in seconds; load: the
        first line of /proc/loadavg, raw and quoted.  WireError when there is no
        t= to send; fields that cannot be sent are dropped, said in problems."""
        head = self.head
        if fields is not head[0]:          # the same tuple again (a status): no copy
            key = tuple(fields)
            if key != head[0]:
                *new, bad = message_head(fields, self.me)
                self.problems += bad
                self.head = head = (key, *new)
            else:                           # equal: this tuple is the one to know again
                self.head = head = (key, *head[1:])
        _, s, line, ns, forus = head
        if ns:
            seq = 0
            s = b"%ssrc=%s\nhg=%x\nts=%x\nttl=%s\n" % (s, self.me_b, self.gen, ts, self.ttl_b)
            line += " src=%s hg=%x ts=%x ttl=%s" % (self.me_q, self.gen, ts, self.ttl)
        else:
            self.seq = seq = self.seq + 1
            s = b"%ssrc=%s\nseq=%x\nhg=%x\nts=%x\nld=%s\nttl=%s\n" % (
                s, self.me_b, seq, self.gen, ts, load[0], self.ttl_b)
            line += " src=%s seq=%x hg=%x ts=%x ld=%s ttl=%s" % (
                self.me_q, seq, self.gen, ts, load[1], self.ttl)
        token = auth_token(self.method, self.key, s).encode()     # signed_classic, inline
        return b">>>\n%sauth=%d %s\n<<<\n" % (s, self.num, token), line, seq, forus


def next_beat(t0: float, period: float, now: float) -> float:
    """The first slot t0 + k*period after now: no drift, no burst after a stall."""
    return t0 + (int((now - t0) / period) + 1) * period


STARTUP_DT = 5.0        # s after start during which `dt` says deadtime + DT_SLACK
DT_SLACK = 2.0          # (Heartbeat's +2000 ms while it starts)


def status_fields(state: dict[str, str], deadtime: float, first: bool = False,
                  early: bool = False) -> list[tuple[str, str]]:
    """t=status st=... dt=<hex ms>, then the other fields of RUNDIR/state.

    As Heartbeat: the first status of a start says `st=init` (then RUNDIR/state's
    word: `up` until comm is up, then `active`), and during the first STARTUP_DT
    seconds `dt` advertises deadtime + DT_SLACK."""
    st = "init" if first else state.get("st") or "up"
    dt = deadtime + (DT_SLACK if early else 0.0)
    out = [("t", "status"), ("st", st), ("dt", "%x" % int(round(dt * 1000)))]
    out += [(k, v) for k, v in state.items()
            if k not in ("t", "st", "dt", "watch") and k not in STANDARD and k and v is not None]
    return out
