"""The Python dissector held to real tshark, frame by frame.

On every shipped lab scenario (without keys, and with its keyring: decrypted in Python versus
decrypted by tshark), on every public capture in ../shared/captures/ and on hand-made frames
that take each rule to its edge: the frames MOBILITY_FILTER selects are the frames that become
events (or, with no IPv6 header to read, malformed counts), the Info and Protocol strings are
tshark's, a frame is malformed exactly when tshark reports an expert error (its first error is
the text), and Mobility Header types are counted as `tshark -Y mipv6` counts them.
"""
from __future__ import annotations

import collections
import glob
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.all import (
    GRE,
    HAO,
    IP,
    UDP,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6MPAdv,
    ICMPv6NDOptPrefixInfo,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    Raw,
)

from dissectors import capfile
from dissectors.walk import MOBILITY_FILTER
from keys.keyring import load_keyring
from lab.run import run_scenario
from lab.scenario import load_scenario, shipped_scenarios
from monitor.sources import PcapSource
from tests.conftest import SHARED_CAPTURES
from tests.dissectors import builders as b
from tests.dissectors.tshark_oracle import tshark_frames

CAPTURES = SHARED_CAPTURES
SHARED = sorted(glob.glob(str(CAPTURES / "*" / "*.pcap")))


def assert_like_tshark(capture: Path, keyring=None) -> list:
    """Every frame of `capture` as the dissector sees it against tshark's view."""
    theirs = tshark_frames(capture, keyring)
    source = PcapSource(str(capture), keyring=keyring)
    events = list(source.events())
    ours = {e.frame: e for e in events}
    assert set(ours) == {n for n, f in theirs.items() if f.selected and f.ipv6}, capture
    # selected with no IPv6 header to read: counted as malformed, without an event
    assert source.accounting.malformed == len(
        [f for f in theirs.values() if f.selected and f.number not in ours]), capture
    assert source.accounting.read == len(theirs), capture
    for number, event in ours.items():
        frame = theirs[number]
        # tshark's TCP analysis marks a segment seen before in the file; the walk reads one
        # frame at a time (the merged public captures hold the same SYN twice)
        info = frame.info.removeprefix("[TCP Retransmission] ")
        assert (event.protocols, event.info) == (frame.protocols, info), (capture, number)
        assert frame.malformed_matches(event.malformed), (capture, number, event.malformed,
                                                           frame.errors)
        # counts follow tshark: its first MH type is the message's; except a Mobility Header
        # an ICMPv6 error quotes, which tshark dissects but nobody sent
        quoted = "icmpv6:ipv6" in frame.protocols
        assert (event.mobility.mh_type if event.mobility else None) == \
            (frame.mh_types[0] if frame.mh_types and not quoted else None), (capture, number)
    return events


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    out = {}
    for name in shipped_scenarios():
        d = tmp_path_factory.mktemp(f"walk-{name}")
        run_scenario(load_scenario(name), d, seed=3)
        out[name] = d
    return out


@pytest.mark.parametrize("name", shipped_scenarios())
def test_lab_scenarios_without_keys(lab, name):
    events = assert_like_tshark(lab[name] / "capture.pcapng")
    assert all(not esp.decrypted for e in events for esp in e.esp_headers())


@pytest.mark.parametrize("name", shipped_scenarios())
def test_lab_scenarios_decrypted_in_python_as_tshark_decrypts_them(lab, name):
    keyring = load_keyring(lab[name] / "keyring.toml")
    events = assert_like_tshark(lab[name] / "capture.pcapng", keyring)
    esps = [esp for e in events for esp in e.esp_headers()]
    assert all(esp.decrypted for esp in esps) and (esps or name in ("baseline", "rr-privacy"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """All public captures in one file (mergecap -a keeps every record, in order)."""
    assert SHARED, f"no captures under {CAPTURES}"
    merged = tmp_path_factory.mktemp("shared") / "shared.pcapng"
    subprocess.run(["mergecap", "-a", "-w", str(merged), *SHARED], check=True,
                   capture_output=True)
    return merged


def test_shared_captures(shared):
    events = assert_like_tshark(shared)
    assert any(e.malformed for e in events) and any(e.mobility for e in events)


def test_mh_type_counts_equal_tshark_mipv6_on_every_shared_capture(shared):
    """Per file: `tshark -Y mipv6` on the merged file, split back by each file's frames."""
    out = subprocess.run(["tshark", "-n", "-r", str(shared), "-Y", "mipv6", "-T", "fields",
                          "-e", "frame.number", "-e", "mip6.mhtype"], capture_output=True,
                         text=True, check=True).stdout
    theirs = {int(n): int(t.split(",")[0]) for n, t in (line.split("\t")
                                                        for line in out.splitlines())}
    ours = {e.frame: e.mobility.mh_type for e in PcapSource(str(shared)).events()
            if e.mobility}
    offset = 0
    for path in SHARED:
        frames = range(offset + 1, offset + capfile.count_records(path) + 1)
        assert collections.Counter(ours[f] for f in frames if f in ours) == \
            collections.Counter(theirs[f] for f in frames if f in theirs), path
        offset += len(frames)
    assert len(theirs) >= 30            # every MH type of the zeek and tcpdump vectors


# --- hand-made frames: each rule at its edge ------------------------------------------------

A, B = b.COA, b.CN


def ip(nh: int, payload: bytes, plen: int | None = None) -> bytes:
    return bytes(IPv6(src=A, dst=B, nh=nh, plen=len(payload) if plen is None else plen)) \
        + payload


def mh(mh_type: int, body: bytes, hlen: int | None = None) -> bytes:
    size = 6 + len(body)
    hlen = (size + 7) // 8 - 1 if hlen is None else hlen
    data = bytes([59, hlen, mh_type, 0, 0, 0]) + body
    return data + bytes(max(0, (hlen + 1) * 8 - len(data)))


BU_BODY = struct.pack("!HHH", 7, 0xC000, 10)
BU = mh(5, BU_BODY)
HAO_HEADER = bytes(IPv6ExtHdrDestOpt(nh=135, options=[HAO(hoa=b.HOA)]))
HAO_UDP = bytes(IPv6ExtHdrDestOpt(nh=17, options=[HAO(hoa=b.HOA)]))


def udp(sport: int, dport: int, length: int, payload: bytes, checksum: int = 1) -> bytes:
    return struct.pack("!HHHH", sport, dport, length, checksum) + payload


FRAMES = {
    "no next header": ip(59, b""),
    "payload length past the frame": ip(135, BU, plen=len(BU) + 16),
    "trailing octets": ip(135, BU + bytes(8), plen=len(BU)),
    "IPv6 header of 30 octets": ip(135, BU)[:30],
    "dest options past the packet": ip(60, bytes([135, 5]) + bytes(6) + BU),
    "HAO of length 8": ip(60, bytes([135, 1, 201, 8]) + bytes(8) + bytes([1, 2, 0, 0]) + BU),
    "PadN past its header": ip(60, bytes([135, 0, 1, 9, 0, 0, 0, 0]) + BU),
    "HAO": ip(60, HAO_HEADER + BU),
    "HAO in hop-by-hop": ip(0, bytes(IPv6ExtHdrHopByHop(nh=135, options=[HAO(hoa=b.HOA)]))
                            + BU),
    "HAO whose address runs past the packet": ip(60, bytes([17, 4, 1, 0, 201, 16])
                                                   + bytes(16) + bytes([201, 16]) + bytes(12)),
    "RH2 of length 0": ip(43, bytes([135, 0, 2, 1, 0, 0, 0, 0]) + BU),
    "RH2 segments left 0": ip(43, bytes([135, 2, 2, 0, 0, 0, 0, 0]) + bytes(16) + BU),
    "RH2 of length 4": ip(43, bytes([135, 4, 2, 1, 0, 0, 0, 0]) + bytes(32) + BU),
    "RH0": ip(43, bytes([135, 2, 0, 1, 0, 0, 0, 0]) + bytes(16) + BU),
    "BU with Header Len 0 (RFC 6275 9.2)": ip(135, mh(5, BU_BODY, hlen=0)[:8]),
    "BU longer than the packet": ip(135, mh(5, BU_BODY, hlen=3)[:16]),
    "MH type 30": ip(135, mh(30, bytes(10))),
    "MH type 8": ip(135, mh(8, bytes(10))),
    "option past the options": ip(135, mh(5, BU_BODY + bytes([3, 30]) + bytes(6))),
    "Alternate CoA of length 4": ip(135, mh(5, BU_BODY + bytes([3, 4]) + bytes(4))),
    "Nonce Indices of length 2": ip(135, mh(5, BU_BODY + bytes([4, 2, 0, 1]) + bytes(6))),
    "Refresh Advice of length 4": ip(135, mh(5, BU_BODY + bytes([2, 4, 0, 1, 2, 3])
                                             + bytes(4))),
    "MH of 4 octets": ip(135, bytes([59, 0, 5, 0])),
    "HoT shorter than its fields": ip(135, mh(3, bytes(10), hlen=1)),
    "ESP of 6 octets": ip(50, bytes(6)),
    "ESP SPI 0": ip(50, bytes(40)),
    "MPS of 4 octets": ip(58, bytes([146, 0, 0, 0])),
    "MPA": bytes(IPv6(src=A, dst=B) / ICMPv6MPAdv(id=3)
                 / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::")),
    "MPA option length 0": ip(58, bytes([147, 0, 0, 0, 0, 3, 0, 0, 3, 0]) + bytes(6)),
    "MPA prefix option too short": ip(58, bytes([147, 0, 0, 0, 0, 3, 0, 0, 3, 2])
                                      + bytes(14)),
    "Parameter Problem quoting a BU with HAO": bytes(
        IPv6(src=B, dst=A) / ICMPv6ParamProblem(code=2, ptr=42) / Raw(ip(60, HAO_HEADER + BU))),
    "Parameter Problem quoting half of it": bytes(
        IPv6(src=B, dst=A) / ICMPv6ParamProblem(code=2, ptr=42)
        / Raw(ip(60, HAO_HEADER + BU)[:60])),
    "fragment of a BU": bytes(IPv6(src=A, dst=B) / IPv6ExtHdrFragment(nh=135, m=1, id=5)
                              / Raw(BU)),
    "IPv6 in IPv6, UDP": bytes(IPv6(src=A, dst=B) / IPv6(src=b.HOA, dst=B)
                               / UDP(sport=1000, dport=2000) / Raw(b"hello")),
    "IPv6 in IPv6, inner version 0": ip(41, bytes(20)),
    "ESP in UDP 4500 (RFC 3948)": bytes(IPv6(src=A, dst=B) / UDP(sport=4500, dport=4500)
                                        / Raw(bytes([0, 0, 1, 0, 0, 0, 0, 1]) + bytes(32))),
    "MH over UDP 5436 (DSMIPv6)": bytes(IPv6(src=A, dst=B) / UDP(sport=5436, dport=5436)
                                        / Raw(BU)),
    "UDP length 4": ip(60, HAO_UDP + udp(1, 2, 4, b"abcd")),
    "UDP length past the packet": ip(60, HAO_UDP + udp(1, 2, 100, b"abcd")),
    "UDP checksum 0": ip(60, HAO_UDP + udp(1, 2, 12, b"abcd", 0)),
    "DNS shorter than its header": ip(60, HAO_UDP + udp(1, 53, 11, b"abc")),
    "echo request with HAO": bytes(IPv6(src=A, dst=B) / b.hao(b.HOA)
                                   / ICMPv6EchoRequest(id=0x1234, seq=3)),
    "unknown next header": ip(253, b"abcd"),
    # IPv6 inside IPv4: 6in4 (RFC 4213), GRE (RFC 2784), Teredo (RFC 4380), VXLAN (RFC 7348)
    "6in4": bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=41) / Raw(ip(60, HAO_HEADER + BU))),
    "GRE": bytes(IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x86DD)
                 / Raw(ip(60, HAO_HEADER + BU))),
    "Teredo": bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=3544, dport=40000)
                    / Raw(ip(60, HAO_HEADER + BU))),
    "VXLAN": bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=40000, dport=4789)
                   / Raw(bytes([8, 0, 0, 0, 0, 0, 1, 0])) / Ether(type=0x86DD)
                   / Raw(ip(60, HAO_HEADER + BU))),
}
CUT = {   # (octets kept, octets on the wire): the snap length cut them
    "MH cut by the snap length": (ip(60, HAO_HEADER + BU + bytes(8))[:70], 40 + 24 + 24),
    "IPv6 header cut by the snap length": (ip(135, BU)[:30], 40 + 16),
    "ESP cut by the snap length": (ip(50, bytes([0, 0, 1, 0, 0, 0, 0, 1]) + bytes(40))[:44],
                                   40 + 48),
}


def write_raw(path: Path, frames: list[tuple[bytes, int]]) -> Path:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for n, (data, length) in enumerate(frames):
        out += struct.pack("<IIII", 1700000000 + n, 0, len(data), length) + data
    path.write_bytes(bytes(out))
    return path


def test_hand_made_frames(tmp_path):
    frames = [(f, len(f)) for f in FRAMES.values()] + list(CUT.values())
    events = assert_like_tshark(write_raw(tmp_path / "edge.pcap", frames))
    names = list(FRAMES) + list(CUT)
    by_name = {names[e.frame - 1]: e for e in events}
    # a few of them, spelled out
    assert by_name["BU with Header Len 0 (RFC 6275 9.2)"].malformed
    assert by_name["HAO of length 8"].malformed == "Home Address: Invalid length (8 bytes)"
    assert by_name["Parameter Problem quoting a BU with HAO"].mobility is None   # quoted
    assert by_name["ESP in UDP 4500 (RFC 3948)"].outer.esp.spi == 0x100
    assert "MH over UDP 5436 (DSMIPv6)" not in by_name


def test_prefilter_removes_only_frames_tshark_does_not_select(tmp_path):
    """The octet pre-filter never drops a frame MOBILITY_FILTER would select: with and
    without it the events and the accounting are the same, on tricky frames and on every
    shared capture."""
    from scapy.all import IP, TCP, Ether
    from scapy.all import ICMPv6EchoRequest as Echo
    bu = IPv6(src=b.COA, dst=b.CN) / b.pseudo_option(b.PHOA) / b.MIP6MH_BU(seq=1, flags=0)
    tricky = [
        Ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=41) / bytes(b.hoti_with_p()),
        Ether() / IPv6(src=b.COA, dst=b.HA) / UDP(sport=4500, dport=4500)
        / bytes(b.home_bu_tunnel(b.FIRST_SPI, 5)[b.ESP]),
        Ether() / IPv6(src=b.CN, dst=b.COA) / ICMPv6ParamProblem(code=2, ptr=42) / bytes(bu),
        Ether() / IPv6(src=b.CN, dst=b.COA) / Echo(),
        Ether() / IPv6(src=b.CN, dst=b.COA) / TCP(sport=1, dport=2),
        Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2),
        Ether() / bu,
    ]
    path = b.write(tmp_path / "tricky.pcapng", tricky)
    merged = tmp_path / "shared.pcapng"
    subprocess.run(["mergecap", "-a", "-w", str(merged), *SHARED], check=True)
    # a plain pcap file is pre-filtered by its reader (capfile.records), pcapng by the dissector
    plain = tmp_path / "tricky.pcap"
    subprocess.run(["editcap", "-F", "pcap", str(path), str(plain)], check=True)
    for capture in (path, merged, plain, *SHARED):
        fast, slow = PcapSource(str(capture)), PcapSource(str(capture), prefilter=False)
        assert list(fast.events()) == list(slow.events()), capture
        assert fast.accounting == slow.accounting
    selected = [f.number for f in tshark_frames(path).values() if f.selected]
    assert [e.frame for e in assert_like_tshark(path)] == selected == [1, 2, 3, 7]


def test_mobility_filter_is_valid_tshark():
    run = subprocess.run(["tshark", "-Y", MOBILITY_FILTER, "-r", "/dev/null"],
                         capture_output=True, text=True)
    assert "isn't a valid display filter" not in run.stderr
