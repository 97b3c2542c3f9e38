"""Shared fixtures: the source tree on the path, and the `lab` of namespaces."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ["PYTHONPATH"] = os.path.join(ROOT, "lib") + (
    ":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ["PATH"] = os.path.join(ROOT, "bin") + ":" + os.environ["PATH"]

from netns import Lab  # noqa: E402
from smtpserver import Smtpd  # noqa: E402


@pytest.fixture
def lab(request):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with Lab(request.node.name.replace("test_", "")[:4]) as lab:
        yield lab


@pytest.fixture
def smtpd():
    """A plain SMTP server on loopback that keeps what it receives."""
    s = Smtpd()
    s.start()
    yield s
    s.stop()
