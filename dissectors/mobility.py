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
    NextHeader,
)
from dissectors.protocol import MobilityOption as Opt
from keys import formulas

MH_HEADER = MH_HEADER_LENGTH
PAD1 = int(Opt.PAD1)        # compared with every option's type octet: a plain int
_MH_NEXT_HEADER = int(NextHeader.MOBILITY)     # in the checksum's pseudo-header


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


# MobilityMessage's fields by position: parse fills a list of them (the option readers
# below by position too) and makes the message with one positional call
_SLOT = {f.name: n for n, f in enumerate(dataclasses.fields(MobilityMessage))}
_BLANK: tuple[Any, ...] = tuple(None if f.default is dataclasses.MISSING else f.default
               for f in dataclasses.fields(MobilityMessage))
_CHECKSUM_VALID, _HEADER_LEN_SHORT = _SLOT["checksum_valid"], _SLOT["header_len_short"]
_ALTERNATE, _REFRESH = _SLOT["alternate_care_of_address"], _SLOT["refresh_interval"]
_HOME_NONCE, _CARE_OF_NONCE = _SLOT["home_nonce_index"], _SLOT["care_of_nonce_index"]
_AUTHENTICATOR, _AUTHENTICATED = _SLOT["authenticator"], _SLOT["authenticated_data"]
_PRIVACY_TOKEN = _SLOT["privacy_keygen_token"]


def _alternate_care_of(data: bytes, mh: bytes, at: int, values: list[Any]) -> None:
    values[_ALTERNATE] = address(data)


def _refresh_advice(data: bytes, mh: bytes, at: int, values: list[Any]) -> None:
    values[_REFRESH] = struct.unpack("!H", data)[0] * LIFETIME_UNIT


def _nonce_indices(data: bytes, mh: bytes, at: int, values: list[Any]) -> None:
    values[_HOME_NONCE], values[_CARE_OF_NONCE] = struct.unpack("!HH", data)


def _authorization_data(data: bytes, mh: bytes, at: int, values: list[Any]) -> None:
    # RFC 6275 6.2.7: the Authenticator covers Payload Proto .. this option's type and length,
    # with the checksum taken as zero
    values[_AUTHENTICATOR] = bytes(data)
    values[_AUTHENTICATED] = mh[:4] + b"\x00\x00" + mh[6:at + 2]


def _privacy_token(data: bytes, mh: bytes, at: int, values: list[Any]) -> None:
    if data[0] == PRIVACY_TOKEN_SUBTYPE:
        values[_PRIVACY_TOKEN] = bytes(data[2:10])


@dataclass(frozen=True)
class OptionLayout:
    """A mobility option mip6mon reads: the data length it must have (None: any) and the
    reader that puts what its data says into a message's field values (in `MobilityMessage`'s
    order), given the data, the whole MH and the option's offset in it."""
    length: int | None
    read: Callable[[bytes, bytes, int, list[Any]], None]


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
    135) and the whole MH; a correct MH sums to 0xFFFF. The folded sum of 16-bit words is
    their sum modulo 0xFFFF (2**16 = 1 mod 0xFFFF), in 1..0xFFFF since the pseudo-header's
    next header is not 0: 0xFFFF exactly when that sum is a multiple of 0xFFFF. The words of
    the addresses and the MH (an odd last octet padded with a zero, RFC 1071) are summed at
    once, as one number read from their octets (one C call, not a Python sum of the words);
    the pseudo-header's 32-bit length and next header add as they are."""
    size = len(mh)
    number = int.from_bytes(src + dst + mh, "big")
    if size % 2:
        number <<= 8
    return (number + size + _MH_NEXT_HEADER) % 0xFFFF == 0


def _flag_names(bits: dict[str, int]) -> dict[int, frozenset[str]]:
    """A flags field's wire value, masked to its flag bits -> the frozenset of its flag names
    (every combination of the bits, made once: at most 2^flags of them)."""
    table: dict[int, frozenset[str]] = {}
    for n in range(1 << len(bits)):
        chosen = [(name, bit) for k, (name, bit) in enumerate(bits.items()) if n >> k & 1]
        table[sum(bit for _, bit in chosen)] = frozenset(name for name, _ in chosen)
    return table


def _expression(row: Field, value: str, namespace: dict[str, Any]) -> str:
    """The Python expression that makes a row's wire value (the variable `value`) the
    attribute, its helpers put in `namespace`."""
    if row.flags is not None:
        namespace["_flags"] = _flag_names(row.flags)
        return f"_flags[{value} & {sum(row.flags.values())}]"
    if row.address:
        return f"_address({value})"
    if row.scale != 1:
        return f"{value} * {row.scale}"
    return value


@dataclass(frozen=True, slots=True)
class _Layout:
    """How parse reads one message type: where its options start (OPTIONS_AT); `read`, its
    whole fixed part and options into the message in one call (generated from the type's
    rows: one struct unpack, the field values listed in order with each conversion inline,
    the message made by position);
    and each row alone (struct, offset, field position or -1 for a reserved field,
    conversion), for a message too short for its fixed part, which keeps the fields that
    were there."""
    options_at: int
    read: Callable[[bytes, bool | None, bool], MobilityMessage]
    rows: tuple[tuple[struct.Struct, int, int, Callable[[Any], Any]], ...]


def _layout(mh_type: int, rows: tuple[Field, ...]) -> _Layout:
    options_at = OPTIONS_AT[mh_type]
    namespace: dict[str, Any] = {
        "_unpack": struct.Struct("!" + "".join(row.fmt for row in rows)).unpack_from,
        "_address": address, "_options": _read_options, "_message": MobilityMessage}
    wire = [row.name or f"_reserved{n}" for n, row in enumerate(rows)]
    # the message's field values in order: the type, the checksum and Header Len verdicts,
    # the fixed part's fields (converted), every other field's default
    items = [repr(value) if value is None or isinstance(value, bool) else f"_blank{n}"
             for n, value in enumerate(_BLANK)]
    namespace.update({f"_blank{n}": value for n, value in enumerate(_BLANK)})
    items[0], items[_CHECKSUM_VALID], items[_HEADER_LEN_SHORT] = str(mh_type), "valid", "short"
    for row, value in zip(rows, wire, strict=True):
        if row.name:
            items[_SLOT[row.name]] = _expression(row, value, namespace)
    source = (f"def read(mh, valid, short):\n"
              f"    {', '.join(wire)}, = _unpack(mh, {MH_HEADER})\n"
              f"    values = [{', '.join(items)}]\n"
              f"    if len(mh) > {options_at}:\n"
              f"        _options(mh, {options_at}, values)\n"
              f"    return _message(*values)\n")
    exec(source, namespace)         # generated from MESSAGES' rows for this type
    one = []
    at = MH_HEADER
    for row in rows:
        unpack = struct.Struct("!" + row.fmt)
        convert = eval(f"lambda value: {_expression(row, 'value', namespace)}", namespace)
        one.append((unpack, at, _SLOT[row.name] if row.name else -1, convert))
        at += unpack.size
    return _Layout(options_at, namespace["read"], tuple(one))


def parse(mh_type: int, mh: bytes, pseudo: tuple[bytes, bytes] | None,
          truncated: bool) -> MobilityMessage:
    """Fields of one MH message; whatever is missing from a short capture stays None."""
    size = len(mh)
    valid = checksum_ok(mh, pseudo[0], pseudo[1]) \
        if not truncated and pseudo is not None and size >= MH_HEADER else None
    layout = _LAYOUTS.get(mh_type)
    if layout is None:     # a type mip6mon does not read: no fields, no options, no minimum
        return MobilityMessage(mh_type, valid)
    # RFC 6275 9.2: "the Header Len field ... is less than the length required for the
    # specific message type": (Header Len + 1) x 8 octets below its header and fixed part
    short = size >= 2 and (mh[1] + 1) * 8 < layout.options_at
    if size >= layout.options_at:
        return layout.read(mh, valid, short)
    # cut short in its fixed part (a truncated or malformed message: tshark's expert info
    # reports it): the fields that are there, no options
    values: list[Any] = list(_BLANK)
    values[0], values[_CHECKSUM_VALID], values[_HEADER_LEN_SHORT] = mh_type, valid, short
    for unpack, at, slot, convert in layout.rows:
        if at + unpack.size > size:
            break
        if slot >= 0:
            values[slot] = convert(unpack.unpack_from(mh, at)[0])
    return MobilityMessage(*values)


def _read_options(mh: bytes, at: int, values: list[Any]) -> None:
    """RFC 6275 6.2 TLV mobility options from `at`, into the message's field values (the
    last option of a kind wins; one cut short ends them, keeping what came before)."""
    size = len(mh)
    try:
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
                reading[1](mh[at + 2:end], mh, at, values)
            at = end
    except (struct.error, IndexError, ValueError):
        pass   # a malformed option: tshark's expert info reports it


# OPTIONS as (length, reader) pairs, read for every option of every message
_OPTION_READINGS = {otype: (layout.length, layout.read) for otype, layout in OPTIONS.items()}
_LAYOUTS = {mh_type: _layout(mh_type, rows) for mh_type, rows in MESSAGES.items()}


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
