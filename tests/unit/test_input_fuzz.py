"""Every input hb-watch takes, fuzzed: message lines from hb-beat (any field, any
value, any message type, from either node), requests on watch.fifo, and agent and
check results.  Nothing raises; what Owner returns is a list of actions; its status
and state stay renderable.  (The datagram path is fuzzed in test_wire, the
configuration files in test_config, the status file in test_status.)"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from hb import actions, lines, owner
from hb.settings import Config, Group, Medium, Resource

J, C = "julius", "caesar"
TYPES = ["status", "resource", "starting", "ask_resources", "hb_takeover", "ip-request",
         "ip-request-resp", "shutdone", "reqnodes", "reach", "NS_rexmit", "x", ""]
FIELDS = ["t", "st", "dt", "rsc_hold", "grps", "stuck", "cfd", "hbv", "isstable", "pings",
          "pfresh", "nolink", "hg", "seq", "ts", "info", "rtype", "dest", "_via", "_rt",
          "_dup", "_self", "src", "ip", "ipaddr", "lease", "hb_ip"]
value = (st.text(max_size=30) | st.sampled_from(
    ["", "0", "-1", "1e400", "nan", "inf", "²", "9" * 5000, "ffffffffffffffffffffff",
     "1,2,3", "all", "local", "foreign", "none", "active", "dead", "up", "eth0",
     "%0A", "1" * 300, "0x10", " ", "\n"]))


def config():
    gs = [Group(1, J, [Resource("IPaddr", ["198.18.0.100"], "198.18.0.100")]),
          Group(2, C, [Resource("IPaddr", ["198.18.0.101"], "198.18.0.101")])]
    return Config(node=J, nodes=[J, C], keepalive=0.1, deadtime=0.5, warntime=0.3,
                  initdead=1.0, auto_failback="on", media=[Medium("bcast", "eth0")],
                  groups=gs)


def rendered(ow: owner.Owner, now: float) -> None:
    text = ow.status_text(now, 1.7e9, 1)
    assert text.endswith("\n") and text.isascii()
    assert all("\n" not in v for v in ow.state_fields().values())


message = st.dictionaries(st.sampled_from(FIELDS), value, max_size=12).flatmap(
    lambda f: st.tuples(st.just(f), st.sampled_from(TYPES), st.sampled_from([J, C, "x", ""])))


@settings(max_examples=1500, deadline=None)
@given(st.lists(message, min_size=1, max_size=8), st.lists(value, max_size=3))
def test_messages_and_requests_never_raise(msgs, requests):
    ow = owner.Owner(config(), 0.0, "d1")
    acts = ow.begin(0.0)
    now = 0.0
    for f, t, src in msgs:
        now += 0.05
        f = dict(f, t=t, src=src)
        f.setdefault("_via", "eth0")
        acts += ow.message(f, now)
        acts += ow.tick(now)
    for line in requests:
        acts += ow.request(line, now)
    assert isinstance(acts, list)
    rendered(ow, now)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")))
def test_any_line_from_hb_beat_never_raises(line):
    """hb-watch reads its stdin as lines and gives each to lines.parse_line, then Owner."""
    ow = owner.Owner(config(), 0.0, "d1")
    ow.begin(0.0)
    ow.message(lines.parse_line(line), 0.1)
    ow.message(lines.parse_line("src=caesar _via=eth0 " + line), 0.2)
    rendered(ow, 0.3)


REQUESTS = ["standby", "takeover", "maintenance", "failback", "all", "local", "foreign",
            "on", "off", "inf", "-1", "1e400", "99999999999999999999", "3600", "nan",
            "²", "", " ", "x" * 300]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(REQUESTS) | st.text(max_size=10), max_size=5))
def test_any_fifo_request_does_what_it_says_or_is_refused_in_one_line(words):
    ow = owner.Owner(config(), 0.0, "d1")
    ow.begin(0.0)
    out = ow.request(" ".join(words), 0.1)
    logs = [a for a in out if isinstance(a, actions.Log)]
    assert all("\n" not in a.text for a in logs)
    rendered(ow, 0.2)


@settings(max_examples=500, deadline=None)
@given(st.integers(-5, 5), st.sampled_from(["start", "stop", "status", "monitor", "x"]),
       st.integers(-2**40, 2**40))
def test_agent_results_for_any_group_never_raise(i, action, rc):
    ow = owner.Owner(config(), 0.0, "d1")
    ow.begin(0.0)
    try:
        ow.agent_done(i, action, rc, 0.1)
    except KeyError:
        assert i not in ow.gs          # only hb-watch calls it, for its own groups
    rendered(ow, 0.2)
