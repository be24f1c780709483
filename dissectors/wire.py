"""The IPv6 header chains of one frame, walked from its octets.

tshark selects the frames and is the authority for what it dissects (MH type, malformed,
ESP decryption, Info); this walk gives what tshark's flat field lists cannot: which IPv6
header (outer or inner) carried which HAO, RH2, 0xFE option and ESP header, and the exact
Mobility Header octets (for option 18, the HoTI 'P' flag and the Authenticator's data).
Every read is bounds-checked: a truncated frame yields what was there, never an exception.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from dissectors.events import Esp, IPv6Layer, MobilePrefix, Transport
from dissectors.protocol import (
    ICMPV6_INFORMATIONAL,
    ICMPV6_MPA,
    ICMPV6_MPS,
    MOBILITY_NEXT_HEADERS,
    ND_OPT_PREFIX_INFORMATION,
    OPT_HAO,
    OPT_PAD1,
    OPT_PSEUDO_HOA,
    ROUTING_TYPE_2,
)
from dissectors.protocol import NextHeader as NH

# Link-layer headers in front of the network layer (tcpdump.org LINKTYPE_ values).
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 229, 276
ETHERTYPE_IPV6, ETHERTYPE_VLAN = 0x86DD, (0x8100, 0x88A8, 0x9100)
BSD_AF_INET6 = (10, 24, 28, 30)  # AF_INET6 on Linux, BSDs, macOS (DLT_NULL / DLT_LOOP)

# Short names for the next-header values the walk dispatches on (dissectors.protocol), as
# plain ints: the walk compares them for every header of every frame.
HOP_BY_HOP, TCP, UDP, IPV6 = int(NH.HOP_BY_HOP), int(NH.TCP), int(NH.UDP), int(NH.IPV6)
ROUTING, FRAGMENT, ESP_NH, AH = int(NH.ROUTING), int(NH.FRAGMENT), int(NH.ESP), int(NH.AH)
ICMPV6, DEST_OPTS = int(NH.ICMPV6), int(NH.DEST_OPTS)
PROTOCOL_NAMES: dict[int, str] = {
    NH.TCP: "tcp", NH.UDP: "udp", NH.ICMPV6: "icmpv6", NH.NO_NEXT: "none", NH.SCTP: "sctp",
    NH.IPV4: "ipv4", NH.GRE: "gre", NH.UDPLITE: "udplite"}
PREVIEW_OCTETS = 32


@dataclass
class Walk:
    """What the octets of one frame say."""
    layers: list[IPv6Layer] = field(default_factory=list)
    mh: bytes | None = None                  # the Mobility Header, as long as it was captured
    mh_pseudo: tuple[bytes, bytes] | None = None  # RFC 6275 6.1.1 checksum addresses
    mh_truncated: bool = False
    transport: Transport | None = None
    prefix: MobilePrefix | None = None


def network_offset(linktype: int, data: bytes) -> int | None:
    """Offset of the IPv6 header in a frame, or None if the frame is not IPv6."""
    try:
        if linktype == LINKTYPE_ETHERNET:
            at, etype = 14, struct.unpack_from("!H", data, 12)[0]
            while etype in ETHERTYPE_VLAN:
                etype = struct.unpack_from("!H", data, at + 2)[0]
                at += 4
            return at if etype == ETHERTYPE_IPV6 else None
        if linktype in (LINKTYPE_RAW, LINKTYPE_IPV6, 12, 14):
            return 0 if data[0] >> 4 == 6 else None
        if linktype == LINKTYPE_LINUX_SLL:
            return 16 if struct.unpack_from("!H", data, 14)[0] == ETHERTYPE_IPV6 else None
        if linktype == LINKTYPE_LINUX_SLL2:
            return 20 if struct.unpack_from("!H", data, 0)[0] == ETHERTYPE_IPV6 else None
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            family = struct.unpack_from("<I", data, 0)[0]
            if family > 0xFFFF:
                family = struct.unpack_from(">I", data, 0)[0]
            return 4 if family in BSD_AF_INET6 else None
    except (struct.error, IndexError):
        return None
    return None


@functools.lru_cache(maxsize=4096)
def _addr(octets: bytes) -> str:
    """RFC 5952 text (the same as keys.formulas.address_text). Cached: a capture repeats the
    same few addresses, and formatting is the walk's largest cost (profiled)."""
    return str(ipaddress.IPv6Address(octets))


def _printable(payload: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in payload[:PREVIEW_OCTETS])


def _dest_options(buf: bytes, start: int, end: int, found: dict[str, Any]) -> None:
    """RFC 8200 4.2 TLV options: pick the HAO and the 0xFE pseudo home address option."""
    at = start
    while at < end:
        otype = buf[at]
        if otype == OPT_PAD1:
            at += 1
            continue
        if at + 2 > end:
            return
        olen = buf[at + 1]
        data = buf[at + 2:at + 2 + olen]
        if olen == 16 and len(data) == 16:
            if otype == OPT_HAO:
                found["home_address"] = _addr(data)
                found["home_address_octets"] = bytes(data)
            elif otype == OPT_PSEUDO_HOA:
                found["pseudo_home_address"] = _addr(data)
        at += 2 + olen


def _transport(proto: int, buf: bytes, at: int) -> Transport:
    name = PROTOCOL_NAMES.get(proto, str(proto))
    if proto in (TCP, UDP) and len(buf) >= at + 4:
        sport, dport = struct.unpack_from("!HH", buf, at)
        if proto == UDP:
            payload = buf[at + 8:]
        else:
            payload = buf[at + ((buf[at + 12] >> 4) * 4 if len(buf) > at + 12 else 20):]
        return Transport(name, sport, dport, _printable(payload))
    if proto == ICMPV6:
        return Transport(name, None, None, _printable(buf[at + 4:]) if len(buf) > at else "")
    return Transport(name)


def _mobile_prefix(buf: bytes, at: int) -> MobilePrefix | None:
    """RFC 6275 6.7 (MPS) and 6.8 (MPA, with RFC 4861 Prefix Information options)."""
    if len(buf) < at + 6:
        return None
    icmp_type = buf[at]
    identifier = struct.unpack_from("!H", buf, at + 4)[0]
    prefixes = []
    if icmp_type == ICMPV6_MPA:
        opt = at + 8
        while opt + 2 <= len(buf):
            otype, olen = buf[opt], buf[opt + 1] * 8
            if olen == 0:
                break
            if otype == ND_OPT_PREFIX_INFORMATION and opt + 32 <= len(buf):
                prefixes.append(f"{_addr(buf[opt + 16:opt + 32])}/{buf[opt + 2]}")
            opt += olen
    return MobilePrefix(icmp_type, identifier, tuple(prefixes))


def walk(linktype: int, data: bytes, decrypted: list[tuple[int, bytes]] | None = None) -> Walk:
    """Walk every IPv6 header chain of a frame. `decrypted` are tshark's decrypted ESP
    payloads (next header, octets) in the order of the ESP headers of the frame."""
    out = Walk()
    start = network_offset(linktype, data)
    if start is None:
        return out
    pending = list(decrypted or [])
    try:
        _walk(data[start:], out, pending)
    except (struct.error, IndexError, ValueError):
        pass   # truncated or malformed: keep what was read; tshark's expert info says why
    return out


def _walk(buf: bytes, out: Walk, decrypted: list[tuple[int, bytes]]) -> None:
    while True:                                   # one IPv6 header per iteration
        if len(buf) < 40 or buf[0] >> 4 != 6:
            return
        nh = buf[6]
        src_octets, dst_octets = bytes(buf[8:24]), bytes(buf[24:40])
        found: dict[str, Any] = {"src": _addr(src_octets), "dst": _addr(dst_octets)}
        at = 40
        inner: bytes | None = None
        try:
            while True:                               # its extension header chain
                if nh in (HOP_BY_HOP, DEST_OPTS):
                    end = at + (buf[at + 1] + 1) * 8
                    if nh == DEST_OPTS:
                        _dest_options(buf, at + 2, min(end, len(buf)), found)
                    nh, at = buf[at], end
                elif nh == ROUTING:
                    end = at + (buf[at + 1] + 1) * 8
                    if buf[at + 2] == ROUTING_TYPE_2 and len(buf) >= at + 24:
                        rh = bytes(buf[at + 8:at + 24])
                        found["routing_home_address"] = _addr(rh)
                        found["routing_home_address_octets"] = rh
                    nh, at = buf[at], end
                elif nh == FRAGMENT:
                    if struct.unpack_from("!H", buf, at + 2)[0] & 0xFFF8:
                        out.transport = Transport("fragment")   # not the first fragment
                        break
                    nh, at = buf[at], at + 8
                elif nh == AH:
                    nh, at = buf[at], at + (buf[at + 1] + 2) * 4
                elif nh == ESP_NH:
                    spi, seq = struct.unpack_from("!II", buf, at)
                    if decrypted:
                        nh, buf = decrypted.pop(0)
                        at = 0
                        found["esp"] = Esp(spi, seq, True)
                        if nh == IPV6:
                            inner = buf
                            break
                        continue
                    found["esp"] = Esp(spi, seq, False)
                    break
                elif nh == IPV6:
                    inner = buf[at:]
                    break
                elif nh in MOBILITY_NEXT_HEADERS:
                    length = (buf[at + 1] + 1) * 8
                    out.mh = buf[at:at + length]
                    out.mh_truncated = len(out.mh) < length
                    # RFC 6275 6.1.1: the home address (HAO) and the final destination (RH2)
                    out.mh_pseudo = (found.get("home_address_octets", src_octets),
                                     found.get("routing_home_address_octets", dst_octets))
                    break
                else:
                    if nh == ICMPV6 and len(buf) > at and buf[at] in (ICMPV6_MPS, ICMPV6_MPA):
                        out.prefix = _mobile_prefix(buf, at)
                    out.transport = _transport(nh, buf, at)
                    break
                if at > len(buf):
                    break
        finally:
            found.pop("home_address_octets", None)
            found.pop("routing_home_address_octets", None)
            out.layers.append(IPv6Layer(**found))
        if inner is None:
            return
        buf = inner


# --- pre-filter (ROADMAP 3): frames that cannot be mobility-relevant, decided from octets ---

ETHERTYPE_IPV4, ETHERTYPE_ARP = 0x0800, 0x0806
# UDP ports that can carry IPv6 or ESP inside (Teredo, IPsec NAT-T, VXLAN, GTP-U, L2TP,
# DSMIPv6): such datagrams go to tshark, whose display filter decides.
TUNNEL_UDP_PORTS = frozenset({3544, 4500, 4789, 2152, 1701, 5436})


def candidate(linktype: int, data: bytes) -> bool:
    """False only for frames that are certainly not mobility traffic: IPv6 whose fixed header
    is followed directly by TCP, UDP (not a tunnel port) or informational ICMPv6 other than
    146/147; plain IPv4 TCP/UDP/ICMP; ARP. Anything else (extension headers, ESP, tunnels,
    unknown link types, short frames) goes to tshark: the pre-filter only ever removes work,
    never a frame tshark's MOBILITY_FILTER would select."""
    try:
        at = network_offset(linktype, data)
        if at is None:
            return _other_candidate(linktype, data)
        nh = data[at + 6]
        if nh == TCP:
            return False
        if nh == UDP:
            sport, dport = struct.unpack_from("!HH", data, at + 40)
            return sport in TUNNEL_UDP_PORTS or dport in TUNNEL_UDP_PORTS
        if nh == ICMPV6:
            icmp_type = data[at + 40]
            return icmp_type < ICMPV6_INFORMATIONAL or icmp_type in (ICMPV6_MPS, ICMPV6_MPA)
        return True
    except (struct.error, IndexError):
        return True


def _other_candidate(linktype: int, data: bytes) -> bool:
    if linktype != LINKTYPE_ETHERNET or len(data) < 14:
        return True
    etype = struct.unpack_from("!H", data, 12)[0]
    if etype == ETHERTYPE_ARP:
        return False
    if etype == ETHERTYPE_IPV4 and len(data) >= 34 and data[14] >> 4 == 4:
        ihl = (data[14] & 0x0F) * 4
        proto = data[23]
        if proto in (1, TCP):          # ICMP, TCP
            return False
        if proto == UDP and len(data) >= 14 + ihl + 4:
            sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
            return sport in TUNNEL_UDP_PORTS or dport in TUNNEL_UDP_PORTS
    return True
