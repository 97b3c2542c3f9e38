"""status.render: RUNDIR/status from plain data, byte for byte (no Owner involved)."""

from __future__ import annotations

from hb import status


def view(**kw) -> status.View:
    v = status.View(
        pid=42, me="julius", peer="caesar", st="active", rsc_hold="local", maint_until=None,
        reach=None, stable=True,
        nodes=[status.NodeView("julius", "up", 10.0, 0.0123, 0x5f, "self", 0, "active"),
               status.NodeView("caesar", "up", 12.0, 0.5, None, "unknown", 2, "active",
                               cfd="same", reach=(1, ""), stable=False, dt=1.5)],
        links=[("caesar", "eth0", "up", 12.0)],
        pings=[("198.18.0.1", "dead", 20.0)],
        groups=[status.GroupView(1, True, False, "probing", False, "julius", 30.0, 0, None,
                                 "198.18.0.100", {"nbr": "ok"}),
                status.GroupView(2, True, True, "running", False, "caesar", 31.0, 1, 2,
                                 "198.18.0.101"),
                status.GroupView(3, False, True, "stopped", False, "caesar", 32.0, 0, None,
                                 "198.18.0.102"),
                status.GroupView(4, True, False, "failed", True, "julius", 33.0, 3, None,
                                 "198.18.0.103")],
        history=[(1, 30.0, "stopped", "probing", "recovering groups 1")],
        last=(40.0, "group 1 (198.18.0.100) is running here"))
    for k, val in kw.items():
        setattr(v, k, val)
    return v


def test_render_byte_for_byte():
    text = status.render(view(), now=100.0, wall=1.7e9)
    assert text == (
        "updated 1700000000 pid=42 node=julius\n"
        "self julius st=active rsc_hold=local maintenance=off stable=1\n"
        "node julius up since=1699999910 late=0.0123 gen=5f kind=self lates=0 st=active\n"
        "node caesar up since=1699999912 late=0.5 gen=0 kind=hb lates=2 st=active cfd=same "
        "reach=1 stable=0 dt=1500\n"
        "link caesar eth0 up since=1699999912\n"
        "ping 198.18.0.1 dead since=1699999920\n"
        "group 1 julius starting pref=julius since=1699999930 fails=0 key=198.18.0.100 "
        "nbr=ok\n"
        "group 2 both running pref=caesar since=1699999931 fails=1 restarts=2 "
        "key=198.18.0.101\n"
        "group 3 caesar running pref=caesar since=1699999932 fails=0 key=198.18.0.102\n"
        "group 4 julius stuck pref=julius since=1699999933 fails=3 key=198.18.0.103\n"
        "why 1 1699999930 stopped probing recovering groups 1\n"
        "last 1699999940 group 1 (198.18.0.100) is running here\n")
    assert status.parse(text)["group"][3]["state"] == "stuck"


def test_render_maintenance_and_reach():
    text = status.render(view(maint_until=160.0, reach=(None, "eth1")), now=100.0, wall=1.7e9)
    assert ("self julius st=active rsc_hold=local maintenance=on until=1700000060 reach=? "
            "nolink=eth1 stable=1\n") in text


def test_epoch_keeps_one_offset_while_the_clock_keeps_pace():
    """RUNDIR/status's epoch times: the offset sampled at the first write is kept
    (each write's own delay moved a `since` across a second now and then), and a step
    of the wall clock of more than a second is followed."""
    from hb import status as st
    e = st.Epoch()
    base = 1796317085.9995 - 100.0          # a `since` just below a whole second
    assert int(e.wall(100.0, base)) == 1796317085
    for jitter in (0.0004, 0.002, -0.003, 0.3):
        assert int(e.wall(100.0, base + jitter)) == 1796317085, jitter
    assert e.wall(160.0, base + 0.002) == 160.0 + base
    assert e.wall(170.0, base + 3600.0) == 170.0 + base + 3600.0    # the clock was set
    assert e.wall(171.0, base + 3600.001) == 171.0 + base + 3600.0
