"""`--engine pyshark` live and in a replay: a real veth pair in a network namespace, real
dumpcap under real tshark under pyshark, and the dashboard's session over a pyshark source."""
from __future__ import annotations

import os
import queue
import threading
import time

import pytest

from monitor.engines import PysharkLiveSource, PysharkPcapSource, live_source
from tests.dissectors import builders as b
from tests.monitor.test_sources import _next, _reader, veth  # noqa: F401 - the fixture


def _first_event(send, out: queue.Queue, timeout: float = 30.0):
    """Send a HoTI every half second until one comes back as an event: then tshark's
    dumpcap is capturing (PLATFORM-NOTES: a packet sent before it is ready is missed)."""
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        send("hoti", 1)
        sent += 1
        try:
            return _next(out, 0.5), sent
        except queue.Empty:
            continue
    pytest.fail("pyshark's capture never delivered a packet")


@pytest.mark.root
def test_pyshark_live_delivers_the_last_packet_at_once(veth):  # noqa: F811
    src = live_source("mip6va", engine="pyshark")
    assert isinstance(src, PysharkLiveSource)
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    try:
        first, probes = _first_event(veth, out)
        assert first.mobility.name == "HoTI" and first.mobility.flags == frozenset({"P"})
        more = 0
        while True:                          # the probes still on their way
            try:
                _next(out, 2)
                more += 1
            except queue.Empty:
                break
        veth("noise", 3)                     # not mobility: dropped by the capture filter
        veth("bu", 1)
        bu = _next(out, 10)                  # with no packet after it (pyshark's JSON held
        assert bu.mobility.name == "BU"      # the last one back: PromptJsonParser)
        assert bu.mobility.sequence == 100 and bu.outer.home_address == b.HOA
        veth("esp", 1)
        esp = _next(out, 10)
        assert esp.outer.esp is not None and esp.outer.esp.spi == b.FIRST_SPI
    finally:
        src.close()
    thread.join(15)
    assert not thread.is_alive()
    acc = src.accounting
    assert acc.read == 1 + more + 2 and acc.read <= probes + 2
    assert acc.filtered == 0 and acc.malformed == 0


def test_pyshark_replay_session_equals_report(tmp_path):
    """The dashboard's session over the pyshark engine: its panes are the report's."""
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    from monitor.report import analyse, build_report
    from web.session import MonitorSession
    run_scenario(load_scenario("mn-initiated-rr"), tmp_path)
    capture = str(tmp_path / "capture.pcapng")
    source = PysharkPcapSource(capture)
    session = MonitorSession(source, keyring=None, speed=None, capture_path=capture)
    # in a thread of its own, as `mip6mon replay` runs it (pyshark #611: no event loop there)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    thread.join(60)
    try:
        assert session.state == "done", (session.state, session.error)
        expected = build_report(analyse(capture, None))
        status = session.status()
        assert status["read"] == expected["capture"]["packets"]
        assert status["analysed"] + status["malformed"] == \
            expected["capture"]["mobility_packets"]
        assert status["filtered"] == expected["capture"]["filtered"]
        keyed = session.keyed.report()
        assert keyed["findings"] == expected["findings"]
    finally:
        session.close()
    assert "tshark" not in _children_names()


def _children_names() -> list[str]:
    """Commands of this process's live children (pyshark must have ended its tshark)."""
    names = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                with open(f"/proc/{pid}/comm") as f:
                    names.append(f.read().strip())
        except (OSError, IndexError, ValueError):
            continue
    return names


def test_pyshark_replay_stopped_midway_leaves_no_tshark(tmp_path, monkeypatch):
    """Stopping a replay (the dashboard's Ctrl-C) from another thread than the one reading:
    the session stops, and pyshark's tshark is ended and reaped (pyshark #168/#238/#711),
    leaving nothing the collector finalises after its event loop is closed (a transport
    whose __del__ raises "Event loop is closed": pyshark_engine.close_loop)."""
    import gc
    import sys

    from lab.crowd import PARAMETERS, run_crowd
    raised: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(repr(u.exc_value)))
    from web.session import MonitorSession
    run_crowd(tmp_path, **{**{p.name: p.default for p in PARAMETERS}, "nodes": 30,
                           "moves_per_node": 10})
    capture = str(tmp_path / "capture.pcapng")
    source = PysharkPcapSource(capture)
    session = MonitorSession(source, keyring=None, speed=None, capture_path=capture)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while session.status()["analysed"] < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.state == "running" and "tshark" in _children_names()
    session.close()
    thread.join(30)
    assert not thread.is_alive()
    assert session.state == "stopped", (session.state, session.error)
    deadline = time.monotonic() + 10
    while "tshark" in _children_names() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "tshark" not in _children_names()
    del session, source
    gc.collect()
    assert not raised
