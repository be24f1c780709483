"""Mobility Header messages (RFC 6275 6.1) read from their octets, with PROFILE.md extensions.

Each message type's fixed part is declared as rows of `(field, struct format)` in `MESSAGES`
(as dpkt and scapy declare headers); its options (RFC 6275 6.2) follow at the offset the rows
add up to, and each option is read by the row of `OPTIONS` for its type. tshark remains the
authority for the message type (counts follow tshark); the octets give the fields tshark hides:
mobility option 18 (tshark's `mip6.em.data` drops two octets), the HoTI 'P' flag (Reserved
field, no tshark field), and the bytes the Binding Authorization Data covers (RFC 6275 6.2.7).
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dissectors.events import MobilityMessage
from dissectors.protocol import (
    BA_FLAGS,
    BU_FLAGS,
    HOTI_FLAGS,
    LIFETIME_UNIT,
    MH_HEADER_LENGTH,
    PRIVACY_TOKEN_SUBTYPE,
    MHType,
)
from dissectors.protocol import MobilityOption as Opt
from keys import formulas

MH_HEADER = MH_HEADER_LENGTH
PAD1 = int(Opt.PAD1)        # compared with every option's type octet: a plain int


@dataclass(frozen=True)
class Field:
    """One field of a message's fixed part: the `MobilityMessage` attribute it fills ("" for a
    reserved field), its struct format, and how the wire value becomes the attribute."""
    name: str
    fmt: str
    flags: dict[str, int] | None = None    # a flags field: bit per flag name
    scale: int = 1                          # lifetimes are in units of 4 seconds
    address: bool = False                   # 16 octets shown as RFC 5952 text


def _reserved(fmt: str, flags: dict[str, int] | None = None) -> Field:
    return Field("flags" if flags else "", fmt, flags)


# RFC 6275 6.1.2-6.1.9 (and PROFILE.md's HoTI 'P' flag): the fixed part of each message.
MESSAGES: dict[int, tuple[Field, ...]] = {
    MHType.BRR: (_reserved("H"),),                                                  # 6.1.2
    MHType.HOTI: (_reserved("H", HOTI_FLAGS), Field("cookie", "8s")),               # 6.1.3
    MHType.COTI: (_reserved("H"), Field("cookie", "8s")),                           # 6.1.4
    MHType.HOT: (Field("nonce_index", "H"), Field("cookie", "8s"),                  # 6.1.5
                 Field("keygen_token", "8s")),
    MHType.COT: (Field("nonce_index", "H"), Field("cookie", "8s"),                  # 6.1.6
                 Field("keygen_token", "8s")),
    MHType.BU: (Field("sequence", "H"), Field("flags", "H", BU_FLAGS),              # 6.1.7
                Field("lifetime", "H", scale=LIFETIME_UNIT)),
    MHType.BA: (Field("status", "B"), Field("flags", "B", BA_FLAGS),                # 6.1.8
                Field("sequence", "H"), Field("lifetime", "H", scale=LIFETIME_UNIT)),
    MHType.BE: (Field("status", "B"), _reserved("B"),                               # 6.1.9
                Field("error_home_address", "16s", address=True)),
}

# Where each message's options start (RFC 6275 6.1.2-6.1.9): the header plus its fixed part,
# which is also the smallest length a message of that type can have.
OPTIONS_AT = {mh_type: MH_HEADER + struct.calcsize("!" + "".join(f.fmt for f in fields))
              for mh_type, fields in MESSAGES.items()}


# RFC 5952 text of 16 octets (keys.formulas.address_text: inet_ntop, ipaddress under ::/80).
# Cached: a capture repeats the same few addresses, and formatting them is one of the walk's
# largest costs (profiled); a crowd's many care-of addresses miss it at inet_ntop's cost.
address: Callable[[bytes], str] = functools.lru_cache(maxsize=8192)(formulas.address_text)


def _alternate_care_of(data: bytes, mh: bytes, at: int) -> dict[str, Any]:
    return {"alternate_care_of_address": address(data)}


def _refresh_advice(data: bytes, mh: bytes, at: int) -> dict[str, Any]:
    return {"refresh_interval": struct.unpack("!H", data)[0] * LIFETIME_UNIT}


def _nonce_indices(data: bytes, mh: bytes, at: int) -> dict[str, Any]:
    home, care_of = struct.unpack("!HH", data)
    return {"home_nonce_index": home, "care_of_nonce_index": care_of}


def _authorization_data(data: bytes, mh: bytes, at: int) -> dict[str, Any]:
    # RFC 6275 6.2.7: the Authenticator covers Payload Proto .. this option's type and length,
    # with the checksum taken as zero
    return {"authenticator": bytes(data),
            "authenticated_data": mh[:4] + b"\x00\x00" + mh[6:at + 2]}


def _privacy_token(data: bytes, mh: bytes, at: int) -> dict[str, Any]:
    if data[0] != PRIVACY_TOKEN_SUBTYPE:
        return {}
    return {"privacy_keygen_token": bytes(data[2:10])}


@dataclass(frozen=True)
class OptionLayout:
    """A mobility option mip6mon reads: the data length it must have (None: any) and the
    reader that turns its data into `MobilityMessage` fields."""
    length: int | None
    read: Callable[[bytes, bytes, int], dict[str, Any]]


# RFC 6275 6.2 (and PROFILE.md option 18); Pad1/PadN and unknown options are skipped.
OPTIONS: dict[int, OptionLayout] = {
    Opt.BINDING_REFRESH_ADVICE: OptionLayout(2, _refresh_advice),            # 6.2.4
    Opt.ALTERNATE_CARE_OF_ADDRESS: OptionLayout(16, _alternate_care_of),     # 6.2.5
    Opt.NONCE_INDICES: OptionLayout(4, _nonce_indices),                      # 6.2.6
    Opt.BINDING_AUTHORIZATION_DATA: OptionLayout(None, _authorization_data),  # 6.2.7
    Opt.PRIVACY_KEYGEN_TOKEN: OptionLayout(10, _privacy_token),              # PROFILE.md
}


def checksum_ok(mh: bytes, src: bytes, dst: bytes) -> bool:
    """RFC 6275 6.1.1: the Internet checksum over the RFC 8200 8.1 pseudo-header (next header
    135) and the whole MH; a correct MH sums to 0xFFFF. The 16-bit words are summed in the
    machine's byte order (RFC 1071 2 (B): the one's complement sum does not depend on it, and
    0xFFFF reads the same either way)."""
    data = src + dst + len(mh).to_bytes(4, "big") + b"\x00\x00\x00\x87" + mh
    if len(data) % 2:
        data += b"\x00"
    # the folded sum is the sum of the words modulo 0xFFFF (2**16 = 1 mod 0xFFFF), in
    # 1..0xFFFF unless every word is 0: 0xFFFF exactly when the octets, read as one number,
    # are a non-zero multiple of 0xFFFF (one C call instead of a Python sum of the words)
    number = int.from_bytes(data, "big")
    return number != 0 and number % 0xFFFF == 0


# MobilityMessage's fields by position: parse fills a list of them and makes the message with
# one positional call (a dict of keyword arguments per message cost more than the reading)
_SLOT = {f.name: n for n, f in enumerate(dataclasses.fields(MobilityMessage))}
_BLANK: tuple[Any, ...] = tuple(None if f.default is dataclasses.MISSING else f.default
               for f in dataclasses.fields(MobilityMessage))
_CHECKSUM_VALID, _HEADER_LEN_SHORT = _SLOT["checksum_valid"], _SLOT["header_len_short"]


class _FlagNames:
    """A flags field's wire value -> the frozenset of its flag names (one per combination of
    the flag bits, so at most 2^flags of them)."""

    def __init__(self, bits: dict[str, int]):
        self.bits = tuple(bits.items())
        self.mask = sum(bits.values())
        self.seen: dict[int, frozenset[str]] = {}

    def __call__(self, value: int) -> frozenset[str]:
        value &= self.mask
        names = self.seen.get(value)
        if names is None:
            names = self.seen[value] = frozenset(n for n, bit in self.bits if value & bit)
        return names


def _reading(row: Field) -> tuple[int, Callable[[Any], Any] | None]:
    """(field position, -1 for a reserved field; what makes the wire value the attribute,
    None when it is the value itself) of a row."""
    if row.flags is not None:
        return _SLOT["flags"], _FlagNames(row.flags)
    if not row.name:
        return -1, None
    if row.address:
        return _SLOT[row.name], address
    if row.scale != 1:
        return _SLOT[row.name], functools.partial(operator.mul, row.scale)
    return _SLOT[row.name], None


@dataclass(frozen=True, slots=True)
class _Layout:
    """How parse reads one message type: where its options start (OPTIONS_AT), its fixed part
    as one struct, each row's reading, and each row alone with its offset (a short message is
    read row by row, keeping the fields that were there)."""
    options_at: int
    whole: struct.Struct
    readings: tuple[tuple[int, Callable[[Any], Any] | None], ...]
    rows: tuple[tuple[struct.Struct, int], ...]


_LAYOUTS = {mh_type: _Layout(
    OPTIONS_AT[mh_type], struct.Struct("!" + "".join(row.fmt for row in rows)),
    tuple(_reading(row) for row in rows),
    tuple((struct.Struct("!" + row.fmt),
           MH_HEADER + struct.calcsize("!" + "".join(r.fmt for r in rows[:n])))
          for n, row in enumerate(rows)))
    for mh_type, rows in MESSAGES.items()}


def parse(mh_type: int, mh: bytes, pseudo: tuple[bytes, bytes] | None,
          truncated: bool) -> MobilityMessage:
    """Fields of one MH message; whatever is missing from a short capture stays None."""
    values: list[Any] = list(_BLANK)
    values[0] = mh_type
    size = len(mh)
    if not truncated and pseudo is not None and size >= MH_HEADER:
        values[_CHECKSUM_VALID] = checksum_ok(mh, pseudo[0], pseudo[1])
    layout = _LAYOUTS.get(mh_type)
    if layout is None:     # a type mip6mon does not read: no fields, no options, no minimum
        return MobilityMessage(*values)
    # RFC 6275 9.2: "the Header Len field ... is less than the length required for the
    # specific message type": (Header Len + 1) x 8 octets below its header and fixed part
    if size >= 2 and (mh[1] + 1) * 8 < layout.options_at:
        values[_HEADER_LEN_SHORT] = True
    try:
        _message(layout, mh, values)
        _options(mh, layout.options_at, values)
    except (struct.error, IndexError, ValueError):
        pass   # a truncated or malformed message: tshark's expert info reports it
    return MobilityMessage(*values)


def _message(layout: _Layout, mh: bytes, values: list[Any]) -> None:
    """The fixed part, field by field: a short message keeps the fields that were there."""
    whole = layout.whole
    if len(mh) >= MH_HEADER + whole.size:
        wire: tuple[Any, ...] = whole.unpack_from(mh, MH_HEADER)
    else:
        wire = tuple(row.unpack_from(mh, at)[0] for row, at in layout.rows
                     if at + row.size <= len(mh))
    for (slot, convert), value in zip(layout.readings, wire, strict=False):
        if slot >= 0:
            values[slot] = value if convert is None else convert(value)


def _options(mh: bytes, at: int, values: list[Any]) -> None:
    """RFC 6275 6.2 TLV mobility options."""
    size = len(mh)
    while at < size:
        otype = mh[at]
        if otype == PAD1:
            at += 1
            continue
        if at + 2 > size:
            return
        olen = mh[at + 1]
        end = at + 2 + olen
        if end > size:
            return
        reading = _OPTION_READINGS.get(otype)
        if reading is not None and (reading[0] is None or olen == reading[0]):
            for name, value in reading[1](mh[at + 2:end], mh, at).items():
                values[_SLOT[name]] = value
        at = end


# OPTIONS as (length, reader) pairs, read for every option of every message
_OPTION_READINGS = {otype: (layout.length, layout.read) for otype, layout in OPTIONS.items()}


# The options whose data tshark reads at its fixed size, whatever the option's length says.
FIXED_SIZE_OPTIONS = (Opt.BINDING_REFRESH_ADVICE, Opt.ALTERNATE_CARE_OF_ADDRESS,
                      Opt.NONCE_INDICES)
PAST_PACKET, PAST_CAPTURE = "past-packet", "past-capture"
_FIXED_SIZES = {int(otype): OPTIONS[otype].length or 0 for otype in FIXED_SIZE_OPTIONS}


def check(mh_type: int, mh: bytes, reported: int) -> str | None:
    """Where reading this Mobility Header as tshark does runs out of octets: PAST_PACKET (its
    fixed part or an option's data lie past the packet's own length: malformed) or
    PAST_CAPTURE (past what the capture kept), else None. `mh` is the captured octets from
    the MH to the end of the packet (at least the 6-octet header), `reported` how many the
    packet has from the MH on. The fixed part is read first (past a Header Len too small for
    it, as long as the packet goes on: RFC 6275 9.2 has a receiver discard such a message,
    but it is not malformed), then the options' octets up to the Header Len as a whole, then
    option by option. An option whose length runs past the Header Len ends the options
    without harm (tshark only warns); one shorter than its fixed size is malformed."""
    captured = len(mh)
    at = OPTIONS_AT.get(mh_type, MH_HEADER)
    declared = (mh[1] + 1) * 8
    end = declared if declared > at else at
    if end <= reported and end <= captured:
        # all there: only an option shorter than its fixed size can be malformed
        while at < declared:
            if mh[at] == PAD1:
                at += 1
                continue
            if at + 1 >= declared:
                return None
            otype, olen = mh[at], mh[at + 1]
            if at + 2 + olen > declared:
                return None
            if olen < _FIXED_SIZES.get(otype, 0):
                return PAST_PACKET
            at += 2 + olen
        return None

    def short(n: int) -> str | None:
        return PAST_PACKET if n > reported else PAST_CAPTURE if n > captured else None

    problem = short(at)
    if problem is None and at < declared:
        problem = short(declared)
    while problem is None and at < declared:
        problem = short(at + 1)
        if problem is not None or mh[at] == PAD1:
            at += 1
            continue
        if at + 1 >= declared:
            return None                       # the length octet is past the options
        problem = short(at + 2)
        if problem is not None:
            break
        otype, olen = mh[at], mh[at + 1]
        if at + 2 + olen > declared:
            return None                       # the option runs past the options
        if olen < _FIXED_SIZES.get(otype, 0):
            return PAST_PACKET                # its fixed-size data read past the option
        problem = short(at + 2 + olen)
        at += 2 + olen
    return problem
