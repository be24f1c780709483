"""pcap and pcapng records, read by walking their headers (no dissection).

Two uses: count every frame of a capture file cheaply (`Accounting.read`), and hand the
dissector the raw octets of the frames tshark selected, so that what tshark does not expose
(mobility option 18, the HoTI 'P' flag, the MH bytes an Authenticator covers) is read from the
packet itself. Works on any binary stream (a file, or dumpcap's stdout in live mode).
"""
from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

GZIP_MAGIC = b"\x1f\x8b"     # tshark reads gzip-compressed captures too

# pcap (libpcap file format): magic numbers, microsecond and nanosecond variants
PCAP_MAGICS = {0xA1B2C3D4: 1e-6, 0xA1B23C4D: 1e-9}
# pcapng block types (draft-ietf-opsawg-pcapng)
SHB, IDB, SPB, EPB, ISB, OBSOLETE_PB = 0x0A0D0D0A, 1, 3, 6, 5, 2
OPT_IF_TSRESOL = 9


class NotACapture(ValueError):
    """The stream does not start with a pcap or pcapng header."""


@dataclass(slots=True)
class Record:
    number: int          # 1-based frame number, as tshark numbers frames
    linktype: int
    data: bytes          # captured octets


@dataclass(slots=True)
class DropCounter:
    """Frames the reader could not hand on: kernel drops reported by dumpcap in pcapng
    Interface Statistics Blocks, and a packet record cut short at the end of the file."""
    dropped: int = 0
    truncated: int = 0


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    while data is not None and 0 < len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    if not data or len(data) < n:
        return None
    return data


@dataclass(slots=True)
class Block:
    """One unit of the stream, with its exact octets so it can be forwarded to tshark:
    the file header (pcap) or a pcapng block. `record` is set for packet blocks."""
    raw: bytes
    record: Record | None = None


def records(stream: BinaryIO, drops: DropCounter | None = None,
            keep_data: bool = True) -> Iterator[Record]:
    """Every packet record of a pcap or pcapng stream, in order. A truncated tail ends the
    iteration quietly (tshark reports it); a wrong header raises NotACapture."""
    for block in blocks(stream, drops, keep_data):
        if block.record is not None:
            yield block.record


def blocks(stream: BinaryIO, drops: DropCounter | None = None,
           keep_data: bool = True) -> Iterator[Block]:
    """Every block of a pcap or pcapng stream: header blocks, then packets (with records)."""
    head = _read_exact(stream, 4)
    if head is None:
        raise NotACapture("empty file")
    (magic_le,) = struct.unpack("<I", head)
    (magic_be,) = struct.unpack(">I", head)
    if magic_le == SHB:
        yield from _pcapng(stream, head, drops, keep_data)
    elif magic_le in PCAP_MAGICS or magic_be in PCAP_MAGICS:
        yield from _pcap(stream, head, "<" if magic_le in PCAP_MAGICS else ">", keep_data,
                         drops)
    else:
        raise NotACapture("not a pcap or pcapng file")


def _pcap(stream: BinaryIO, head: bytes, endian: str, keep_data: bool,
          drops: DropCounter | None = None) -> Iterator[Block]:
    rest = _read_exact(stream, 20)
    if rest is None:
        return
    yield Block(head + rest)
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0x0FFFFFFF
    number = 0
    rec = struct.Struct(endian + "IIII")
    while True:
        header = _read_exact(stream, 16)
        if header is None:
            return
        _, _, incl_len, _ = rec.unpack(header)
        data = _read_exact(stream, incl_len) if incl_len else b""
        if data is None:
            if drops is not None:
                drops.truncated += 1     # a record header without all of its octets
            return
        number += 1
        yield Block(header + data if keep_data else b"",
                    Record(number, linktype, data if keep_data else b""))


def _pcapng(stream: BinaryIO, head: bytes, drops: DropCounter | None,
            keep_data: bool) -> Iterator[Block]:
    endian = "<"
    linktypes: list[int] = []
    number = 0
    block_type = SHB
    first = True
    while True:
        if first:
            first = False
        else:
            next_head = _read_exact(stream, 4)
            if next_head is None:
                return
            head = next_head
            block_type = struct.unpack(endian + "I", head)[0]
        if block_type == SHB:
            length_and_bom = _read_exact(stream, 8)
            if length_and_bom is None:
                return
            endian = "<" if length_and_bom[4:8] == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(endian + "I", length_and_bom[:4])[0]
            rest = _read_exact(stream, length - 12) if length >= 28 else None
            if rest is None:
                return
            linktypes = []                   # interfaces are per section
            yield Block(head + length_and_bom + rest)
            continue
        raw_len = _read_exact(stream, 4)
        if raw_len is None:
            return
        length = struct.unpack(endian + "I", raw_len)[0]
        if length < 12:
            return
        tail = _read_exact(stream, length - 8)
        if tail is None:
            if drops is not None and block_type in (EPB, OBSOLETE_PB):
                drops.truncated += 1     # a packet block cut short by the end of the file
            return
        body = tail[:-4]                     # without the trailing copy of the length
        record = None
        if block_type == IDB:
            linktypes.append(struct.unpack(endian + "H", body[:2])[0])
        elif block_type in (EPB, OBSOLETE_PB):
            if block_type == EPB:
                iface, _, _, caplen, _ = struct.unpack(endian + "IIIII", body[:20])
            else:
                iface, _, _, _, caplen, _ = struct.unpack(endian + "HHIIII", body[:20])
            number += 1
            linktype = linktypes[iface] if iface < len(linktypes) else -1
            record = Record(number, linktype, body[20:20 + caplen] if keep_data else b"")
        elif block_type == SPB:
            number += 1
            record = Record(number, linktypes[0] if linktypes else -1,
                            body[4:] if keep_data else b"")
        elif block_type == ISB and drops is not None:
            _isb_drops(body, endian, drops)
        yield Block(head + raw_len + tail if keep_data or record is None else b"", record)


def _isb_drops(body: bytes, endian: str, drops: DropCounter) -> None:
    """pcapng ISB options: isb_ifdrop (5) is what the kernel dropped; dumpcap writes it."""
    at = 12
    while at + 4 <= len(body):
        code, olen = struct.unpack(endian + "HH", body[at:at + 4])
        if code == 0:
            return
        if code == 5 and olen == 8:
            drops.dropped = max(drops.dropped, struct.unpack(endian + "Q",
                                                             body[at + 4:at + 12])[0])
        at += 4 + ((olen + 3) & ~3)


def open_capture(path: str) -> BinaryIO:
    """The capture's octets, decompressed when the file is gzip (as tshark accepts it)."""
    stream = open(path, "rb")
    if stream.peek(2)[:2] == GZIP_MAGIC:
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def count_records(path: str) -> int:
    with open_capture(path) as f:
        return sum(1 for _ in records(f, keep_data=False))
