"""Fixtures for the whole suite.

Tests marked `root` build network namespaces and veth pairs whose names are global to the
machine (lab/netns.py, tests/monitor/test_sources.py). Two suites run at once on one machine
(two checkouts, a developer and a CI job) would tear down each other's links, so such tests
hold an exclusive lock on a file in /tmp for their duration.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

NETNS_LOCK = "/tmp/mip6mon-netns.lock"
# Real captures nobody on the project made (../shared/captures from the project root on the
# machines we run on); MIP6MON_CAPTURES points elsewhere.
SHARED_CAPTURES = Path(os.environ.get("MIP6MON_CAPTURES", "/work/shared/captures"))


@pytest.fixture(autouse=True)
def _one_netns_user_at_a_time(request):
    if request.node.get_closest_marker("root") is None:
        yield
        return
    with open(NETNS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
