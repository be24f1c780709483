"""A minimal pcapng writer (SHB, one Ethernet IDB, EPBs with one comment each).

Written here rather than through scapy's PcapNgWriter so that the bytes depend on nothing but
the frames and their timestamps (scapy's writer rounds float timestamps and may grow options).
"""
from __future__ import annotations

import struct
from pathlib import Path

LINKTYPE_ETHERNET = 1
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_COMMENT, _OPT_END = 1, 0
_IF_TSRESOL = 9


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


def write_pcapng(path: str | Path, frames: list[tuple[int, bytes, str]]) -> None:
    """frames: (timestamp in microseconds since the epoch, frame bytes, comment)."""
    with open(path, "wb") as f:
        # pcapng 4.1: byte-order magic, version 1.0, section length unknown (-1)
        f.write(_block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        # pcapng 4.2: Ethernet, snaplen 262144, if_tsresol 6 (microseconds)
        f.write(_block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 262144)
                       + _option(_IF_TSRESOL, b"\x06") + _option(_OPT_END, b"")))
        for usec, data, comment in frames:
            body = struct.pack("<IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(data), len(data))
            body += data + bytes(-len(data) % 4)
            body += _option(_OPT_COMMENT, comment.encode()) + _option(_OPT_END, b"")
            f.write(_block(_EPB, body))
