"""A live dashboard whose dumpcap dies (issue 12): the supervisor starts it again, /api/status
shows the restart and the gap, and the capture goes on analysing packets."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from tests.web.conftest import logging_wrapper, start_server, wait_status
from tests.web.test_cli import _descendants


def _status(server) -> dict:
    with urllib.request.urlopen(f"{server.base}/api/status?token={server.token}",
                                timeout=10) as r:
        return json.load(r)


def _dumpcaps(pid: int) -> list[int]:
    found = []
    for child in _descendants(pid):
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().strip() == "dumpcap":
                    found.append(child)
        except OSError:
            pass
    return found


def _send_bu(seq: int) -> None:
    from scapy.layers.inet6 import HAO, MIP6MH_BU, IPv6, IPv6ExtHdrDestOpt
    from scapy.sendrecv import send
    send(IPv6(src="::1", dst="::1") / IPv6ExtHdrDestOpt(options=[HAO(hoa="2001:db8:1::100")])
         / MIP6MH_BU(seq=seq, mhtime=100), verbose=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_a_killed_dumpcap_is_restarted_and_the_gap_shown_in_the_status():
    server = start_server("live", "-i", "lo", "--port", "0")
    try:
        wait_status(server, ("running",), timeout=30)
        deadline = time.monotonic() + 20
        while _status(server)["analysed"] < 1 and time.monotonic() < deadline:
            _send_bu(7001)
            time.sleep(0.3)
        before = _status(server)
        assert before["analysed"] >= 1 and before["supervision"]["restarts"] == 0
        assert before["supervision"]["gaps"] == []
        first = _dumpcaps(server.process.pid)
        assert len(first) == 1, first
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        status = _status(server)
        while time.monotonic() < deadline and not (
                status["supervision"]["restarts"] == 1 and status["state"] == "running"):
            time.sleep(0.1)
            status = _status(server)
        assert status["state"] == "running", status
        sup = status["supervision"]
        assert sup["restarts"] == 1 and sup["gaps_total"] == 1, sup
        gap = sup["gaps"][0]
        assert gap["why"] == "dumpcap was killed by SIGKILL" and gap["end"] is not None
        assert gap["lost"] is None                  # killed: it could not say what it lost
        assert _dumpcaps(server.process.pid) not in ([], first)
        # and it analyses again
        analysed = status["analysed"]
        deadline = time.monotonic() + 20
        while _status(server)["analysed"] <= analysed and time.monotonic() < deadline:
            _send_bu(7002)
            time.sleep(0.3)
        def accounted(s: dict) -> bool:
            return s["read"] == s["analysed"] + s["filtered"] + s["malformed"] + s["dropped"]
        after = _status(server)
        while not accounted(after) and time.monotonic() < deadline:   # none left in flight
            time.sleep(0.1)
            after = _status(server)
        assert after["analysed"] > analysed and accounted(after), after
    finally:
        server.stop()


def _capturing_dumpcap(server) -> int | None:
    """The dumpcap the status names as the capture's (a descendant of the dashboard), once it
    runs. Not any dumpcap: `live` first runs a short-lived `dumpcap -d` to check the filter,
    and a test that took that one for the capture found it gone a moment later."""
    supervision = _status(server).get("supervision") or {}
    named = {child["pid"] for child in supervision.get("children", [])
             if child.get("name") == "dumpcap" and child.get("pid")}
    found = [pid for pid in _dumpcaps(server.process.pid) if pid in named]
    return found[0] if found else None


def _live_on_loopback(env: dict | None = None):
    """`mip6mon live -i lo`, running, the capture's dumpcap started (the capture child's)."""
    server = start_server("live", "-i", "lo", "--port", "0", env=env)
    try:
        wait_status(server, ("running",), timeout=30)
        deadline = time.monotonic() + 30
        while _capturing_dumpcap(server) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _capturing_dumpcap(server) is not None, _status(server)
    except BaseException:
        server.stop()
        raise
    return server


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, parent = f.read().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None
    return state, int(parent)


def _alive(pids: set[int]) -> list[int]:
    return [p for p in pids if (stat := _stat(p)) is not None and stat[0] != "Z"]


def _described(pids: list[int]) -> list[str]:
    """Each process as "pid name (parent P, state S)", for a failure's message."""
    described = []
    for pid in pids:
        stat = _stat(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            continue
        if stat is not None:
            described.append(f"{pid} {argv} (parent {stat[1]}, state {stat[0]})")
    return described


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGKILL])
def test_a_live_dashboard_ended_leaves_no_capture_process_behind(ending):
    """live's capture runs in a child (web.procsource.ProcessLiveSource) whose own child is
    dumpcap: the dashboard stopped (SIGTERM) or killed (SIGKILL) takes both with it."""
    server = _live_on_loopback()
    try:
        helpers = _descendants(server.process.pid)
        dumpcap = _capturing_dumpcap(server)
        assert dumpcap in helpers and len(helpers) >= 3, helpers   # + the live child, attacker
        # dumpcap is the capture child's, not the dashboard's own
        assert _stat(dumpcap)[1] != server.process.pid
        os.kill(server.process.pid, ending)
        server.process.wait(15)
        deadline = time.monotonic() + 10
        while _alive(helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(helpers) == [], _described(_alive(helpers))
    finally:
        server.stop()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_a_dead_capture_child_turns_the_state_to_error_never_running():
    """The live capture child itself killed (not its dumpcap, which it restarts): nothing can
    capture any more, so the dashboard says so in one line, and nothing read is unaccounted."""
    server = _live_on_loopback()
    try:
        capture_child = _stat(_capturing_dumpcap(server))[1]
        assert capture_child != server.process.pid
        os.kill(capture_child, signal.SIGKILL)
        status = wait_status(server, ("error",), timeout=30)
        assert status["error"] == "live:lo: the live capture process was killed by SIGKILL"
        assert status["read"] == (status["analysed"] + status["filtered"] + status["malformed"]
                                  + status["dropped"]), status
    finally:
        server.stop()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_the_capture_filter_is_checked_once_not_again_in_the_capture_child(tmp_path):
    """`live` checks the filter with `dumpcap -d` before it serves; the capture child, which
    the check let start, does not run it a second time. Every dumpcap run goes through a
    wrapper on PATH that writes its arguments down, then becomes the real dumpcap."""
    env, log = logging_wrapper(tmp_path, "dumpcap")
    _live_on_loopback(env).stop()
    runs = log.read_text().splitlines()
    checks = [r for r in runs if "-d" in r.split()]
    captures = [r for r in runs if "-d" not in r.split()]
    assert len(checks) == 1, runs
    assert captures, runs          # (a restart would add one: not what this is about)
