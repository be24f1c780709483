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
# The project's shared folder (../shared from the project root: the spec and real captures
# nobody on the project made); MIP6MON_SHARED / MIP6MON_CAPTURES point elsewhere.
PROJECT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MIP6MON_SHARED") or next(
    (p for p in (PROJECT.parent / "shared", Path("/work/shared")) if p.is_dir()),
    PROJECT.parent / "shared"))
SHARED_CAPTURES = Path(os.environ.get("MIP6MON_CAPTURES") or SHARED / "captures")


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


# a real redis-server on a private unix socket, stopped at teardown (tests/redis_server.py)
from tests.redis_server import redis_server  # noqa: E402,F401


@pytest.fixture
def topology():
    """The netns lab's namespaces and veths (root; the lock above keeps other suites off)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    from lab import netns
    netns.build_topology()
    yield
    netns.down()
