"""A frame's header chains walked from its octets: whether it concerns mobility, and its event.

This is the dissector: no tshark. It decides relevance with the meaning of tshark's
MOBILITY_FILTER (below), marks a frame malformed where tshark would (a read past the packet's
own length is tshark's "Malformed Packet"; an invalid HAO or RH2 length, a bad UDP length are
its expert errors), and writes the Info and Protocol strings the packet list shows
(dissectors.summary). The rules were taken from tshark 4.0 on crafted frames and are held to
it by tests/dissectors/test_walk_vs_tshark.py.

What the walk reads, per IPv6 header (outermost first): the HAO (RFC 6275 6.3), the pseudo
home address option 0xFE (PROFILE.md), the type 2 routing header (RFC 6275 6.4), the first ESP
header (RFC 4303: the rest is ciphertext; dissectors.decrypt opens it later, with keys, and
continues the walk inside through `Walker.decrypted`), IPv6-in-IPv6 (RFC 2473), the Mobility
Header (dissectors.mobility), ICMPv6 Mobile Prefix Solicitation/Advertisement (RFC 6275 6.7,
6.8) and the invoking packet an ICMPv6 error quotes (RFC 4443 2.4 c), and a summary of a data
packet's transport. It also finds IPv6 inside IPv4 (RFC 4213), GRE (RFC 2784), Teredo
(RFC 4380), VXLAN (RFC 7348) and UDP-encapsulated ESP (RFC 3948); GTP-U and L2TP payloads and
link types it does not know are not walked, and a frame the walk could not see into for that
reason is counted as filtered with that reason (`Walk.unwalked`), never silently.

Every read is bounds-checked: a frame can end anywhere without an exception escaping.

Most mobility traffic takes a few chains (IPv6 with the HAO or RH2, IPv6-in-IPv6, ending in a
Mobility Header, ESP or UDP data): `common_event` makes such a frame's event straight from its
octets, and leaves every other frame (anything cut, malformed, or on another chain) to the
general walk, whose event it equals.
"""
from __future__ import annotations

import functools
import socket
import struct

from dissectors import mobility, summary
from dissectors.capfile import Record
from dissectors.events import (
    Esp,
    IPv6Layer,
    MobilePrefix,
    MobilityMessage,
    PacketEvent,
    Transport,
)
from dissectors.mobility import address
from dissectors.protocol import (
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_INFORMATIONAL,
    ICMPV6_MPA,
    ICMPV6_MPS,
    MOBILITY_NEXT_HEADERS,
    ND_OPT_PREFIX_INFORMATION,
    OPT_HAO,
    OPT_PAD1,
    OPT_PADN,
    OPT_PSEUDO_HOA,
    ROUTING_TYPE_2,
)
from dissectors.protocol import NextHeader as NH

# tshark's MOBILITY_FILTER, which the walk implements (and which the tests run in real tshark
# as the reference): MH (not DSMIPv6's UDP 5436, PLATFORM-NOTES), ESP, HAO (option 201) and
# the pseudo home address option 0xFE (PROFILE.md), RH2, Mobile Prefix Solicitation /
# Advertisement, IPv6-in-IPv6 (reverse tunnels, RFC 6275 10.4.5), and malformed frames.
MOBILITY_FILTER = (
    "(ipv6 && ((mipv6 && !udp) || esp || ipv6.opt.type == 0xc9 || ipv6.opt.type == 0xfe"
    " || ipv6.routing.type == 2 || icmpv6.type == 146 || icmpv6.type == 147"
    " || ipv6.nxt == 41 || ipv6.hopopts.nxt == 41 || ipv6.dstopts.nxt == 41"
    " || ipv6.routing.nxt == 41)) || _ws.malformed")

# Link-layer headers in front of the network layer (tcpdump.org LINKTYPE_ values).
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
LINKTYPES_RAW = (LINKTYPE_RAW, 12, 14)              # raw IP (DLT_RAW on some BSDs: 12, 14)
ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ARP = 0x0800, 0x86DD, 0x0806
ETHERTYPE_TEB = 0x6558                               # transparent Ethernet bridging (GRE)
VLAN_NAMES = {0x8100: "vlan", 0x88A8: "ieee8021ad", 0x9100: "vlan"}
BSD_AF_INET6 = (24, 28, 30)      # AF_INET6 in DLT_NULL / DLT_LOOP (BSDs, macOS); tshark's set
BSD_AF_INET = 2

# Short names for the next-header values the walk dispatches on (dissectors.protocol), as
# plain ints: the walk compares them for every header of every frame.
HOP_BY_HOP, IPV4_IN, TCP, UDP, IPV6 = (int(NH.HOP_BY_HOP), int(NH.IPV4), int(NH.TCP),
                                       int(NH.UDP), int(NH.IPV6))
ROUTING, FRAGMENT, GRE, ESP_NH, AH = (int(NH.ROUTING), int(NH.FRAGMENT), int(NH.GRE),
                                      int(NH.ESP), int(NH.AH))
ICMPV6, NO_NEXT, DEST_OPTS = int(NH.ICMPV6), int(NH.NO_NEXT), int(NH.DEST_OPTS)
_MOBILITY_NEXT_HEADERS = frozenset(int(nh) for nh in MOBILITY_NEXT_HEADERS)
# Transport.protocol of a data packet's upper layer
PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMPV6: "icmpv6", NO_NEXT: "none",
                  int(NH.SCTP): "sctp", IPV4_IN: "ipv4", GRE: "gre", int(NH.UDPLITE): "udplite"}

ROUTING_TYPE_0 = 0                                   # RFC 5095: deprecated
# options with one valid length, as tshark names them when it differs (RFC 2473 6.6, RFC 2711
# 2.1, RFC 2675 2, RFC 6275 6.3)
OPTION_SIZES = {0x04: ("Tunnel Encapsulation Limit", 1), 0x05: ("Router Alert", 2),
                0xC2: ("Jumbo Payload", 4), OPT_HAO: ("Home Address", 16)}
ICMPV6_ERRORS = (1, 2, 3, 4)                        # RFC 4443 3: they quote a packet
ICMPV6_ECHO = (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
ND_OPT_SOURCE_LLA, ND_OPT_TARGET_LLA = 1, 2         # RFC 4861 4.6.1
# octets after the 4-octet ICMPv6 header before a Neighbor Discovery message's options
# (RFC 4861 4.1-4.5, RFC 3971 6.4, RFC 4068 and RFC 5568 for 150 and 154)
ND_BODY = {133: 4, 134: 12, 135: 20, 136: 20, 137: 36, 148: 4, 149: 8, 150: 4, 154: 4}
NA_FLAGS = (("rtr", 0x80), ("sol", 0x40), ("ovr", 0x20))   # RFC 4861 4.4
UDP_ENCAP_ESP, UDP_TEREDO, UDP_VXLAN, UDP_DNS, UDP_DSMIP6 = 4500, 3544, 4789, 53, 5436
UDP_UNWALKED = {2152: "GTP-U", 1701: "L2TP"}        # tunnels whose payload is not walked
# every port _udp looks further into
_UDP_PORTS_WALKED = frozenset({UDP_ENCAP_ESP, UDP_TEREDO, UDP_VXLAN, UDP_DNS, UDP_DSMIP6,
                               *UDP_UNWALKED})
DNS_HEADER = 12                                     # RFC 1035 4.1.1
PREVIEW_OCTETS = 32
MH_HEADER = mobility.MH_HEADER
MH_TRUNCATED = "Mobility Header truncated by the capture's snap length"

_IPV6_HEADER = struct.Struct("!HBB")     # RFC 8200 3: Payload Length, Next Header, Hop Limit
_PORTS = struct.Struct("!HH")            # RFC 768, RFC 9293: source and destination ports

# what a walk step hands to the next one
_IPV6, _IPV4, _ETHERNET = 1, 2, 3


class _Stop(Exception):
    """A read past the octets there are: past the packet's own length (`reported`: tshark's
    Malformed Packet), else only past what the capture kept (Packet size limited)."""

    def __init__(self, reported: bool):
        super().__init__()
        self.reported = reported


def _octets(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


# printable ASCII stays, every other octet shows as "."
_PRINTABLE = bytes(b if 32 <= b < 127 else 0x2E for b in range(256))


def printable_preview(payload: bytes) -> str:
    return payload[:PREVIEW_OCTETS].translate(_PRINTABLE).decode("ascii")


class _Fields:
    """One IPv6 header's findings while its extension chain is walked."""

    __slots__ = ("src", "dst", "hao", "rh2", "pseudo", "esp", "hop_limit", "in_esp")

    def __init__(self, src: bytes, dst: bytes, hop_limit: int):
        self.src, self.dst, self.hop_limit = src, dst, hop_limit
        self.hao: bytes | None = None
        self.rh2: bytes | None = None
        self.pseudo: bytes | None = None
        self.esp: Esp | None = None
        self.in_esp = False         # walking a decrypted ESP payload of this header

    def layer(self) -> IPv6Layer:
        if self.esp is None:
            return _shared_layer(self.src, self.dst, self.hao, self.rh2, self.pseudo)
        return _layer(self.src, self.dst, self.hao, self.rh2, self.pseudo, self.esp)


def _layer(src: bytes, dst: bytes, hao: bytes | None, rh2: bytes | None,
           pseudo: bytes | None, esp: Esp | None = None) -> IPv6Layer:
    return IPv6Layer(address(src), address(dst),
                     address(hao) if hao is not None else None,
                     address(rh2) if rh2 is not None else None,
                     address(pseudo) if pseudo is not None else None, esp)


# An IPv6 layer with no ESP, by its addresses' octets: one immutable object for the headers
# that carry the same addresses (a node's packets to its home agent or a correspondent, as
# addresses are: mobility.address), not one made per packet.
_shared_layer = functools.lru_cache(maxsize=8192)(_layer)


class Walk:
    """What the octets of one frame (or of one decrypted ESP payload) say. Slots, every one
    set in __init__: attribute reads and writes are the walk's most frequent operations, and
    slots keep them one fixed offset whatever order a packet sets them in."""

    __slots__ = ("layers", "protocols", "errors", "info", "info_locked", "exception",
                 "ws_malformed", "limited", "ipv6", "marker", "udp", "mh_seen", "mh_type", "mh",
                 "mh_pseudo", "mh_short", "prefix", "transport", "unwalked", "bundled")

    def __init__(self) -> None:
        self.layers: list[IPv6Layer] = []
        self.protocols: list[str] = []
        self.errors: list[str] = []    # tshark expert errors, in the order they arise
        self.info = ""
        self.info_locked = False       # an ICMPv6 error's quote does not write the column
        self.exception = False         # a read past the packet's own length
        self.ws_malformed = False      # tshark's _ws.malformed: that, or a malformed-group error
        self.limited = False           # a read past the captured octets
        self.ipv6 = False              # an IPv6 header was read
        self.marker = False            # one of MOBILITY_FILTER's clauses other than MH
        self.udp = False
        self.mh_seen = False           # a Mobility Header anywhere (quotes too)
        self.mh_type: int | None = None
        self.mh: bytes | None = None   # the Mobility Header's captured octets
        self.mh_pseudo: tuple[bytes, bytes] | None = None   # RFC 6275 6.1.1 checksum addresses
        self.mh_short = False          # the capture kept fewer octets than its Header Len
        self.prefix: MobilePrefix | None = None
        self.transport: Transport | None = None
        self.unwalked: str | None = None   # an encapsulation or link type not walked into
        self.bundled: Esp | None = None    # ESP right inside the decrypted ESP being continued

    def set_info(self, text: str) -> None:
        if not self.info_locked:
            self.info = text

    def stop(self, reported: bool) -> None:
        if reported:
            if not self.exception:
                self.exception = self.ws_malformed = True
                self.errors.append(summary.EXCEPTION)
        else:
            self.limited = True

    def error(self, message: str, malformed: bool = True) -> None:
        """An expert error; `malformed`: in tshark's malformed group (it sets _ws.malformed,
        so MOBILITY_FILTER selects the frame for it alone)."""
        self.errors.append(message)
        self.ws_malformed = self.ws_malformed or malformed

    @property
    def selected(self) -> bool:
        """MOBILITY_FILTER's verdict."""
        return (self.ipv6 and (self.marker or (self.mh_seen and not self.udp))) \
            or self.ws_malformed

    @property
    def malformed(self) -> str | None:
        """The first expert error, as tshark reports it; else a Mobility Header the capture
        cut short (its fields past the snap length are unknown: not analysed as whole)."""
        if self.errors:
            return self.errors[0]
        return MH_TRUNCATED if self.mh_short else None

    @property
    def info_text(self) -> str:
        if self.exception:
            return self.info + summary.MALFORMED
        if self.limited:
            return self.info + summary.LIMITED
        return self.info

    def continued(self, inner: Walk) -> None:
        """Take in `inner`, the walk of one of this walk's ESP payloads once decrypted
        (dissectors.decrypt.EspDecryptor.open_walk, which has put its layers in), as
        EspDecryptor.decrypt does in an event: the message, prefix and transport become the
        plaintext's; its protocols follow; the Info column is its own when it wrote one (or
        a suffix); the first expert error stays the first (a walk that reached an ESP header
        read no Mobility Header, so none was cut short before it)."""
        self.mh_type, self.mh, self.mh_pseudo, self.mh_short = \
            inner.mh_type, inner.mh, inner.mh_pseudo, inner.mh_short
        self.prefix, self.transport = inner.prefix, inner.transport
        self.protocols += inner.protocols
        if inner.info or inner.exception or inner.limited:
            self.info, self.exception, self.limited = inner.info, inner.exception, inner.limited
        self.errors += inner.errors

    def message(self) -> MobilityMessage | None:
        if self.mh_type is None:
            return None
        if self.mh is None or len(self.mh) < 3:
            return MobilityMessage(self.mh_type)
        return mobility.parse(self.mh_type, self.mh, self.mh_pseudo, self.mh_short)


class Walker:
    """Walks frames. Keeps the little cross-frame state a tshark-like TCP summary needs
    (relative sequence numbers and window scale per direction, bounded)."""

    TCP_FLOWS = 4096

    def __init__(self) -> None:
        self._flows: dict[tuple[bytes, bytes, int, int], list[int]] = {}

    # --- entry points ----------------------------------------------------------------------

    def frame(self, linktype: int, data: bytes, length: int = 0) -> Walk:
        """Walk one captured frame (`length`: its octets on the wire, 0 when unknown)."""
        w = Walk()
        size = len(data)
        rend = length if length > size else size
        try:
            if linktype == LINKTYPE_RAW and size and data[0] >> 4 == 6:
                w.protocols.append("raw")
                step = self._ipv6(w, data, 0, rend, False)   # _link's answer, without the call
                if step is not None:
                    self._network(w, data, step[0], step[1], step[2], False)
            else:
                kind, at = self._link(w, linktype, data, rend)
                if kind:
                    self._network(w, data, kind, at, rend, False)
        except _Stop as stop:
            w.stop(stop.reported)
        return w

    def decrypted(self, layer: IPv6Layer, next_header: int, plaintext: bytes) -> Walk:
        """Continue the walk of `layer` inside its decrypted ESP payload (RFC 4303 2.6: the
        ESP trailer's Next Header). The first layer of the result is `layer` itself, with
        what the plaintext added (its `esp` left as it was); tunnel mode adds inner layers."""
        w = Walk()
        w.ipv6 = True
        f = _Fields(_octets(layer.src), _octets(layer.dst), 64)
        f.hao = _octets(layer.home_address) if layer.home_address else None
        f.rh2 = _octets(layer.routing_home_address) if layer.routing_home_address else None
        f.pseudo = _octets(layer.pseudo_home_address) if layer.pseudo_home_address else None
        f.esp, f.in_esp = layer.esp, True
        end = len(plaintext)
        try:
            step = self._chain(w, plaintext, 0, end, next_header, f, False)
            if step is not None:
                self._network(w, plaintext, step[0], step[1], step[2], False)
        except _Stop as stop:
            w.stop(stop.reported)
        return w

    # --- link layer ------------------------------------------------------------------------

    def _link(self, w: Walk, linktype: int, data: bytes, rend: int) -> tuple[int, int]:
        """(what follows, its offset): _IPV6, _IPV4, or 0 when the frame carries neither."""
        if linktype == LINKTYPE_ETHERNET:
            return self._ethernet(w, data, 0, rend)
        if linktype in LINKTYPES_RAW:
            w.protocols.append("raw")
            _need(data, 1, rend)
            version = data[0] >> 4
            return (_IPV6 if version == 6 else _IPV4 if version == 4 else 0), 0
        if linktype == LINKTYPE_IPV6:
            return _IPV6, 0
        if linktype == LINKTYPE_IPV4:
            return _IPV4, 0
        if linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
            w.protocols += ["sll", "ethertype"]
            at = 16 if linktype == LINKTYPE_LINUX_SLL else 20
            _need(data, at, rend)
            etype = struct.unpack_from("!H", data, 14 if linktype == LINKTYPE_LINUX_SLL else 0)[0]
            return (_IPV6 if etype == ETHERTYPE_IPV6 else _IPV4 if etype == ETHERTYPE_IPV4
                    else 0), at
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            w.protocols.append("null")
            _need(data, 4, rend)
            family = struct.unpack_from(">I" if linktype == LINKTYPE_LOOP else "<I", data)[0]
            if linktype == LINKTYPE_NULL and family > 0xFFFF:
                family = struct.unpack_from(">I", data)[0]     # written on the other endian
            if family in BSD_AF_INET6:
                return _IPV6, 4
            if family == BSD_AF_INET:
                return _IPV4, 4
            w.protocols.append("data")
            return 0, 4
        w.unwalked = f"link type {linktype}"
        return 0, 0

    def _ethernet(self, w: Walk, data: bytes, at: int, rend: int) -> tuple[int, int]:
        w.protocols += ["eth", "ethertype"]
        _need(data, at + 14, rend)
        etype = struct.unpack_from("!H", data, at + 12)[0]
        at += 14
        while etype in VLAN_NAMES:                          # IEEE 802.1Q / 802.1ad tags
            w.protocols += [VLAN_NAMES[etype], "ethertype"]
            _need(data, at + 4, rend)
            etype = struct.unpack_from("!H", data, at + 2)[0]
            at += 4
        if etype == ETHERTYPE_IPV6:
            return _IPV6, at
        if etype == ETHERTYPE_IPV4:
            return _IPV4, at
        return 0, at

    # --- network layers --------------------------------------------------------------------

    def _network(self, w: Walk, buf: bytes, kind: int, at: int, rend: int,
                 quoted: bool) -> None:
        """IPv6 headers (nested ones too), and the IPv4, GRE, UDP tunnels that carry them."""
        step: tuple[int, int, int] | None = (kind, at, rend)
        while step is not None:
            kind, at, rend = step
            if kind == _IPV6:
                step = self._ipv6(w, buf, at, rend, quoted)
            elif kind == _IPV4:
                step = self._ipv4(w, buf, at, rend)
            else:
                kind, at = self._ethernet(w, buf, at, rend)
                step = (kind, at, rend) if kind else None

    def _ipv6(self, w: Walk, buf: bytes, at: int, rend: int,
              quoted: bool) -> tuple[int, int, int] | None:
        """RFC 8200 3: one IPv6 header, then its extension chain."""
        w.protocols.append("ipv6")
        if at + 40 > rend or at + 40 > len(buf) or buf[at] >> 4 != 6:
            self._not_ipv6(w, buf, at, rend)
            return None
        w.ipv6 = True
        plen, nh, hop_limit = _IPV6_HEADER.unpack_from(buf, at + 4)
        end = at + 40 + plen
        if end > rend:
            end = rend               # tshark warns and reads what the frame has
        f = _Fields(buf[at + 8:at + 24], buf[at + 24:at + 40], hop_limit)
        return self._chain(w, buf, at + 40, end, nh, f, quoted)

    def _not_ipv6(self, w: Walk, buf: bytes, at: int, rend: int) -> None:
        """What tshark says of an IPv6 header that is not whole or not version 6 (it raises
        _Stop, or the header is bogus data)."""
        if at + 40 > len(buf) or at + 40 > rend:
            _need(buf, at + 1, rend)                 # not even the version: cut or malformed
        if buf[at] >> 4 != 6:
            w.protocols[-1] = "data"
            w.set_info("IPv6" if len(w.protocols) < 2 or w.protocols[-2] == "ethertype"
                       else "Unknown IP Protocol: IPv6 (41)")
            w.error("Bogus IPv6 version")
            return
        if rend - at < 40:
            w.set_info(f"Invalid IPv6 header ({max(rend - at, 0)} bytes, need exactly 40)")
            w.error("IPv6 header must be exactly 40 bytes")
            raise _Stop(True)
        raise _Stop(False)                           # at + 40 > len(buf): cut short

    def _chain(self, w: Walk, buf: bytes, at: int, end: int, nh: int, f: _Fields,
               quoted: bool) -> tuple[int, int, int] | None:
        """The extension chain of one IPv6 header and what it ends in; the header's layer is
        recorded however the walk ends (a quoted packet records none). Returns the next
        network step (a nested packet) or None."""
        from_ip_or_ext = True     # tshark's ipv6.{nxt,hopopts.nxt,dstopts.nxt,routing.nxt}
        # octets there are to read: past `cap`, _need says whether past the packet or the
        # capture (tested here first: the walk reads every header of every frame)
        cap = end if end < len(buf) else len(buf)
        protocols = w.protocols
        try:
            while True:
                if nh == HOP_BY_HOP or nh == DEST_OPTS:
                    protocols.append("ipv6.hopopts" if nh == HOP_BY_HOP else "ipv6.dstopts")
                    if not w.info_locked:
                        w.info = ("IPv6 hop-by-hop options" if nh == HOP_BY_HOP
                                  else "IPv6 destination options")
                    if at + 2 > cap:
                        _need(buf, at + 2, end)
                    hend = at + (buf[at + 1] + 1) * 8
                    # options are read one by one: those before a cut still count
                    self._options(w, buf, at + 2, hend, end, f)
                    if hend > cap:
                        _need(buf, hend, end)
                    nh, at, from_ip_or_ext = buf[at], hend, True
                elif nh == ROUTING:
                    protocols.append("ipv6.routing")
                    if not w.info_locked:
                        w.info = "IPv6 routing"
                    if at + 4 > cap:
                        _need(buf, at + 4, end)
                    hend = at + (buf[at + 1] + 1) * 8
                    if buf[at + 2] == ROUTING_TYPE_2:
                        w.marker = True
                        if buf[at + 1] != 2:
                            w.error("IPv6 Type 2 Routing Header extension header "
                                            "length must equal 2")
                        _need(buf, at + 24, hend if hend < end else end)   # the one address
                        f.rh2 = buf[at + 8:at + 24]
                    if hend > cap:
                        _need(buf, hend, end)
                    nh, at, from_ip_or_ext = buf[at], hend, True
                elif nh == FRAGMENT:
                    w.protocols.append("ipv6.fraghdr")
                    _need(buf, at + 8, end)
                    offset, ident = struct.unpack_from("!HI", buf, at + 2)
                    w.set_info(f"IPv6 fragment (off={offset & 0xFFF8} "
                               f"more={'y' if offset & 1 else 'n'} ident=0x{ident:08x} "
                               f"nxt={buf[at]})")
                    if at + 8 < end:
                        w.protocols.append("data")
                    # not reassembled: what the fragments carry is not walked
                    w.transport = Transport("fragment")
                    w.unwalked = "IPv6 fragment (not reassembled)"
                    return None
                elif nh == AH:
                    w.protocols.append("ah")
                    _need(buf, at + 8, end)
                    w.set_info(f"AH (SPI=0x{struct.unpack_from('!I', buf, at + 4)[0]:08x})")
                    hend = at + (buf[at + 1] + 2) * 4           # RFC 4302 2.2: 32-bit words
                    _need(buf, hend, end)
                    nh, at, from_ip_or_ext = buf[at], hend, False
                elif nh == ESP_NH:
                    self._esp(w, buf, at, end, f, quoted)
                    return None
                elif nh == IPV6:
                    if from_ip_or_ext:
                        w.marker = True
                    return _IPV6, at, end
                elif nh in _MOBILITY_NEXT_HEADERS:
                    self._mobility(w, buf, at, end, f, quoted)
                    return None
                elif nh == ICMPV6:
                    self._icmpv6(w, buf, at, end, f, quoted)
                    return None
                elif nh == UDP:
                    return self._udp(w, buf, at, end, f, quoted, ipv6=True)
                elif nh == TCP:
                    self._tcp(w, buf, at, end, f)
                    return None
                elif nh == NO_NEXT:
                    w.set_info("IPv6 no next header")
                    if at < end:
                        w.protocols.append("data")
                    w.transport = Transport("none")
                    return None
                else:
                    if nh == GRE:
                        return self._gre(w, buf, at, end)
                    if nh == IPV4_IN:
                        return _IPV4, at, end
                    w.protocols.append(summary.IP_PROTOCOL_NAMES.get(nh, "data"))
                    if nh not in summary.IP_PROTOCOL_NAMES:
                        w.set_info(f"Unknown IP Protocol: Unknown ({nh})")
                    w.transport = Transport(PROTOCOL_NAMES.get(nh, str(nh)))
                    return None
        finally:
            if not quoted:
                w.layers.append(f.layer())

    def _options(self, w: Walk, buf: bytes, at: int, hend: int, end: int,
                 f: _Fields) -> None:
        """RFC 8200 4.2 TLV options of a header ending at `hend`: the HAO and the 0xFE pseudo
        home address option. An option's data is read (and must be there) unless it is
        padding; a PadN running past the header ends the options quietly, as in tshark."""
        limit = hend if hend < end else end
        captured = len(buf)
        limit_cap = limit if limit < captured else captured     # as _chain's `cap`
        end_cap = end if end < captured else captured
        while at < hend:
            if at + 1 > limit_cap:
                _need(buf, at + 1, limit)
            otype = buf[at]
            if otype == OPT_PAD1:
                at += 1
                continue
            if otype == OPT_HAO or otype == OPT_PSEUDO_HOA:
                w.marker = True                      # ipv6.opt.type == 0xc9 / 0xfe
            if at + 2 > hend:
                return
            if at + 2 > limit_cap:
                _need(buf, at + 2, limit)
            olen = buf[at + 1]
            size = OPTION_SIZES.get(otype)
            if size is not None and olen != size[1]:
                w.error(f"{size[0]}: Invalid length ({olen} bytes)")
            # an option's data is read as far as its length says, within the packet (not
            # only its header: the options then end)
            if at + 2 + olen > end_cap:
                _need(buf, at + 2 + olen, end)
            if olen == 16 and at + 18 <= hend:
                if otype == OPT_HAO:
                    f.hao = buf[at + 2:at + 18]
                elif otype == OPT_PSEUDO_HOA:
                    f.pseudo = buf[at + 2:at + 18]
            at += 2 + olen

    def _ipv4(self, w: Walk, buf: bytes, at: int, rend: int) -> tuple[int, int, int] | None:
        """RFC 791, only as far as an IPv6 packet inside: 6in4 (RFC 4213), GRE, Teredo,
        VXLAN. IPv4 alone never concerns mobility (MOBILITY_FILTER asks for ipv6)."""
        w.protocols.append("ip")
        _need(buf, at + 20, rend)
        ihl = (buf[at] & 0x0F) * 4
        if buf[at] >> 4 != 4 or ihl < 20:
            return None
        total, frag, proto = struct.unpack_from("!H2xH1xB", buf, at + 2)
        end = min(at + total, rend) if total >= ihl else rend
        if frag & 0x3FFF:
            w.unwalked = "IPv4 fragment (not reassembled)"
            return None
        at += ihl
        _need(buf, at, end)
        if proto == IPV6:
            return _IPV6, at, end
        if proto == GRE:
            return self._gre(w, buf, at, end)
        if proto == UDP:
            return self._udp(w, buf, at, end, None, False, ipv6=False)
        return None

    def _gre(self, w: Walk, buf: bytes, at: int, end: int) -> tuple[int, int, int] | None:
        """RFC 2784 / 2890: the optional checksum, key and sequence words, then the payload
        of the EtherType it names."""
        w.protocols.append("gre")
        _need(buf, at + 4, end)
        flags, etype = struct.unpack_from("!HH", buf, at)
        at += 4 + 4 * sum(1 for bit in (0x8000, 0x2000, 0x1000) if flags & bit)
        if etype == ETHERTYPE_IPV6:
            return _IPV6, at, end
        if etype == ETHERTYPE_IPV4:
            return _IPV4, at, end
        if etype == ETHERTYPE_TEB:
            return _ETHERNET, at, end
        return None

    # --- upper layers ----------------------------------------------------------------------

    def _esp(self, w: Walk, buf: bytes, at: int, end: int, f: _Fields | None,
             quoted: bool) -> None:
        """RFC 4303 2: SPI and sequence number; the rest is for dissectors.decrypt."""
        w.protocols.append("esp")
        w.marker = True                                    # esp
        _need(buf, at + 8, end)
        spi, seq = struct.unpack_from("!II", buf, at)
        w.set_info(f"ESP (SPI=0x{spi:08x})")
        stop = min(end, len(buf))
        if stop < end:
            w.limited = True               # tshark reads the encrypted data to its end
        if quoted or f is None:
            return
        esp = Esp(spi, seq, False, buf[at + 8:stop], stop < end)
        if f.in_esp:
            w.bundled = esp                # inside the ESP being continued: an SA bundle
        else:
            f.esp = esp

    def _mobility(self, w: Walk, buf: bytes, at: int, end: int, f: _Fields,
                  quoted: bool) -> None:
        """RFC 6275 6.1: the Mobility Header, checked as tshark reads it (dissectors.mobility)."""
        w.protocols.append("mipv6")
        w.mh_seen = True
        if quoted:
            return
        captured = len(buf)
        cap = end if end < captured else captured
        if at + 3 <= cap:
            w.mh_type = buf[at + 2]
        if at + MH_HEADER > cap:
            _need(buf, at + MH_HEADER, end)
        mh_type = buf[at + 2]
        w.info = summary.MH_INFO.get(mh_type) or summary.mh_info(mh_type)   # not quoted
        declared = (buf[at + 1] + 1) * 8
        mh = w.mh = buf[at:at + declared]          # as far as the capture goes
        w.mh_short = len(mh) < declared
        # RFC 6275 6.1.1: the home address (HAO) and the final destination (RH2)
        w.mh_pseudo = (f.hao if f.hao is not None else f.src,
                       f.rh2 if f.rh2 is not None else f.dst)
        problem = mobility.check(mh_type, buf[at:cap], end - at)
        if problem is not None:
            raise _Stop(problem == mobility.PAST_PACKET)

    def _icmpv6(self, w: Walk, buf: bytes, at: int, end: int, f: _Fields,
                quoted: bool) -> None:
        """RFC 4443 2.1; 6275 6.7, 6.8 (MPS, MPA); an error's quoted packet (RFC 4443 2.4)."""
        w.protocols.append("icmpv6")
        _need(buf, at + 2, end)
        icmp_type, code = buf[at], buf[at + 1]
        w.set_info(summary.icmpv6_info(icmp_type, code))
        w.transport = Transport("icmpv6", None, None,
                                printable_preview(buf[at + 4:min(end, len(buf))]))
        _need(buf, at + 4, end)
        if icmp_type in (ICMPV6_MPS, ICMPV6_MPA):
            w.marker = True                                # icmpv6.type == 146 / 147
            _need(buf, at + 6, end)
            if not quoted:
                self._mobile_prefix(w, buf, at, end)
        elif icmp_type in ICMPV6_ECHO:
            _need(buf, at + 8, end)
            ident, seq = struct.unpack_from("!HH", buf, at + 4)
            w.set_info(f"{w.info} id=0x{ident:04x}, seq={seq}, hop limit={f.hop_limit}")
            if at + 8 < end:
                w.protocols.append("data")
        elif icmp_type in ICMPV6_ERRORS and not quoted:
            _need(buf, at + 8, end)
            self._quote(w, buf, at + 8, end)
        elif icmp_type in ND_BODY:
            self._neighbor_discovery(w, buf, at, end)

    def _neighbor_discovery(self, w: Walk, buf: bytes, at: int, end: int) -> None:
        """RFC 4861 4: fixed part, then TLV options in units of 8 octets (a zero length is
        an error: 4.6)."""
        icmp_type = buf[at]
        opt = at + 4 + ND_BODY[icmp_type]
        _need(buf, opt, end)
        link: dict[int, bytes] = {}
        while opt < end:
            _need(buf, opt + 2, end)
            otype, olen = buf[opt], buf[opt + 1] * 8
            if olen == 0:
                w.error("Invalid option length (Zero)")
                break
            _need(buf, opt + olen, end)
            if otype in (ND_OPT_SOURCE_LLA, ND_OPT_TARGET_LLA) and olen == 8:
                link[otype] = buf[opt + 2:opt + 8]
            opt += olen
        source = link.get(ND_OPT_SOURCE_LLA)
        tail = f" from {source.hex(':')}" if source is not None else ""
        if icmp_type == 135:
            w.set_info(f"{w.info} for {address(buf[at + 8:at + 24])}{tail}")
        elif icmp_type == 136:
            flags = ", ".join(n for n, bit in NA_FLAGS if buf[at + 4] & bit) or "none"
            target = link.get(ND_OPT_TARGET_LLA)
            w.set_info(f"{w.info} {address(buf[at + 8:at + 24])} ({flags})"
                       + (f" is at {target.hex(':')}" if target is not None else ""))
        elif icmp_type in (133, 134):
            w.set_info(w.info + tail)

    def _quote(self, w: Walk, buf: bytes, at: int, end: int) -> None:
        """The invoking packet an ICMPv6 error carries: tshark dissects it, so what it holds
        counts for MOBILITY_FILTER (a Parameter Problem quoting a BU with option 0xFE is how
        a mobile node learns a correspondent does not support the extension, PROFILE.md), but
        it is not a packet sent: no layer, no message, no error of its own."""
        quote = Walk()
        quote.info_locked = True
        try:
            self._network(quote, buf, _IPV6, at, end, True)
        except _Stop:
            pass
        w.protocols += quote.protocols
        w.marker = w.marker or (quote.ipv6 and quote.marker)
        w.mh_seen = w.mh_seen or quote.mh_seen
        w.udp = w.udp or quote.udp

    def _mobile_prefix(self, w: Walk, buf: bytes, at: int, end: int) -> MobilePrefix | None:
        """RFC 6275 6.7 (MPS), 6.8 (MPA with RFC 4861 Prefix Information options)."""
        icmp_type = buf[at]
        identifier = struct.unpack_from("!H", buf, at + 4)[0]
        prefixes: list[str] = []
        try:
            _need(buf, at + 8, end)                        # and its Reserved field
            opt = at + 8
            while icmp_type == ICMPV6_MPA and opt < end:
                _need(buf, opt + 2, end)
                otype, olen = buf[opt], buf[opt + 1] * 8
                if olen == 0:
                    w.error("Invalid option length (Zero)")
                    break
                if otype == ND_OPT_PREFIX_INFORMATION:
                    _need(buf, opt + 32, end)
                    prefixes.append(f"{address(buf[opt + 16:opt + 32])}/{buf[opt + 2]}")
                opt += olen
        finally:           # cut short: the prefixes read so far
            w.prefix = MobilePrefix(icmp_type, identifier, tuple(prefixes))
        return w.prefix

    def _udp(self, w: Walk, buf: bytes, at: int, end: int, f: _Fields | None, quoted: bool,
             ipv6: bool) -> tuple[int, int, int] | None:
        """RFC 768 (RFC 8200 8.1: over IPv6 a zero checksum is illegal); the UDP tunnels."""
        w.protocols.append("udp")
        w.udp = True
        _need(buf, at + 6, end)
        sport, dport, length = struct.unpack_from("!HHH", buf, at)
        if length < 8:
            w.set_info(f"{sport} → {dport} [BAD UDP LENGTH {length} < 8]")
            w.error(f"Bad length value {length} < 8")
            return None
        if length > end - at:
            uend = end
            w.set_info(f"{sport} → {dport} [BAD UDP LENGTH {length} > IP PAYLOAD LENGTH] "
                       f"Len={length - 8}")
            w.error(f"Bad length value {length} > IP payload length")
        else:
            uend = at + length
            w.set_info(_udp_info(sport, dport, length))
        _need(buf, at + 8, end)
        if ipv6 and buf[at + 6] == 0 and buf[at + 7] == 0:
            w.set_info(w.info + " [ILLEGAL CHECKSUM (0)]")
            w.error("Illegal checksum value (0)", malformed=False)
        payload = at + 8
        w.transport = Transport("udp", sport, dport,
                                printable_preview(buf[payload:min(uend, len(buf))]))
        if sport not in _UDP_PORTS_WALKED and dport not in _UDP_PORTS_WALKED:
            if payload < uend:                              # a datagram of data: no tunnel
                w.protocols.append("data")
            return None
        ports = (sport, dport)
        if UDP_ENCAP_ESP in ports:                          # RFC 3948 2.1
            w.protocols.append("udpencap")
            if payload + 4 <= min(uend, len(buf)) and buf[payload:payload + 4] != bytes(4):
                self._esp(w, buf, payload, uend, f, quoted)
            elif payload < uend:
                w.protocols.append("data")     # IKE after the non-ESP marker (not dissected)
                w.set_info("")
            return None
        if UDP_TEREDO in ports and not ipv6:                 # RFC 4380 5.1.1
            w.protocols.append("teredo")
            while payload + 2 <= min(uend, len(buf)) and buf[payload] == 0:
                if buf[payload + 1] == 1:                       # authentication indicator
                    _need(buf, payload + 4, uend)
                    payload += 13 + buf[payload + 2] + buf[payload + 3]
                elif buf[payload + 1] == 0:                     # origin indication
                    payload += 8
                else:
                    break
            return (_IPV6, payload, uend) if payload < uend else None
        if UDP_VXLAN in ports:                               # RFC 7348 5
            w.protocols.append("vxlan")
            _need(buf, payload + 8, uend)
            return _ETHERNET, payload + 8, uend
        for port in ports:
            if port in UDP_UNWALKED:
                w.unwalked = f"{UDP_UNWALKED[port]} (UDP {port}) not walked"
                return None
        if UDP_DNS in ports:                                 # RFC 1035 4.1.1
            w.protocols.append("dns")
            w.set_info("")
            _need(buf, payload + DNS_HEADER, uend)
            ident, flags = struct.unpack_from("!HH", buf, payload)
            w.set_info(f"Standard query{' response' if flags & 0x8000 else ''} 0x{ident:04x}")
            return None
        if UDP_DSMIP6 in ports:                              # DSMIPv6 (RFC 5555): not ours
            w.protocols.append("mipv6")
            if payload + mobility.MH_HEADER <= min(uend, len(buf)):
                w.set_info(summary.mh_info(buf[payload + 2]))
            return None
        if payload < uend:
            w.protocols.append("data")
        return None

    def _tcp(self, w: Walk, buf: bytes, at: int, end: int, f: _Fields) -> None:
        """RFC 9293 3.1, summarised as tshark does (relative sequence numbers, window scale)."""
        w.protocols.append("tcp")
        _need(buf, at + 4, end)
        sport, dport = struct.unpack_from("!HH", buf, at)
        w.set_info(f"{sport} → {dport}")
        _need(buf, at + 20, end)
        seq, ack, offset, flag_bits, window, _, urgent = struct.unpack_from("!IIBBHHH", buf,
                                                                           at + 4)
        flags = ((offset & 1) << 8) | flag_bits
        header = (offset >> 4) * 4
        names = summary.tcp_flags(flags)
        if header < 20:
            rseq, rack, rwin = self._relative(f, sport, dport, seq, ack, window, flags, [])
            w.set_info(f"{sport} → {dport} [{names}] Seq={rseq} Ack={rack} Win={rwin}, bogus "
                       f"TCP header length ({header}, must be at least 20)")
            w.error(f"Bogus TCP header length ({header}, must be at least 20)", malformed=False)
            return
        if at + header > end:
            w.set_info(f"{sport} → {dport} [{names}] Seq={seq} Ack={ack} Win={window}")
            raise _Stop(True)
        _need(buf, at + header, end)
        options = _tcp_options(buf[at + 20:at + header])
        data = end - at - header
        rseq, rack, rwin = self._relative(f, sport, dport, seq, ack, window, flags, options)
        text = summary.tcp_info(sport, dport, names, rseq, rack, rwin, flags, urgent, data)
        for name, value in options:
            text += f" {name}" if value is None else f" {name}={value}"
        w.set_info(text)
        w.transport = Transport("tcp", sport, dport,
                                printable_preview(buf[at + header:min(end, len(buf))]))
        if data > 0:
            w.protocols.append("data")

    def _relative(self, f: _Fields, sport: int, dport: int, seq: int, ack: int, window: int,
                  flags: int, options: list[tuple[str, int | None]]) -> tuple[int, int, int]:
        """tshark's relative sequence numbers: a flow's base is its SYN's sequence number, or
        one less than the first one seen; the window scales by the SYN's WS option."""
        if len(self._flows) > self.TCP_FLOWS:
            self._flows.clear()
        key = (f.src, f.dst, sport, dport)
        flow = self._flows.get(key)
        if flow is None:
            scale = next((v for n, v in options if n == "WS"), None)
            flow = self._flows[key] = [seq if flags & 0x002 else seq - 1, scale or 0]
        back = self._flows.get((f.dst, f.src, dport, sport))
        if back is None and flags & 0x010:
            back = self._flows[(f.dst, f.src, dport, sport)] = [ack - 1, 0]
        rack = (ack - back[0]) % (1 << 32) if back is not None else ack
        rwin = window if flags & 0x002 or not flow[1] else window * flow[1]
        return (seq - flow[0]) % (1 << 32), rack, rwin


def _tcp_options(raw: bytes) -> list[tuple[str, int | None]]:
    """RFC 9293 3.2 options as tshark lists them: MSS, SACK_PERM, TSval/TSecr, WS (the
    multiplier), SLE/SRE of SACK blocks."""
    out: list[tuple[str, int | None]] = []
    at = 0
    while at < len(raw):
        kind = raw[at]
        if kind == 0:
            break
        if kind == 1:
            at += 1
            continue
        if at + 2 > len(raw) or raw[at + 1] < 2:
            break
        size = raw[at + 1]
        value = raw[at + 2:at + size]
        if kind == 2 and size == 4:
            out.append(("MSS", struct.unpack("!H", value)[0]))
        elif kind == 3 and size == 3:
            out.append(("WS", 1 << min(value[0], 14)))
        elif kind == 4 and size == 2:
            out.append(("SACK_PERM", None))
        elif kind == 8 and size == 10:
            tsval, tsecr = struct.unpack("!II", value)
            out += [("TSval", tsval), ("TSecr", tsecr)]
        at += size
    return out


def _need(buf: bytes, end: int, limit: int) -> None:
    """Raise _Stop unless octets up to `end` exist: past `limit` (the packet's own length)
    it is malformed, past the captured octets it is only cut short."""
    if end > limit:
        raise _Stop(True)
    if end > len(buf):
        raise _Stop(False)


def event(walk: Walk, number: int, time: float, length: int,
          comments: tuple[str, ...] = (), sensor: str = "") -> PacketEvent:
    """The neutral event of a selected frame (DESIGN.md)."""
    message = walk.message()
    prefix = walk.prefix
    # by position: PacketEvent's fields in order (one is made for every selected frame)
    return PacketEvent(
        number, time, length, tuple(walk.layers), message, prefix,
        walk.transport if message is None and prefix is None else None,
        _path(comments) if comments else None, sensor, ":".join(walk.protocols),
        walk.info_text, walk.malformed)


PATH_COMMENT = "path="          # lab captures: pcapng comment "path=mn-ha" (DESIGN.md)


def _path(comments: tuple[str, ...]) -> str | None:
    """The capture path a lab frame's pcapng comment names (PATH_COMMENT), if one does."""
    for comment in comments:
        if comment.startswith(PATH_COMMENT):
            return comment[len(PATH_COMMENT):]
    return None


def _udp_info(sport: int, dport: int, length: int) -> str:
    """The Info column of a UDP datagram whose length is right (tshark)."""
    return f"{sport} → {dport} Len={length - 8}"


# --- the common chains, decided at once ---------------------------------------------------

_HEADER_AND_PORTS = struct.Struct("!HHHH")  # RFC 768: ports, length, checksum
_ESP_HEADER = struct.Struct("!II")          # RFC 4303 2: SPI, sequence number
# where a link type's IPv6 header starts, and the protocols in front of it and its own (as
# Walker._link names them); Ethernet's EtherType is asked for below
_FRONTS = {LINKTYPE_ETHERNET: (14, "eth:ethertype:ipv6"), LINKTYPE_IPV6: (0, "ipv6"),
           **{linktype: (0, "raw:ipv6") for linktype in LINKTYPES_RAW}}


def common_event(rec: Record, sensor: str = "") -> PacketEvent | None:
    """The event of a frame on one of the chains most mobility traffic takes, made straight
    from its octets; None for any other frame, which the general walk (Walker.frame, then
    `event`) takes. A common frame is raw or untagged Ethernet IPv6, whole (nothing cut by
    the snap length, every length inside the packet), one or more IPv6 headers (IPv6-in-IPv6,
    RFC 2473), each with destination options holding only padding and the HAO (RFC 6275 6.3)
    or the pseudo home address option (PROFILE.md), and type 2 routing headers of one address
    (RFC 6275 6.4), ending in a Mobility Header mobility.check finds whole (RFC 6275 6.1),
    the first ESP header (RFC 4303, left closed: with keys, dissectors.dissect has it
    opened by EspDecryptor.decrypt, which opens an event's ESP as the walk would), or a UDP
    datagram of data on a path
    MOBILITY_FILTER selects (HAO, RH2, IPv6-in-IPv6). Such a frame has no expert error and
    no cut: its event is the general walk's, field for field
    (tests/dissectors/test_common_chains.py holds the two equal on every shipped scenario,
    the shared captures, lab crowds and generated frames), made without a Walk or its
    per-header state."""
    data = rec.data
    size = len(data)
    front = _FRONTS.get(rec.linktype)
    if front is None or rec.length > size:
        return None
    at, protocols = front
    if at and (size < 14 or data[12] != 0x86 or data[13] != 0xDD):
        return None                                  # Ethernet: only IPv6, untagged
    outer: tuple[IPv6Layer, ...] = ()                # the tunnels' headers, outermost first
    end = size
    selected = False                                 # one of MOBILITY_FILTER's markers
    while True:                                      # one IPv6 header each turn (RFC 8200 3)
        if at + 40 > end or data[at] >> 4 != 6:
            return None
        plen, nh, _ = _IPV6_HEADER.unpack_from(data, at + 4)
        if at + 40 + plen > end:
            return None
        end = at + 40 + plen
        src, dst = data[at + 8:at + 24], data[at + 24:at + 40]
        hao = rh2 = pseudo = None
        at += 40
        while nh == DEST_OPTS or nh == ROUTING:
            if at + 8 > end:
                return None
            hend = at + (data[at + 1] + 1) * 8
            if hend > end:
                return None
            if nh == ROUTING:                        # one address, type 2 (RFC 6275 6.4)
                if data[at + 2] != ROUTING_TYPE_2 or hend != at + 24:
                    return None
                rh2 = data[at + 8:at + 24]
                protocols += ":ipv6.routing"
            else:
                protocols += ":ipv6.dstopts"
                opt = at + 2
                while opt < hend:
                    otype = data[opt]
                    if otype == OPT_PAD1:
                        opt += 1
                        continue
                    if opt + 2 > hend:
                        return None
                    olen = data[opt + 1]
                    if opt + 2 + olen > hend:
                        return None
                    if olen == 16 and otype == OPT_HAO:
                        hao = data[opt + 2:opt + 18]
                    elif olen == 16 and otype == OPT_PSEUDO_HOA:
                        pseudo = data[opt + 2:opt + 18]
                    elif otype != OPT_PADN:
                        return None
                    opt += 2 + olen
                if hao is None and pseudo is None:
                    return None
            selected = True                          # HAO, 0xFE or RH2
            nh, at = data[at], hend
        if nh == IPV6:
            selected = True                          # ipv6.nxt == 41
            outer += (_shared_layer(src, dst, hao, rh2, pseudo),)
            protocols += ":ipv6"
            continue
        message = transport = None
        if nh in _MOBILITY_NEXT_HEADERS:
            if at + MH_HEADER > end:
                return None
            mh_type = data[at + 2]
            declared = (data[at + 1] + 1) * 8
            if at + declared > end:
                return None
            mh = data[at:end]                      # to the packet's end, as _mobility checks
            if mobility.check(mh_type, mh, end - at):
                return None
            # RFC 6275 6.1.1: the home address (HAO) and the final destination (RH2)
            message = mobility.parse(mh_type, mh if at + declared == end else mh[:declared],
                                     (hao if hao is not None else src,
                                      rh2 if rh2 is not None else dst), False)
            layer = _shared_layer(src, dst, hao, rh2, pseudo)
            protocols += ":mipv6"
            info = summary.MH_INFO.get(mh_type) or summary.mh_info(mh_type)
        elif nh == ESP_NH:
            if at + 8 > end:
                return None
            spi, sequence = _ESP_HEADER.unpack_from(data, at)
            layer = _layer(src, dst, hao, rh2, pseudo,
                           Esp(spi, sequence, False, data[at + 8:end], False))
            protocols += ":esp"
            info = f"ESP (SPI=0x{spi:08x})"
        elif nh == UDP and selected:
            if at + 8 > end:
                return None
            sport, dport, length, checksum = _HEADER_AND_PORTS.unpack_from(data, at)
            if length < 8 or at + length > end or checksum == 0 \
                    or sport in _UDP_PORTS_WALKED or dport in _UDP_PORTS_WALKED:
                return None
            layer = _shared_layer(src, dst, hao, rh2, pseudo)
            protocols += ":udp:data" if length > 8 else ":udp"
            info = _udp_info(sport, dport, length)
            transport = Transport("udp", sport, dport,
                                  printable_preview(data[at + 8:at + length]))
        else:
            return None
        comments = rec.comments
        return PacketEvent(rec.number, rec.time, rec.length, outer + (layer,), message, None,
                           transport, _path(comments) if comments else None, sensor,
                           protocols, info, None)



def common_tunnelled(packet: bytes) -> PacketEvent | None:
    """What a tunnel-mode ESP payload (RFC 4303 3.1.2: an IPv6 packet) holds, when it is on a
    common chain: the packet taken as a frame of its own by `common_event`, whose layers,
    message, transport, protocols (from "ipv6" on) and Info are what the walk continued into
    the plaintext (Walker.decrypted) finds inside (dissectors.decrypt makes the decrypted event
    of them; tests/dissectors/test_decrypt.py holds the two equal). Its frame number, time
    and path are blank; None for any other plaintext, which the general walk takes."""
    return common_event(Record(0, LINKTYPE_IPV6, packet, len(packet)))

# --- pre-filter (ROADMAP 3): frames that cannot be mobility-relevant, decided from octets ---

# UDP ports that can carry IPv6 or ESP inside (Teredo, IPsec NAT-T, VXLAN, GTP-U, L2TP,
# DSMIPv6): such datagrams are walked.
TUNNEL_UDP_PORTS = frozenset({3544, 4500, 4789, 2152, 1701, 5436})


def network_offset(linktype: int, data: bytes) -> int | None:
    """Offset of an IPv6 header in a frame, or None if the frame is not IPv6."""
    try:
        if linktype == LINKTYPE_ETHERNET:
            at, etype = 14, struct.unpack_from("!H", data, 12)[0]
            while etype in VLAN_NAMES:
                etype = struct.unpack_from("!H", data, at + 2)[0]
                at += 4
            return at if etype == ETHERTYPE_IPV6 else None
        if linktype in LINKTYPES_RAW or linktype == LINKTYPE_IPV6:
            return 0 if data[0] >> 4 == 6 else None
        if linktype == LINKTYPE_LINUX_SLL:
            return 16 if struct.unpack_from("!H", data, 14)[0] == ETHERTYPE_IPV6 else None
        if linktype == LINKTYPE_LINUX_SLL2:
            return 20 if struct.unpack_from("!H", data, 0)[0] == ETHERTYPE_IPV6 else None
    except (struct.error, IndexError):
        return None
    return None


def candidate(linktype: int, data: bytes) -> bool:
    """False only for frames that are certainly not mobility traffic: IPv6 whose fixed header
    is followed directly by TCP, UDP (not a tunnel port) or informational ICMPv6 other than
    146/147; plain IPv4 TCP/UDP/ICMP; ARP. Anything else (extension headers, ESP, tunnels,
    other link types, short frames) is walked: the pre-filter only ever removes work, never a
    frame MOBILITY_FILTER would select."""
    try:
        # raw IPv6 (as network_offset says, without the call: this runs for every frame)
        at = 0 if linktype == LINKTYPE_RAW and data[0] >> 4 == 6 else \
            network_offset(linktype, data)
        if at is None:
            return _other_candidate(linktype, data)
        nh = data[at + 6]
        if nh == TCP:
            return False
        if nh == UDP:
            sport, dport = _PORTS.unpack_from(data, at + 40)
            return sport in TUNNEL_UDP_PORTS or dport in TUNNEL_UDP_PORTS
        if nh == ICMPV6:
            icmp_type = data[at + 40]
            return icmp_type < ICMPV6_INFORMATIONAL or icmp_type in (ICMPV6_MPS, ICMPV6_MPA)
        return True
    except (struct.error, IndexError):
        return True


def _other_candidate(linktype: int, data: bytes) -> bool:
    if linktype != LINKTYPE_ETHERNET or len(data) < 14:
        return True
    etype = struct.unpack_from("!H", data, 12)[0]
    if etype == ETHERTYPE_ARP:
        return False
    if etype == ETHERTYPE_IPV4 and len(data) >= 34 and data[14] >> 4 == 4:
        ihl = (data[14] & 0x0F) * 4
        proto = data[23]
        if proto in (1, TCP):          # ICMP, TCP
            return False
        if proto == UDP and len(data) >= 14 + ihl + 4:
            sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
            return sport in TUNNEL_UDP_PORTS or dport in TUNNEL_UDP_PORTS
    return True
