"""Mobility Header messages (RFC 6275 6.1) read from their octets, with PROFILE.md extensions.

The layouts are declared as data below. tshark remains the authority for the message type
(counts follow tshark); the octets give the fields tshark hides: mobility option 18 (tshark's
`mip6.em.data` drops two octets), the HoTI 'P' flag (Reserved field, no tshark field), and the
bytes the Binding Authorization Data covers (RFC 6275 6.2.7).
"""
from __future__ import annotations

import ipaddress
import struct

from dissectors.events import MobilityMessage

MH_HEADER = 6   # RFC 6275 6.1.1: Payload Proto, Header Len, MH Type, Reserved, Checksum

# RFC 6275 6.1.2-6.1.9: where the options start (offset from the MH's first octet)
OPTIONS_AT = {0: 8, 1: 16, 2: 16, 3: 24, 4: 24, 5: 12, 6: 12, 7: 24}

BU_FLAGS = {"A": 0x80, "H": 0x40, "L": 0x20, "K": 0x10}   # RFC 6275 6.1.7, first flags octet
BA_FLAGS = {"K": 0x80}                                    # RFC 6275 6.1.8
HOTI_P_FLAG = 0x8000          # PROFILE.md: MSB of the HoTI's 16-bit Reserved field
LIFETIME_UNIT = 4             # RFC 6275 6.1.7: lifetime in units of 4 seconds

# Mobility options (RFC 6275 6.2; PROFILE.md for 18)
OPT_PAD1, OPT_PADN, OPT_BRA, OPT_ACOA, OPT_NONCE, OPT_BAD = 0, 1, 2, 3, 4, 5
OPT_PRIVACY_TOKEN = 18        # subtype 0x01, reserved, 8-octet privacy keygen token
PRIVACY_TOKEN_SUBTYPE = 1


def checksum_ok(mh: bytes, src: bytes, dst: bytes) -> bool:
    """RFC 6275 6.1.1: the Internet checksum over the RFC 8200 8.1 pseudo-header (next header
    135) and the whole MH; a correct MH sums to 0xFFFF."""
    data = src + dst + struct.pack("!I", len(mh)) + b"\x00\x00\x00\x87" + mh
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def parse(mh_type: int, mh: bytes, pseudo: tuple[bytes, bytes] | None,
          truncated: bool) -> MobilityMessage:
    """Fields of one MH message; whatever is missing from a short capture stays None."""
    fields: dict = {}
    if not truncated and pseudo is not None and len(mh) >= MH_HEADER:
        fields["checksum_valid"] = checksum_ok(mh, *pseudo)
    try:
        _message(mh_type, mh, fields)
        _options(mh, OPTIONS_AT.get(mh_type, len(mh)), fields)
    except (struct.error, IndexError, ValueError):
        pass   # a truncated or malformed message: tshark's expert info reports it
    return MobilityMessage(mh_type, **fields)


def _message(mh_type: int, mh: bytes, f: dict) -> None:
    body = MH_HEADER
    if mh_type in (1, 2):                                   # HoTI, CoTI
        reserved = struct.unpack_from("!H", mh, body)[0]
        if mh_type == 1 and reserved & HOTI_P_FLAG:
            f["flags"] = frozenset({"P"})
        f["cookie"] = _exact(mh, body + 2, 8)
    elif mh_type in (3, 4):                                 # HoT, CoT
        f["nonce_index"] = struct.unpack_from("!H", mh, body)[0]
        f["cookie"] = _exact(mh, body + 2, 8)
        f["keygen_token"] = _exact(mh, body + 10, 8)
    elif mh_type == 5:                                      # BU
        seq, flags, _, lifetime = struct.unpack_from("!HBBH", mh, body)
        f["sequence"] = seq
        f["flags"] = frozenset(n for n, bit in BU_FLAGS.items() if flags & bit)
        f["lifetime"] = lifetime * LIFETIME_UNIT
    elif mh_type == 6:                                      # BA
        status, flags, seq, lifetime = struct.unpack_from("!BBHH", mh, body)
        f["status"] = status
        f["flags"] = frozenset(n for n, bit in BA_FLAGS.items() if flags & bit)
        f["sequence"] = seq
        f["lifetime"] = lifetime * LIFETIME_UNIT
    elif mh_type == 7:                                      # BE
        f["status"] = mh[body]
        f["error_home_address"] = str(ipaddress.IPv6Address(mh[body + 2:body + 18]))


def _exact(mh: bytes, at: int, n: int) -> bytes:
    value = mh[at:at + n]
    if len(value) != n:
        raise ValueError("short field")
    return value


def _options(mh: bytes, at: int, f: dict) -> None:
    """RFC 6275 6.2 TLV mobility options."""
    while at < len(mh):
        otype = mh[at]
        if otype == OPT_PAD1:
            at += 1
            continue
        if at + 2 > len(mh):
            return
        olen = mh[at + 1]
        data = mh[at + 2:at + 2 + olen]
        if len(data) < olen:
            return
        if otype == OPT_BRA and olen == 2:
            f["refresh_interval"] = struct.unpack("!H", data)[0] * LIFETIME_UNIT
        elif otype == OPT_ACOA and olen == 16:
            f["alternate_care_of_address"] = str(ipaddress.IPv6Address(data))
        elif otype == OPT_NONCE and olen == 4:
            f["home_nonce_index"], f["care_of_nonce_index"] = struct.unpack("!HH", data)
        elif otype == OPT_BAD:
            f["authenticator"] = bytes(data)
            # RFC 6275 6.2.7: Payload Proto .. the BAD option's type and length, checksum 0
            f["authenticated_data"] = mh[:4] + b"\x00\x00" + mh[6:at + 2]
        elif otype == OPT_PRIVACY_TOKEN and olen == 10 and data[0] == PRIVACY_TOKEN_SUBTYPE:
            f["privacy_keygen_token"] = bytes(data[2:10])
        at += 2 + olen
