"""The namespace fixture itself: two hosts ping each other over the bridge."""


def test_two_namespaces_ping_over_the_bridge(lab):
    a = lab.host("a", "198.18.0.1/24")
    b = lab.host("b", "198.18.0.2/24")
    r = a.run(["ping", "-c", "1", "-W", "2", "198.18.0.2"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b.has_addr("198.18.0.2")


def test_cut_cable_loses_carrier(lab):
    a = lab.host("a", "198.18.0.1/24")
    lab.host("b", "198.18.0.2/24")
    lab.cut(a)
    r = a.run(["ping", "-c", "1", "-W", "1", "198.18.0.2"], check=False)
    assert r.returncode != 0
    assert "NO-CARRIER" in a.run(["ip", "link", "show", "eth0"]).stdout
    lab.mend(a)


def test_serial_pair_carries_bytes(lab):
    import os
    import time
    a, b = lab.serial_pair()
    fa = os.open(a, os.O_RDWR | os.O_NOCTTY)
    fb = os.open(b, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    os.write(fa, b">>>\nt=status\n<<<\n")
    data = b""
    deadline = time.monotonic() + 3
    while b"<<<" not in data and time.monotonic() < deadline:
        try:
            data += os.read(fb, 100)
        except BlockingIOError:
            time.sleep(0.01)
    os.close(fa)
    os.close(fb)
    assert data == b">>>\nt=status\n<<<\n"
