"""An independent reader of the lab's frames (Ethernet / IPv6 / extension headers / ESP),
written from the RFCs for the tests: it shares no code with lab.packets."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def text(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


@dataclass
class Level:
    """One IPv6 header and what follows it, up to the upper layer or the inner IPv6 header."""
    src: str
    dst: str
    hop_limit: int
    hao: str | None = None            # RFC 6275 6.3 (type 0xC9)
    pseudo_option: str | None = None  # PROFILE.md option 0xFE
    rh2: str | None = None            # RFC 6275 6.4
    esp: tuple[int, int] | None = None  # (SPI, sequence) when the rest came out of ESP
    esp_padding_ok: bool = True
    next_header: int = 59
    payload: bytes = b""              # upper-layer bytes (MH, ICMPv6, UDP, TCP)
    dstopt_offsets: list[int] = field(default_factory=list)


def _esp_open(data: bytes, sas: dict[int, tuple[bytes, bytes]]):
    spi, seq = struct.unpack_from("!II", data)
    enc, auth = sas[spi]
    icv = data[-12:]
    assert hmac.new(auth, data[:-12], hashlib.sha1).digest()[:12] == icv, "ESP ICV mismatch"
    iv, ct = data[8:24], data[24:-12]
    dec = Cipher(algorithms.AES(enc), modes.CBC(iv)).decryptor()
    pt = dec.update(ct) + dec.finalize()
    pad_len, nh = pt[-2], pt[-1]
    padding = pt[-2 - pad_len:-2]
    return spi, seq, nh, pt[:-2 - pad_len], padding == bytes(range(1, pad_len + 1))


def parse(ip: bytes, sas: dict[int, tuple[bytes, bytes]]) -> list[Level]:
    """Every IPv6 level of a packet, outermost first (ESP tunnel mode adds a level)."""
    assert ip[0] >> 4 == 6
    plen = struct.unpack_from("!H", ip, 4)[0]
    assert plen == len(ip) - 40, "payload length"
    lvl = Level(text(ip[8:24]), text(ip[24:40]), ip[7])
    nh, rest = ip[6], ip[40:]
    while True:
        if nh == 60:                                      # destination options
            hlen = (rest[1] + 1) * 8
            opts, i = rest[2:hlen], 0
            while i < len(opts):
                t = opts[i]
                if t == 0:
                    i += 1
                    continue
                ln = opts[i + 1]
                if t in (0xC9, 0xFE):
                    assert (2 + i) % 8 == 6, "8n+6 alignment"
                    assert ln == 16
                    setattr(lvl, "hao" if t == 0xC9 else "pseudo_option",
                            text(opts[i + 2:i + 18]))
                lvl.dstopt_offsets.append(2 + i)
                i += 2 + ln
            assert i == len(opts), "options overrun the header"
            nh, rest = rest[0], rest[hlen:]
        elif nh == 43:                                    # routing header
            assert rest[2] == 2 and rest[3] == 1 and rest[1] == 2, "type 2, one address"
            lvl.rh2 = text(rest[8:24])
            nh, rest = rest[0], rest[24:]
        elif nh == 50:
            spi, seq, nh, rest, pad_ok = _esp_open(rest, sas)
            lvl.esp, lvl.esp_padding_ok = (spi, seq), pad_ok
        elif nh == 41:
            lvl.next_header = 41
            return [lvl] + parse(rest, sas)
        else:
            lvl.next_header, lvl.payload = nh, rest
            return [lvl]


def checksum_ok(lvl: Level) -> bool:
    """RFC 8200 8.1 with RFC 6275 6.1.1: source = HAO address if present, destination = the
    RH2 address if present."""
    src = ipaddress.IPv6Address(lvl.hao or lvl.src).packed
    dst = ipaddress.IPv6Address(lvl.rh2 or lvl.dst).packed
    data = (src + dst + struct.pack("!I", len(lvl.payload)) + b"\0\0\0"
            + bytes([lvl.next_header]) + lvl.payload)
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def sas_of(keyring: dict) -> dict[int, tuple[bytes, bytes]]:
    return {int(sa["spi"], 16): (bytes.fromhex(sa["encryption_key"]),
                                 bytes.fromhex(sa["authentication_key"]))
            for sa in keyring.get("esp_sa", [])}


def mobility_options(mh: bytes) -> list[tuple[int, int, bytes]]:
    """(offset in the MH, type, data) of each mobility option (RFC 6275 6.2)."""
    fixed = {1: 16, 2: 16, 3: 24, 4: 24, 5: 12, 6: 12}[mh[2]]
    out, i = [], fixed
    while i < len(mh):
        if mh[i] == 0:
            i += 1
            continue
        out.append((i, mh[i], mh[i + 2:i + 2 + mh[i + 1]]))
        i += 2 + mh[i + 1]
    assert i == len(mh)
    return out
