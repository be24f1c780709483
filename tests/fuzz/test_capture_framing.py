"""Damaged pcap and pcapng framing, driven by hypothesis (issue 13): mip6mon reads what tshark
reads, says where and why it stopped, and never fails silently, loudly or forever."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.captures import EPB, damaged_pcap, damaged_pcapng, frames_of, pcap_from
from tests.fuzz.conftest import base_capture
from tests.fuzz.runner import capfile_view, check_report, tshark_view


def _written(data: bytes, suffix: str) -> Path:
    f = tempfile.NamedTemporaryFile(prefix="mip6mon-fuzz-", suffix=suffix, delete=False)
    with f:
        f.write(data)
    return Path(f.name)


def _same_reading(data: bytes, suffix: str) -> None:
    path = _written(data, suffix)
    try:
        ref, ours = tshark_view(path), capfile_view(path)
        if ref.plain:
            assert ours.frames == ref.frames, (ours, ref)
            assert ours.damaged == ref.damaged, (ours, ref)
        else:     # wiretap guessed a pcap variant from damaged first records: still not silent
            assert ours.damaged or ref.damaged
    finally:
        path.unlink()


def test_the_base_captures_are_whole():
    base = base_capture()
    for capture, suffix in ((base, ".pcapng"), (pcap_from(base), ".pcap")):
        path = _written(capture.to_bytes(), suffix)
        try:
            ref = tshark_view(path)
            assert (ref.frames, ref.damaged) == (frames_of(capture), False)
            assert sum(ref.messages.values()) >= 10          # MH of several kinds to count
            assert capfile_view(path) == type(ref)(ref.frames, False, {})
        finally:
            path.unlink()


@given(st.data())
def test_damaged_pcapng_framing_reads_as_tshark_reads_it(data):
    capture = data.draw(damaged_pcapng(base_capture()))
    _same_reading(capture.to_bytes(), ".pcapng.gz" if capture.compress else ".pcapng")


@given(st.data())
def test_damaged_pcap_framing_reads_as_tshark_reads_it(data):
    capture = data.draw(damaged_pcap(pcap_from(base_capture())))
    _same_reading(capture.to_bytes(), ".pcap.gz" if capture.compress else ".pcap")


@settings(max_examples=12)
@given(st.data())
def test_report_on_a_damaged_capture_is_never_silent(data):
    base = base_capture()
    capture = data.draw(st.one_of(damaged_pcapng(base), damaged_pcap(pcap_from(base))))
    path = _written(capture.to_bytes(), ".cap")
    try:
        check_report(path)
    finally:
        path.unlink()


def test_a_file_cut_at_every_offset_reads_its_whole_frames():
    """Not sampled: every offset of a small capture, both formats, against the file's own
    structure (the sampled tests above hold cuts against tshark): the frames whose unit ends
    before the cut, and damage unless the cut falls between two units."""
    from dataclasses import replace
    base = base_capture()
    small = replace(base, units=base.units[:8])
    for capture in (small, pcap_from(small)):
        whole = capture.to_bytes()
        ends, at, frames_before = {}, 0, 0
        for i, unit in enumerate(capture.units):
            at += len(replace(capture, units=[unit]).to_bytes()) if capture.kind == "pcapng" \
                else len(unit.header) + len(unit.body)
            frames_before += 1 if (unit.btype == EPB if capture.kind == "pcapng" else i) else 0
            ends[at] = frames_before
        assert at == len(whole)
        suffix = "." + capture.kind
        for cut in range(len(whole)):
            path = _written(whole[:cut], suffix)
            try:
                view = capfile_view(path)
            finally:
                path.unlink()
            whole_frames = max([n for end, n in ends.items() if end <= cut], default=0)
            assert (view.frames, view.damaged) == (whole_frames, cut not in ends), cut
