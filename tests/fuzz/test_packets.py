"""Hostile packets in a well-framed capture, driven by hypothesis (issue 12): every packet is
analysed, filtered out or counted malformed (never lost, never a traceback), mip6mon reads the
Mobility Header messages tshark reads, on a file and live."""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.captures import mutated_packets
from tests.fuzz.conftest import base_capture
from tests.fuzz.runner import check_report


def _written(data: bytes) -> Path:
    f = tempfile.NamedTemporaryFile(prefix="mip6mon-fuzz-", suffix=".pcapng", delete=False)
    with f:
        f.write(data)
    return Path(f.name)


def accounted(capture: dict) -> None:
    """read = analysed + filtered + malformed + dropped: nothing unaccounted."""
    assert capture["packets"] == (capture["mobility_packets"] + capture["filtered"]
                                  + capture["dropped"]), capture


@settings(max_examples=25)
@given(st.data())
def test_hostile_packets_are_each_analysed_filtered_or_malformed(data):
    capture = data.draw(mutated_packets(base_capture()))
    path = _written(capture.to_bytes())
    try:
        run = check_report(path)
        assert run.code == 0, (run.code, run.stderr)          # the framing is whole
        accounted(run.report["capture"])
    finally:
        path.unlink()


def test_an_h_flagged_bu_with_header_len_0_is_a_finding_and_binds_nothing(tmp_path):
    """RFC 6275 9.2: Header Len below the BU's minimum (12 octets: Header Len >= 1). tshark
    reads it as a BU (not malformed), mip6mon too, and says a receiver discards it."""
    from scapy.layers.inet6 import HAO, MIP6MH_BA, MIP6MH_BU, IPv6, IPv6ExtHdrDestOpt
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    coa, ha, hoa = "2001:db8:2::10", "2001:db8:1::1", "2001:db8:1::100"
    bu = (Ether() / IPv6(src=coa, dst=ha) / IPv6ExtHdrDestOpt(options=[HAO(hoa=hoa)])
          / MIP6MH_BU(seq=7, flags=0x60, mhtime=100))                 # A, H
    short = (Ether() / IPv6(src=coa, dst=ha) / IPv6ExtHdrDestOpt(options=[HAO(hoa=hoa)])
             / MIP6MH_BU(seq=8, flags=0x60, mhtime=100, len=0))
    ba = Ether() / IPv6(src=ha, dst=coa) / MIP6MH_BA(seq=8, mhtime=100)
    path = tmp_path / "short-bu.pcap"
    wrpcap(str(path), [bu, short, ba])
    run = check_report(path)
    report = run.report
    assert run.code == 0 and report["messages"]["BU"] == 2
    assert report["capture"]["malformed"] == 0
    accounted(report["capture"])
    short_len = [f for f in report["findings"] if f["kind"] == "mh-header-len-short"]
    assert [f["frame"] for f in short_len] == [2], report["findings"]




@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_hostile_packets_live_are_counted_as_the_same_file_counts_them():
    """The live path (dumpcap on a veth, no capture filter) counts each hostile packet as
    `report` does the same frames in a file: analysed, filtered or malformed, none lost."""
    from dissectors.supervisor import Backoff
    from monitor.sources import LiveSource
    from monitor.stream import EventStream
    from tests.fuzz.captures import Capture, frames
    from tests.veth import FrameSender, add_pair, ip

    ns = f"mip6fuzz{os.getpid()}"

    ip("link", "del", "mip6fa", check=False)
    ip("netns", "add", ns)
    sender = source = thread = None
    try:
        add_pair("mip6fa", "mip6fb", ns)
        sender = FrameSender(ns, "mip6fb")
        source = LiveSource("mip6fa", bpf="", backoff=Backoff(give_up=10.0))

        class Nothing:
            def packet(self, _event):
                pass
        stream = EventStream(source, [Nothing()])
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        assert source.ready.wait(10)
        acc = source.accounting
        base = base_capture()

        @settings(max_examples=int(os.environ.get("MIP6MON_FUZZ_LIVE", "4")))
        @given(st.data())
        def one_capture(data):
            capture: Capture = data.draw(mutated_packets(base, live=True))
            sent = frames(capture)
            before = (acc.read, acc.analysed, acc.filtered, acc.malformed, acc.dropped)
            sender.send(sent)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                    acc.read - before[0] < len(sent) or acc.unaccounted()):
                time.sleep(0.02)
            live = [now - then for now, then in zip(
                (acc.read, acc.analysed, acc.filtered, acc.malformed, acc.dropped), before,
                strict=True)]
            path = _written(capture.to_bytes())
            try:
                report = check_report(path).report
            finally:
                path.unlink()
            cap = report["capture"]
            expect = [cap["packets"], cap["mobility_packets"] - cap["malformed"],
                      cap["filtered"], cap["malformed"], cap["dropped"]]
            assert live == expect, (capture, live, expect)
            assert source.supervision()["gaps"] == [] and source.recovering is None

        one_capture()
        assert acc.kernel_dropped == 0
    finally:
        if source is not None:
            source.close()
        if thread is not None:
            thread.join(10)
        if sender is not None:
            sender.close()
        ip("link", "del", "mip6fa", check=False)
        ip("netns", "del", ns, check=False)
