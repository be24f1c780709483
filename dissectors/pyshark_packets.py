"""A pyshark packet as the neutral event the default dissector makes of the same frame.

The pyshark engine (dissectors.pyshark_engine) and the Python API for pyshark users
(monitor.api) read packets that pyshark parsed from tshark's JSON (`use_json=True`,
`include_raw=True`: PYSHARK_OPTIONS) and turn each into a `PacketEvent` equal, field by field,
to the one dissectors.walk makes from the frame's octets: the tests hold the two engines equal
on every lab scenario, every shared capture and the walk's hand-made edge frames.

What comes from where (PLATFORM-NOTES, tshark 4.0):
- Everything tshark dissects is read from its fields: addresses (`ipv6.src`, the HAO's
  `ipv6.opt.mipv6.home_address`, the RH2's `ipv6.routing.mipv6.home_address`), `esp.spi`,
  `esp.sequence`, every Mobility Header field (`mip6.*`), ICMPv6 mobile prefixes, ports,
  `frame.protocols`, the expert errors (the event's `malformed`), `_ws.malformed` /
  `_ws.short` (the Info column's suffix). Addresses are formatted from the fields' raw values
  with the walk's own formatter (dissectors.mobility.address), so the text is the same.
- tshark exposes some things only as raw bytes; their raw values are read: option 0xFE
  (`ipv6.opt.experimental`), mobility option 18 (the option's own raw value: `mip6.em.data`
  drops two octets), the HoTI's Reserved field (the P flag; no field at all), the ESP payload
  (the `esp` protocol's raw value after SPI and sequence number: the keyed stage opens it in
  Python, dissectors.decrypt), the octets the MH checksum and the Binding Authorization Data
  cover (RFC 6275 6.1.1, 6.2.7: tshark 4.0 verifies neither), and a data packet's first
  payload octets (the preview the packet list shows).
- tshark's JSON has no Info column: `info` is rebuilt from the fields with the walk's own
  tables (dissectors.summary), step by step as the walk writes it.
- A field counts only where the walk would read it: inside the Mobility Header's captured
  octets up to its Header Len (RFC 6275 6.1.1), an option only when its length is the one
  RFC 6275 6.2 gives it. On a frame tshark gave up on (an exception: `[Malformed Packet]`),
  tshark shows no field past the point it stopped; the walk reads what octets there are
  (a HoT cut after its cookie keeps the cookie). Only such frames can differ.

Nothing after the first ESP header is used (the event is keyless; if tshark was given keys,
what it decrypted is ignored) and nothing inside an ICMPv6 error's quoted packet becomes a
layer or a message (RFC 4443 2.4 c: nobody sent it).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dissectors import summary
from dissectors.events import (
    Esp,
    IPv6Layer,
    MobilePrefix,
    MobilityMessage,
    PacketEvent,
    Transport,
)
from dissectors.mobility import OPTIONS, address, checksum_ok
from dissectors.protocol import (
    BU_FLAGS,
    HOTI_FLAGS,
    ICMPV6_MPA,
    ICMPV6_MPS,
    LIFETIME_UNIT,
    MH_HEADER_LENGTH,
    OPT_HAO,
    OPT_PSEUDO_HOA,
    PRIVACY_TOKEN_SUBTYPE,
    ROUTING_TYPE_2,
    MHType,
)
from dissectors.protocol import MobilityOption as Opt
from dissectors.protocol import NextHeader as NH
from dissectors.walk import (
    ICMPV6_ECHO,
    ICMPV6_ERRORS,
    MH_TRUNCATED,
    NA_FLAGS,
    PATH_COMMENT,
    PROTOCOL_NAMES,
    printable_preview,
)

# How pyshark must parse tshark's output for the conversion (PLATFORM-NOTES): JSON (PDML
# mangles the mipv6 names and is ~3x slower; EK fails on IPv6-in-IPv6) with each field's raw
# value (`-x`), which holds what tshark shows only as octets.
PYSHARK_OPTIONS: dict[str, Any] = {"use_json": True, "include_raw": True}

PI_ERROR = 0x00800000          # epan/proto.h expert severity "error"
EXT_HEADERS = {int(NH.HOP_BY_HOP): "ipv6.hopopts", int(NH.DEST_OPTS): "ipv6.dstopts",
               int(NH.ROUTING): "ipv6.routing", int(NH.FRAGMENT): "ipv6.fraghdr"}
EXT_INFO = {"ipv6.hopopts": "IPv6 hop-by-hop options", "ipv6.dstopts": "IPv6 destination options",
            "ipv6.routing": "IPv6 routing"}
# the next headers whose protocol the walk dissects (anything else ends a chain as "data")
WALKED = frozenset({int(NH.ESP), int(NH.ICMPV6), int(NH.UDP), int(NH.TCP), int(NH.IPV6),
                    int(NH.IPV4), int(NH.GRE), int(NH.MOBILITY), 62, int(NH.AH)})

# tshark's names of the mobility options mip6mon reads (RFC 6275 6.2, PROFILE.md option 18)
OPTION_FIELDS = {"mip6.options.bra": Opt.BINDING_REFRESH_ADVICE,
                 "mip6.options.acoa": Opt.ALTERNATE_CARE_OF_ADDRESS,
                 "mip6.options.ni": Opt.NONCE_INDICES,
                 "mip6.options.bad_auth": Opt.BINDING_AUTHORIZATION_DATA,
                 "mip6.options.em": Opt.PRIVACY_KEYGEN_TOKEN}

# RFC 6275 6.1.2-6.1.9: each message's fixed fields as tshark names them, in wire order:
# (MobilityMessage attribute, tshark field, how its value reads). The CoT's keygen token is
# tshark's `mip6.hot.token` (PLATFORM-NOTES); the HoTI's P flag has no field (its Reserved
# field's raw value is read); lifetimes are in units of 4 seconds.
INT, OCTETS, ADDRESS, LIFETIME = "int", "octets", "address", "lifetime"
MESSAGE_FIELDS: dict[int, tuple[tuple[str, str, str], ...]] = {
    MHType.HOTI: (("cookie", "mip6.hoti.cookie", OCTETS),),
    MHType.COTI: (("cookie", "mip6.coti.cookie", OCTETS),),
    MHType.HOT: (("nonce_index", "mip6.hot.nindex", INT), ("cookie", "mip6.hot.cookie", OCTETS),
                 ("keygen_token", "mip6.hot.token", OCTETS)),
    MHType.COT: (("nonce_index", "mip6.cot.nindex", INT), ("cookie", "mip6.cot.cookie", OCTETS),
                 ("keygen_token", "mip6.hot.token", OCTETS)),
    MHType.BU: (("sequence", "mip6.bu.seqnr", INT), ("lifetime", "mip6.bu.lifetime", LIFETIME)),
    MHType.BA: (("status", "mip6.ba.status", INT), ("sequence", "mip6.ba.seqnr", INT),
                ("lifetime", "mip6.ba.lifetime", LIFETIME)),
    MHType.BE: (("status", "mip6.be.status", INT),
                ("error_home_address", "mip6.be.haddr", ADDRESS)),
}
# flag fields (RFC 6275 6.1.7, 6.1.8): the flag's name -> tshark's field
FLAG_FIELDS: dict[int, dict[str, str]] = {
    MHType.BU: {name: f"mip6.bu.{name.lower()}_flag" for name in BU_FLAGS},
    MHType.BA: {"K": "mip6.ba.k_flag"},
}
HOTI_RESERVED_AT = MH_HEADER_LENGTH     # the HoTI's 16-bit Reserved follows the MH header


class UnsupportedPacket(ValueError):
    """A pyshark packet this conversion cannot read (not JSON with raw values)."""


Raw = tuple[bytes, int]       # a field's raw octets (as captured) and its offset in the frame


class Tree:
    """One subtree of tshark's JSON: every key in it (at any depth), values in tree order.

    tshark's `--no-duplicate-keys` (pyshark asks for it) turns a repeated key into a list:
    a list of subtrees, of raw values or of plain values; each is taken apart here."""

    __slots__ = ("node", "_map")

    def __init__(self, node: dict[str, Any]):
        self.node = node
        self._map: dict[str, list[Any]] = {}
        self._add(node)

    def _add(self, node: dict[str, Any]) -> None:
        out = self._map
        for key, value in node.items():
            bucket = out.get(key)
            if bucket is None:
                bucket = out[key] = []
            if isinstance(value, dict):
                bucket.append(value)
                self._add(value)
            elif isinstance(value, list) and value:
                first = value[0]
                if isinstance(first, dict):
                    for item in value:
                        bucket.append(item)
                        if isinstance(item, dict):
                            self._add(item)
                elif isinstance(first, list):
                    bucket.extend(value)             # repeated raw values
                elif len(value) >= 3 and isinstance(value[1], int) and key.endswith("_raw"):
                    bucket.append(value)             # one raw value [hex, offset, length, ...]
                else:
                    bucket.extend(value)             # repeated plain values
            else:
                bucket.append(value)

    def has(self, key: str) -> bool:
        return key in self._map

    def all(self, key: str) -> list[Any]:
        return self._map.get(key, [])

    def first(self, key: str) -> Any:
        values = self._map.get(key)
        return values[0] if values else None

    def last(self, key: str) -> Any:
        values = self._map.get(key)
        return values[-1] if values else None

    def int(self, key: str, last: bool = False) -> int | None:
        value = self.last(key) if last else self.first(key)
        return _int(value)

    def raws(self, key: str) -> list[Raw]:
        out: list[Raw] = []
        for value in self._map.get(key + "_raw", ()):
            raw = _raw(value)
            if raw is not None:
                out.append(raw)
        return out

    def raw(self, key: str) -> Raw | None:
        raws = self.raws(key)
        return raws[0] if raws else None

    def subtrees(self, key: str) -> list[dict[str, Any]]:
        return [v for v in self._map.get(key, ()) if isinstance(v, dict)]


def _raw_layer(layer: Any) -> list[list[Any]]:
    """A top-level raw value as pyshark keeps it: JsonLayer splits [hex, offset, length, ...]
    into `value` and one duplicate layer per further item (and a repeated protocol's list of
    such lists into a first list and duplicates split the same way). Put back together."""
    def joined(item: Any) -> list[Any]:
        value = getattr(item, "value", None)
        if isinstance(value, list):
            return value
        return [value] + [getattr(d, "value", None)
                          for d in getattr(item, "duplicate_layers", ()) or ()]
    value = getattr(layer, "value", None)
    if isinstance(value, list):
        return [value] + [joined(d) for d in getattr(layer, "duplicate_layers", ()) or ()]
    return [joined(layer)]


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value:
        try:
            return int(value, 0) if value.startswith("0x") else int(value)
        except ValueError:
            return None
    return None


def _raw(value: Any) -> Raw | None:
    """[hex, offset, length, bitmask, type]: the octets of a whole-octet field."""
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str) \
            and isinstance(value[1], int) and not (len(value) > 3 and value[3]):
        try:
            return bytes.fromhex(value[0]), value[1]
        except ValueError:
            return None
    return None


# --- the packet as tshark's tree ------------------------------------------------------------

class Packet:
    """A pyshark JSON packet's top-level layers, in the frame's order (repeated layers, as the
    IPv6 headers of a tunnel, one entry each), and its `frame` fields."""

    def __init__(self, packet: Any):
        frame_info = getattr(packet, "frame_info", None)
        frame = getattr(frame_info, "_all_fields", None)
        layers = getattr(packet, "layers", None)
        if not isinstance(frame, dict) or not isinstance(layers, list) \
                or "frame.time_epoch" not in frame \
                or any(type(layer).__name__ != "JsonLayer" for layer in layers):
            raise UnsupportedPacket(
                "not a pyshark JSON packet: open the capture with use_json=True, "
                "include_raw=True (monitor.api.PYSHARK_OPTIONS)")
        self.frame = frame
        self.layers: list[tuple[str, Any]] = []
        # a protocol's own raw value ([hex, offset, length, ...]), by protocol name
        self.raw_layers: dict[str, list[list[Any]]] = {}
        for layer in layers:
            name = getattr(layer, "layer_name", "")
            if name.endswith("_raw"):
                self.raw_layers[name[:-4]] = _raw_layer(layer)
                continue
            self.layers.append((name, getattr(layer, "_all_fields", None)
                                or getattr(layer, "value", None)))
            for dup in getattr(layer, "duplicate_layers", ()) or ():
                self.layers.append((name, getattr(dup, "_all_fields", None)
                                    or getattr(dup, "value", None)))
        if not self.raw_layers and any(isinstance(v, dict) and v and not n.startswith("_ws.")
                                       for n, v in self.layers):
            raise UnsupportedPacket(
                "a pyshark packet without raw values: open the capture with "
                "include_raw=True as well as use_json=True (monitor.api.PYSHARK_OPTIONS)")
        self.protocols = str(frame.get("frame.protocols", "")).split(":")

    def named(self, name: str) -> list[Any]:
        return [value for n, value in self.layers if n == name]

    def trees(self, name: str) -> list[Tree]:
        return [Tree(value) for n, value in self.layers if n == name and isinstance(value, dict)]

    def raw_octets(self, name: str, k: int = 0) -> Raw | None:
        """The k-th occurrence of a protocol's own raw value: the octets it spans, as
        captured, and its offset in the frame."""
        values = self.raw_layers.get(name, [])
        return _raw(values[k]) if k < len(values) else None

    def keys(self) -> Iterator[tuple[str, Any]]:
        """Every (key, value) of the tree, depth first; a layer's name with its subtree."""
        stack: list[tuple[str, Any]] = list(reversed(self.layers))
        while stack:
            key, value = stack.pop()
            if isinstance(value, dict):
                yield key, None
                stack.extend(reversed(list(value.items())))
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                stack.extend((key, item) for item in reversed(value))
            elif isinstance(value, list) and not key.endswith("_raw"):
                for item in value:
                    yield key, item
            elif not key.endswith("_raw"):
                yield key, value


# --- MOBILITY_FILTER on a packet's fields ---------------------------------------------------

def selected(packet: Packet) -> bool:
    """dissectors.walk.MOBILITY_FILTER, evaluated on tshark's fields as tshark evaluates it
    (a field anywhere in the tree, an ICMPv6 error's quoted packet included)."""
    names: set[str] = set()
    markers = False
    for key, value in packet.keys():
        names.add(key)
        if markers:
            continue
        if key == "ipv6.opt.type" and value in ("0xc9", "0xfe"):
            markers = True
        elif key == "ipv6.routing.type" and value == str(ROUTING_TYPE_2):
            markers = True
        elif key == "icmpv6.type" and value in (str(ICMPV6_MPS), str(ICMPV6_MPA)):
            markers = True
        elif key in ("ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.dstopts.nxt",
                     "ipv6.routing.nxt") and value == str(int(NH.IPV6)):
            markers = True
    if "_ws.malformed" in names:
        return True
    if "ipv6" not in names:
        return False
    return markers or "esp" in names or ("mipv6" in names and "udp" not in names)


# --- one IPv6 header and what the walk reads of it ------------------------------------------

class _Layer:
    """One top-level IPv6 header: its addresses, options, routing header and extension chain."""

    def __init__(self, tree: Tree, frame_length: int):
        self.tree = tree
        src, dst = tree.raw("ipv6.src"), tree.raw("ipv6.dst")
        self.whole = src is not None and dst is not None and len(dst[0]) == 16
        self.src = src[0] if src is not None else b""
        self.dst = dst[0] if dst is not None else b""
        self.start = src[1] - 8 if src is not None else 0
        plen = tree.int("ipv6.plen") or 0
        self.end = min(self.start + 40 + plen, frame_length)   # tshark reads what there is
        self.hop_limit = tree.int("ipv6.hlim")
        self.hao: bytes | None = None
        self.rh2: bytes | None = None
        self.pseudo: bytes | None = None
        self.esp: Esp | None = None
        self.chain: list[str] = []       # extension headers, in order
        self.last_nh = tree.int("ipv6.nxt")
        if self.whole:
            self._extensions()

    def _extensions(self) -> None:
        """Follow the Next Header chain through tshark's extension-header subtrees."""
        t = self.tree
        seen: dict[str, int] = {}
        nh = t.int("ipv6.nxt")
        while nh in EXT_HEADERS:
            name = EXT_HEADERS[nh]
            nodes = t.subtrees(name)
            k = seen.get(name, 0)
            if k >= len(nodes):
                break
            seen[name] = k + 1
            node = Tree(nodes[k])
            self.chain.append(name)
            if name in ("ipv6.hopopts", "ipv6.dstopts"):
                self._options(node, t.raws(name), k)
            elif name == "ipv6.routing":
                self._routing(node, t.raws(name), k)
            nxt = node.int(name + ".nxt")
            if nxt is None:
                nh = None
                break
            nh = nxt
            if name == "ipv6.fraghdr":
                break
        self.last_nh = nh

    def _options(self, node: Tree, heads: list[Raw], k: int) -> None:
        """RFC 8200 4.2: the HAO (RFC 6275 6.3) and option 0xFE (PROFILE.md), 16 octets each,
        inside their header; the last of each kind counts."""
        header_end = (heads[k][1] if k < len(heads) else 0) + (node.int(
            node_key(node, ".len_oct")) or 0)
        for option in node.subtrees("ipv6.opt"):
            opt = Tree(option)
            otype = opt.int("ipv6.opt.type")
            if otype not in (OPT_HAO, OPT_PSEUDO_HOA) or opt.int("ipv6.opt.length") != 16:
                continue
            value = opt.raw("ipv6.opt.mipv6.home_address" if otype == OPT_HAO
                            else "ipv6.opt.experimental")
            if value is None or len(value[0]) != 16 or value[1] + 16 > header_end:
                continue
            if otype == OPT_HAO:
                self.hao = value[0]
            else:
                self.pseudo = value[0]

    def _routing(self, node: Tree, heads: list[Raw], k: int) -> None:
        """RFC 6275 6.4: the type 2 routing header's one address, inside the header."""
        if node.int("ipv6.routing.type") != ROUTING_TYPE_2:
            return
        value = node.raw("ipv6.routing.mipv6.home_address")
        head = heads[k][1] if k < len(heads) else 0
        length = node.int("ipv6.routing.len_oct") or 0
        if value is not None and len(value[0]) == 16 and value[1] + 16 <= head + length:
            self.rh2 = value[0]

    def layer(self) -> IPv6Layer:
        return IPv6Layer(address(self.src), address(self.dst),
                         address(self.hao) if self.hao is not None else None,
                         address(self.rh2) if self.rh2 is not None else None,
                         address(self.pseudo) if self.pseudo is not None else None, self.esp)


def node_key(node: Tree, suffix: str) -> str:
    """The name of an options header's field (`ipv6.hopopts` or `ipv6.dstopts`)."""
    return ("ipv6.dstopts" if node.has("ipv6.dstopts.nxt") else "ipv6.hopopts") + suffix


# --- the Mobility Header ---------------------------------------------------------------------

class _Mobility:
    """RFC 6275 6.1: a Mobility Header's fields, as far as the walk reads its octets."""

    def __init__(self, mh: Tree, raw: Raw | None, layer: _Layer):
        self.message: MobilityMessage | None = None
        self.short = False
        self.header = False             # its 6-octet header was read (RFC 6275 6.1.1)
        mh_type = mh.int("mip6.mhtype")
        if mh_type is None:
            return
        proto = mh.raw("mip6.proto")
        if mh.first("mip6.csum") is None or raw is None or proto is None:
            self.message = MobilityMessage(mh_type)
            return
        self.header = True
        octets, start = raw[0], proto[1]
        declared = ((mh.int("mip6.hlen") or 0) + 1) * 8
        octets = octets[:declared]
        self.short = len(octets) < declared
        end = start + len(octets)
        fields: dict[str, Any] = {}
        if not self.short and len(octets) >= MH_HEADER_LENGTH:
            # RFC 6275 6.1.1: the HAO (else the source), the RH2's address (else the destination)
            fields["checksum_valid"] = checksum_ok(
                octets, layer.hao if layer.hao is not None else layer.src,
                layer.rh2 if layer.rh2 is not None else layer.dst)
        for attribute, name, kind in MESSAGE_FIELDS.get(mh_type, ()):
            value = _field(mh, name, kind, end)
            if value is None:
                break                   # the walk reads the fixed part in order, to a cut
            fields[attribute] = value
        flags = self._flags(mh, mh_type, octets, end)
        if flags is not None:
            fields["flags"] = flags
        self._options(mh, octets, start, fields)
        self.message = MobilityMessage(mh_type, **fields)

    @staticmethod
    def _flags(mh: Tree, mh_type: int, octets: bytes, end: int) -> frozenset[str] | None:
        if mh_type == MHType.HOTI:
            # PROFILE.md: the P flag, top bit of the Reserved field (no tshark field: raw)
            if len(octets) < HOTI_RESERVED_AT + 2:
                return None
            reserved = int.from_bytes(octets[HOTI_RESERVED_AT:HOTI_RESERVED_AT + 2], "big")
            return frozenset(n for n, bit in HOTI_FLAGS.items() if reserved & bit)
        names = FLAG_FIELDS.get(mh_type)
        if not names:
            return None
        where = mh.all(next(iter(names.values())) + "_raw")
        if not where or not isinstance(where[0], list) or where[0][1] + where[0][2] > end:
            return None
        return frozenset(n for n, field in names.items() if mh.first(field) == "1")

    @staticmethod
    def _options(mh: Tree, octets: bytes, start: int, fields: dict[str, Any]) -> None:
        """RFC 6275 6.2 (and PROFILE.md option 18): each option the walk reads, whole inside
        the captured octets and of the length its layout gives; the last of a kind counts."""
        found: list[tuple[int, Opt, bytes]] = []
        for name, otype in OPTION_FIELDS.items():
            for raw, at in mh.raws(name):
                found.append((at, otype, raw))
        for at, otype, raw in sorted(found, key=lambda item: item[0]):
            offset = at - start
            if len(raw) < 2 or offset < 0:
                continue
            olen = raw[1]
            data = octets[offset + 2:offset + 2 + olen]
            layout = OPTIONS[otype]
            if len(data) < olen or len(raw) < 2 + olen or \
                    (layout.length is not None and olen != layout.length):
                continue
            value = raw[2:2 + olen]
            if otype == Opt.BINDING_REFRESH_ADVICE:
                fields["refresh_interval"] = int.from_bytes(value, "big") * LIFETIME_UNIT
            elif otype == Opt.ALTERNATE_CARE_OF_ADDRESS:
                fields["alternate_care_of_address"] = address(value)
            elif otype == Opt.NONCE_INDICES:
                fields["home_nonce_index"] = int.from_bytes(value[:2], "big")
                fields["care_of_nonce_index"] = int.from_bytes(value[2:4], "big")
            elif otype == Opt.BINDING_AUTHORIZATION_DATA:
                # RFC 6275 6.2.7: Payload Proto .. this option's type and length, checksum zero
                fields["authenticator"] = value
                fields["authenticated_data"] = octets[:4] + b"\x00\x00" + octets[6:offset + 2]
            elif otype == Opt.PRIVACY_KEYGEN_TOKEN and value[0] == PRIVACY_TOKEN_SUBTYPE:
                fields["privacy_keygen_token"] = value[2:10]


def _field(tree: Tree, name: str, kind: str, end: int) -> Any:
    """A fixed field's value, if all its octets lie before `end`."""
    raw = tree.raw(name)
    if raw is None or raw[1] + len(raw[0]) > end or not raw[0]:
        return None
    if kind == OCTETS:
        return raw[0]
    if kind == ADDRESS:
        return address(raw[0]) if len(raw[0]) == 16 else None
    value = int.from_bytes(raw[0], "big")
    return value * LIFETIME_UNIT if kind == LIFETIME else value


# --- the whole packet ------------------------------------------------------------------------

def _first_error(packet: Packet) -> str | None:
    """The first expert error in tree order, outside an ICMPv6 error's quoted packet."""
    for name, value in packet.layers:
        if not isinstance(value, dict):
            continue
        found = _error_in(value, name == "icmpv6")
        if found is not None:
            return found
    return None


def _error_in(node: dict[str, Any], icmpv6: bool) -> str | None:
    for key, value in node.items():
        if icmpv6 and key == "ipv6":
            continue                       # the quoted packet: not this packet's error
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                continue
            if key == "_ws.expert":
                severity = _int(item.get("_ws.expert.severity"))
                message = item.get("_ws.expert.message")
                if severity is not None and severity >= PI_ERROR and isinstance(message, str):
                    return message
            found = _error_in(item, icmpv6)
            if found is not None:
                return found
    return None


def _preview(octets: bytes | None) -> str:
    return printable_preview(octets) if octets else ""


class _Summary:
    """The Info column and the transport, written step by step as dissectors.walk writes them
    (the last protocol that writes the column wins; an ICMPv6 error's quote writes nothing)."""

    def __init__(self) -> None:
        self.info = ""
        self.transport: Transport | None = None
        self.stopped = False


def convert(packet: Packet, sensor: str = "") -> PacketEvent | None:
    """The event of a frame MOBILITY_FILTER selects; None when it has no whole IPv6 header
    (the walk counts such a frame as malformed, with no event)."""
    frame = packet.frame
    frame_length = _int(frame.get("frame.len")) or 0
    protocols = packet.protocols
    if "esp" in protocols:                      # keyless: nothing after the first ESP header
        protocols = protocols[:protocols.index("esp") + 1]
    layers = [_Layer(tree, frame_length) for tree in packet.trees("ipv6")]
    out = _Summary()
    mobility: _Mobility | None = None
    prefix: MobilePrefix | None = None
    counts: dict[str, int] = {}
    current: _Layer | None = None
    nested_done: _Layer | None = None      # the layer whose nested MH was read
    top = 0                                # top-level mipv6 subtrees used
    ipv6_over = "ipv6"            # what carries the next UDP: "ipv6" or "ip"
    for i, name in enumerate(protocols):
        if out.stopped:
            break
        k = counts.get(name, 0)
        counts[name] = k + 1
        if name == "ipv6":
            if k >= len(layers) or not layers[k].whole:
                break
            current = layers[k]
            ipv6_over = "ipv6"
            _chain_info(out, current, protocols, i)
        elif name == "mipv6" and current is not None and protocols[i - 1] != "udp":
            # the Mobility Header ending this IPv6 header's chain: tshark puts it inside the
            # IPv6 subtree, or (a capture cut short) as a protocol of its own
            if current.tree.has("mipv6") and current is not nested_done:
                nested_done = current
                raws = current.tree.raws("mipv6")
                mobility = _Mobility(Tree(current.tree.subtrees("mipv6")[-1]),
                                     raws[-1] if raws else None, current)
            else:
                trees = packet.trees("mipv6")
                if top < len(trees):
                    mobility = _Mobility(trees[top], packet.raw_octets("mipv6", top), current)
                top += 1
            if mobility is not None and mobility.header and mobility.message is not None:
                out.info = summary.mh_info(mobility.message.mh_type)
        elif name == "ip":
            ipv6_over = "ip"
        elif name == "esp":
            _esp(packet, out, current, layers, ipv6_over, protocols, i)
        elif name == "ah":
            trees = packet.trees("ah")
            spi = trees[k].int("ah.spi") if k < len(trees) else None
            if spi is not None:
                out.info = f"AH (SPI=0x{spi:08x})"
        elif name == "icmpv6" and current is not None:
            prefix = _icmpv6(packet, out, current, k) or prefix
        elif name == "udp":
            _udp(packet, out, k, ipv6_over == "ipv6" and current is not None, protocols, i)
        elif name == "tcp":
            _tcp(packet, out, k)
        elif name == "mipv6" and i > 0 and protocols[i - 1] == "udp":
            # DSMIPv6 (UDP 5436): tshark names the message; the walk does not read it
            trees = packet.trees("mipv6")
            if top < len(trees) and trees[top].first("mip6.csum") is not None:
                out.info = summary.mh_info(trees[top].int("mip6.mhtype") or 0)
            top += 1
        elif name == "dns":
            trees = packet.trees("dns")
            out.info = ""
            if trees and trees[0].has("dns.flags.response") and trees[0].has("dns.id"):
                response = trees[0].first("dns.flags.response") == "1"
                out.info = (f"Standard query{' response' if response else ''} "
                            f"0x{trees[0].int('dns.id') or 0:04x}")
        elif name == "data" and i > 0 and protocols[i - 1] == "udpencap":
            out.info = ""          # IKE after the non-ESP marker (RFC 3948 2.2): not dissected
    whole = [layer for layer in layers if layer.whole]
    if not whole:
        return None
    message = mobility.message if mobility is not None else None
    if "_ws.malformed" in [n for n, _ in packet.layers]:
        info = out.info + summary.MALFORMED
    elif "_ws.short" in [n for n, _ in packet.layers]:
        info = out.info + summary.LIMITED
    else:
        info = out.info
    malformed = _first_error(packet)
    if malformed is None and mobility is not None and mobility.short:
        malformed = MH_TRUNCATED
    return PacketEvent(
        frame=_int(frame.get("frame.number")) or 0,
        time=float(frame["frame.time_epoch"]),
        length=frame_length,
        layers=tuple(layer.layer() for layer in whole),
        mobility=message, prefix_discovery=prefix,
        transport=out.transport if message is None and prefix is None else None,
        path=_path(packet), sensor=sensor, protocols=":".join(protocols), info=info,
        malformed=malformed)


def _path(packet: Packet) -> str | None:
    for tree in packet.trees("pkt_comment"):
        for comment in tree.all("frame.comment"):
            if isinstance(comment, str) and comment.startswith(PATH_COMMENT):
                return comment[len(PATH_COMMENT):]
    return None


def _chain_info(out: _Summary, layer: _Layer, protocols: list[str], at: int) -> None:
    """An IPv6 header's extension chain (RFC 8200 4) and how it ends, in the column."""
    t = layer.tree
    for name in layer.chain:
        if name in EXT_INFO:
            out.info = EXT_INFO[name]
        elif name == "ipv6.fraghdr":
            frag = Tree(t.subtrees(name)[-1])
            ident = frag.int("ipv6.fraghdr.ident")
            if ident is not None:
                offset = (frag.int("ipv6.fraghdr.offset") or 0) * 8
                more = "y" if frag.first("ipv6.fraghdr.more") == "1" else "n"
                out.info = (f"IPv6 fragment (off={offset} more={more} ident=0x{ident:08x} "
                            f"nxt={frag.int('ipv6.fraghdr.nxt')})")
            out.transport = Transport("fragment")
            return
    nh = layer.last_nh
    if nh is None or nh in WALKED or nh in EXT_HEADERS:
        if nh == int(NH.IPV6):
            rest = protocols[at + 1 + len(layer.chain):]
            if rest[:1] == ["data"]:
                out.info = "Unknown IP Protocol: IPv6 (41)"     # the inner one is not IPv6
        return
    if nh == int(NH.NO_NEXT):
        out.info = "IPv6 no next header"
        out.transport = Transport("none")
        return
    if nh not in summary.IP_PROTOCOL_NAMES:
        out.info = f"Unknown IP Protocol: Unknown ({nh})"
    out.transport = Transport(PROTOCOL_NAMES.get(nh, str(nh)))


def _esp(packet: Packet, out: _Summary, current: _Layer | None, layers: list[_Layer],
         over: str, protocols: list[str], at: int) -> None:
    """RFC 4303 2: SPI and sequence number; the rest, as captured, for the keyed stage."""
    trees = packet.trees("esp")
    if not trees:
        return
    esp = trees[0]
    spi, seq = esp.int("esp.spi"), esp.int("esp.sequence")
    if spi is None or seq is None:
        return
    out.info = f"ESP (SPI=0x{spi:08x})"
    if current is None or over != "ipv6" or current.esp is not None:
        return
    raw = packet.raw_octets("esp")
    octets = raw[0] if raw is not None else b""
    start = esp.raw("esp.spi")
    end = current.end
    if at > 0 and protocols[at - 1] == "udpencap":           # RFC 3948: the UDP's end
        udp = packet.trees("udp")
        if udp:
            length, where = udp[-1].int("udp.length"), udp[-1].raw("udp.srcport")
            if length is not None and where is not None and length >= 8 \
                    and where[1] + length <= end:
                end = where[1] + length
    begin = start[1] if start is not None else end
    current.esp = Esp(spi, seq, False, octets[8:], begin + len(octets) < end)


def _icmpv6(packet: Packet, out: _Summary, layer: _Layer, k: int) -> MobilePrefix | None:
    """RFC 4443 2.1; RFC 6275 6.7, 6.8 (MPS, MPA); Neighbor Discovery's summary (RFC 4861)."""
    trees = packet.trees("icmpv6")
    if k >= len(trees):
        return None
    t = trees[k]
    icmp_type, code = t.int("icmpv6.type"), t.int("icmpv6.code")
    if icmp_type is None or code is None:
        return None
    out.info = summary.icmpv6_info(icmp_type, code)
    body = packet.raw_octets("icmpv6", k)
    out.transport = Transport("icmpv6", None, None, _preview(body[0][4:] if body else None))
    if icmp_type in (ICMPV6_MPS, ICMPV6_MPA):
        identifier = t.int("icmpv6.mip6.identifier")
        if identifier is None:
            return None
        prefixes = []
        for option in t.subtrees("icmpv6.opt"):
            opt = Tree(option)
            if opt.int("icmpv6.opt.type") == 3:             # RFC 4861 4.6.2
                where = opt.raw("icmpv6.opt.prefix")
                length = opt.int("icmpv6.opt.prefix.length")
                if where is not None and len(where[0]) == 16 and length is not None:
                    prefixes.append(f"{address(where[0])}/{length}")
        return MobilePrefix(icmp_type, identifier, tuple(prefixes))
    if icmp_type in ICMPV6_ECHO:
        ident, seq = t.int("icmpv6.echo.identifier"), t.int("icmpv6.echo.sequence_number")
        if ident is not None and seq is not None:
            out.info += f" id=0x{ident:04x}, seq={seq}, hop limit={layer.hop_limit}"
    elif icmp_type in ICMPV6_ERRORS:
        out.stopped = True                  # the quoted packet writes nothing (RFC 4443 2.4)
    elif icmp_type in (133, 134, 135, 136):
        _neighbor_discovery(out, t, icmp_type)
    return None


def _neighbor_discovery(out: _Summary, t: Tree, icmp_type: int) -> None:
    """RFC 4861 4.1-4.4 as tshark summarises them: target, flags, link-layer addresses."""
    link: dict[int, bytes] = {}
    for option in t.subtrees("icmpv6.opt"):
        opt = Tree(option)
        otype = opt.int("icmpv6.opt.type")
        value = opt.raw("icmpv6.opt.linkaddr")
        if otype in (1, 2) and opt.int("icmpv6.opt.length") == 1 and value is not None:
            link[otype] = value[0]
    source = link.get(1)
    tail = f" from {source.hex(':')}" if source is not None else ""
    if icmp_type == 135:
        target = t.raw("icmpv6.nd.ns.target_address")
        if target is not None:
            out.info = f"{out.info} for {address(target[0])}{tail}"
    elif icmp_type == 136:
        target = t.raw("icmpv6.nd.na.target_address")
        if target is not None:
            flags = ", ".join(name for name, _ in NA_FLAGS
                              if t.first(f"icmpv6.nd.na.flag.{name[0]}") == "1") or "none"
            lla = link.get(2)
            out.info = (f"{out.info} {address(target[0])} ({flags})"
                        + (f" is at {lla.hex(':')}" if lla is not None else ""))
    else:
        out.info += tail


def _udp(packet: Packet, out: _Summary, k: int, over_ipv6: bool, protocols: list[str],
         at: int) -> None:
    """RFC 768 (RFC 8200 8.1: over IPv6 a zero checksum is illegal), summarised as tshark."""
    trees = packet.trees("udp")
    if k >= len(trees):
        return
    t = trees[k]
    sport, dport, length = t.int("udp.srcport"), t.int("udp.dstport"), t.int("udp.length")
    if sport is None or dport is None or length is None:
        return
    if length < 8:
        out.info = f"{sport} → {dport} [BAD UDP LENGTH {length} < 8]"
        out.stopped = True
        return
    messages = [m for m in t.all("_ws.expert.message") if isinstance(m, str)]
    if any(m.startswith("Bad length value") and "> IP payload length" in m for m in messages):
        out.info = (f"{sport} → {dport} [BAD UDP LENGTH {length} > IP PAYLOAD LENGTH] "
                    f"Len={length - 8}")
    else:
        out.info = f"{sport} → {dport} Len={length - 8}"
    checksum = t.raw("udp.checksum")
    if checksum is None:
        return
    if over_ipv6 and checksum[0] == b"\x00\x00":
        out.info += " [ILLEGAL CHECKSUM (0)]"
    payload = t.raw("udp.payload")
    out.transport = Transport("udp", sport, dport, _preview(payload[0] if payload else None))


def _tcp(packet: Packet, out: _Summary, k: int) -> None:
    """RFC 9293 3.1, summarised as tshark does (relative numbers, scaled window, options)."""
    trees = packet.trees("tcp")
    if k >= len(trees):
        return
    t = trees[k]
    sport, dport = t.int("tcp.srcport"), t.int("tcp.dstport")
    if sport is None or dport is None:
        return
    out.info = f"{sport} → {dport}"
    flags_raw, header = t.first("tcp.flags"), t.int("tcp.hdr_len")
    if flags_raw is None or header is None:
        return
    flags = _int(flags_raw) or 0
    names = summary.tcp_flags(flags)
    seq, ack, win = t.int("tcp.seq"), t.int("tcp.ack"), t.int("tcp.window_size")
    if header < 20:
        out.info = (f"{sport} → {dport} [{names}] Seq={seq} Ack={ack} Win={win}, bogus TCP "
                    f"header length ({header}, must be at least 20)")
        return
    if t.first("tcp.len") is None:
        out.info = (f"{sport} → {dport} [{names}] Seq={t.int('tcp.seq_raw')} "
                    f"Ack={t.int('tcp.ack_raw')} Win={t.int('tcp.window_size_value')}")
        return
    text = summary.tcp_info(sport, dport, names, seq, ack, win, flags,
                            t.int("tcp.urgent_pointer"), t.int("tcp.len"))
    options = t.node.get("tcp.options_tree")
    if isinstance(options, dict):
        text += "".join(_tcp_options(options))
    out.info = text
    payload = t.raw("tcp.payload")
    out.transport = Transport("tcp", sport, dport, _preview(payload[0] if payload else None))


def _tcp_options(node: dict[str, Any]) -> Iterator[str]:
    """RFC 9293 3.2 options as the walk lists them, in wire order: MSS, WS (the multiplier),
    SACK_PERM, TSval/TSecr, each only at its one valid length."""
    for key in node:
        if key.endswith(("_tree", "_raw")):
            continue
        subtrees = node.get(key + "_tree")
        for sub in subtrees if isinstance(subtrees, list) else [subtrees]:
            if not isinstance(sub, dict):
                continue
            size = _int(sub.get("tcp.option_len"))
            if key == "tcp.options.mss" and size == 4:
                yield f" MSS={sub.get('tcp.options.mss_val')}"
            elif key == "tcp.options.wscale" and size == 3:
                yield f" WS={sub.get('tcp.options.wscale.multiplier')}"
            elif key == "tcp.options.sack_perm" and size == 2:
                yield " SACK_PERM"
            elif key == "tcp.options.timestamp" and size == 10:
                yield (f" TSval={sub.get('tcp.options.timestamp.tsval')}"
                       f" TSecr={sub.get('tcp.options.timestamp.tsecr')}")
