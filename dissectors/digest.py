"""The canonical digest of a captured packet: the same packet seen by two sensors digests alike.

Several sensors (`mip6mon sensor`, monitor.sensor) may see one packet: the two ends of a link,
or two links one router or one tunnel end apart. The analyzer side (`mip6mon serve`) merges
such observations into one packet at several vantage points, and it has no octets, only the
sensors' events; so each sensor digests the frame it captured and publishes the digest with
the event. What two observations of one packet share, and so what the digest covers:
- the IPv6 packet from its header to the end of its payload (not the link layer, which each
  link rewrites, nor the Ethernet padding after the payload);
- with the Hop Limit zeroed (RFC 8200 3: every forwarding node decrements it);
- from the innermost IPv6 header that travels in clear: an IPv6-in-IPv6 tunnel header (RFC
  2473; the home agent's tunnel to the mobile node, RFC 6275 10.4.2) and its extension
  headers are what one path adds, so they are left out. An ESP tunnel (RFC 4303 3.1.2) hides
  its inner packet from a keyless sensor: its digest covers the ESP packet as captured.
"""
from __future__ import annotations

import hashlib

from dissectors.protocol import NextHeader
from dissectors.walk import network_offset

DIGEST_SIZE = 16            # octets: 128 bits, no accidental collision within any window
IPV6_HEADER = 40
HOP_LIMIT_OFFSET = 7        # RFC 8200 3: version/class/label (4), payload length (2), NH (1)
# Extension headers in front of a tunnelled packet that share one length format (RFC 8200
# 4.3, 4.4, 4.6: Next Header, Hdr Ext Len in 8-octet units not counting the first 8).
SKIPPABLE = frozenset({int(NextHeader.HOP_BY_HOP), int(NextHeader.ROUTING),
                       int(NextHeader.DEST_OPTS)})
TUNNEL = int(NextHeader.IPV6)
MAX_TUNNELS = 8             # nested tunnels stripped at most (a crafted frame cannot loop)


def _inner(packet: memoryview) -> memoryview:
    """The innermost IPv6 packet in clear, cut to its Payload Length."""
    for _ in range(MAX_TUNNELS + 1):
        length = int.from_bytes(packet[4:6], "big")
        if length or packet[6] != NextHeader.HOP_BY_HOP:
            # (0 with a hop-by-hop header: a jumbogram, RFC 2675: keep what was captured)
            packet = packet[:IPV6_HEADER + length]
        at, next_header = IPV6_HEADER, packet[6]
        while next_header in SKIPPABLE and at + 2 <= len(packet):
            next_header, at = packet[at], at + (packet[at + 1] + 1) * 8
        if next_header != TUNNEL or at + IPV6_HEADER > len(packet) or packet[at] >> 4 != 6:
            return packet
        packet = packet[at:]
    return packet


def packet_digest(linktype: int, frame: bytes) -> bytes | None:
    """The canonical digest of a frame's IPv6 packet (module docstring), or None when the
    frame holds no IPv6 header."""
    offset = network_offset(linktype, frame)
    if offset is None or len(frame) < offset + IPV6_HEADER or frame[offset] >> 4 != 6:
        return None
    packet = bytearray(_inner(memoryview(frame)[offset:]))
    packet[HOP_LIMIT_OFFSET] = 0
    return hashlib.blake2b(packet, digest_size=DIGEST_SIZE).digest()
