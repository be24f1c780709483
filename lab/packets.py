"""Wire builders for the lab: one function per packet format, declared close to the draft.

The first half builds the pieces (IPv6 header, HAO / 0xFE / RH2, each MH message and option
with RFC 6275 alignment, checksums, ICMPv6, UDP, TCP, ESP); the second half, after the `====`
line, has one function per packet format the draft draws (5.2.1 Home BU, 4.1 BU, ...), each
citing its section. Everything returns bytes. IPv6 packets are built by hand so that every
octet is where PROFILE.md puts it; ESP (AES-CBC + HMAC-SHA1-96) is applied to those bytes
here too, with caller-chosen IVs so that a scenario's output is byte-identical from run to run
(tests/lab/test_esp.py holds it to scapy's IPsec implementation, octet for octet).
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dissectors.protocol import (
    BU_FLAGS,
    HOTI_P_FLAG,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_MPA,
    ICMPV6_MPS,
    OPT_HAO,
    OPT_PSEUDO_HOA,
    PRIVACY_TOKEN_SUBTYPE,
    MHType,
    MobilityOption,
    NextHeader,
)
from keys import formulas
from keys.formulas import address_bytes

# --- protocol numbers and code points (PROFILE.md "Code points"), from dissectors.protocol --
# Short names for the builders below; the values are declared once, in dissectors.protocol.

NH_HOPOPT, NH_TCP, NH_UDP = NextHeader.HOP_BY_HOP, NextHeader.TCP, NextHeader.UDP
NH_IPV6, NH_ROUTING, NH_ESP = NextHeader.IPV6, NextHeader.ROUTING, NextHeader.ESP
NH_ICMPV6, NH_NONE, NH_DSTOPT = NextHeader.ICMPV6, NextHeader.NO_NEXT, NextHeader.DEST_OPTS
NH_MH = NextHeader.MOBILITY

MH_BRR, MH_HOTI, MH_COTI, MH_HOT = MHType.BRR, MHType.HOTI, MHType.COTI, MHType.HOT
MH_COT, MH_BU, MH_BA, MH_BE = MHType.COT, MHType.BU, MHType.BA, MHType.BE

OPT_PAD1, OPT_PADN = MobilityOption.PAD1, MobilityOption.PADN
OPT_ALT_COA = MobilityOption.ALTERNATE_CARE_OF_ADDRESS          # alignment 8n+6
OPT_NONCE_INDICES = MobilityOption.NONCE_INDICES                # alignment 2n
OPT_BAD = MobilityOption.BINDING_AUTHORIZATION_DATA             # alignment 8n+2
OPT_PRIVACY_TOKEN = MobilityOption.PRIVACY_KEYGEN_TOKEN         # alignment 2n

DOPT_HAO, DOPT_PSEUDO_HOA = OPT_HAO, OPT_PSEUDO_HOA               # alignment 8n+6

BU_FLAG_A, BU_FLAG_H, BU_FLAG_L, BU_FLAG_K = (BU_FLAGS[f] for f in "AHLK")


# --- checksums -------------------------------------------------------------------------------

def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def upper_layer_checksum(src: str, dst: str, next_header: int, payload: bytes) -> int:
    """RFC 8200 8.1 pseudo-header checksum. RFC 6275 6.1.1 / 6.3: with a HAO the source is the
    address in the HAO; with a type 2 routing header the destination is the final (home)
    address in it. Callers pass those addresses."""
    pseudo = (address_bytes(src) + address_bytes(dst) + struct.pack("!I", len(payload))
              + b"\x00\x00\x00" + bytes([next_header]))
    value = internet_checksum(pseudo + payload)
    return value or 0xFFFF if next_header == NH_UDP else value  # RFC 768: 0 is sent as 0xFFFF


# --- option padding --------------------------------------------------------------------------

def _pad(length: int) -> bytes:
    """Pad1 (one octet) or PadN (RFC 8200 4.2 and RFC 6275 6.2.2 share these encodings)."""
    if length == 0:
        return b""
    if length == 1:
        return b"\x00"
    return bytes([OPT_PADN, length - 2]) + bytes(length - 2)


def align(offset: int, multiple: int, remainder: int) -> bytes:
    """Padding that moves `offset` to the next x with x % multiple == remainder."""
    return _pad((remainder - offset) % multiple)


# --- IPv6 header and extension headers --------------------------------------------------------

def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    """RFC 8200 3: version 6, traffic class 0, flow label 0."""
    return (struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
            + address_bytes(src) + address_bytes(dst) + payload)


def destination_options(options: list[tuple[int, bytes, int, int]], next_header: int) -> bytes:
    """RFC 8200 4.6 Destination Options header. `options` are (type, data, align_n, align_r);
    each option's type octet lands at offset n*x + r of the header (RFC 8200 4.2), and the
    header is padded to a multiple of 8 octets."""
    body = b""
    for opt_type, data, mult, rem in options:
        body += align(2 + len(body), mult, rem)
        body += bytes([opt_type, len(data)]) + data
    body += _pad((-(2 + len(body))) % 8)
    return bytes([next_header, (2 + len(body)) // 8 - 1]) + body


def home_address_option(address: str) -> tuple[int, bytes, int, int]:
    """RFC 6275 6.3 Home Address option (type 201, 16 octets, alignment 8n+6). In draft 5.2.1,
    5.3.1 and 5.5 it carries the pseudo home address."""
    return (DOPT_HAO, address_bytes(address), 8, 6)


def pseudo_home_address_option(address: str) -> tuple[int, bytes, int, int]:
    """draft 4.1 / 4.2 / 5.3.2 "Destination Option * pseudo home address": option 0xFE,
    16 octets, alignment 8n+6 like the HAO (PROFILE.md)."""
    return (DOPT_PSEUDO_HOA, address_bytes(address), 8, 6)


def type2_routing_header(home_address: str, next_header: int) -> bytes:
    """RFC 6275 6.4 Type 2 Routing Header: one address, segments left 1."""
    return bytes([next_header, 2, 2, 1]) + bytes(4) + address_bytes(home_address)


# --- Mobility Header (RFC 6275 6.1) -----------------------------------------------------------

def mobility_options(fixed_length: int, options: list[tuple[int, bytes, int, int]]) -> bytes:
    """Mobility options after a message's fixed part (the MH is 6 octets + fixed_length),
    each aligned as RFC 6275 6.2 requires, the whole MH padded to a multiple of 8 octets."""
    offset = 6 + fixed_length
    out = b""
    for opt_type, data, mult, rem in options:
        out += align(offset + len(out), mult, rem)
        out += bytes([opt_type, len(data)]) + data
    out += _pad((-(offset + len(out))) % 8)
    return out


def mobility_header(mh_type: int, body: bytes, src: str, dst: str) -> bytes:
    """RFC 6275 6.1.1: Payload Proto 59, Header Len in 8-octet units minus 1, checksum over the
    pseudo-header with `src` (home address or HAO address) and `dst` (final destination)."""
    assert (6 + len(body)) % 8 == 0, "MH length must be a multiple of 8 octets"
    header = bytes([NH_NONE, (6 + len(body)) // 8 - 1, mh_type, 0])
    zero = header + b"\x00\x00" + body
    checksum = upper_layer_checksum(src, dst, NH_MH, zero)
    return header + struct.pack("!H", checksum) + body


def mh_with_checksum_zero(mh: bytes) -> bytes:
    """RFC 6275 6.2.7: the Authenticator covers the MH with its checksum taken as zero."""
    return mh[:4] + b"\x00\x00" + mh[6:]


def hoti_body(cookie: bytes, privacy: bool) -> bytes:
    """RFC 6275 6.1.3 HoTI: Reserved (16 bits) + Home Init Cookie (8). draft 4.1: the 'P' bit
    in Reserved asks for a privacy keygen token (PROFILE.md: 0x8000)."""
    return struct.pack("!H", HOTI_P_FLAG if privacy else 0) + cookie


def coti_body(cookie: bytes) -> bytes:
    """RFC 6275 6.1.4 CoTI: Reserved + Care-of Init Cookie."""
    return bytes(2) + cookie


def hot_body(nonce_index: int, cookie: bytes, token: bytes,
             privacy_token: bytes | None = None) -> bytes:
    """RFC 6275 6.1.5 HoT; draft 4.1: the privacy keygen token travels in the HoT as a mobility
    option (PROFILE.md: option 18, length 10, subtype 1, reserved 0), before any padding."""
    fixed = struct.pack("!H", nonce_index) + cookie + token
    options = []
    if privacy_token is not None:
        options.append((OPT_PRIVACY_TOKEN, bytes([PRIVACY_TOKEN_SUBTYPE, 0]) + privacy_token,
                        2, 0))
    return fixed + mobility_options(len(fixed), options)


def cot_body(nonce_index: int, cookie: bytes, token: bytes) -> bytes:
    """RFC 6275 6.1.6 CoT."""
    return struct.pack("!H", nonce_index) + cookie + token


@dataclass(frozen=True)
class BindingUpdate:
    """RFC 6275 6.1.7 Binding Update fields and the options the draft attaches to it."""
    sequence: int
    lifetime_units: int                       # 4-second units (RFC 6275 6.1.7)
    flags: int
    alternate_care_of: str | None = None      # RFC 6275 6.2.5; draft 4.2, 5.2.x, 5.3.2
    nonce_indices: tuple[int, int] | None = None   # RFC 6275 6.2.6 (home, care-of)
    with_authenticator: bool = False          # RFC 6275 6.2.7 Binding Authorization Data


def _bu_fixed(bu: BindingUpdate) -> bytes:
    return struct.pack("!HHH", bu.sequence, bu.flags, bu.lifetime_units)


def _bu_options(bu: BindingUpdate, authenticator: bytes) -> list[tuple[int, bytes, int, int]]:
    options = []
    if bu.alternate_care_of:
        options.append((OPT_ALT_COA, address_bytes(bu.alternate_care_of), 8, 6))
    if bu.nonce_indices:
        options.append((OPT_NONCE_INDICES, struct.pack("!HH", *bu.nonce_indices), 2, 0))
    if bu.with_authenticator:
        options.append((OPT_BAD, authenticator, 8, 2))
    return options


def binding_update_mh(bu: BindingUpdate, src: str, dst: str, kbm: bytes | None = None,
                      authenticator_coa: str | None = None) -> bytes:
    """RFC 6275 6.1.7 BU as a complete MH. With `kbm`, the Binding Authorization Data option
    carries First(96, HMAC_SHA1(Kbm, CoA | CN | MH data)) (RFC 6275 6.2.7; draft 4.1, 5.3.1),
    CoA being the Alternate CoA when present (PROFILE.md)."""
    fixed = _bu_fixed(bu)
    body = fixed + mobility_options(len(fixed), _bu_options(bu, bytes(12)))
    mh = mobility_header(MH_BU, body, src, dst)
    if bu.with_authenticator:
        auth = formulas.authenticator(kbm, authenticator_coa, dst, mh_with_checksum_zero(mh)[:-12])
        body = body[:-12] + auth
        mh = mobility_header(MH_BU, body, src, dst)
    return mh


def binding_ack_mh(status: int, sequence: int, lifetime_units: int, src: str, dst: str,
                   kbm: bytes | None = None, care_of: str | None = None,
                   correspondent: str | None = None) -> bytes:
    """RFC 6275 6.1.8 BA; from a correspondent it carries Binding Authorization Data over
    CoA | CN | BA (RFC 6275 5.2.6, draft 5.3.1)."""
    fixed = struct.pack("!BBHH", status, 0, sequence, lifetime_units)
    options = [(OPT_BAD, bytes(12), 8, 2)] if kbm is not None else []
    body = fixed + mobility_options(len(fixed), options)
    mh = mobility_header(MH_BA, body, src, dst)
    if kbm is not None:
        auth = formulas.authenticator(kbm, care_of, correspondent, mh_with_checksum_zero(mh)[:-12])
        mh = mobility_header(MH_BA, body[:-12] + auth, src, dst)
    return mh


# --- ICMPv6 (prefix discovery, echo) --------------------------------------------------------

def icmpv6(icmp_type: int, code: int, body: bytes, src: str, dst: str) -> bytes:
    """RFC 4443 2.1; with a HAO / RH2 the pseudo-header carries the home (pseudo) address."""
    zero = bytes([icmp_type, code, 0, 0]) + body
    return zero[:2] + struct.pack("!H", upper_layer_checksum(src, dst, NH_ICMPV6, zero)) + zero[4:]


def mobile_prefix_solicitation(identifier: int, src: str, dst: str) -> bytes:
    """RFC 6275 6.7 Mobile Prefix Solicitation (draft 5.5)."""
    return icmpv6(ICMPV6_MPS, 0, struct.pack("!HH", identifier, 0), src, dst)


def mobile_prefix_advertisement(identifier: int, prefixes: list[str], src: str,
                                dst: str) -> bytes:
    """RFC 6275 6.8 Mobile Prefix Advertisement with one Prefix Information option (RFC 4861
    4.6.2) per prefix, valid/preferred lifetimes 86400/14400 s, flags L=0 A=1 R=0."""
    import ipaddress
    body = struct.pack("!HH", identifier, 0)
    for prefix in prefixes:
        net = ipaddress.IPv6Network(prefix)
        body += struct.pack("!BBBBIII", 3, 4, net.prefixlen, 0x40, 86400, 14400, 0)
        body += net.network_address.packed
    return icmpv6(ICMPV6_MPA, 0, body, src, dst)


def echo(request: bool, identifier: int, sequence: int, data: bytes, src: str, dst: str) -> bytes:
    """RFC 4443 4.1 / 4.2."""
    return icmpv6(ICMPV6_ECHO_REQUEST if request else ICMPV6_ECHO_REPLY, 0,
                  struct.pack("!HH", identifier, sequence) + data, src, dst)


def udp(sport: int, dport: int, data: bytes, src: str, dst: str) -> bytes:
    """RFC 768; checksum with the home (pseudo) address where a HAO / RH2 names it."""
    zero = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return zero[:6] + struct.pack("!H", upper_layer_checksum(src, dst, NH_UDP, zero)) + zero[8:]


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes, src: str,
        dst: str, window: int = 65535) -> bytes:
    """RFC 9293 3.1, no options."""
    zero = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0) + data
    return zero[:16] + struct.pack("!H", upper_layer_checksum(src, dst, NH_TCP, zero)) + zero[18:]


# --- Ethernet framing --------------------------------------------------------------------------

def ethernet(dst_mac: bytes, src_mac: bytes, ipv6_packet: bytes) -> bytes:
    """IEEE 802.3 with EtherType 0x86DD: the lab writes Ethernet frames so that the same bytes
    can be sent on a veth (lab.netns) and written to the capture."""
    return dst_mac + src_mac + b"\x86\xdd" + ipv6_packet


# --- ESP (RFC 4303) -----------------------------------------------------------------------------

ESP_BLOCK = 16          # AES-CBC (RFC 3602): the padded plaintext is a multiple of the block
ESP_ICV = 12            # HMAC-SHA1-96 (RFC 2404)


def esp_split(packet: bytes) -> tuple[int, int]:
    """Offset at which transport-mode ESP goes in (RFC 4303 3.1.1): after the extension
    headers the intermediate nodes read (hop-by-hop, routing, and destination options that
    come before a routing header), as Linux and scapy place it. Returns (offset of the
    next-header octet that becomes 50, offset where ESP starts)."""
    offset, nh_at, routing_seen = 40, 6, False
    while packet[nh_at] in (NH_HOPOPT, NH_ROUTING, NH_DSTOPT):
        kind = packet[nh_at]
        if kind == NH_ROUTING:
            routing_seen = True
        elif kind == NH_DSTOPT and routing_seen:
            break                       # destination options for the final destination
        nh_at = offset
        offset += (packet[offset + 1] + 1) * 8
    return nh_at, offset


@dataclass
class EspSa:
    """One direction of an ESP SA: AES-CBC (RFC 3602) + HMAC-SHA1-96 (RFC 2404).

    `seq` is the next ESP sequence number. Draft 6.4 renews the SPI of the SA after a Home BU
    exchange; the lab keeps the sequence counter running across renewals (same SA, same keys,
    new SPI), so that i in Ki = HMAC_SHA1(Kph, i) (draft 5.1.4) keeps growing.

    Built from the octets here (not through scapy's layers, ~100x slower: PLATFORM-NOTES);
    tests/lab/test_esp.py checks every octet against scapy's SecurityAssociation."""
    spi: int
    encryption_key: bytes
    authentication_key: bytes
    seq: int = 1
    spis_used: list[int] = field(default_factory=list)
    first_spi: int = field(init=False)          # the SPI and sequence number it started
    first_seq: int = field(init=False)          # from (spis_used lists the SPIs it sent)

    def __post_init__(self) -> None:
        self.first_spi, self.first_seq = self.spi, self.seq

    def protect(self, packet: bytes, iv: bytes, tunnel: tuple[str, str] | None = None,
                hop_limit: int = 64) -> bytes:
        """ESP transport mode (ESP inserted after the HAO destination options or the RH2,
        RFC 4303 3.1.1) or tunnel mode (`tunnel` = outer (src, dst), RFC 4303 3.1.2).
        Consumes one sequence number."""
        if self.spi not in self.spis_used:
            self.spis_used.append(self.spi)
        if tunnel is not None:
            packet = ipv6(tunnel[0], tunnel[1], NH_IPV6, packet, hop_limit)
        nh_at, split = esp_split(packet)
        header, payload = bytearray(packet[:split]), packet[split:]
        next_header, header[nh_at] = header[nh_at], NH_ESP
        # RFC 4303 2.4: padding 1, 2, 3, ... up to the cipher's block size
        pad = -(len(payload) + 2) % ESP_BLOCK
        plain = payload + bytes(range(1, pad + 1)) + bytes([pad, next_header])
        encryptor = Cipher(algorithms.AES(self.encryption_key), modes.CBC(iv)).encryptor()
        body = (struct.pack("!II", self.spi, self.seq) + iv
                + encryptor.update(plain) + encryptor.finalize())
        body += hmac.new(self.authentication_key, body, hashlib.sha1).digest()[:ESP_ICV]
        struct.pack_into("!H", header, 4, len(header) - 40 + len(body))   # payload length
        self.seq += 1
        return bytes(header) + body


# =============================================================================================
# The packet formats the draft draws, one function each. `esp` is the sender's ESP processing
# for the SA in use: esp(packet) = transport mode, esp(packet, (outer src, outer dst)) = tunnel
# mode. Functions without `esp` return packets sent in clear.
# =============================================================================================

Esp = Callable[..., bytes]


def home_bu_transport(care_of: str, home_agent: str, hao: str, bu: BindingUpdate,
                      esp: Esp) -> bytes:
    """draft 5.2.1 Home BU: IPv6 (CoA -> HA) / Destination Options (HAO = pseudo home address)
    / ESP transport / MH BU + Alternate CoA. With hao = the home address it is RFC 3776 4.1.
    The MH checksum uses the HAO address (RFC 6275 6.1.1)."""
    mh = binding_update_mh(bu, hao, home_agent)
    return esp(ipv6(care_of, home_agent, NH_DSTOPT,
                    destination_options([home_address_option(hao)], NH_MH) + mh))


def home_ba_transport(home_agent: str, care_of: str, rh2: str, sequence: int,
                      lifetime_units: int, esp: Esp, status: int = 0) -> bytes:
    """draft 5.2.1 Home BA: IPv6 (HA -> CoA) / RH2 (pseudo home address) / ESP transport /
    MH BA (RFC 3776 4.1 with the home address in the RH2)."""
    mh = binding_ack_mh(status, sequence, lifetime_units, home_agent, rh2)
    return esp(ipv6(home_agent, care_of, NH_ROUTING, type2_routing_header(rh2, NH_MH) + mh))


def home_bu_tunnel(care_of: str, home_agent: str, home_address: str, bu: BindingUpdate,
                   esp: Esp) -> bytes:
    """draft 5.2.2 Home BU: IPv6 (CoA -> HA) / ESP tunnel / IPv6 (HoA -> HA) / MH BU +
    Alternate CoA; the pseudo home address is derived by both ends, never sent."""
    inner = ipv6(home_address, home_agent, NH_MH, binding_update_mh(bu, home_address, home_agent))
    return esp(inner, (care_of, home_agent))


def home_ba_tunnel(home_agent: str, care_of: str, home_address: str, sequence: int,
                   lifetime_units: int, esp: Esp, status: int = 0) -> bytes:
    """draft 5.2.2 Home BA: IPv6 (HA -> CoA) / ESP tunnel / IPv6 (HA -> HoA) / MH BA."""
    mh = binding_ack_mh(status, sequence, lifetime_units, home_agent, home_address)
    return esp(ipv6(home_agent, home_address, NH_MH, mh), (home_agent, care_of))


def home_bu_at_home(home_address: str, home_agent: str, bu: BindingUpdate, esp: Esp) -> bytes:
    """RFC 6275 11.5.4 / RFC 3776 4.1, draft 5.2.2 last paragraph: de-registration from the
    home link, source = home address, no HAO, ESP transport."""
    return esp(ipv6(home_address, home_agent, NH_MH,
                    binding_update_mh(bu, home_address, home_agent)))


def home_ba_at_home(home_agent: str, home_address: str, sequence: int, esp: Esp) -> bytes:
    """RFC 3776 4.1: the BA to a node at home, no RH2, lifetime 0."""
    mh = binding_ack_mh(0, sequence, 0, home_agent, home_address)
    return esp(ipv6(home_agent, home_address, NH_MH, mh))


def hoti(home_source: str, correspondent: str, cookie: bytes, privacy_flag: bool,
         hop_limit: int = 64) -> bytes:
    """RFC 6275 6.1.3 HoTI as the HA forwards it on HA-CN (and, hop limit 64, the inner packet
    of the MN-HA tunnel); draft 4.1: 'P' flag; draft 5.3.1: source = pseudo home address."""
    mh = mobility_header(MH_HOTI, hoti_body(cookie, privacy_flag), home_source, correspondent)
    return ipv6(home_source, correspondent, NH_MH, mh, hop_limit)


def coti(care_of: str, correspondent: str, cookie: bytes) -> bytes:
    """RFC 6275 6.1.4 CoTI, MN -> CN directly ("exactly the same as RFC 3775": draft 4.1)."""
    return ipv6(care_of, correspondent, NH_MH,
                mobility_header(MH_COTI, coti_body(cookie), care_of, correspondent))


def hot(correspondent: str, home_destination: str, nonce_index: int, cookie: bytes,
        token: bytes, privacy_token: bytes | None, hop_limit: int = 64) -> bytes:
    """RFC 6275 6.1.5 HoT on HA-CN (hop limit 63 as the inner packet of the HA-MN tunnel);
    draft 4.1: privacy keygen token option; draft 5.3.1: destination = pseudo home address."""
    mh = mobility_header(MH_HOT, hot_body(nonce_index, cookie, token, privacy_token),
                         correspondent, home_destination)
    return ipv6(correspondent, home_destination, NH_MH, mh, hop_limit)


def cot(correspondent: str, care_of: str, nonce_index: int, cookie: bytes,
        token: bytes) -> bytes:
    """RFC 6275 6.1.6 CoT, CN -> MN directly."""
    return ipv6(correspondent, care_of, NH_MH, mobility_header(
        MH_COT, cot_body(nonce_index, cookie, token), correspondent, care_of))


def tunnelled(inner: bytes, outer_src: str, outer_dst: str, esp: Esp) -> bytes:
    """RFC 3776 4.3 / draft 5.3.1, 5.3.2, 5.4: IPv6 (outer) / ESP tunnel / the inner packet."""
    return esp(inner, (outer_src, outer_dst))


def correspondent_bu_with_hao(care_of: str, correspondent: str, hao: str, bu: BindingUpdate,
                              kbm: bytes) -> bytes:
    """RFC 6275 6.1.7 BU to the CN (HAO = home address) and draft 5.3.1 (HAO = the routable
    pseudo home address): IPv6 (CoA -> CN) / HAO / MH BU + Nonce Indices + Authenticator."""
    mh = binding_update_mh(bu, hao, correspondent, kbm, care_of)
    return ipv6(care_of, correspondent, NH_DSTOPT,
                destination_options([home_address_option(hao)], NH_MH) + mh)


def correspondent_bu_rr_privacy(care_of: str, correspondent: str, pseudo: str,
                                bu: BindingUpdate, kbm: bytes) -> bytes:
    """draft 4.1: IPv6 (CoA -> CN) / Destination Option (0xFE = pseudo home address) / MH BU
    (sequence, nonce indices, First(96, HMAC_SHA1(Kbm, CoA | CN | BU))). No HAO, so the MH
    checksum uses the care-of address."""
    mh = binding_update_mh(bu, care_of, correspondent, kbm, care_of)
    return ipv6(care_of, correspondent, NH_DSTOPT,
                destination_options([pseudo_home_address_option(pseudo)], NH_MH) + mh)


def correspondent_bu_reverse_tunnelled(home_address: str, correspondent: str, pseudo: str,
                                       bu: BindingUpdate, kbm: bytes,
                                       hop_limit: int = 64) -> bytes:
    """draft 4.2 / 5.3.2: IPv6 (HoA -> CN) / Destination Option (0xFE = AES(Kbm, HoA)) / MH BU
    + Alternate CoA; the inner packet of the MN-HA tunnel, and (hop limit 63) what the HA
    forwards on HA-CN. The Authenticator uses the Alternate CoA (PROFILE.md)."""
    mh = binding_update_mh(bu, home_address, correspondent, kbm, bu.alternate_care_of)
    return ipv6(home_address, correspondent, NH_DSTOPT,
                destination_options([pseudo_home_address_option(pseudo)], NH_MH) + mh,
                hop_limit)


def correspondent_ba(correspondent: str, care_of: str, rh2: str, sequence: int,
                     lifetime_units: int, kbm: bytes) -> bytes:
    """RFC 6275 6.1.8 / draft 5.3.1: IPv6 (CN -> CoA) / RH2 ((pseudo) home address) / MH BA
    + First(96, HMAC_SHA1(Kbm, CoA | CN | BA))."""
    mh = binding_ack_mh(0, sequence, lifetime_units, correspondent, rh2, kbm, care_of,
                        correspondent)
    return ipv6(correspondent, care_of, NH_ROUTING, type2_routing_header(rh2, NH_MH) + mh)


def data_to_correspondent(care_of: str, correspondent: str, home: str, sport: int, dport: int,
                          payload: bytes) -> bytes:
    """RFC 6275 6.3, draft 5.3.1 / 5.3.2 "Data packets from the mobile node": IPv6 (CoA -> CN)
    / Destination option (HAO = (pseudo) home address) / payload (UDP here)."""
    return ipv6(care_of, correspondent, NH_DSTOPT,
                destination_options([home_address_option(home)], NH_UDP)
                + udp(sport, dport, payload, home, correspondent))


def data_to_mobile(correspondent: str, care_of: str, home: str, sport: int, dport: int,
                   payload: bytes) -> bytes:
    """RFC 6275 6.4, draft 5.3.1 / 5.3.2 "Data packets from the correspondent node": IPv6
    (CN -> CoA) / Routing Header (type 2, (pseudo) home address) / payload."""
    return ipv6(correspondent, care_of, NH_ROUTING, type2_routing_header(home, NH_UDP)
                + udp(sport, dport, payload, correspondent, home))


def plain_data(src: str, dst: str, sport: int, dport: int, payload: bytes,
               hop_limit: int = 64) -> bytes:
    """draft 5.4: IPv6 (HoA <-> CN) / data, in clear on HA-CN and inside the MN-HA tunnel."""
    return ipv6(src, dst, NH_UDP, udp(sport, dport, payload, src, dst), hop_limit)


def mps_transport(care_of: str, home_agent: str, hao: str, identifier: int, esp: Esp) -> bytes:
    """draft 5.5: IPv6 (CoA -> HA) / HAO (pseudo home address) / ESP transport / ICMPv6 MPS."""
    mps = mobile_prefix_solicitation(identifier, hao, home_agent)
    return esp(ipv6(care_of, home_agent, NH_DSTOPT,
                    destination_options([home_address_option(hao)], NH_ICMPV6) + mps))


def mpa_transport(home_agent: str, care_of: str, rh2: str, identifier: int,
                  prefixes: list[str], esp: Esp) -> bytes:
    """draft 5.5: IPv6 (HA -> CoA) / RH2 (pseudo home address) / ESP transport / ICMPv6 MPA."""
    mpa = mobile_prefix_advertisement(identifier, prefixes, home_agent, rh2)
    return esp(ipv6(home_agent, care_of, NH_ROUTING, type2_routing_header(rh2, NH_ICMPV6) + mpa))


def mps_tunnel(care_of: str, home_agent: str, home_address: str, identifier: int,
               esp: Esp) -> bytes:
    """draft 5.5 (second format): IPv6 (CoA -> HA) / ESP tunnel / IPv6 (HoA -> HA) / MPS."""
    mps = mobile_prefix_solicitation(identifier, home_address, home_agent)
    return esp(ipv6(home_address, home_agent, NH_ICMPV6, mps), (care_of, home_agent))


def mpa_tunnel(home_agent: str, care_of: str, home_address: str, identifier: int,
               prefixes: list[str], esp: Esp) -> bytes:
    """draft 5.5 (second format): IPv6 (HA -> CoA) / ESP tunnel / IPv6 (HA -> HoA) / MPA."""
    mpa = mobile_prefix_advertisement(identifier, prefixes, home_agent, home_address)
    return esp(ipv6(home_agent, home_address, NH_ICMPV6, mpa), (home_agent, care_of))
