"""config: ha.cf, haresources, authkeys parsing; load(), describe(), digest()."""

import os

import pytest

from hb import config
from hb.config import ConfigError, parse_authkeys, parse_hacf, parse_haresources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hacf(text, node="alpha", local=frozenset()):
    return parse_hacf(text, "ha.cf", node, local)


BASE = "node alpha beta\nbcast eth1\nauto_failback on\n"


def test_shipped_example_loads():
    cfg = config.load(os.path.join(ROOT, "etc/ha.d"), "julius", check_devices=False)
    assert cfg.nodes == ["julius", "caesar"]
    assert [m.kind for m in cfg.media] == ["serial", "bcast"]
    assert (cfg.keepalive, cfg.deadtime, cfg.warntime, cfg.initdead) == (5, 15, 10, 30)
    assert cfg.auto_failback == "off"
    assert cfg.auth.signing.method == "sha1"
    g = cfg.groups[0]
    assert g.node == "julius"
    assert [r.name for r in g.resources] == ["IPaddr", "IPaddr", "MailTo"]


def test_defaults():
    cfg = hacf(BASE)
    assert cfg.keepalive == 1.0 and cfg.deadtime == 30.0
    assert cfg.warntime == 15.0 and cfg.initdead == 30.0 and cfg.deadping == 30.0
    assert cfg.udpport == 694 and cfg.baud == 19200 and cfg.realtime
    assert cfg.monitor is None
    assert {"keepalive", "deadtime", "warntime", "initdead", "udpport"} <= cfg.defaulted
    assert "auto_failback" not in cfg.defaulted
