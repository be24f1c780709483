"""The common chains (walk.common_event) make the general walk's event, field for field, or
leave the frame to it: on every shipped scenario, the shared captures, lab crowds and
generated frames (every chain the common path takes, and the same frames cut, flipped and
given wrong lengths). A common event that differed from the general walk's would change a
report; one the common path takes that the general walk filters would be counted twice."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.dissect import Dissector
from dissectors.walk import Walker, common_event, event
from lab.run import run_scenario
from lab.scenario import load_scenario, shipped_scenarios
from tests.conftest import SHARED_CAPTURES
from tests.dissectors.crowd import write_crowd


def _taken(records: list[Record]) -> int:
    """How many of `records` the common path takes; each the general walk's event."""
    walker = Walker()
    taken = 0
    for rec in records:
        fast = common_event(rec, "sensor")
        walk = walker.frame(rec.linktype, rec.data, rec.length)
        if fast is None:
            continue
        taken += 1
        assert walk.selected and walk.layers, rec
        assert fast == event(walk, rec.number, rec.time, rec.length, rec.comments,
                             "sensor"), rec
    return taken


def _records(path: Path) -> list[Record]:
    with capfile.open_capture(str(path)) as f:
        return list(capfile.records(f))


@pytest.mark.parametrize("name", shipped_scenarios())
def test_common_chains_are_the_general_walk_on_shipped_scenarios(name, tmp_path):
    run_scenario(load_scenario(name), tmp_path)
    records = _records(tmp_path / "capture.pcapng")
    taken = _taken(records)
    # the lab's mobility traffic is what the common path is for
    assert taken >= len(records) // 2, (taken, len(records))


def test_common_chains_are_the_general_walk_on_shared_captures():
    captures = sorted(p for p in SHARED_CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert captures
    taken = sum(_taken(_records(path)) for path in captures)
    assert taken > 100          # zeek's ESP capture, tcpdump's and zeek's mobility frames


@pytest.mark.parametrize("nodes, seed", [(7, 3), (30, 11)])
def test_common_chains_are_the_general_walk_on_lab_crowds(nodes, seed, tmp_path):
    run_scenario(load_scenario(str(write_crowd(tmp_path, nodes, seed))), tmp_path)
    records = _records(tmp_path / "capture.pcapng")
    assert _taken(records) >= len(records) * 3 // 4


# --- generated frames --------------------------------------------------------------------

def _ipv6(nh: int, payload: bytes, src: bytes, dst: bytes, plen_delta: int = 0) -> bytes:
    return struct.pack("!IHBB", 0x60000000, max(len(payload) + plen_delta, 0) & 0xFFFF, nh,
                       64) + src + dst + payload


def _options(nh: int, options: bytes) -> bytes:
    """A destination options header: its options padded (PadN) to a multiple of 8."""
    pad = -(len(options) + 2) % 8
    options += b"\x00" if pad == 1 else bytes([1, pad - 2]) + bytes(pad - 2) if pad else b""
    return bytes([nh, (len(options) + 2) // 8 - 1]) + options


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


ADDRESSES = st.sampled_from([bytes(16), bytes.fromhex("20010db8000100000000000000000001"),
                             bytes.fromhex("20010db8000200000000000000000abc"),
                             bytes.fromhex("fe800000000000000000000000000001")])
MH_OPTIONS = st.lists(st.one_of(
    st.just(b"\x00"),                                             # Pad1
    st.binary(max_size=6).map(lambda d: bytes([1, len(d)]) + d),  # PadN
    st.tuples(st.sampled_from([2, 3, 4, 5, 18, 99]), st.binary(max_size=20)).map(
        lambda t: bytes([t[0], len(t[1])]) + t[1])), max_size=4)


@st.composite
def _frames(draw) -> Record:
    # half of them as a common frame would be (then cut, flipped or lengthened, or not), half
    # with anything that leaves the common path
    clean = draw(st.booleans())

    def pick(common: list, other: list):
        return draw(st.sampled_from(common if clean else common + other))

    src, dst = draw(ADDRESSES), draw(ADDRESSES)
    home, routed = draw(ADDRESSES), draw(ADDRESSES)
    upper = draw(st.sampled_from(["mh", "mh", "esp", "udp", "icmpv6"]))
    if upper == "mh":
        nh = 135
        mh_type = draw(st.integers(0, 12))
        body = draw(st.binary(max_size=24)) + b"".join(draw(MH_OPTIONS))
        body += bytes(-(len(body) + 6) % 8)
        header_len = (len(body) + 6) // 8 - 1 + draw(st.sampled_from([0, 0, 0, -1, 1]))
        mh = bytes([59, header_len & 0xFF, mh_type, 0, 0, 0]) + body
        if draw(st.booleans()):                       # a right checksum, with HAO and RH2 both
            pseudo = src + dst + struct.pack("!I3xB", len(mh), 135)
            mh = mh[:4] + struct.pack("!H", _checksum(pseudo + mh)) + mh[6:]
        payload = mh
    elif upper == "esp":
        nh, payload = 50, struct.pack("!II", draw(st.integers(0, 2**32 - 1)), 1) + \
            draw(st.binary(max_size=40))
    elif upper == "udp":
        nh = 17
        data = draw(st.binary(max_size=40))
        sport = pick([7000], [4500, 3544, 53])
        dport = draw(st.integers(1, 9000))
        payload = struct.pack("!HHHH", sport, dport, 8 + len(data) + pick([0], [1, -1, -8]),
                              pick([1, 0xBEEF], [0])) + data
    else:
        nh, payload = 58, bytes([draw(st.sampled_from([1, 128, 146, 147])), 0, 0, 0]) + \
            bytes(8)
    for header in reversed(draw(st.lists(st.sampled_from(
            ["hao", "rh2", "pseudo"] if clean else
            ["hao", "rh2", "pseudo", "pad", "rh0", "hop", "other-option"]), max_size=3))):
        if header == "rh2" or header == "rh0":
            rtype = 2 if header == "rh2" else 0
            payload = bytes([nh, 2, rtype, 1, 0, 0, 0, 0]) + routed + payload
            nh = 43
        else:
            option = {"hao": b"\xc9\x10" + home, "pseudo": b"\xfe\x10" + home,
                      "pad": b"\x01\x02\x00\x00", "other-option": b"\x04\x01\x04"}.get(header,
                                                                                   b"")
            payload = _options(nh, option) + payload if header != "hop" else \
                _options(nh, b"\x05\x02\x00\x00") + payload
            nh = 0 if header == "hop" else 60
    frame = _ipv6(nh, payload, src, dst, pick([0], [-3, 5]))
    for _ in range(draw(st.integers(0, 2))):            # IPv6-in-IPv6 (RFC 2473)
        frame = _ipv6(41, frame, draw(ADDRESSES), draw(ADDRESSES))
    link = pick(["raw", "eth", "ipv6"], ["vlan", "sll"])
    linktype = {"raw": 101, "eth": 1, "vlan": 1, "ipv6": 229, "sll": 113}[link]
    if link == "eth":
        frame = bytes(12) + b"\x86\xdd" + frame
    elif link == "vlan":
        frame = bytes(12) + b"\x81\x00\x00\x05\x86\xdd" + frame
    elif link == "sll":
        frame = bytes(14) + b"\x86\xdd" + frame
    length = len(frame)
    how = draw(st.sampled_from(["whole", "whole", "cut", "flip", "trailer"]))
    at = draw(st.integers(0, max(len(frame) - 1, 0)))
    if how == "cut":                        # the snap length, or the packet itself
        frame = frame[:at]
        length = draw(st.sampled_from([length, len(frame)]))
    elif how == "flip":
        frame = frame[:at] + bytes([frame[at] ^ (1 << draw(st.integers(0, 7)))]) + \
            frame[at + 1:]
    elif how == "trailer":                  # Ethernet padding, an FCS
        frame += draw(st.binary(min_size=1, max_size=8))
        length = len(frame)
    return Record(1, linktype, frame, length, 1.5, draw(st.sampled_from(
        [(), ("path=mn-ha",), ("note", "path=mn-cn")])))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_common_chains_are_the_general_walk_on_generated_frames(rec):
    _taken([rec])


def test_generated_frames_take_the_common_path_and_leave_it():
    """The generator above reaches both sides: frames the common path takes (of every kind),
    and frames it leaves to the general walk."""
    taken: set[str] = set()
    left = 0

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_frames())
    def probe(rec):
        nonlocal left
        fast = common_event(rec)
        if fast is None:
            left += 1
        else:
            taken.add(fast.protocols.rsplit(":", 1)[-1])
    probe()
    assert {"mipv6", "esp", "data"} <= taken and left


def test_the_dissector_counts_common_and_general_frames_alike():
    """Dissector.events over common and general frames: every frame counted once (the
    malformed one with no IPv6 header to make an event of by the dissector, the events'
    by the event stream)."""
    frames = [Record(n, 101, _ipv6(135, bytes([59, 1, 1, 0, 0, 0]) + bytes(10),
                                   bytes(16), bytes(16)), 0, 1.0) for n in (1, 2)]
    frames.append(Record(3, 101, frames[0].data[:30], 0, 1.0))   # no whole IPv6 header: malformed
    frames.append(Record(4, 101, _ipv6(17, struct.pack("!HHHH", 1, 2, 8, 1), bytes(16),
                                       bytes(16)), 0, 1.0))            # plain UDP: filtered
    acc = Accounting()
    events = list(Dissector(acc, prefilter=False).events(frames))
    assert [e.frame for e in events] == [1, 2]
    assert (acc.read, acc.filtered, acc.malformed) == (4, 1, 1)
    assert [e.info for e in events[:2]] == ["Home Test Init"] * 2
