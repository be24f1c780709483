"""Capture files as data, and hypothesis strategies that damage their framing.

A capture is parsed here into `Unit`s (the pcap file header and records, or pcapng blocks),
independently of dissectors.capfile (the code under test), mutated as data, and written back.
The strategies damage only the framing (issue 13): block types and lengths, section headers,
interface blocks, byte order, options, record lengths, garbage mid-file, a file or a gzip
stream cut at any offset. Link types stay those the base capture has (Ethernet): wiretap reads
a pseudo-header for some others, which is packet content, not framing.

Extending it (issue 12's packet-level mutations): a strategy that maps a base `Capture` to a
new one (replace `Unit.body` of packet records with mutated packets, keep the framing) can be
fed to the same runner (tests/fuzz/runner.py), which checks the invariants for any file.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

SHB, IDB, PB, SPB, NRB, ISB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0A
# block types a damaged file may show where a block should be: the standard ones, and
# unknown or local ones (skipped by any reader). Not the few wiretap returns as frames of
# their own (custom, systemd journal, sysdig events): tests/dissectors covers those.
BLOCK_TYPES = (SHB, IDB, PB, SPB, NRB, ISB, EPB, DSB, 0, 7, 8, 0x0B, 0x101, 0x80000001,
               0x0D0D0A0D, 0xFFFFFFFF)
OPTION_CODES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 2988, 2989, 19372, 0x8001)
LENGTHS = st.one_of(st.integers(0, 64), st.integers(0, 0xFFFFFFFF),
                    st.sampled_from([0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF, 0x80000000,
                                     262144, 262145, 134348832, 134348836]))


@dataclass
class Unit:
    """One pcapng block (`btype`, `body` without header and trailer) or one pcap record
    (`header` of 16 octets, `body` its data); the pcap file header is the first unit."""
    btype: int
    body: bytes
    header: bytes = b""            # pcap only
    length: int | None = None      # a pcapng block's total length, if not the true one
    trailer: int | None = None     # a pcapng block's trailing length, if not the true one


@dataclass
class Capture:
    kind: str                      # "pcapng" or "pcap"
    endian: str                    # "<" or ">"
    units: list[Unit] = field(default_factory=list)
    garbage: tuple[int, bytes] | None = None   # (offset, octets) inserted into the file
    cut: int | None = None                      # keep only this many octets of the file
    compress: bool = False                      # gzip the file (cut then applies to the gzip)
    changes: list[str] = field(default_factory=list)   # what the strategies did, in order

    def __repr__(self) -> str:       # what a failing example shows: the damage, not the octets
        return f"<{self.kind} {self.endian} {len(self.units)} units: {'; '.join(self.changes)}>"

    def _repr_pretty_(self, printer, cycle) -> None:       # hypothesis prints examples so
        printer.text(repr(self))

    def to_bytes(self) -> bytes:
        e = self.endian
        out = bytearray()
        for u in self.units:
            if self.kind == "pcap":
                out += u.header + u.body
                continue
            body = u.body + bytes(-len(u.body) % 4)
            length = 12 + len(body)
            out += struct.pack(e + "II", u.btype, length if u.length is None else u.length)
            out += body
            out += struct.pack(e + "I", length if u.trailer is None else u.trailer)
        data = bytes(out)
        if self.garbage is not None:
            at, octets = self.garbage
            data = data[:at] + octets + data[at:]
        if self.compress:
            data = gzip.compress(data, mtime=0)
        if self.cut is not None:
            data = data[:self.cut]
        return data


def parse_pcapng(data: bytes) -> Capture:
    """A well-formed pcapng file (one byte order) as units."""
    endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    units, at = [], 0
    while at < len(data):
        btype, length = struct.unpack_from(endian + "II", data, at)
        units.append(Unit(btype, data[at + 8:at + length - 4]))
        at += length
    return Capture("pcapng", endian, units)


def swap_byte_order(capture: Capture) -> Capture:
    """The same pcapng file written by a host of the other byte order."""
    assert capture.kind == "pcapng"
    e, o = capture.endian, ">" if capture.endian == "<" else "<"
    units = []
    for u in capture.units:
        body = u.body
        if u.btype == SHB:
            body = struct.pack(o + "IHHq", *struct.unpack_from(e + "IHHq", body)) + \
                _swap_options(body[16:], e, o)
        elif u.btype == IDB:
            body = struct.pack(o + "HHI", *struct.unpack_from(e + "HHI", body)) + \
                _swap_options(body[8:], e, o)
        elif u.btype == EPB:
            iface, hi, lo, caplen, length = struct.unpack_from(e + "IIIII", body)
            padded = 20 + caplen + (-caplen % 4)
            body = struct.pack(o + "IIIII", iface, hi, lo, caplen, length) + \
                body[20:padded] + _swap_options(body[padded:], e, o)
        units.append(replace(u, body=body))
    return replace(capture, endian=o, units=units)


def _swap_options(options: bytes, e: str, o: str) -> bytes:
    out, at = b"", 0
    while at + 4 <= len(options):
        code, olen = struct.unpack_from(e + "HH", options, at)
        value = options[at + 4:at + 4 + olen + (-olen % 4)]
        out += struct.pack(o + "HH", code, olen) + value    # values here are strings only
        at += 4 + len(value)
        if code == 0:
            break
    return out


def pcap_from(capture: Capture) -> Capture:
    """The pcapng capture's packets as a classic pcap file (microseconds, its byte order)."""
    e = capture.endian
    linktype = next(struct.unpack_from(e + "H", u.body)[0] for u in capture.units
                    if u.btype == IDB)
    units = [Unit(0, struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))]
    for u in capture.units:
        if u.btype == EPB:
            _, hi, lo, caplen, length = struct.unpack_from(e + "IIIII", u.body)
            ts = (hi << 32) | lo
            units.append(Unit(0, u.body[20:20 + caplen], struct.pack(
                e + "IIII", ts // 1_000_000, ts % 1_000_000, caplen, length)))
    return Capture("pcap", e, units)


def frames_of(capture: Capture) -> int:
    if capture.kind == "pcap":
        return len(capture.units) - 1
    return sum(1 for u in capture.units if u.btype in (EPB, PB, SPB))


# --- mutations: each draws one change to a framing field ------------------------------------

def _cut(capture: Capture, least: int) -> st.SearchStrategy[int]:
    """An offset to cut the file (or its gzip stream) at, short of its end."""
    capture.cut = None
    size = len(capture.to_bytes())
    return st.integers(min(least, size), max(min(least, size), size - 1))


def _packet_units(capture: Capture) -> list[int]:
    return [i for i, u in enumerate(capture.units)
            if (u.btype == EPB if capture.kind == "pcapng" else i > 0)]


@st.composite
def damaged_pcapng(draw, base: Capture) -> Capture:
    """The base pcapng file (either byte order) with one or two framing fields damaged."""
    capture = swap_byte_order(base) if draw(st.booleans()) else base
    capture = replace(capture, units=[replace(u) for u in capture.units], changes=[])
    capture.changes.append(f"byte order {capture.endian}")
    for _ in range(draw(st.integers(1, 2))):
        capture = draw(_one_pcapng_damage(capture))
    return capture


@st.composite
def _one_pcapng_damage(draw, capture: Capture) -> Capture:
    units, e = capture.units, capture.endian
    i = draw(st.integers(0, len(units) - 1))
    u = units[i]
    kind = draw(st.sampled_from(["length", "trailer", "type", "field", "option", "insert",
                                 *FILE_DAMAGE]))
    where = f"unit {i} (type 0x{u.btype:x})"
    if kind == "length":
        u.length = draw(LENGTHS)
        capture.changes.append(f"{where} length {u.length}")
    elif kind == "trailer":
        u.trailer = draw(LENGTHS)
        capture.changes.append(f"{where} trailer {u.trailer}")
    elif kind == "type":
        u.btype = draw(st.sampled_from(BLOCK_TYPES))
        capture.changes.append(f"{where} type 0x{u.btype:x}")
    elif kind == "field":
        # a fixed field of the block: SHB magic/version, IDB snaplen, EPB iface/caplen/len
        offsets = {SHB: (0, 4, 6), IDB: (4,), EPB: (0, 12, 16), ISB: (0,)}.get(u.btype, (0,))
        at = draw(st.sampled_from(offsets))
        if u.btype == SHB and at in (4, 6):
            value = struct.pack(e + "H", draw(st.integers(0, 3)))
        elif u.btype == SHB:
            value = draw(st.sampled_from([b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d",
                                          b"\x00\x00\x00\x00"]))
        else:
            value = struct.pack(e + "I", draw(LENGTHS))
        u.body = u.body[:at] + value + u.body[at + len(value):]
        capture.changes.append(f"{where} octets {at}.. = {value.hex()}")
    elif kind == "option":
        fixed = {SHB: 16, IDB: 8, ISB: 12}.get(u.btype)
        if u.btype == EPB:
            caplen = struct.unpack_from(e + "I", u.body, 12)[0]
            fixed = 20 + caplen + (-caplen % 4) if 20 + caplen <= len(u.body) else None
        if fixed is not None:
            code, olen = draw(st.sampled_from(OPTION_CODES)), draw(st.integers(0, 40))
            room = draw(st.integers(0, 44))
            u.body = u.body[:fixed] + struct.pack(e + "HH", code, olen) + \
                draw(st.binary(min_size=room, max_size=room))
            capture.changes.append(f"{where} option {code} length {olen} in {room} octets")
    elif kind == "insert":
        btype = draw(st.sampled_from(BLOCK_TYPES))
        size = draw(st.integers(0, 48))
        units.insert(i, Unit(btype, draw(st.binary(min_size=size, max_size=size))))
        capture.changes.append(f"block 0x{btype:x} of {size} octets inserted at unit {i}")
    else:
        _damage_file(draw, capture, kind, 0)
    return capture


FILE_DAMAGE = ("garbage", "cut", "gzip-cut")


def _damage_file(draw, capture: Capture, kind: str, garbage_from: int) -> None:
    """Damage the file as a whole: garbage inserted, cut short, or gzipped and cut short."""
    if kind == "garbage":
        at = draw(st.integers(garbage_from, len(capture.to_bytes())))
        capture.garbage = (at, draw(st.binary(min_size=1, max_size=40)))
        capture.changes.append(f"{len(capture.garbage[1])} octets of garbage at {at}")
        return
    capture.compress = capture.compress or kind == "gzip-cut"
    capture.cut = draw(_cut(capture, 10 if capture.compress else 0))
    capture.changes.append(f"{'gzip stream ' if capture.compress else ''}cut at {capture.cut}")


@st.composite
def damaged_pcap(draw, base: Capture) -> Capture:
    """The base pcap file with a record length, the file header, garbage or a cut damaged."""
    capture = replace(base, units=[replace(u) for u in base.units], changes=[])
    e = capture.endian
    kind = draw(st.sampled_from(["incl_len", "version", *FILE_DAMAGE]))
    if kind == "incl_len":
        i = draw(st.sampled_from(_packet_units(capture)))
        u = capture.units[i]
        incl = draw(LENGTHS)
        u.header = u.header[:8] + struct.pack(e + "I", incl) + u.header[12:]
        capture.changes.append(f"record {i} incl_len={incl}")
    elif kind == "version":
        u = capture.units[0]
        major = draw(st.integers(0, 3))
        u.body = u.body[:4] + struct.pack(e + "H", major) + u.body[6:]
        capture.changes.append(f"major version {major}")
    else:
        _damage_file(draw, capture, kind, 24)
    return capture


# --- packet-level mutations (issue 12): the framing stays whole, the packets do not ---------

ETHERNET = 14
IPV6_HEADER = 40
EXTENSION_HEADERS = (0, 43, 60)      # hop-by-hop, routing, destination options: (len + 1) x 8
MOBILITY = 135
PACKET_DAMAGE = ("mh-header-len", "mh-type", "mh-octet", "ipv6-octet", "truncate",
                 "payload-length", "snap")


@dataclass(frozen=True)
class Packet:
    """One EPB's packet: where its data starts in the block's body, and its octets."""
    caplen: int
    origlen: int
    data: bytes
    options: bytes


def epb_packet(unit: Unit, e: str) -> Packet:
    caplen, origlen = struct.unpack_from(e + "II", unit.body, 12)
    data = unit.body[20:20 + caplen]
    return Packet(caplen, origlen, data, unit.body[20 + caplen + (-caplen % 4):])


def set_epb_packet(unit: Unit, e: str, data: bytes, origlen: int | None = None) -> None:
    """Put `data` in the EPB as its captured octets (origlen: the frame's length on the wire,
    at least the captured length; default the captured length)."""
    old = epb_packet(unit, e)
    caplen = len(data)
    unit.body = (unit.body[:12] + struct.pack(e + "II", caplen, origlen or caplen) + data
                 + bytes(-caplen % 4) + old.options)


def mobility_header_at(data: bytes) -> int | None:
    """Where the Mobility Header of an Ethernet / IPv6 frame starts (through hop-by-hop,
    routing and destination options), or None when it has none in the clear."""
    if len(data) < ETHERNET + IPV6_HEADER or data[12:14] != b"\x86\xdd":
        return None
    nh, at = data[ETHERNET + 6], ETHERNET + IPV6_HEADER
    while nh in EXTENSION_HEADERS and at + 2 <= len(data):
        nh, at = data[at], at + (data[at + 1] + 1) * 8
    return at if nh == MOBILITY and at + 6 <= len(data) else None


@st.composite
def mutated_packets(draw, base: Capture, live: bool = False) -> Capture:
    """The base pcapng file with one to three of its packets damaged, the framing kept whole:
    a Mobility Header's Header Len (below the type's minimum included: RFC 6275 9.2), type
    or any octet; an IPv6 header octet or Payload Length; a packet cut short; a snap length
    (captured < on the wire). `live`: only what a frame sent on a link can carry (no snap
    length, at least an Ethernet header and one octet)."""
    capture = replace(base, units=[replace(u) for u in base.units], changes=[])
    e = capture.endian
    packets = _packet_units(capture)
    with_mh = [i for i in packets
               if mobility_header_at(epb_packet(capture.units[i], e).data) is not None]
    kinds = [k for k in PACKET_DAMAGE if not (live and k == "snap")]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        i = draw(st.sampled_from(with_mh if kind.startswith("mh-") else packets))
        unit = capture.units[i]
        data = bytearray(epb_packet(unit, e).data)
        origlen = None
        mh = mobility_header_at(bytes(data))
        if kind.startswith("mh-") and mh is None:      # an earlier change took its MH away
            continue
        if kind == "mh-header-len":
            assert mh is not None
            data[mh + 1] = draw(st.one_of(st.integers(0, 3), st.integers(0, 255)))
            what = f"MH Header Len {data[mh + 1]}"
        elif kind == "mh-type":
            assert mh is not None
            data[mh + 2] = draw(st.one_of(st.integers(0, 17), st.integers(0, 255)))
            what = f"MH type {data[mh + 2]}"
        elif kind == "mh-octet":
            assert mh is not None
            at = draw(st.integers(mh, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
            what = f"octet {at} (MH + {at - mh}) = {data[at]}"
        elif kind == "ipv6-octet":
            at = draw(st.integers(ETHERNET, min(len(data), ETHERNET + IPV6_HEADER) - 1))
            data[at] = draw(st.integers(0, 255))
            what = f"IPv6 octet {at - ETHERNET} = {data[at]}"
        elif kind == "payload-length":
            value = draw(st.one_of(st.integers(0, 64), st.integers(0, 0xFFFF)))
            data[ETHERNET + 4:ETHERNET + 6] = struct.pack("!H", value)
            what = f"IPv6 Payload Length {value}"
        elif kind == "truncate":
            keep = draw(st.integers(ETHERNET + 1 if live else 0, max(len(data) - 1, 0)))
            del data[keep:]
            what = f"cut to {keep} octets"
        else:                                            # snap
            keep = draw(st.integers(0, max(len(data) - 1, 0)))
            origlen = len(data)
            del data[keep:]
            what = f"captured {keep} of {origlen} octets"
        set_epb_packet(unit, e, bytes(data), origlen)
        capture.changes.append(f"packet unit {i}: {what}")
    return capture


def frames(capture: Capture) -> list[bytes]:
    """Every packet's captured octets, in order (pcapng)."""
    return [epb_packet(capture.units[i], capture.endian).data for i in _packet_units(capture)]
