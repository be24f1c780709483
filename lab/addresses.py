"""Care-of addresses: the interface identifier a mobile node forms on a visited /64 prefix.

Three kinds, as hosts really form them (SLAAC, RFC 4862):

- `privacy` (RFC 8981): a random IID, new for every address; a passive observer learns nothing
  from it. The lab's default.
- `stable` (RFC 7217): F(prefix, interface, secret), the same on a prefix and different across
  prefixes; an observer learns that a node is back on a network it visited.
- `eui64` (RFC 4291 2.5.1): the modified EUI-64 of the node's MAC, the same on every prefix;
  an observer links every care-of address of the node. A leak to demonstrate.

Every kind avoids the IIDs RFC 5453 reserves; `privacy` and `stable` also avoid an address
another node holds on the link (RFC 8981 3.3.1 step 3, RFC 7217 6: DAD_Counter).
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

IID_KINDS = ("privacy", "stable", "eui64")
NET_IFACE = b"wlan0"        # RFC 7217 5 Net_Iface: a stable name of the interface


def reserved_iid(iid: int) -> bool:
    """RFC 5453 3: the subnet-router anycast IID (0), the IIDs of the reserved IANA Ethernet
    block 0200:5EFF:FE00:0000-0200:5EFF:FEFF:FFFF, and the subnet anycast IIDs (RFC 2526)
    FDFF:FFFF:FFFF:FF80-FDFF:FFFF:FFFF:FFFF."""
    return (iid == 0 or 0x0200_5EFF_FE00_0000 <= iid <= 0x0200_5EFF_FEFF_FFFF
            or iid >= 0xFDFF_FFFF_FFFF_FF80 and iid <= 0xFDFF_FFFF_FFFF_FFFF)


def privacy_iid(random_octets: bytes) -> int:
    """RFC 8981 3.3.1: the IID is 64 random bits (no bit is set or cleared: RFC 8981 drops
    RFC 4941's u bit); the caller draws again when it is reserved or in use."""
    return int.from_bytes(random_octets[:8], "big")


def stable_iid(prefix: str, secret: bytes, dad_counter: int = 0) -> int:
    """RFC 7217 5: RID = F(Prefix, Net_Iface, Network_ID, DAD_Counter, secret_key), F =
    SHA-256 truncated to 64 bits (RFC 7217 5 lets F be any PRF), Network_ID empty."""
    net = ipaddress.IPv6Network(prefix)
    data = (net.network_address.packed[:8] + NET_IFACE + dad_counter.to_bytes(1, "big")
            + secret)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def eui64_iid(mac: bytes) -> int:
    """RFC 4291 2.5.1 and Appendix A: FFFE in the middle of the MAC, the universal/local bit
    inverted."""
    return int.from_bytes(bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6], "big")


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes | None:
    """A unicast MAC written aa:bb:cc:dd:ee:ff (or with '-'); None when it is not one."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        return None
    return None if mac[0] & 0x01 else mac          # the group bit makes it a multicast MAC


def address(prefix: str, iid: int) -> str:
    net = ipaddress.IPv6Network(prefix)
    return str(ipaddress.IPv6Address(int(net.network_address) | iid))


def form_care_of(kind: str, prefix: str, *, draw: Callable[[int], bytes], secret: bytes,
                 mac: bytes, in_use: Callable[[str], bool]) -> str:
    """The care-of address a node of IID `kind` forms on `prefix` (a /64). `draw(attempt)`
    gives fresh random octets (privacy), `secret` is the node's RFC 7217 key, `mac` its
    interface's MAC, `in_use(address)` says whether another node holds the address (DAD)."""
    for attempt in range(256):
        if kind == "privacy":
            iid = privacy_iid(draw(attempt))
        elif kind == "stable":
            iid = stable_iid(prefix, secret, attempt)
        else:
            iid = eui64_iid(mac)
        candidate = address(prefix, iid)
        if kind == "eui64" or not (reserved_iid(iid) or in_use(candidate)):
            return candidate
    raise RuntimeError(f"no free address on {prefix} after 256 attempts")   # RFC 7217 6
