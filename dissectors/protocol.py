"""Protocol constants, each declared once: code points of RFC 6275, RFC 8200, RFC 4861 and
PROFILE.md, the draft's paths, and the draft 6.4 look-ahead.

Every other module (dissectors, analyzers, the lab, the dashboard) imports them from here. A
second wire profile (RFC 5726, ROADMAP 1) would extend these tables, not copy them.
"""
from __future__ import annotations

from enum import IntEnum


class NextHeader(IntEnum):
    """IPv6 Next Header values (IANA "Assigned Internet Protocol Numbers")."""
    HOP_BY_HOP = 0
    IPV4 = 4
    TCP = 6
    UDP = 17
    IPV6 = 41           # IPv6-in-IPv6 (RFC 2473; reverse tunnels RFC 6275 10.4.5, ESP tunnels)
    ROUTING = 43
    FRAGMENT = 44
    GRE = 47
    ESP = 50            # RFC 4303
    AH = 51             # RFC 4302
    ICMPV6 = 58
    NO_NEXT = 59        # RFC 6275 6.1.1: the MH's Payload Proto is always 59
    DEST_OPTS = 60
    MOBILITY = 135      # RFC 6275 6.1
    SCTP = 132
    UDPLITE = 136


# Early MIPv6 drafts used next header 62 for the Mobility Header; tshark still dissects it as
# mipv6, so mip6mon does too (message counts follow tshark).
MOBILITY_NEXT_HEADERS = (NextHeader.MOBILITY, 62)


class MHType(IntEnum):
    """Mobility Header message types, RFC 6275 6.1.2."""
    BRR = 0             # Binding Refresh Request
    HOTI = 1            # Home Test Init
    COTI = 2            # Care-of Test Init
    HOT = 3             # Home Test
    COT = 4             # Care-of Test
    BU = 5              # Binding Update
    BA = 6              # Binding Acknowledgement
    BE = 7              # Binding Error


# The names reports and counts use, in MH type order.
MH_NAMES: dict[int, str] = {
    MHType.BRR: "BRR", MHType.HOTI: "HoTI", MHType.COTI: "CoTI", MHType.HOT: "HoT",
    MHType.COT: "CoT", MHType.BU: "BU", MHType.BA: "BA", MHType.BE: "BE"}


def mh_name(mh_type: int) -> str:
    """The report's name of a Mobility Header type ("MH9" for one RFC 6275 does not define)."""
    return MH_NAMES.get(mh_type, f"MH{mh_type}")


MH_HEADER_LENGTH = 6    # RFC 6275 6.1.1: Payload Proto, Header Len, MH Type, Reserved, Checksum
LIFETIME_UNIT = 4       # RFC 6275 6.1.7, 6.1.8: lifetimes count units of 4 seconds

# RFC 6275 6.1.7: A H L K at the top of the BU's 16-bit flags-and-reserved field.
BU_FLAGS = {"A": 0x8000, "H": 0x4000, "L": 0x2000, "K": 0x1000}
# RFC 6275 6.1.8: K at the top of the BA's flags octet (after Status).
BA_FLAGS = {"K": 0x80}
# PROFILE.md: the 'P' flag (draft 4.1) is the most significant bit of the HoTI's 16-bit Reserved.
HOTI_FLAGS = {"P": 0x8000}
HOTI_P_FLAG = HOTI_FLAGS["P"]

BA_REJECTED = 128       # RFC 6275 6.1.8: BA status values >= 128 mean the BU was rejected


class MobilityOption(IntEnum):
    """Mobility options, RFC 6275 6.2 (and PROFILE.md's experimental 18)."""
    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2      # 6.2.4
    ALTERNATE_CARE_OF_ADDRESS = 3   # 6.2.5, alignment 8n+6
    NONCE_INDICES = 4               # 6.2.6, alignment 2n
    BINDING_AUTHORIZATION_DATA = 5  # 6.2.7, alignment 8n+2
    PRIVACY_KEYGEN_TOKEN = 18       # PROFILE.md (RFC 5096 experimental): length 10, 2n


PRIVACY_TOKEN_SUBTYPE = 0x01        # PROFILE.md: option 18's first data octet

# IPv6 destination options (RFC 8200 4.2) that carry addresses.
OPT_PAD1 = 0
OPT_PADN = 1
OPT_HAO = 0xC9          # RFC 6275 6.3 Home Address option, length 16, alignment 8n+6
OPT_PSEUDO_HOA = 0xFE   # PROFILE.md Pseudo Home Address option (RFC 4727 experimental), 8n+6

ROUTING_TYPE_2 = 2      # RFC 6275 6.4 type 2 routing header

ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_INFORMATIONAL = 128   # RFC 4443 2.1: types below are errors and quote a packet
ICMPV6_MPS = 146             # RFC 6275 6.7 Mobile Prefix Solicitation
ICMPV6_MPA = 147             # RFC 6275 6.8 Mobile Prefix Advertisement
ICMPV6_NAMES = {ICMPV6_MPS: "MPS", ICMPV6_MPA: "MPA"}
ND_OPT_PREFIX_INFORMATION = 3  # RFC 4861 4.6.2

# draft 6.4: successor SPIs followed ahead of the last one known (one per Home BU exchange).
SPI_LOOKAHEAD = 64

# The paths of the draft's threat model (draft 6.1): mobile node - home agent, home agent -
# correspondent, mobile node - correspondent. Lab captures name each packet's path in a pcapng
# comment; the attacker places packets on them from addresses alone.
PATHS = ("mn-ha", "ha-cn", "mn-cn")
OTHER_PATH = "other"
