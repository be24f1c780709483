"""Neutral mobility events: what was on the wire, with no keys and no judgement.

The dissector makes them; the analyzers (keyed, attacker) read them. They are immutable and
plain data, so they can cross a process or a Redis Stream (ROADMAP 2): `to_dict` / `from_dict`
round-trip them through JSON types (bytes as hex). They never carry key material.
"""
from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dissectors.protocol import mh_name


@dataclass(frozen=True, slots=True)
class Esp:
    """RFC 4303 header that follows an IPv6 layer's extension headers (or its UDP header, RFC
    3948).

    The dissector has no keys: it stops at the first ESP header and keeps, in `payload`, what a
    keyed stage needs to open it later (dissectors.decrypt.EspDecryptor, possibly in another
    process, after a Redis Stream): the octets after the SPI and sequence number, as captured
    (IV, ciphertext, ICV). The IPv6Layer it belongs to gives the rest of the context (the
    addresses the MH checksum and the SA selectors use). Never key material.
    """
    spi: int
    sequence: int
    decrypted: bool = False    # a keyring SA opened it: what followed it was read
    payload: bytes = b""       # as captured after the 8-octet header; b"" once decrypted
    truncated: bool = False    # the capture's snap length cut the payload: it cannot be opened
    undecrypted: str | None = None   # why a keyed stage could not open it (UNDECRYPTED)
    node: str | None = None    # the keyring mobile node whose SA opened it, when that is certain
    bundled: Esp | None = None  # an ESP header right inside this one's plaintext, same IPv6
                               # header (an SA bundle, RFC 4301 4.5)

    def chain(self) -> tuple[Esp, ...]:
        """This header and the ones bundled inside it, outermost first."""
        out: list[Esp] = [self]
        inner = self.bundled
        while inner is not None:
            out.append(inner)
            inner = inner.bundled
        return tuple(out)


# Why an ESP header was not decrypted (Esp.undecrypted), as the accounting counts them.
UNDECRYPTED = {
    "no-keyring": "no keyring was given",
    "no-sa": "no keyring SA (listed, or on a draft 6.4 chain seen so far) has its SPI",
    "icv-failed": "the integrity check failed with every SA that could carry its SPI",
    "ambiguous": "null authentication, and more than one SA opens it to a payload that parses",
    "unparsable": "null authentication, and no SA opens it to a payload that parses",
    "truncated": "the capture cut the ESP payload short",
}


@dataclass(frozen=True, slots=True)
class IPv6Layer:
    """One IPv6 header with the mobility-relevant parts of its extension chain.

    A packet has one layer, or several for IPv6-in-IPv6 and ESP tunnel mode (outermost first).
    `esp` is the ESP header that follows this layer's extension headers; when another layer
    follows in the packet, it was inside that ESP (tunnel mode).
    """
    src: str
    dst: str
    home_address: str | None = None           # HAO, destination option 201 (RFC 6275 6.3)
    routing_home_address: str | None = None   # type 2 routing header (RFC 6275 6.4)
    pseudo_home_address: str | None = None    # destination option 0xFE (PROFILE.md)
    esp: Esp | None = None


@dataclass(frozen=True, slots=True)
class MobilityMessage:
    """A Mobility Header message (RFC 6275 6.1) with its options; absent fields are None."""
    mh_type: int
    checksum_valid: bool | None = None
    # RFC 6275 9.2: Header Len says fewer octets than the type's fixed part needs (an H-flagged
    # BU with Header Len 0); a receiver discards it silently, the monitor says so
    header_len_short: bool = False
    sequence: int | None = None               # BU, BA
    flags: frozenset[str] = frozenset()       # BU "A","H","L","K"; BA "K"; HoTI "P" (PROFILE.md)
    lifetime: int | None = None               # seconds (wire value x 4), BU and BA
    status: int | None = None                 # BA, BE
    cookie: bytes | None = None               # init cookie: HoTI, CoTI, HoT, CoT
    nonce_index: int | None = None            # HoT, CoT
    keygen_token: bytes | None = None         # HoT, CoT
    privacy_keygen_token: bytes | None = None  # mobility option 18 in the HoT (PROFILE.md)
    home_nonce_index: int | None = None       # Nonce Indices option (type 4)
    care_of_nonce_index: int | None = None
    authenticator: bytes | None = None        # Binding Authorization Data option (type 5)
    alternate_care_of_address: str | None = None  # option 3
    refresh_interval: int | None = None       # Binding Refresh Advice (option 2), seconds
    error_home_address: str | None = None     # BE
    # RFC 6275 6.2.7: MH bytes from Payload Proto through the BAD option's type and length,
    # checksum zeroed; what the Authenticator covers. None when there is no BAD option.
    authenticated_data: bytes | None = None

    @property
    def name(self) -> str:
        return mh_name(self.mh_type)


@dataclass(frozen=True, slots=True)
class MobilePrefix:
    """ICMPv6 Mobile Prefix Solicitation (146) or Advertisement (147), RFC 6275 6.7, 6.8."""
    icmp_type: int
    identifier: int
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Transport:
    """The upper layer of a data packet (after HAO / RH2 / tunnels)."""
    protocol: str                      # "udp", "tcp", "icmpv6", ...
    src_port: int | None = None
    dst_port: int | None = None
    payload_preview: str = ""          # printable text of the first payload octets: untrusted


@dataclass(frozen=True, slots=True)
class PacketEvent:
    """One captured frame that concerns mobility, as far as tshark could read it."""
    frame: int                          # 1-based frame number in the capture
    time: float                         # epoch seconds
    length: int
    layers: tuple[IPv6Layer, ...]
    mobility: MobilityMessage | None = None
    prefix_discovery: MobilePrefix | None = None
    transport: Transport | None = None
    path: str | None = None             # "mn-ha" / "ha-cn" / "mn-cn" from a pcapng comment
    sensor: str = ""                    # which capture point produced it (ROADMAP 2)
    protocols: str = ""                 # tshark frame.protocols
    info: str = ""                      # tshark's Info column: untrusted text
    malformed: str | None = None        # tshark's expert error message, when there is one

    @property
    def outer(self) -> IPv6Layer:
        return self.layers[0]

    @property
    def inner(self) -> IPv6Layer:
        return self.layers[-1]

    def esp_headers(self) -> tuple[Esp, ...]:
        """Every ESP header, outermost first (SA bundles included)."""
        layers = self.layers
        if len(layers) == 1:            # the usual packet (the event stream asks of every one)
            esp = layers[0].esp
            if esp is None:
                return ()
            if esp.bundled is None:
                return (esp,)
        out: tuple[Esp, ...] = ()    # one header in all, as a decrypted tunnel has
        for layer in layers:
            esp = layer.esp
            if esp is not None:
                out += (esp,) if esp.bundled is None else esp.chain()
        return out


_TYPES = {cls.__name__: cls for cls in (Esp, IPv6Layer, MobilityMessage, MobilePrefix,
                                         Transport, PacketEvent)}


def _slot_storing_new(cls: type) -> Callable[..., Any]:
    """The dataclass's constructor (the same parameters and defaults) as a `__new__` that
    fills a plain twin of `cls` (the same slots, no `__setattr__` of its own), then makes it
    an instance of `cls` by `__class__` assignment, which CPython allows between classes of
    the same layout. A frozen dataclass cannot store a field plainly (its `__setattr__`
    refuses), so each field costs a call (`object.__setattr__`, or the slot descriptor's
    `__set__`); the twin's are plain slot stores, which the interpreter specializes. Events
    are made for every packet, and again in the attacker's process: PacketEvent (12 fields)
    0.65 -> 0.32 us to make, MobilityMessage (18) 0.94 -> 0.40 against `__set__` per field.
    The class stays a frozen slotted dataclass: `fields`, `replace`, `is_dataclass`, equality,
    hashing, refused assignment and pickling (by position, below) are unchanged."""
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": cls.__dict__["__slots__"]})
    namespace: dict[str, Any] = {"_twin": twin, "_new": object.__new__}
    params = []
    names = []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    source = (f"def __new__(cls, {', '.join(params)}):\n"
              "    self = _new(_twin)\n"
              + "".join(f"    self.{name} = {name}\n" for name in names)
              + "    self.__class__ = cls\n"
              "    return self\n")
    exec(source, namespace)         # generated from the class's own field names
    new: Callable[..., Any] = namespace["__new__"]
    new.__qualname__ = f"{cls.__qualname__}.__new__"
    return new


for _cls in _TYPES.values():
    _cls.__new__ = staticmethod(_slot_storing_new(_cls))  # type: ignore[method-assign]
    del _cls.__init__        # object's: the arguments were taken by __new__


# each class's fields in order, read in one C call (every class has two fields or more, so
# each getter returns a tuple)
_FIELDS = {cls: operator.attrgetter(*cls.__slots__) for cls in _TYPES.values()}


def _reduce_by_position(self: Any) -> tuple[type, tuple[Any, ...]]:
    """Pickle as (class, field values in order). The dataclass default builds a state through
    dataclasses.fields() for every object; in the dashboard every event crosses two process
    boundaries (dissector -> analyzers -> attacker worker), and this takes about 40 % off
    both pickling and unpickling (measured on 10,000 demo events). One attrgetter per class
    instead of a getattr per field: pickling 40 % faster again (report's events to its
    attacker process, 20,000 events at 100 % mobility: 0.088 -> 0.053 CPU s)."""
    cls = type(self)
    return cls, _FIELDS[cls](self)


for _cls in _TYPES.values():
    _cls.__reduce__ = _reduce_by_position  # type: ignore[method-assign]


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def to_dict(event: PacketEvent) -> dict[str, Any]:
    """JSON-ready dict of an event (bytes as hex)."""
    encoded: dict[str, Any] = _encode(event)
    return encoded


def _decode(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, kind = data[f.name], str(f.type)
        if value is None:
            kwargs[f.name] = None
        elif kind.startswith("bytes"):
            kwargs[f.name] = bytes.fromhex(value)
        elif kind.startswith("frozenset"):
            kwargs[f.name] = frozenset(value)
        elif kind.startswith("tuple[IPv6Layer"):
            kwargs[f.name] = tuple(_decode(IPv6Layer, v) for v in value)
        elif kind.startswith("tuple"):
            kwargs[f.name] = tuple(value)
        elif kind.split(" ")[0] in _TYPES:
            kwargs[f.name] = _decode(_TYPES[kind.split(" ")[0]], value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> PacketEvent:
    event: PacketEvent = _decode(PacketEvent, data)
    return event
