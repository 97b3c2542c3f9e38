"""Heartbeat messages: codec, authentication, and hb's message lines.  Pure.

Message lines (hb-beat stdout -> hb-watch stdin, and beat.fifo): one message per
line, fields as name=value separated by single spaces, values percent-encoded
for '%', space, '=' and newline (and CR, TAB for safety).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from _operator import _compare_digest     # hmac.compare_digest, without hashlib
from typing import Any

_ENC = {"%": "%25", " ": "%20", "=": "%3D", "\n": "%0A", "\r": "%0D", "\t": "%09"}


_TABLE = str.maketrans(_ENC)


def _quote(s: str) -> str:
    return s.translate(_TABLE)


def _unquote(s: str) -> str:
    if "%" not in s:
        return s
    out = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 3 <= n:
            h = s[i + 1:i + 3]
            try:
                out.append(chr(int(h, 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(c)
        i += 1
    return "".join(out)


def format_line(fields: dict[str, str]) -> str:
    """Render a message as one line (no trailing newline)."""
    t = _TABLE
    return " ".join([k.translate(t) + "=" + str(v).translate(t) for k, v in fields.items()])


def parse_line(line: str) -> dict[str, str]:
    """Parse one message line; words without '=' are ignored."""
    out: dict[str, str] = {}
    for word in line.rstrip("\r\n").split(" "):
        if "=" not in word:
            continue
        k, v = word.split("=", 1)
        out[_unquote(k)] = _unquote(v)
    return out


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


def dup_every(deadtime: float) -> float:
    """How often hb-beat reports a link heard only through duplicates (another
    medium was faster): a link's last report may be this much older than its
    last packet, and hb-watch allows for it before calling the link dead."""
    return min(0.25, deadtime / 4)


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
    out = CLASSIC_START + s
    if num is not None:
        out += b"auth=%d %s\n" % (num, auth_token(method, key, s).encode())
    return out + b"<<<\n"


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
        m = _AUTH_FIELD.fullmatch(_enc(a)) if a is not None else None
        if m is None:
            return False
        num, token = int(m[1]), m[2].decode("ascii")
        data = pkt.signed or classic_string(pkt.fields)
    return _check(keys, num, data, _enc(token))


# ---------------------------------------------------------------------------
# Authentication before parsing: what a receiver does with untrusted bytes.

# The authenticator: key number (ASCII digits, 0-15 in authkeys) and lowercase hex.
_AUTH_FIELD = re.compile(rb"([0-9]{1,2}) ([0-9a-f]{1,128})")
_TRAILER = re.compile(rb"([0-9]{1,3}):(([0-9]{1,2}) ([0-9a-f]{1,128})),")
_UNSIGNED = re.compile(rb"^(?:auth=[^\n]*)?\n", re.M)    # auth and empty lines
_FIRST_AUTH = re.compile(rb"^auth=([^\n]*)\n", re.M)


def _check(keys: dict[int, tuple[str, bytes]], num: int, data: bytes, token: bytes) -> bool:
    k = keys.get(num)
    if k is None or k[0] not in METHODS:
        return False
    return _compare_digest(auth_token(k[0], k[1], data).encode(), token)


def classic_signed(data: bytes) -> tuple[bytes, bytes] | None:
    """(S, auth value) of a classic frame without parsing its fields: S is every
    line between >>> and the first <<< line but empty and auth= ones (the bytes
    Heartbeat signs, for any frame whose fields parse), the auth value that of
    the first auth= line (b"" when none).  None when the frame has no end."""
    if data[-1:] == b"\0":
        data = data[:-1]
    end = data.find(b"\n<<<\n", 3)
    if end < 0:
        if data[-4:] != b"\n<<<" or len(data) < 7:
            return None
        end = len(data) - 4
    body = data[4:end + 1]
    k = body.rfind(b"\n", 0, len(body) - 1) + 1       # the last line: auth, as sent
    if body.startswith(b"auth=", k) and body.find(b"\nauth", 0, k) < 0 \
            and not body.startswith(b"auth", 0, k) and b"\n\n" not in body \
            and body[:1] != b"\n":
        return body[:k], body[k + 5:-1]
    m = _FIRST_AUTH.search(body)                    # anything else: the general rule
    return _UNSIGNED.sub(b"", body), m[1] if m else b""


def netstring_signed(data: bytes) -> tuple[bytes, bytes] | None:
    """(B, trailer) of a netstring frame without walking its items: B runs
    through the last %%%% line, the trailer is what follows (b"" when nothing).
    None when there is no such line."""
    k = data.rfind(NS_END)
    if k < 0:
        return None
    return data[:k + 4], data[k + 4:]


def authenticate(data: bytes, keys: dict[int, tuple[str, bytes]]) -> str:
    """Judge raw bytes before anything is parsed: 'ok', 'toobig' (over
    MAXDGRAM), 'garbage' (neither framing, or no end) or 'auth' (no or a
    malformed authenticator, an unknown key number, a wrong token).  Costs at
    most one HMAC over the frame, and only when its authenticator is well-formed
    and names a known key; never raises."""
    return _authenticate(data, keys)[0]


def _authenticate(data: bytes, keys: dict[int, tuple[str, bytes]]) -> tuple[str, bytes]:
    """authenticate(), and the token that matched."""
    if len(data) > MAXDGRAM:
        return "toobig", b""
    if data[:4] == CLASSIC_START:
        cs = classic_signed(data)
        if cs is None:
            return "garbage", b""
        signed, auth = cs
        m = _AUTH_FIELD.fullmatch(auth)
        if m is None:
            return "auth", b""
        num, token = m[1], m[2]
    elif data[:4] == NS_START:
        ns = netstring_signed(data)
        if ns is None:
            return "garbage", b""
        signed, tr = ns
        m = _TRAILER.fullmatch(tr)
        if m is None or int(m[1]) != len(m[2]):
            return "auth", b""
        num, token = m[3], m[4]
    else:
        return "garbage", b""
    try:
        return ("ok", token) if _check(keys, int(num), signed, token) else ("auth", b"")
    except (WireError, ValueError, TypeError):
        return "auth", b""


SERIAL_FRAG = 512      # Heartbeat's serial writer: fragments of at most this many bytes


def frag_delay(baud: int) -> float:
    """Heartbeat's pause between two fragments of one message (serial.c:
    FRAGSIZE / (baud / 8) seconds, the division in integers): the time the
    line needs to carry one fragment; 213 ms at 19200 bps, 35.6 ms at 115200."""
    return SERIAL_FRAG / max(1, baud // 8)


def fragments(data: bytes) -> list[bytes]:
    """data as Heartbeat writes it: SERIAL_FRAG-byte pieces, the last one shorter."""
    return [data[i:i + SERIAL_FRAG] for i in range(0, len(data), SERIAL_FRAG)] or [b""]


class SerialFramer:
    """Cut a serial byte stream into classic frames, resynchronising on '>>>'.

    CRs are dropped (IGNCR) and the 8th bit stripped (ISTRIP), as Heartbeat's
    port settings do.  Garbage between frames is counted in self.garbage.
    """

    def __init__(self, limit: int = MAXDGRAM) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.garbage = 0
        self.infr = False
        self.scan = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frames in data (after what came before).  The buffer never
        holds more than limit bytes plus one read; a longer frame is garbage."""
        data = bytes(data).translate(_ISTRIP, b"\r")
        self.buf += data
        out: list[bytes] = []
        while True:
            if not self.infr:
                i = self.buf.find(b">>>\n")
                if i < 0:
                    keep = len(self.buf) - 3 if len(self.buf) > 3 else 0
                    self.garbage += keep
                    del self.buf[:keep]
                    return out
                if i:
                    self.garbage += i
                    del self.buf[:i]
                self.infr = True
                self.scan = 4
            j = self.buf.find(b"\n<<<\n", self.scan - 1)
            if j < 0 or j + 5 > self.limit:
                self.scan = max(4, len(self.buf) - 4)
                if len(self.buf) > self.limit:
                    self.garbage += len(self.buf)
                    self.buf.clear()
                    self.infr = False
                    return out
                if j < 0:
                    return out
            end = j + 5
            frame = bytes(self.buf[:end])
            del self.buf[:end]
            self.infr = False
            nxt = frame.rfind(b">>>\n", 1)
            if nxt > 0:                 # a frame cut short, then a new one (a value
                self.garbage += nxt     # ending in '>>>' cannot cross a serial link)
                frame = frame[nxt:]
            out.append(frame)


_ISTRIP = bytes(b & 0x7F for b in range(256))


# ---------------------------------------------------------------------------
# Sequencing: replay, duplicates, gaps, retransmission history.  Fake-clock safe.

HISTORY = 500           # messages kept for NS_rexmit (Heartbeat's MAXMSGHIST)
MAX_GAP = 250           # a bigger gap is "lost a lot of packets": not asked for
REXMIT_DELAY = 0.25     # max_rexmit_delay: between requests for one seq
REXMIT_MIN = 0.05
REXMIT_TRIES = 8        # then the packet counts as lost
REXMIT_SPACING = 0.24   # a message is resent at most this often
REXMIT_MAX = 50         # messages resent per request
DUP_WINDOW = 2.0        # an already-accepted seq seen within this is a duplicate
NS_SLACK = 2            # s: an NS_ message this much older (ts) than the newest is stale
NS_KEEP = 256           # NS_ messages remembered per node, to drop their copies
NS_REPEAT = 0.2         # s: the same NS_ message through one medium is taken this often
MAX_GEN = 0xFFFFFFFF    # a generation is a 32-bit count (time() when first made)
MAX_SEQ = (1 << 48) - 1  # 89,000 years at 100 messages a second
HIGHWATER = "highwater"  # STATEDIR file: the high-water marks, kept across restarts
PERSIST_EVERY = 1.0     # s between writes of it (and at once on a new generation)


class _Peer:
    def __init__(self, gen: int = -1) -> None:
        self.gen = gen
        self.last = 0
        self.ts = 0                             # newest ts accepted in this generation
        self.restored = False                   # last came from the file: no gap to ask
        self.missing: dict[int, float] = {}     # seq -> due time
        self.tries: dict[int, int] = {}
        self.recent: dict[int, tuple[float, tuple[str, ...]]] = {}   # seq -> (t, media)
        self.ns: dict[bytes, tuple[int, float, tuple[str, ...]]] = {}  # token -> ts, at, media


class Sequencer:
    """Per-node generation and sequence tracking (Heartbeat §4.7).

    judge() says what to do with a sequenced message: 'ok' (newer than the
    node's high-water mark), 'late' (older, but fills a gap), 'dup' (accepted
    less than DUP_WINDOW ago, first copy through this medium), 'again' (another
    copy through a medium that carried it), 'replay' or 'unknown'; judge_ns()
    the same for NS_ messages, which have no seq.  Gaps become requests returned
    by due().  events collects log lines for the caller to emit.  The high-water
    marks (snapshot(), restore()) survive a restart of hb-beat.
    """

    def __init__(self, me: str, nodes: list[str], my_gen: int = -1,
                 rng=None) -> None:
        import random
        self.me = me
        self.nodes = set(nodes) | {me}
        self.peers: dict[str, _Peer] = {}
        self.rng = rng or random.random
        self.events: list[str] = []
        self.lost = 0                   # messages given up
        self.next_due = float("inf")
        self.dirty = False              # a high-water mark moved since snapshot()
        self.urgent = False             # a generation changed since snapshot()
        if my_gen >= 0:
            self.peers[me] = _Peer(gen=my_gen)

    def _new_gen(self, src: str, p: _Peer, gen: int) -> _Peer:
        if p.gen >= 0 and src != self.me:
            self.events.append("generation of %s went from %x to %x: restart"
                               % (src, p.gen, gen))
        self.peers[src] = p = _Peer(gen=gen)
        self.dirty = self.urgent = True
        return p

    def judge(self, src: str, gen: int, seq: int | None, now: float,
              ts: int = 0, via: str = "") -> str:
        if seq is None:
            return self.judge_ns(src, gen, ts, b"", now, via)
        if src not in self.nodes:
            return "unknown"
        p = self.peers.get(src)
        if p is None:
            p = self.peers[src] = _Peer()
        if gen < p.gen and not self._back(src, p, ts, "generation", p.gen, gen):
            return "replay"
        if gen != p.gen:
            p = self._new_gen(src, p, gen)
            p.last, p.ts = seq, ts
            p.recent[seq] = (now, (via,))
            return "ok"
        if seq <= p.last and seq not in p.missing and seq not in p.recent and \
                self._back(src, p, ts, "sequence", p.last, seq):
            p.last = seq - 1 if seq else 0
            p.restored = True                   # no gap to ask for
            p.missing.clear()
            p.tries.clear()
        if seq > p.last:
            if p.last and seq > p.last + 1 and src != self.me and not p.restored:
                self._gap(src, p, seq, now)
            p.last, p.restored, self.dirty = seq, False, True
            if ts > p.ts:
                p.ts = ts
            self._seen(p, seq, now, via)
            return "ok"
        if seq in p.missing:
            del p.missing[seq]
            p.tries.pop(seq, None)
            self._seen(p, seq, now, via)
            return "late"
        r = p.recent.get(seq)
        if r is not None and now - r[0] <= DUP_WINDOW:
            if via in r[1]:
                return "again"
            p.recent[seq] = (r[0], r[1] + (via,))
            return "dup"
        return "replay"

    def _back(self, src: str, p: _Peer, ts: int, what: str, old: int, new: int) -> bool:
        """A node's generation or sequence number went back: trusted only when the
        message is newer (ts) than every message accepted from it, which no replay
        can be; so a corrupt huge value poisons the mark until the node's next
        message, not for ever."""
        if src == self.me or not p.ts or ts <= p.ts:
            return False
        self.events.append("%s of %s went back from %x to %x in a newer message: taking it"
                           % (what, src, old, new))
        return True

    def judge_ns(self, src: str, gen: int, ts: int, token: bytes, now: float,
                 via: str = "") -> str:
        """An NS_ message (no seq): a lower generation or a ts more than NS_SLACK
        seconds older than the newest accepted from that node is a replay; the
        same message (its authenticator) is 'again' when it came through another
        medium less than DUP_WINDOW ago or this one less than NS_REPEAT ago (a
        request repeated later is accepted: Heartbeat repeats NS_rexmit unchanged
        within a second)."""
        if src not in self.nodes:
            return "unknown"
        p = self.peers.get(src)
        if p is None:
            p = self.peers[src] = _Peer()
        if gen < p.gen:
            return "replay"
        if gen > p.gen:
            p = self._new_gen(src, p, gen)
        elif ts + NS_SLACK < p.ts:
            return "replay"
        elif token and token in p.ns:
            _, at, vias = p.ns[token]
            if now - at < (NS_REPEAT if via in vias else DUP_WINDOW):
                if via not in vias:
                    p.ns[token] = (ts, at, vias + (via,))
                return "again"
        if ts > p.ts:
            p.ts = ts
            self.dirty = True
        if token:
            ns = p.ns
            ns.pop(token, None)
            ns[token] = (ts, now, (via,))
            if len(ns) > NS_KEEP:
                for k in [k for k, e in ns.items() if e[0] + NS_SLACK < p.ts]:
                    del ns[k]
                while len(ns) > NS_KEEP:
                    del ns[next(iter(ns))]
        return "ok"

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """node -> (generation, seq, ts) high-water marks of the other nodes."""
        self.dirty = self.urgent = False
        return {n: (p.gen, p.last, p.ts) for n, p in self.peers.items()
                if n != self.me and p.gen >= 0}

    def restore(self, marks: dict[str, tuple[int, int, int]]) -> None:
        """Take high-water marks saved by an earlier run (configured nodes only;
        what this run heard already wins)."""
        for n, (gen, seq, ts) in marks.items():
            if n == self.me or n not in self.nodes or n in self.peers:
                continue
            p = self.peers[n] = _Peer(gen=gen)
            p.last, p.ts, p.restored = seq, ts, True

    def _seen(self, p: _Peer, seq: int, now: float, via: str = "") -> None:
        p.recent[seq] = (now, (via,))
        if len(p.recent) > 2 * HISTORY:
            for k in list(p.recent)[:HISTORY]:
                del p.recent[k]

    def _gap(self, src: str, p: _Peer, seq: int, now: float) -> None:
        n = seq - p.last - 1
        self.events.append("%d lost packet(s) for %s [%d:%d]" % (n, src, p.last, seq))
        if n > MAX_GAP:
            self.events.append("lost a lot of packets from %s: not asking again" % src)
            p.missing.clear()
            p.tries.clear()
            return
        for s in range(p.last + 1, seq):
            t = now + REXMIT_MIN + self.rng() * (REXMIT_DELAY - REXMIT_MIN)
            p.missing[s] = t
            p.tries[s] = 0
            self.next_due = min(self.next_due, t)
        while len(p.missing) > HISTORY:
            s = next(iter(p.missing))
            del p.missing[s]
            p.tries.pop(s, None)

    def due(self, now: float) -> list[tuple[str, int]]:
        """(node, seq) pairs to request with NS_rexmit now."""
        if now < self.next_due:
            return []
        out = []
        nd = float("inf")
        for src, p in self.peers.items():
            for s, t in list(p.missing.items()):
                if t <= now:
                    p.tries[s] = p.tries.get(s, 0) + 1
                    if p.tries[s] > REXMIT_TRIES:
                        self.events.append("irretrievably lost packet %d from %s" % (s, src))
                        self.lost += 1
                        del p.missing[s]
                        del p.tries[s]
                        continue
                    out.append((src, s))
                    t = p.missing[s] = now + REXMIT_DELAY
                nd = min(nd, t)
        self.next_due = nd
        return out

    def nak(self, src: str, seq: int) -> bool:
        """The peer cannot resend seq: stop asking.  True if we were asking."""
        p = self.peers.get(src)
        if p is None or seq not in p.missing:
            return False
        del p.missing[seq]
        p.tries.pop(seq, None)
        self.lost += 1
        self.events.append("irretrievably lost packet %d from %s (%s)" % (seq, src, "nak"))
        return True

    def missing(self, src: str) -> list[int]:
        p = self.peers.get(src)
        return sorted(p.missing) if p else []


class History:
    """The last HISTORY sent sequenced messages, as their original bytes."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self.msgs: dict[int, list] = {}     # seq -> [bytes, last resent at]

    def add(self, seq: int, data: bytes) -> None:
        """Keep data as seq; seq - size goes (sequence numbers are consecutive)."""
        self.msgs[seq] = [data, -1e9]
        self.msgs.pop(seq - self.size, None)
        if len(self.msgs) > self.size:
            for s in sorted(self.msgs)[:len(self.msgs) - self.size]:
                del self.msgs[s]

    def request(self, first: int, last: int, now: float
                ) -> tuple[list[bytes], list[tuple[int, str]]]:
        """Answer NS_rexmit: (packets to resend, [(seq, reason)] to NAK)."""
        out: list[bytes] = []
        naks: list[tuple[int, str]] = []
        if last < first:
            return out, naks
        oldest = min(self.msgs) if self.msgs else 1 << 62
        for s in range(first, min(last, first + REXMIT_MAX - 1) + 1):
            m = self.msgs.get(s)
            if m is None:
                naks.append((s, "seqno too low" if s < oldest else "seqno not found"))
            elif now - m[1] >= REXMIT_SPACING:
                m[1] = now
                out.append(m[0])
        return out, naks


def rexmit_fields(dest: str, seq: int) -> list[tuple[str, str]]:
    """NS_rexmit asking dest for one message (Heartbeat writes these seqs in decimal)."""
    return [("t", "NS_rexmit"), ("dest", dest), ("firstseq", str(seq)), ("lastseq", str(seq))]


def nak_fields(dest: str, seq: int, why: str) -> list[tuple[str, str]]:
    """NS_nak_rexmit: seq (in hex, as Heartbeat) cannot be sent again."""
    return [("t", "NS_nak_rexmit"), ("firstseq", "%x" % seq), ("dest", dest), ("info", why)]


def rexmit_range(pkt: Packet) -> tuple[int, int]:
    """(first, last) asked for by an NS_rexmit; (1, 0), an empty range, if malformed."""
    first = number(pkt.get("firstseq"), 10, MAX_SEQ)
    last = number(pkt.get("lastseq"), 10, MAX_SEQ) if "lastseq" in pkt else first
    return (first, last) if first >= 1 and last >= 0 else (1, 0)


def nak_seq(pkt: Packet) -> int:
    return number(pkt.get("firstseq"), 16, MAX_SEQ)


_HEXNUM = re.compile(r"[0-9a-fA-F]{1,16}")
_DECNUM = re.compile(r"[0-9]{1,20}")


def number(v: str | None, base: int, limit: int) -> int:
    """A peer's number: ASCII digits only (no sign, space, '_' or other
    script's digits), at most 16 hex or 20 decimal digits, <= limit; else -1."""
    if v is None or (_HEXNUM if base == 16 else _DECNUM).fullmatch(v) is None:
        return -1
    n = int(v, base)
    return n if n <= limit else -1


COUNTERS = ("received", "accepted", "garbage", "auth", "unknown", "replay", "dup",
            "notforus", "rexmit_asked", "rexmit_sent", "nak_sent", "lost", "unsent",
            "toobig", "malformed", "stale")
DROPS = ("garbage", "auth", "unknown", "replay", "dup", "toobig", "malformed", "stale")


class Receiver:
    """Verdict on every received datagram: size, authentication (before any
    parsing), then fields and sequence.  receive() never raises: whatever the
    bytes, the datagram is accepted or counted under one reason of DROPS."""

    def __init__(self, me: str, nodes: list[str], keys: dict[int, tuple[str, bytes]],
                 my_gen: int = -1, rng=None) -> None:
        self.me = me
        self.keys = keys
        self.seq = Sequencer(me, nodes, my_gen, rng)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.error: str | None = None       # the first unexpected exception (a bug)

    def own(self, seq: int, now: float) -> str:
        """A message we sent ourselves heard back (its bytes known): sequence only."""
        self.counts["received"] += 1
        v = self.seq.judge(self.me, self.seq.peers[self.me].gen, seq, now)
        self.counts[_COUNTER[v]] += 1
        return v

    def receive(self, data: bytes, now: float, via: str = "") -> tuple[str, Packet | None]:
        """(verdict, packet): 'ok' and 'late' (a gap filled) are accepted; 'dup'
        (first copy through this medium, packet given for a link notice),
        'again', 'replay', 'stale' (a status that fills a gap: superseded),
        'unknown', 'malformed', 'auth', 'garbage', 'toobig' are dropped."""
        c = self.counts
        c["received"] += 1
        try:
            v, pkt = self._judge(data, now, via)
        except Exception as e:          # a bug: counted, never a dead daemon
            if self.error is None:
                self.error = "%s: %s" % (type(e).__name__, e)
            v, pkt = "malformed", None
        c[_COUNTER[v]] += 1
        return v, pkt

    def _judge(self, data: bytes, now: float, via: str) -> tuple[str, Packet | None]:
        if not isinstance(data, bytes):
            data = bytes(data)
        v, token = _authenticate(data, self.keys)
        if v != "ok":
            return v, None
        try:                            # authentic: worth parsing
            pkt = parse(data)
        except WireError:
            return "malformed", None
        if pkt.framing == "netstring" and len(pkt.signed) != data.rfind(NS_END) + 4:
            return "malformed", None    # the signed bytes are not the message's
        f = pkt.text()
        t, src = f.get("t") or "", (f.get("src") or "").lower()
        ts = number(f.get("ts"), 16, (1 << 64) - 1)
        if not t or not src or len(t) > 64 or len(src) > 64 or ts <= 0:
            return "malformed", None
        hg = f.get("hg")
        gen = number(hg, 16, MAX_GEN) if hg is not None else 0
        ttl = f.get("ttl")
        if gen < 0 or (ttl is not None and number(ttl, 10, 255) < 0):
            return "malformed", None
        if t.startswith("NS_"):
            v = self.seq.judge_ns(src, gen, ts, token, now, via)
        else:
            seq = number(f.get("seq"), 16, MAX_SEQ)
            if seq < 0:
                return "malformed", None
            v = self.seq.judge(src, gen, seq, now, ts, via)
            if v == "late" and t == "status":
                v = "stale"             # a newer status was accepted: not news
        return v, pkt if v in ("ok", "late", "dup") else None


_COUNTER = {"ok": "accepted", "late": "accepted", "dup": "dup", "again": "dup",
            "replay": "replay", "stale": "stale", "unknown": "unknown",
            "malformed": "malformed", "auth": "auth", "garbage": "garbage",
            "toobig": "toobig"}


def format_highwater(marks: dict[str, tuple[int, int, int]]) -> str:
    """STATEDIR/highwater: one line per node, 'NODE GEN SEQ TS' in hex."""
    return "# hb-beat high-water marks: node generation seq ts (hex)\n" + "".join(
        "%s %x %x %x\n" % (n, g, q, t) for n, (g, q, t) in sorted(marks.items()))


def parse_highwater(text: str) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    """The marks of format_highwater's text, and 'LINE: problem' for lines
    that are not (a line is skipped, never fatal)."""
    marks: dict[str, tuple[int, int, int]] = {}
    bad = []
    for i, line in enumerate(text.splitlines()[:1000], 1):
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if len(w) == 4 and len(w[0]) <= 64:
            g, q, t = (number(w[1], 16, MAX_GEN), number(w[2], 16, MAX_SEQ),
                       number(w[3], 16, (1 << 64) - 1))
            if min(g, q, t) >= 0:
                marks[w[0]] = (g, q, t)
                continue
        bad.append("%d: not 'NODE GEN SEQ TS' in hex: %.60r" % (i, line))
    return marks, bad


# ---------------------------------------------------------------------------
# Sending: the status heartbeat and its schedule.

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


def proc_start(pid: int) -> str | None:
    """The start time of process pid (clock ticks after boot, /proc/PID/stat field
    22); None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()
    return rest[19].decode() if len(rest) > 19 else None


_WRITER: list[str] = []


def writer_id() -> str:
    """PID:STARTTIME of this process: who wrote RUNDIR/state (`watch=`)."""
    if not _WRITER:
        _WRITER.append("%d:%s" % (os.getpid(), proc_start(os.getpid()) or "0"))
    return _WRITER[0]


def writer_alive(ident: str | None) -> bool | None:
    """Is the process that wrote RUNDIR/state (its `watch=`) still running?  None when
    the file does not say (written by hand, or by an older hb-watch)."""
    if not ident or ":" not in ident:
        return None
    pid, _, start = ident.partition(":")
    if not pid.isdigit():
        return None
    return proc_start(int(pid)) == start
