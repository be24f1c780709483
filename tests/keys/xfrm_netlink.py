"""XFRM netlink messages as the kernel sends them for `ip xfrm state`, for iproute2's own
printer: `ip xfrm monitor file FILE` reads saved netlink messages and prints each
XFRM_MSG_NEWSA exactly as `ip xfrm state` prints a state (iproute2 ip/xfrm_monitor.c ->
xfrm_state_print). This kernel has no ESP (CONFIG_INET6_ESP is off: `ip xfrm state add`
answers "Requested type not found"), so this is how the real `ip` formats SAs here; where the
kernel has ESP, tests/keys/test_xfrm_netns.py adds real states instead.

Layouts from linux/xfrm.h (x86-64): struct xfrm_usersa_info is 224 octets; attributes are
rtattr (length, type) padded to 4 octets.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

XFRM_MSG_NEWSA = 0x10                     # linux/xfrm.h XFRM_MSG_BASE
XFRMA_ALG_AUTH, XFRMA_ALG_CRYPT, XFRMA_ENCAP = 1, 2, 4
XFRMA_REPLAY_VAL, XFRMA_ALG_AEAD, XFRMA_ALG_AUTH_TRUNC = 10, 18, 20
IPPROTO = {"esp": 50, "ah": 51, "comp": 108, "route2": 43, "hao": 60}
MODES = {"transport": 0, "tunnel": 1, "ro": 2, "beet": 4}
XFRM_STATE_ESN = 128
AF_INET, AF_INET6 = 2, 10


@dataclass
class Sa:
    src: str
    dst: str
    spi: int
    enc: tuple[str, bytes] | None = None               # (name, key)
    auth: tuple[str, bytes, int] | None = None         # (name, key, truncation bits)
    aead: tuple[str, bytes, int] | None = None         # (name, key, ICV bits)
    proto: str = "esp"
    mode: str = "tunnel"
    reqid: int = 1
    esn: bool = False
    encap: bool = False
    legacy_auth: bool = False    # only XFRMA_ALG_AUTH (no truncation attribute), as old kernels
    extra: list[bytes] = field(default_factory=list)


def _rta(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + bytes(-length % 4)


def _address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def _algo(name: str, key: bytes, bits: int | None = None) -> bytes:
    head = name.encode().ljust(64, b"\0") + struct.pack("=I", len(key) * 8)
    return head + (struct.pack("=I", bits) if bits is not None else b"") + key


def _usersa_info(sa: Sa) -> bytes:
    family = AF_INET6 if ":" in sa.src else AF_INET
    selector = bytes(56)
    xfrm_id = _address(sa.dst) + struct.pack(">I", sa.spi) + bytes([IPPROTO[sa.proto]]) + bytes(3)
    lifetime_cfg = struct.pack("=8Q", *([2**64 - 1] * 4 + [0] * 4))
    lifetime_cur = struct.pack("=4Q", 0, 0, 1_700_000_000, 0)
    stats = struct.pack("=3I", 0, 0, 0)
    tail = struct.pack("=IIHBBB", 0, sa.reqid, family, MODES[sa.mode], 0,
                       XFRM_STATE_ESN if sa.esn else 0)
    body = selector + xfrm_id + _address(sa.src) + lifetime_cfg + lifetime_cur + stats + tail
    body += bytes(-len(body) % 8)
    assert len(body) == 224
    return body


def newsa(sa: Sa) -> bytes:
    """One XFRM_MSG_NEWSA with the attributes a kernel dump carries (both AUTH and AUTH_TRUNC,
    as net/xfrm/xfrm_user.c copy_to_user_state_extra sends them)."""
    attrs = b""
    if sa.auth is not None:
        name, key, bits = sa.auth
        attrs += _rta(XFRMA_ALG_AUTH, _algo(name, key))
        if not sa.legacy_auth:
            attrs += _rta(XFRMA_ALG_AUTH_TRUNC, _algo(name, key, bits))
    if sa.aead is not None:
        attrs += _rta(XFRMA_ALG_AEAD, _algo(*sa.aead))
    if sa.enc is not None:
        attrs += _rta(XFRMA_ALG_CRYPT, _algo(*sa.enc))
    if sa.encap:    # struct xfrm_encap_tmpl: UDP_ENCAP_ESPINUDP (2), ports 4500
        attrs += _rta(XFRMA_ENCAP, struct.pack("=H", 2) + struct.pack(">HH", 4500, 4500)
                      + bytes(2) + bytes(16))
    attrs += _rta(XFRMA_REPLAY_VAL, struct.pack("=III", 0, 0, 0)) + b"".join(sa.extra)
    payload = _usersa_info(sa) + attrs
    return struct.pack("=IHHII", 16 + len(payload), XFRM_MSG_NEWSA, 0, 0, 0) + payload
