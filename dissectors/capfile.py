"""pcap and pcapng records, read by walking their headers (no dissection).

Two uses: count every frame of a capture file cheaply (`Accounting.read`), and hand the
dissector the raw octets of the frames tshark selected, so that what tshark does not expose
(mobility option 18, the HoTI 'P' flag, the MH bytes an Authenticator covers) is read from the
packet itself. Works on any binary stream (a file, or dumpcap's stdout in live mode).

The API:
- `blocks(stream, drops)` yields every `Block` (its exact octets, to forward to tshark; `record`
  set for the blocks tshark numbers as frames); `records(stream, drops)` only the `Record`s,
  and with `prefilter=(wanted, counts)` only those `wanted(linktype, octets)` keeps (the others
  counted read and filtered in `counts`; a plain pcap file's never made a Record at all).
- `DropCounter` (`drops`) collects what could not be handed on: kernel drops from pcapng
  Interface Statistics Blocks, and `damage`, a `Damage` (where and why) when the capture could
  not be read to its end. The iteration then ends after the last whole frame: read what can
  be read, then say where and why the rest could not be. Without a `drops` argument a damaged
  capture raises `CaptureDamaged` (holding the `Damage`) instead, so damage is never silent.
- `NotACapture` when the stream does not start as a pcap or pcapng file.

Damaged means what wiretap (tshark 4.0's file reader) refuses, checked the way it checks, so
the frames read here are the frames tshark reads (tests/fuzz holds that against real tshark):
block and record lengths, the pcapng block trailer, minimum block sizes, wiretap's bound on a
block (MAX_BLOCK_SIZE) and on a frame (`max_snaplen`: 262,144 octets for standard link types:
a length field of 0xFFFFFFF0 is refused before anything is allocated), the interface a packet
names, section headers and their versions, option lengths, and a gzip stream cut short.
"""
from __future__ import annotations

import errno
import gzip
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast

GZIP_MAGIC = b"\x1f\x8b"     # tshark reads gzip-compressed captures too

# pcap (libpcap file format): magic numbers, microsecond and nanosecond variants
PCAP_MAGICS = {0xA1B2C3D4: 1e-6, 0xA1B23C4D: 1e-9}
PCAP_FILE_HEADER, PCAP_RECORD_HEADER = 24, 16
# pcapng block types (draft-ietf-opsawg-pcapng 4, 10.1)
SHB, IDB, OBSOLETE_PB, SPB, NRB, ISB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0A
JOURNAL_EXPORT = 9                                 # systemd journal entry: a frame for tshark
CUSTOM_BLOCKS = (0x00000BAD, 0x40000BAD)           # custom blocks: frames for tshark too
SYSDIG_EVENTS = {0x204: 36, 0x216: 40, 0x221: 40}  # sysdig event blocks (frames): minimum size
BYTE_ORDER_MAGIC = 0x1A2B3C4D
SHB_VERSIONS = ((1, 0), (1, 2))
OPT_ENDOFOPT = 0
OPT_COMMENT = 1                                    # opt_comment: the lab writes path=... here
OPT_IDB_FILTER = 11
OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 9, 14
NANO = 1_000_000_000
DEFAULT_CLOCK = (1_000_000, 0)                     # pcapng: microseconds, no offset
CUSTOM_OPTIONS = (2988, 2989, 19372, 19373)        # each starts with a 4-octet PEN
# EPB/PB options whose length wiretap checks: code -> (exact length, or minimum if negative)
PACKET_OPTION_LENGTHS = {2: 4, 4: 8, 5: 8, 6: 4, 7: -1}
VERDICT_FIXED = (1, 2)                             # epb_verdict TC and XDP: 1 + 8 octets

# wiretap's bounds (wtap.h): a block of at most an EPB with a 128 MiB D-Bus packet and
# 128 KiB of options; a frame of at most 262,144 octets except for the link types below
MAX_BLOCK_SIZE = 32 + 128 * 1024 * 1024 + 131072
MAX_SNAPLEN_STANDARD = 262144
MAX_SNAPLEN = {231: 128 * 1024 * 1024,                               # D-Bus
               249: 128 * 1024 * 1024, 189: 128 * 1024 * 1024,      # USB (usbpcap, Linux)
               220: 128 * 1024 * 1024, 279: 8 * 1024 * 1024}        # USB mmapped, EBHSCR
BLOCK_NAMES = {SHB: "SHB", IDB: "IDB", OBSOLETE_PB: "PB", SPB: "SPB", NRB: "NRB", ISB: "ISB",
               EPB: "EPB", DSB: "DSB"}
OTHER_RECORD = -1   # linktype of a frame that is not a packet (custom block, journal, sysdig)


def _epoch(seconds: int, nanoseconds: int) -> float:
    """tshark prints frame.time_epoch as seconds.nanoseconds; this is the float of that text
    (an int division is correctly rounded, as float() of the decimal text is)."""
    return (seconds * NANO + nanoseconds) / NANO


def max_snaplen(linktype: int) -> int:
    """The largest frame wiretap accepts for a link type (wtap_max_snaplen_for_encap)."""
    return MAX_SNAPLEN.get(linktype, MAX_SNAPLEN_STANDARD)


class NotACapture(ValueError):
    """The stream does not start with a pcap or pcapng header."""


class NotARegularFile(OSError):
    """A FIFO, a device or a socket: reading it could block forever or never end."""


@dataclass(frozen=True, slots=True)
class Damage:
    """Where and why a capture could not be read to its end."""
    offset: int          # octet offset of the unit that could not be read (decompressed)
    unit: str            # "block" (pcapng) or "record" (pcap), or "file header"
    number: int          # 1-based number of that block or record in the file
    frames: int          # whole frames read before it
    reason: str

    def __str__(self) -> str:
        return (f"{self.unit} {self.number} at offset {self.offset}: {self.reason} "
                f"(after {self.frames} whole frames)")


class CaptureDamaged(ValueError):
    """A damaged capture read without a DropCounter; `damage` says where and why."""

    def __init__(self, damage: Damage):
        super().__init__(str(damage))
        self.damage = damage


@dataclass(slots=True)
class Record:
    number: int          # 1-based frame number, as tshark numbers frames
    linktype: int        # OTHER_RECORD for a frame that is not a packet
    data: bytes          # captured octets
    length: int = 0      # octets on the wire (captured ones may be fewer: the snap length)
    time: float = 0.0    # epoch seconds, the same float as tshark's frame.time_epoch
    comments: tuple[str, ...] = ()   # pcapng opt_comment of the packet block


@dataclass(slots=True)
class DropCounter:
    """What the reader could not hand on: kernel drops reported by dumpcap in pcapng
    Interface Statistics Blocks, and the damage that ended the capture early, if any."""
    dropped: int = 0
    damage: Damage | None = None
    statistics: int = 0    # Interface Statistics Blocks read: dumpcap wrote its counts (0: none)


@dataclass(slots=True)
class Block:
    """One unit of the stream, with its exact octets so it can be forwarded to tshark:
    the file header (pcap) or a pcapng block. `record` is set for the frames."""
    raw: bytes
    record: Record | None = None


class _Bad(Exception):
    """The unit being read is damaged (the message says why)."""


class _Reader:
    """The stream's octets with the offset reached; a short read raises _Bad."""

    def __init__(self, stream: BinaryIO, prefix: bytes = b""):
        self.stream = stream
        self.prefix = prefix
        self.offset = 0

    def read_some(self, n: int) -> bytes:
        """Up to n octets: fewer only at the end of the stream."""
        if not self.prefix:                                  # the common case, in one call
            try:
                data = self.stream.read(n)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise _Bad(f"gzip stream damaged or cut short ({exc})") from None
            if len(data) == n:
                self.offset += n
                return data
        else:
            data = b""
        if self.prefix:
            data, self.prefix = self.prefix[:n], self.prefix[n:]
        while len(data) < n:
            try:
                more = self.stream.read(n - len(data))
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                self.offset += len(data)
                raise _Bad(f"gzip stream damaged or cut short ({exc})") from None
            if not more:
                break
            data += more
        self.offset += len(data)
        return data

    def unread(self, data: bytes) -> None:
        """Give octets back: the next read starts with them."""
        self.prefix = data + self.prefix
        self.offset -= len(data)

    def read(self, n: int, what: str) -> bytes:
        data = self.read_some(n)
        if len(data) < n:
            raise _Bad(f"cut short in {what} ({len(data)} of {n} octets)")
        return data


class PassedOver(Protocol):
    """Where `records` counts the frames its pre-filter passed over (dissectors.accounting's
    Accounting is one): each was read, and filtered."""
    read: int
    filtered: int


def records(stream: BinaryIO, drops: DropCounter | None = None,
            keep_data: bool = True,
            prefilter: tuple[Callable[[int, bytes], bool], PassedOver] | None = None,
            ) -> Iterator[Record]:
    """Every frame of a pcap or pcapng stream, in order (see the module docstring for
    damage); a wrong header raises NotACapture. `prefilter`: (wanted(linktype, octets),
    counts): a frame `wanted` refuses is counted in `counts` (read and filtered) instead of
    being yielded; a plain pcap file's is never made a Record at all (most frames of a large
    capture are plain traffic)."""
    walk = _walker(stream, keep_data)
    counter = drops if drops is not None else DropCounter()
    if not keep_data:
        prefilter = None                      # no octets to decide on
    if isinstance(walk, _Pcap) and not isinstance(stream, gzip.GzipFile):
        # no Block (and no copy of its octets) each
        yield from walk.records(counter, prefilter)
    else:
        wanted, counts = prefilter if prefilter is not None else (None, cast(PassedOver, None))
        for block in walk.blocks(counter):
            rec = block.record
            if rec is None:
                continue
            if wanted is not None and not wanted(rec.linktype, rec.data):
                counts.read += 1
                counts.filtered += 1
            else:
                yield rec
    if drops is None and counter.damage is not None:
        raise CaptureDamaged(counter.damage)


def blocks(stream: BinaryIO, drops: DropCounter | None = None,
           keep_data: bool = True) -> Iterator[Block]:
    """Every block of a pcap or pcapng stream: header blocks, then frames (with records)."""
    walk = _walker(stream, keep_data)
    counter = drops if drops is not None else DropCounter()
    yield from walk.blocks(counter)
    if drops is None and counter.damage is not None:
        raise CaptureDamaged(counter.damage)


def _walker(stream: BinaryIO, keep_data: bool) -> _Pcap | _Pcapng:
    """The reader of the stream's format, from its first octets (NotACapture if none)."""
    reader = _Reader(stream)
    try:
        head = reader.read_some(4)
    except _Bad as bad:
        raise NotACapture(str(bad)) from None
    if not head:
        raise NotACapture("empty file")
    if len(head) < 4:
        raise NotACapture("too short for a capture file")
    (magic_le,) = struct.unpack("<I", head)
    (magic_be,) = struct.unpack(">I", head)
    walk: _Pcap | _Pcapng
    if magic_le == SHB:
        walk = _Pcapng(reader, head, keep_data)
    elif magic_le in PCAP_MAGICS or magic_be in PCAP_MAGICS:
        walk = _Pcap(reader, head, "<" if magic_le in PCAP_MAGICS else ">", keep_data)
    else:
        raise NotACapture("not a pcap or pcapng file")
    return walk


class _Pcap:
    """libpcap files: a 24-octet header, then 16-octet record headers and their data."""

    def __init__(self, reader: _Reader, head: bytes, endian: str, keep_data: bool):
        self.r, self.head, self.endian, self.keep_data = reader, head, endian, keep_data
        self.linktype, self.nanos_per_unit, self.limit = 0, 0, 0     # _file_header sets them

    def _file_header(self, drops: DropCounter) -> bytes | None:
        """The rest of the file header (None: damaged, said in `drops`); sets linktype,
        nanos_per_unit (nanoseconds per timestamp unit) and limit (its max_snaplen)."""
        try:
            rest = self.r.read(PCAP_FILE_HEADER - 4, "the pcap file header")
        except _Bad as bad:
            drops.damage = Damage(0, "file header", 1, 0, str(bad))
            return None
        major = struct.unpack(self.endian + "H", rest[:2])[0]
        if major < 2:
            drops.damage = Damage(0, "file header", 1, 0, f"pcap version {major} unsupported")
            return None
        self.linktype = struct.unpack(self.endian + "I", rest[16:20])[0] & 0x0FFFFFFF
        (magic,) = struct.unpack(self.endian + "I", self.head)
        self.nanos_per_unit = round(PCAP_MAGICS[magic] * NANO)
        self.limit = max_snaplen(self.linktype)
        return rest

    def records(self, drops: DropCounter,
                prefilter: tuple[Callable[[int, bytes], bool], PassedOver] | None = None,
                ) -> Iterator[Record]:
        """The frames of `blocks`, the same records and damage, read READ_AT_ONCE octets at a
        time and cut from that buffer (a read, a Block and a copy of the octets per frame
        were a quarter of report's time at 10 % mobility, profiled). Not for a gzip stream:
        a read that fails there must lose no more than the frame it cuts (`blocks`)."""
        if self._file_header(drops) is None:
            return
        r, keep_data = self.r, self.keep_data
        linktype, nanos_per_unit, limit = self.linktype, self.nanos_per_unit, self.limit
        unpack = struct.Struct(self.endian + "IIII").unpack_from
        wanted, counts = prefilter if prefilter is not None else (None, cast(PassedOver, None))
        buf, at, base = b"", 0, r.offset      # base: the stream offset of buf[0]
        number, ended = 0, False
        # frames passed over since the counts were last told (told before every record
        # yielded and when the pass ends or stops: read and filtered move together)
        passed = 0
        try:
            while True:
                if not ended and len(buf) - at < PCAP_RECORD_HEADER + MAX_SNAPLEN_STANDARD:
                    if passed:                      # told at least once per read as well
                        counts.read += passed
                        counts.filtered += passed
                        passed = 0
                    more = r.read_some(READ_AT_ONCE)
                    buf, base, at = buf[at:] + more, base + at, 0
                    ended = len(more) < READ_AT_ONCE
                size = len(buf)
                # the records that start up to `stop` are read here without the refill test:
                # a standard frame that starts there ends inside `buf`
                stop = size - PCAP_RECORD_HEADER if ended else \
                    size - PCAP_RECORD_HEADER - MAX_SNAPLEN_STANDARD
                while at <= stop:
                    seconds, fraction, incl_len, orig_len = unpack(buf, at)
                    end = at + PCAP_RECORD_HEADER + incl_len
                    if incl_len > limit or end > size:
                        break                       # damaged, or longer than what is read
                    number += 1
                    data = buf[at + PCAP_RECORD_HEADER:end] if keep_data else b""
                    if wanted is not None and not wanted(linktype, data):
                        passed += 1
                    else:
                        if passed:
                            counts.read += passed
                            counts.filtered += passed
                            passed = 0
                        yield Record(number, linktype, data, orig_len,
                                     _epoch(seconds, fraction * nanos_per_unit))
                    at = end
                else:
                    if not ended:
                        continue                    # refill, then on
                # the end, damage, or a frame longer than what is read: made whole, it is
                # read by the loop above on the next turn
                left = size - at
                if left < PCAP_RECORD_HEADER:
                    if left:
                        drops.damage = Damage(
                            base + at, "record", number + 1, number,
                            f"cut short in a record header ({left} of 16 octets)")
                    return                                   # else the end, between records
                seconds, fraction, incl_len, orig_len = unpack(buf, at)
                if incl_len > limit:
                    # wiretap refuses it (and so never allocates 4 GB for a damaged length)
                    drops.damage = Damage(base + at, "record", number + 1, number,
                                          f"captured length {incl_len} is larger than {limit}")
                    return
                end = at + PCAP_RECORD_HEADER + incl_len
                # a frame longer than what is read (D-Bus, USB: longer than a standard one)
                buf, base, end, at = buf[at:], base + at, end - at, 0
                buf += r.read_some(end - len(buf))
                if end > len(buf):
                    drops.damage = Damage(
                        base, "record", number + 1, number,
                        f"cut short in a record's data "
                        f"({len(buf) - PCAP_RECORD_HEADER} of {incl_len} octets)")
                    return
        finally:
            if passed:
                counts.read += passed
                counts.filtered += passed

    def blocks(self, drops: DropCounter) -> Iterator[Block]:
        r = self.r
        rest = self._file_header(drops)
        if rest is None:
            return
        yield Block(self.head + rest)
        linktype, nanos_per_unit, limit = self.linktype, self.nanos_per_unit, self.limit
        rec = struct.Struct(self.endian + "IIII")
        number = 0
        while True:
            start = r.offset
            try:
                header = r.read_some(PCAP_RECORD_HEADER)
                if not header:
                    return                                   # the end, between records
                if len(header) < PCAP_RECORD_HEADER:
                    raise _Bad(f"cut short in a record header ({len(header)} of 16 octets)")
                seconds, fraction, incl_len, orig_len = rec.unpack(header)
                if incl_len > limit:
                    # wiretap refuses it (and so never allocates 4 GB for a damaged length)
                    raise _Bad(f"captured length {incl_len} is larger than {limit}")
                data = r.read(incl_len, "a record's data")
            except _Bad as bad:
                drops.damage = Damage(start, "record", number + 1, number, str(bad))
                return
            number += 1
            kept = data if self.keep_data else b""
            yield Block(header + kept, Record(number, linktype, kept, orig_len,
                                              _epoch(seconds, fraction * nanos_per_unit)))


@dataclass(slots=True)
class _Section:
    endian: str = "<"
    interfaces: list[tuple[int, int]] = field(default_factory=list)   # (linktype, snaplen)
    # the section's byte order, compiled once (a block costs a few of these)
    u32: struct.Struct = field(init=False)
    pair32: struct.Struct = field(init=False)
    pair16: struct.Struct = field(init=False)
    epb: struct.Struct = field(init=False)
    limits: list[int] = field(default_factory=list)    # max_snaplen of each interface
    # each interface's if_tsresol (timestamp units per second) and if_tsoffset (seconds)
    clocks: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.u32 = struct.Struct(self.endian + "I")
        self.epb = struct.Struct(self.endian + "IIIII")
        self.pair32 = struct.Struct(self.endian + "II")
        self.pair16 = struct.Struct(self.endian + "HH")


# the smallest total length of each block type, as wiretap checks it (others: 12)
MIN_BLOCK_SIZES = {IDB: 20, OBSOLETE_PB: 32, EPB: 32, SPB: 16, NRB: 16, ISB: 24, DSB: 20,
                   **dict.fromkeys(CUSTOM_BLOCKS, 16), **SYSDIG_EVENTS}
READ_AT_ONCE = 1 << 20     # a longer packet block is checked on its fixed part before the rest


class _Pcapng:
    """pcapng, block by block, checked as wiretap checks it (pcapng.c, pcapng_read_block), so
    a damaged block ends the file where tshark's reading ends. A block is read in one go (the
    reader's cost per block matters at 2,000,000 packets) and parsed in memory."""

    def __init__(self, reader: _Reader, head: bytes, keep_data: bool):
        self.r, self.first_head, self.keep_data = reader, head, keep_data
        self.section = _Section()
        self.frames = 0

    def blocks(self, drops: DropCounter) -> Iterator[Block]:
        r = self.r
        number = 0
        while True:
            number += 1
            start = r.offset if number > 1 else 0      # the first 4 octets were read to sniff
            try:
                if number == 1:
                    head = self.first_head + r.read(4, "the first block header")
                else:
                    head = r.read_some(8)
                    if not head:
                        return                               # the end, between blocks
                    if len(head) < 8:
                        raise _Bad(f"cut short in a block header ({len(head)} of 8 octets)")
                block = self._block(head, drops)
            except _Bad as bad:
                drops.damage = Damage(start, "block", number, self.frames, str(bad))
                return
            if block.record is not None:
                self.frames += 1                     # counted once the whole block is good
            yield block

    def _u32(self, data: bytes, at: int = 0) -> int:
        return int(self.section.u32.unpack_from(data, at)[0])

    def _block(self, head: bytes, drops: DropCounter) -> Block:
        if head[:4] == b"\x0a\x0d\x0d\x0a":
            return self._shb(head)
        btype, length = self.section.pair32.unpack(head)
        length = (length + 3) & 0xFFFFFFFC                # wiretap's rounding (_round4)
        if length > MAX_BLOCK_SIZE:
            raise _Bad(f"total block length {length} is too large (> {MAX_BLOCK_SIZE})")
        if btype == EPB and 32 <= length <= READ_AT_ONCE:
            fast = self._enhanced_packet(head, length)
            if fast is not None:
                return fast
        minimum = MIN_BLOCK_SIZES.get(btype, 12)
        if length < minimum:
            name = BLOCK_NAMES.get(btype, f"block of type 0x{btype:x}")
            raise _Bad(f"total block length {length} of an {name} is less than {minimum}")
        if btype in (EPB, OBSOLETE_PB) and length > READ_AT_ONCE:
            fixed = self.r.read(20, "a packet block")
            self._packet_fixed(btype, length, fixed)     # a bogus caplen allocates nothing
            body = fixed + self.r.read(length - 28, "a block")
        else:
            body = self.r.read(length - 8, "a block")     # the body and the trailer
        record = None
        if btype in (EPB, OBSOLETE_PB):
            record = self._packet(btype, length, body)
        elif btype == SPB:
            body, record = self._simple_packet(length, body)
        elif btype == IDB:
            linktype, _, snaplen = struct.unpack_from(self.section.endian + "HHI", body)
            self._options(body, 8, length - 12, IDB)
            self.section.interfaces.append((linktype, snaplen))
            self.section.limits.append(max_snaplen(linktype))
            self.section.clocks.append(self._clock(body, 8, length - 12))
        elif btype == NRB:
            self._name_resolution(body, length - 12)
        elif btype == ISB:
            self._options(body, 12, length - 12, ISB)
            _isb_drops(body[12:length - 12], self.section.endian, drops)
        elif btype == DSB:
            secrets = self._u32(body, 4)
            if secrets > 1024 * 1024 * 1024:
                raise _Bad(f"secrets block is too large: {secrets}")
            if 20 + secrets > length:
                # wiretap skips (length - 20 - secrets) as an unsigned number: past any end
                raise _Bad("decryption secrets longer than their block")
        elif btype == JOURNAL_EXPORT:
            if len(body[:length - 12].rstrip(b"\0")) < 23:
                raise _Bad("systemd journal entry is too small (< 23)")
            record = self._frame(OTHER_RECORD, body[:length - 12])
        elif btype in CUSTOM_BLOCKS or btype in SYSDIG_EVENTS:
            record = self._frame(OTHER_RECORD, body[:length - 12])
        self._trailer(body, length)
        keep = self.keep_data or record is None
        return Block(head + body if keep else b"", record)

    def _enhanced_packet(self, head: bytes, length: int) -> Block | None:
        """The common block, checked inline (a quarter of the cost at 2,000,000 packets). None
        when a check fails: the general path then reads it again and says why."""
        body = self.r.read(length - 8, "a block")
        section = self.section
        iface, _, _, caplen, _ = section.epb.unpack_from(body)
        padded = (caplen + 3) & ~3
        end = length - 12
        if (length < 32 + padded or iface >= len(section.limits)
                or caplen > section.limits[iface]
                or (section.u32.unpack_from(body, end)[0] + 3) & 0xFFFFFFFC != length):
            self.r.unread(body)
            return None
        if 20 + padded < end:
            self._options(body, 20 + padded, end, EPB)
        data = body[20:20 + caplen] if self.keep_data else b""
        return Block(head + body if self.keep_data else b"",
                     self._record(section.interfaces[iface][0], data, body, EPB,
                                  20 + padded, end))

    def _trailer(self, body: bytes, length: int) -> None:
        second = _round4(self._u32(body, len(body) - 4))
        if second != length:
            raise _Bad(f"total block lengths (first {length} and second {second}) don't match")

    def _frame(self, linktype: int, data: bytes) -> Record:
        return Record(self.frames + 1, linktype, data if self.keep_data else b"")

    def _shb(self, head: bytes) -> Block:
        fixed = self.r.read(16, "a section header block")
        magic = struct.unpack("<I", fixed[:4])[0]
        if magic == BYTE_ORDER_MAGIC:
            endian = "<"
        elif magic == struct.unpack(">I", struct.pack("<I", BYTE_ORDER_MAGIC))[0]:
            endian = ">"
        elif self.r.offset == 20:
            raise NotACapture("not a pcap or pcapng file")   # the file's first block
        else:
            raise _Bad(f"unknown byte-order magic number 0x{magic:08x}")
        length = _round4(struct.unpack(endian + "I", head[4:8])[0])
        if length < 28:
            raise _Bad(f"total block length {length} of an SHB is less than 28")
        if length > MAX_BLOCK_SIZE:
            raise _Bad(f"total block length {length} is too large (> {MAX_BLOCK_SIZE})")
        version = struct.unpack(endian + "HH", fixed[4:8])
        if version not in SHB_VERSIONS:
            raise _Bad(f"unknown SHB version {version[0]}.{version[1]}")
        self.section = _Section(endian)                  # interfaces are per section
        body = fixed + self.r.read(length - 24, "a section header block")
        self._options(body, 16, length - 12, SHB)
        self._trailer(body, length)
        return Block(head + body)

    def _interface(self, index: int) -> tuple[int, int]:
        if index >= len(self.section.interfaces):
            raise _Bad(f"interface index {index} is not less than section interface count "
                       f"{len(self.section.interfaces)}")
        return self.section.interfaces[index]

    def _packet_fixed(self, btype: int, length: int, fixed: bytes) -> tuple[int, int]:
        """(link type, captured length) of an EPB or PB, checked against its block."""
        if btype == EPB:
            iface, _, _, caplen, _ = struct.unpack_from(self.section.endian + "IIIII", fixed)
        else:
            iface, _, _, _, caplen, _ = struct.unpack_from(self.section.endian + "HHIIII", fixed)
        if length < 32 + _round4(caplen):
            raise _Bad(f"total block length {length} is too small for {caplen} octets of "
                       "packet data")
        linktype, _ = self._interface(iface)
        if caplen > max_snaplen(linktype):
            raise _Bad(f"cap_len {caplen} is larger than {max_snaplen(linktype)}")
        return linktype, caplen

    def _packet(self, btype: int, length: int, body: bytes) -> Record:
        linktype, caplen = self._packet_fixed(btype, length, body)
        self._options(body, 20 + _round4(caplen), length - 12, EPB)
        return self._record(linktype, body[20:20 + caplen] if self.keep_data else b"", body,
                            btype, 20 + _round4(caplen), length - 12)

    def _record(self, linktype: int, data: bytes, body: bytes, btype: int, options: int,
                end: int) -> Record:
        """A packet block's frame with its wire length, time (the interface's clock) and
        comments (options were checked already)."""
        endian = self.section.endian
        if btype == EPB:
            iface, high, low, _, orig_len = self.section.epb.unpack_from(body)
        else:                                             # the obsolete PB
            iface, _, high, low, _, orig_len = struct.unpack_from(endian + "HHIIII", body)
        clocks = self.section.clocks
        units, offset = clocks[iface] if iface < len(clocks) else DEFAULT_CLOCK
        ticks = (high << 32) | low
        comments = self._comments(body, options, end) if options < end and self.keep_data \
            else ()
        return Record(self.frames + 1, linktype, data, orig_len,
                      _epoch(ticks // units + offset, ticks % units * NANO // units), comments)

    def _option_values(self, body: bytes, at: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(code, value) of the options in body[at:end], to opt_endofopt (framing checked)."""
        pair16 = self.section.pair16
        while at + 4 <= end:
            code, olen = pair16.unpack_from(body, at)
            if code == OPT_ENDOFOPT:
                return
            yield code, body[at + 4:at + 4 + olen]
            at += 4 + _round4(olen)

    def _comments(self, body: bytes, at: int, end: int) -> tuple[str, ...]:
        return tuple(value.decode("utf-8", "replace")
                     for code, value in self._option_values(body, at, end)
                     if code == OPT_COMMENT)

    def _clock(self, body: bytes, at: int, end: int) -> tuple[int, int]:
        """if_tsresol (10^-n, or 2^-n when its top bit is set) and if_tsoffset of an IDB."""
        units, offset = DEFAULT_CLOCK
        for code, value in self._option_values(body, at, end):
            if code == OPT_IF_TSRESOL and value:
                units = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
            elif code == OPT_IF_TSOFFSET and len(value) == 8:
                offset = struct.unpack(self.section.endian + "q", value)[0]
        return units or DEFAULT_CLOCK[0], offset

    def _simple_packet(self, length: int, body: bytes) -> tuple[bytes, Record]:
        if not self.section.interfaces:
            raise _Bad("SPB appeared before any IDBs in the section")
        linktype, snaplen = self.section.interfaces[0]
        caplen = self._u32(body)
        if snaplen and caplen > snaplen:
            caplen = snaplen
        padded = _round4(caplen)
        if length < 16 + padded:
            raise _Bad(f"total block length {length} of an SPB is too small for {caplen} "
                       "octets of packet data")
        if caplen > max_snaplen(linktype):
            raise _Bad(f"cap_len {caplen} is larger than {max_snaplen(linktype)}")
        # wiretap reads no options from an SPB: its trailer follows the data at once, and
        # what the block's length claims beyond that is read as the next block
        end = 4 + padded + 4
        surplus = body[end:]
        if surplus:
            self.r.unread(surplus)
        wire = self._u32(body)
        return body[:end], Record(self.frames + 1, linktype,
                                  body[4:4 + caplen] if self.keep_data else b"", wire)

    def _name_resolution(self, body: bytes, size: int) -> None:
        at = 0
        while at < size:
            if size - at < 4:
                raise _Bad("not enough room in the NRB for a record header")
            rtype, rlen = self.section.pair16.unpack_from(body, at)
            at += 4
            padded = _round4(rlen)
            if size - at < padded:
                raise _Bad("NRB record longer than its block")
            if rtype == 0:
                break                                       # end of records, then options
            if rtype in (1, 2):
                address = (4, 16)[rtype - 1]
                if rlen < address:
                    raise _Bad(f"NRB record length {rlen} too short for its address")
                names = body[at + address:at + rlen]
                if names and not names.endswith(b"\0"):
                    raise _Bad("NRB record has a host name without its terminating NUL")
            at += padded
        self._options(body, at, size, NRB)

    def _options(self, body: bytes, at: int, end: int, btype: int) -> None:
        """Check the framing of a block's options, body[at:end], as wiretap does."""
        pair16 = self.section.pair16
        while at < end:
            if end - at < 4:
                raise _Bad("not enough data for an option header")
            code, olen = pair16.unpack_from(body, at)
            at += 4
            padded = (olen + 3) & ~3
            if padded > end - at:
                raise _Bad(f"not enough data to handle option of length {olen}")
            if code == OPT_ENDOFOPT:
                return                                      # the rest is ignored
            if code in CHECKED_OPTIONS:
                _check_option(btype, code, body[at:at + olen])
            at += padded


CHECKED_OPTIONS = frozenset((*CUSTOM_OPTIONS, OPT_IDB_FILTER, *PACKET_OPTION_LENGTHS))


def _check_option(btype: int, code: int, value: bytes) -> None:
    olen = len(value)
    if code in CUSTOM_OPTIONS:
        if olen < 4:
            raise _Bad(f"option length ({olen}) too small for custom option")
    elif btype == IDB and code == OPT_IDB_FILTER:
        if olen < 1:
            raise _Bad(f"interface filter option length {olen} is < 1")
    elif btype == EPB and code in PACKET_OPTION_LENGTHS:
        want = PACKET_OPTION_LENGTHS[code]
        if (want >= 0 and olen != want) or (want < 0 and olen < -want):
            raise _Bad(f"packet block option {code} has length {olen}")
        if code == 7 and value[0] in VERDICT_FIXED and olen != 9:
            raise _Bad(f"packet block verdict option length {olen} is != 9")


def _round4(n: int) -> int:
    """A length rounded up to 4 octets as wiretap does it, in 32 bits (so it can wrap)."""
    return (n + 3) & 0xFFFFFFFC


def _isb_drops(options: bytes, endian: str, drops: DropCounter) -> None:
    """pcapng ISB options: isb_ifdrop (5) is what the kernel dropped; dumpcap writes it."""
    drops.statistics += 1
    at = 0
    while at + 4 <= len(options):
        code, olen = struct.unpack(endian + "HH", options[at:at + 4])
        if code == OPT_ENDOFOPT:
            return
        if code == 5 and olen == 8:
            drops.dropped = max(drops.dropped, struct.unpack(endian + "Q",
                                                             options[at + 4:at + 12])[0])
        at += 4 + _round4(olen)


def open_capture(path: str) -> BinaryIO:
    """The capture's octets, decompressed when the file is gzip (as tshark accepts it).
    Only a regular file: opening a FIFO would wait for a writer, and a device never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)      # a FIFO's open must not block
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "not a regular file", path)
    stream = open(fd, "rb")
    if stream.peek(2)[:2] == GZIP_MAGIC:
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def count_records(path: str) -> int:
    """Frames readable in a capture (a damaged one raises CaptureDamaged)."""
    with open_capture(path) as f:
        return sum(1 for _ in records(f, keep_data=False))
