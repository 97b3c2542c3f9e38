"""netlink.py: message parsing, the standard library's dump on loopback."""

import socket
import struct

from hb import netlink as N
from hb.addrspec import AF_INET, AF_INET6


def raw(ip):
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


def _nlmsg(mtype, body):
    return struct.pack("IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def _attr(atype, value):
    n = 4 + len(value)
    return struct.pack("HH", n, atype) + value + b"\0" * (-n % 4)


def test_parse_netlink_messages():
    addr = struct.pack("BBBBI", AF_INET, 24, 0, 0, 1) + _attr(N.IFA_ADDRESS, raw("198.18.0.9")) \
        + _attr(N.IFA_LOCAL, raw("198.18.0.9")) + _attr(N.IFA_LABEL, b"lo:x\0") \
        + _attr(N.IFA_FLAGS, struct.pack("I", N.IFA_F_NODAD | N.IFA_F_NOPREFIXROUTE))
    link = struct.pack("BxHiII", 0, 1, 1, N.IFF_LOWER_UP | 1, 0) + _attr(N.IFLA_IFNAME, b"lo\0")
    data = _nlmsg(N.RTM_NEWADDR, addr) + _nlmsg(N.RTM_NEWLINK, link)
    (t1, p1), (t2, p2) = list(N._nl_messages(data))
    a = N.parse_addr_msg(p1)
    assert (t1, a.ip, a.prefix, a.index, a.label, a.flags) == \
        (N.RTM_NEWADDR, "198.18.0.9", 24, 1, "lo:x", N.IFA_F_NODAD | N.IFA_F_NOPREFIXROUTE)
    assert (t2, N.parse_link_msg(p2)) == (N.RTM_NEWLINK, (1, "lo", N.IFF_LOWER_UP | 1))


def test_held_on_loopback():
    assert N.held("127.0.0.1")
    assert N.held("127.0.0.1", "lo")
    assert not N.held("127.0.0.1", "nonesuch0")
    assert not N.held("198.18.250.250")


def test_parse_route_msg():
    body = struct.pack("BBBBBBBBI", AF_INET, 0, 0, 0, N.RT_TABLE_MAIN, 3, 0, 1, 0) \
        + _attr(N.RTA_GATEWAY, raw("198.18.0.254")) + _attr(N.RTA_OIF, struct.pack("I", 1)) \
        + _attr(N.RTA_TABLE, struct.pack("I", N.RT_TABLE_MAIN))
    assert N.parse_route_msg(body) == (AF_INET, 0, "198.18.0.254", 1, N.RT_TABLE_MAIN)
