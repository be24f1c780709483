"""dissectors.digest: two observations of one packet digest alike, two packets never.

Built with scapy, independently of the digest's own header walk."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    ESP,
    HAO,
    MIP6MH_BU,
    UDP,
    Ether,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    Raw,
)
from scapy.layers.l2 import CookedLinux

from dissectors.digest import packet_digest

ETHERNET, RAW, SLL = 1, 101, 113
HOA, HA, COA, CN = "2001:db8:1::100", "2001:db8:1::1", "2001:db8:2::100", "2001:db8:3::5"
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def bu(hlim: int = 64, seq: int = 7):
    """A Home BU with a HAO (RFC 6275 6.1.7, 6.3)."""
    return (IPv6(src=COA, dst=HA, hlim=hlim) / IPv6ExtHdrDestOpt(options=[HAO(hoa=HOA)])
            / MIP6MH_BU(seq=seq, mhtime=100))


def data(hlim: int = 64, payload: bytes = b"hello"):
    """Data from a correspondent to the home address (what the home agent tunnels)."""
    return IPv6(src=CN, dst=HOA, hlim=hlim) / UDP(sport=4000, dport=4001) / Raw(payload)


def tunnelled(inner, hlim: int = 64, options: bool = False):
    """RFC 2473 / RFC 6275 10.4.2: the home agent's tunnel to the care-of address."""
    outer = IPv6(src=HA, dst=COA, hlim=hlim)
    if options:
        # RFC 2473 5.1: a Tunnel Encapsulation Limit option in a destination options header
        outer = outer / IPv6ExtHdrDestOpt(options=[])
    return outer / inner


def eth(packet, src: str = MAC_A, dst: str = MAC_B) -> bytes:
    return bytes(Ether(src=src, dst=dst) / packet)


def test_the_same_packet_on_two_links_and_link_types_digests_alike():
    packet = bu()
    one = packet_digest(ETHERNET, eth(packet))
    assert one is not None and len(one) == 16
    assert packet_digest(ETHERNET, eth(packet, MAC_B, MAC_A)) == one     # the other end
    assert packet_digest(RAW, bytes(packet)) == one
    assert packet_digest(SLL, bytes(CookedLinux(proto=0x86DD) / packet)) == one


def test_hop_limit_aside():
    assert packet_digest(ETHERNET, eth(data(hlim=64))) == \
        packet_digest(ETHERNET, eth(data(hlim=63)))


def test_with_or_without_the_tunnel_header_one_path_adds():
    plain = packet_digest(ETHERNET, eth(data(hlim=64)))
    assert packet_digest(ETHERNET, eth(tunnelled(data(hlim=63)))) == plain
    assert packet_digest(ETHERNET, eth(tunnelled(data(hlim=63), options=True))) == plain
    # a hop-by-hop header in front of the tunnel, and two tunnels one in the other
    nested = IPv6(src=HA, dst=COA) / IPv6ExtHdrHopByHop() / tunnelled(data(hlim=62))
    assert packet_digest(ETHERNET, eth(nested)) == plain


def test_ethernet_padding_is_not_the_packet():
    packet = bytes(IPv6(src=HA, dst=COA, nh=59, plen=0))          # 40 octets: padded to 60
    frame = bytes(Ether(src=MAC_A, dst=MAC_B, type=0x86DD)) + packet
    assert packet_digest(ETHERNET, frame + b"\x00" * 6) == \
        packet_digest(ETHERNET, frame + b"\xff" * 6)


def test_two_packets_never_digest_alike():
    seen = {packet_digest(ETHERNET, eth(p)) for p in (
        bu(seq=7), bu(seq=8), data(payload=b"hello"), data(payload=b"hellp"),
        tunnelled(data(payload=b"hellq")),
        IPv6(src=CN, dst=HOA) / UDP(sport=4000, dport=4002) / Raw(b"hello"))}
    assert len(seen) == 6


def test_an_esp_tunnel_is_not_opened():
    """A keyless sensor sees ciphertext: the packet inside an ESP tunnel is not the one on
    the other side of the home agent (only the analyzer, with keys, can tell)."""
    esp = IPv6(src=HA, dst=COA) / ESP(spi=0x1001, seq=1, data=bytes(data()))
    assert packet_digest(ETHERNET, eth(esp)) != packet_digest(ETHERNET, eth(data()))


def test_no_ipv6_no_digest():
    assert packet_digest(ETHERNET, bytes(Ether(type=0x0800)) + b"\x45" + b"\x00" * 40) is None
    assert packet_digest(ETHERNET, eth(bu())[:40]) is None
    assert packet_digest(RAW, b"") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from((ETHERNET, RAW, SLL, 0, 108, 276, 999)))
def test_any_octets_never_raise(tail, linktype):
    # an IPv6 header with arbitrary lengths and next headers after it
    frame = eth(bu())[:14] + struct.pack("!IHBB", 6 << 28, len(tail) // 2, 41, 64) \
        + b"\x00" * 32 + tail
    for candidate in (frame, tail, frame[:60]):
        digest = packet_digest(linktype, candidate)
        assert digest is None or len(digest) == 16
