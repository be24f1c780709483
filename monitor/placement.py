"""Where an eavesdropper sees a packet, and what it can read there, with no keys at all.

Two jobs, both keyring-free:
- `visible(event)`: the part of a packet an eavesdropper can read. Everything after the first
  ESP header is ciphertext to it (RFC 4303), even when tshark decrypted it because the monitor
  was given a keyring: the attacker must behave the same with or without keys.
- `Roles` / `place`: which path (draft 6.1: MN-HA, HA-CN, MN-CN) a packet is on, judged only
  from its addresses and from wire facts that need no keys: home agents are the destinations
  of Home BUs and of ESP-protected packets carrying a Home Address option, the sources of
  ESP-protected packets carrying a type 2 routing header, the outer ends of tunnels whose inner
  home-side address shares their /64, and the ESP ends that talk to several peers (a mobile
  node's care-of address changes, its home agent does not). `PacketEvent.path` (the lab's
  ground truth comment) is never read here.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from dissectors.events import Esp, IPv6Layer, MobilePrefix, PacketEvent
from dissectors.protocol import ICMPV6_MPA, ICMPV6_MPS, OTHER_PATH, PATHS, MHType

OTHER = OTHER_PATH
# the message types read for every packet, as plain ints (an IntEnum member is looked up through
# its class at each use, 70 ns where a global int takes 12)
_BU, _HOTI, _HOT, _COTI, _COT = (int(t) for t in (MHType.BU, MHType.HOTI, MHType.HOT,
                                                  MHType.COTI, MHType.COT))
# Which placed paths each vantage point sees; "all" is colluding eavesdroppers on every path.
VANTAGE_PATHS = {"all": PATHS + (OTHER,), "mn-ha": ("mn-ha",), "ha-cn": ("ha-cn",),
                 "mn-cn": ("mn-cn",)}
VANTAGES = tuple(VANTAGE_PATHS)        # the attacker's vantage points, "all" first



def prefix64(address: str) -> str | None:
    """The /64 an address sits on (home prefixes are /64, PROFILE.md 5.1)."""
    try:
        net = ipaddress.IPv6Network(f"{address}/64", strict=False)
    except ValueError:
        return None
    return str(net.network_address)


def interface_id(address: str) -> int | None:
    try:
        return int(ipaddress.IPv6Address(address)) & ((1 << 64) - 1)
    except ValueError:
        return None


class View(NamedTuple):
    """What an eavesdropper can read of one packet, flat: the outer header's addresses and
    options, the first ESP header's SPI and sequence number (RFC 4303 2.1), the visible layers
    of a tunnel not under ESP, and the Mobility Header's fields only when no ESP hides them.
    A plain tuple of plain values: `monitor.report_attacker.Forward` sends it to the attacker's
    process as it is (the pickler's own tuple code, no object to rebuild there), and the
    attacker reads each field in one step (no `outer.` first).

    Two groups: first what changes from packet to packet of one flow (frame, counters, nonces,
    cookies), then its HEAD, the rest: everything the roles learn from a packet and its path
    and ends are read from (Roles.learn, learn_sides, place, monitor.observe.ends). Packets with
    the same head teach the roles nothing new and are placed alike while the roles stay as
    they were (monitor.attacker places a head once per state of the roles; a flow's packets
    share one)."""
    frame: int
    time: float
    length: int
    spi: int | None                           # the first ESP header, if any: what follows it
    esp_sequence: int | None                  # is ciphertext on the wire
    mh_sequence: int | None                   # the Mobility Header (RFC 6275 6.1), in clear
    cookie: bytes | None                      # HoTI, CoTI, HoT, CoT init cookie
    nonce_index: int | None                   # HoT, CoT
    home_nonce_index: int | None              # BU Nonce Indices option
    care_of_nonce_index: int | None
    # -- the head (HEAD) --
    src: str                                  # the outer header
    dst: str
    home_address: str | None                  # HAO (RFC 6275 6.3)
    routing_home_address: str | None          # type 2 routing header (RFC 6275 6.4)
    pseudo_home_address: str | None           # option 0xFE (PROFILE.md)
    encrypted: bool                           # an ESP header hides the rest (spi is not None)
    outer_esp: bool                           # that ESP header follows the outer header
    # the layers after the outer one up to the first ESP header (a tunnel the eavesdropper sees
    # into), without their ESP header; () for most packets
    tunnel: tuple[IPv6Layer, ...]
    mh_type: int | None                       # the Mobility Header's type, in clear
    home_flag: bool                           # BU "H" (RFC 6275 6.1.7)
    alternate_care_of_address: str | None
    error_home_address: str | None            # BE
    prefix_discovery: MobilePrefix | None     # ICMPv6 MPS / MPA (RFC 6275 6.7, 6.8), in clear

    @property
    def layers(self) -> int:
        """How many IPv6 headers the eavesdropper reads (the outer one and a visible tunnel's)."""
        return 1 + len(self.tunnel)

    @property
    def inner(self) -> tuple[str, str]:
        """Source and destination of the innermost header it reads."""
        if self.tunnel:
            return self.tunnel[-1].src, self.tunnel[-1].dst
        return self.src, self.dst


# A View's head (view[HEAD]): its fields from `src` on (see View).
HEAD = slice(View._fields.index("src"), None)


def _bare(layer: IPv6Layer) -> IPv6Layer:
    """A tunnel layer as the View holds it: its ESP header is the View's."""
    return layer if layer.esp is None else dataclasses.replace(layer, esp=None)


def _to_esp(layers: tuple[IPv6Layer, ...]) -> tuple[Esp | None, tuple[IPv6Layer, ...]]:
    """The first ESP header after the outer layer (None: none) and the layers in between it and
    the outer one (a tunnel the eavesdropper sees into), or all of them when there is none."""
    for n in range(1, len(layers)):
        esp = layers[n].esp
        if esp is not None:
            return esp, tuple(map(_bare, layers[1:n + 1]))
    return None, layers[1:]


# the fields of one that it cannot read (malformed, or no IPv6 layer)
UNREADABLE: tuple = ()


def eavesdropped(events: Iterable[PacketEvent]) -> list[tuple]:
    """The fields of the keyless eavesdropper's View of each packet, in order, each as a plain
    tuple (UNREADABLE for a malformed one or one with no IPv6 layer): the layers up to the
    first ESP header, and the messages only when no ESP header hid them (RFC 4303: what
    follows an ESP header is ciphertext on the wire, even when tshark or the keyed stage
    decrypted it). What Forward sends to the attacker's process, a batch of events at a time
    (no Python call per event); each shape one tuple (no View, no concatenation)."""
    views: list[tuple] = []
    see = views.append
    for event in events:
        layers = event.layers
        if event.malformed or not layers:
            see(UNREADABLE)
            continue
        outer = layers[0]
        esp, tunnel = outer.esp, ()
        if esp is None and len(layers) > 1:
            esp, tunnel = _to_esp(layers)
        if esp is not None:
            see((event.frame, event.time, event.length, esp.spi, esp.sequence,
                 None, None, None, None, None,
                 outer.src, outer.dst, outer.home_address, outer.routing_home_address,
                 outer.pseudo_home_address, True, not tunnel, tunnel, None, False, None, None,
                 None))
            continue
        mh = event.mobility
        if mh is None:
            see((event.frame, event.time, event.length, None, None,
                 None, None, None, None, None,
                 outer.src, outer.dst, outer.home_address, outer.routing_home_address,
                 outer.pseudo_home_address, False, False, tunnel, None, False, None, None,
                 event.prefix_discovery))
            continue
        see((event.frame, event.time, event.length, None, None,
             mh.sequence, mh.cookie, mh.nonce_index, mh.home_nonce_index, mh.care_of_nonce_index,
             outer.src, outer.dst, outer.home_address, outer.routing_home_address,
             outer.pseudo_home_address, False, False, tunnel, mh.mh_type, "H" in mh.flags,
             mh.alternate_care_of_address, mh.error_home_address, event.prefix_discovery))
    return views


_view = tuple.__new__                  # View(...) without its Python-level __new__: one a packet


def visible(event: PacketEvent) -> View | None:
    """The keyless eavesdropper's view of a packet (None when it cannot read it: malformed, or
    no IPv6 layer)."""
    [fields] = eavesdropped((event,))
    return _view(View, fields) if fields else None


@dataclass
class Roles:
    """Home agents, home prefixes and care-of addresses, learnt from wire facts only, one packet
    at a time (`learn`, then `learn_sides`), so a live attacker learns as packets come."""
    home_agents: set[str] = field(default_factory=set)
    home_prefixes: set[str] = field(default_factory=set)
    # addresses seen in a care-of role; is_care_of() leaves out those later known home-side
    care_of_addresses: set[str] = field(default_factory=set)
    # why each home agent was recognised (rule -> frames), for the report
    reasons: dict[str, str] = field(default_factory=dict)

    _prefixes: dict[str, str | None] = field(default_factory=dict, repr=False)
    # ESP peers of each address until it has two (then it is a home agent or never will be)
    _esp_peers: dict[str, set[str] | None] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> int:
        """Changes whenever what `place` and monitor.observe.ends read of the roles changes:
        `learn` and `learn_sides` only ever add to these sets, so their sizes' sum grows."""
        return len(self.home_agents) + len(self.home_prefixes) + len(self.care_of_addresses)

    def prefix(self, address: str) -> str | None:
        """prefix64, remembered per address (parsing addresses dominates the analysis time)."""
        p = self._prefixes.get(address, "")
        if p == "":
            p = self._prefixes[address] = prefix64(address)
        return p

    def is_home_side(self, address: str | None) -> bool:
        if address is None or address in self.home_agents:
            return False
        p = self._prefixes.get(address, "")           # self.prefix, without a call: this
        if p == "":                                   # runs for most packets, twice or more
            p = self.prefix(address)
        return p in self.home_prefixes

    def is_care_of(self, address: str | None) -> bool:
        # a node back home talks from its home address: that is home-side, not a care-of address
        if address not in self.care_of_addresses or address in self.home_agents:
            return False
        p = self._prefixes.get(address, "")           # not is_home_side(address), inline
        if p == "":
            p = self.prefix(address)
        return p not in self.home_prefixes

    def _agent(self, address: str, why: str, frame: int | None = None) -> bool:
        """`address` is a home agent (`why`: a template, given the frame, for the report;
        formatted only for an agent not known before: this runs for every ESP packet)."""
        if address in self.home_agents:
            return False
        self.home_agents.add(address)
        self.reasons[address] = why.format(frame=frame)
        p = self.prefix(address)
        if p:
            self.home_prefixes.add(p)
        return True

    def _peer(self, address: str, peer: str) -> bool:
        """An ESP end with several peers is the home agent (a mobile node's care-of address
        changes, its home agent does not)."""
        peers = self._esp_peers.get(address, ())
        if peers is None or peer in peers:
            return False
        if not peers:
            peers = self._esp_peers[address] = set()
        peers.add(peer)
        if len(peers) < 2:
            return False
        self._esp_peers[address] = None
        if peers & self.home_agents:
            return False
        return self._agent(address, f"ESP end with {len(peers)} different peers")

    def learn(self, view: View) -> bool:
        """What one packet says about home agents and home prefixes; True when it names a home
        agent not known before (what earlier packets said about care-of addresses may change)."""
        new = False
        frame, mh_type = view.frame, view.mh_type
        if mh_type == _BU and view.home_flag:
            # RFC 6275 6.1.7
            new |= self._agent(view.inner[1], "destination of the Home BU in frame {frame}",
                               frame)
        pd = view.prefix_discovery
        if pd is not None:
            if pd.icmp_type == ICMPV6_MPS:
                new |= self._agent(view.inner[1], "destination of the Mobile Prefix "
                                                  "Solicitation in frame {frame}", frame)
            elif pd.icmp_type == ICMPV6_MPA:
                new |= self._agent(view.inner[0], "source of the Mobile Prefix Advertisement "
                                                  "in frame {frame}", frame)
                for p in pd.prefixes:
                    q = prefix64(p.split("/")[0])
                    if q:
                        self.home_prefixes.add(q)
        src, dst = view.src, view.dst
        if view.encrypted:
            # RFC 3776 / draft 5.2.1, 5.5: HAO + ESP goes to the home agent, RH2 + ESP comes from it
            if view.outer_esp:
                if view.home_address:
                    new |= self._agent(dst, "destination of ESP with a Home Address option, "
                                            "frame {frame}", frame)
                if view.routing_home_address:
                    new |= self._agent(src, "source of ESP with a type 2 routing header, "
                                            "frame {frame}", frame)
            new |= self._peer(src, dst)
            new |= self._peer(dst, src)
        if view.tunnel:
            # RFC 6275 10.4.5 / draft 5.4: a tunnel's home agent end shares the home address's /64
            second = view.tunnel[0]
            if self.prefix(dst) == self.prefix(second.src) and dst != second.src:
                new |= self._agent(dst, "outer end of a reverse tunnel on its home "
                                        "prefix, frame {frame}", frame)
            elif self.prefix(src) == self.prefix(second.dst) and src != second.dst:
                new |= self._agent(src, "outer end of a tunnel on its home prefix, "
                                        "frame {frame}", frame)
        return new

    def learn_sides(self, view: View) -> None:
        """What one packet says about home prefixes and care-of addresses, given the home agents
        known now (run again over recent packets when a new home agent is recognised)."""
        src, dst, agents = view.src, view.dst, self.home_agents
        hao, rh2, mh_type = view.home_address, view.routing_home_address, view.mh_type
        # Home-side addresses seen in HAO/RH2 next to a home agent, or in visible HoTI/HoT, are
        # on home prefixes (a 5.1.3 pseudo home address may use another prefix of the agent).
        found: list[str | None] = []
        if hao and dst in agents:
            found.append(self.prefix(hao))
        if rh2 and src in agents:
            found.append(self.prefix(rh2))
        if mh_type is not None and not view.tunnel and not hao and not rh2:
            if mh_type == _HOTI:     # RFC 6275 5.2.5: HoTI leaves from the home address
                found.append(self.prefix(src))
            elif mh_type == _HOT:
                found.append(self.prefix(dst))
        for p in found:
            if p:
                self.home_prefixes.add(p)
        # Care-of addresses: the mobile end of everything that meets a home agent, plus
        # addresses that the mobility options name as care-of addresses.
        coa = self.care_of_addresses
        if dst in agents and src not in agents:
            coa.add(src)
        elif src in agents and dst not in agents:
            coa.add(dst)
        if hao:
            coa.add(src)                       # RFC 6275 6.3: HAO rides with the CoA
        if rh2:
            coa.add(dst)                       # RFC 6275 6.4: RH2 goes to the CoA
        if mh_type is not None:
            if view.alternate_care_of_address:
                coa.add(view.alternate_care_of_address)
            if mh_type == _COTI and not view.tunnel:
                coa.add(src)
            elif mh_type == _COT and not view.tunnel:
                coa.add(dst)


def learn_roles(views: list[View]) -> Roles:
    """Every readable packet at once: who is a home agent, which prefixes are home, which
    addresses are care-of addresses."""
    roles = Roles()
    for view in views:
        roles.learn(view)
    for view in views:
        roles.learn_sides(view)
    roles.care_of_addresses = {a for a in roles.care_of_addresses if roles.is_care_of(a)}
    return roles


def place(view: View, roles: Roles) -> str:
    """The path a packet is on, from its outer addresses and the roles (never event.path)."""
    src, dst, agents = view.src, view.dst, roles.home_agents
    if src in agents or dst in agents:
        return "mn-ha"
    hao, rh2, mh_type = view.home_address, view.routing_home_address, view.mh_type
    if (mh_type == _HOTI or mh_type == _HOT) and not view.tunnel \
            and not hao and not rh2:
        return "ha-cn"                    # RFC 6275 5.2.5: HoTI/HoT travel via the home agent
    if roles.is_care_of(src) or roles.is_care_of(dst):
        return "mn-cn"
    if hao or rh2 or view.pseudo_home_address:
        if roles.is_home_side(src) and not hao:
            return "ha-cn"                # draft 4.2: 0xFE on the BU forwarded by the home agent
        return "mn-cn"
    if roles.is_home_side(src) or roles.is_home_side(dst):
        return "ha-cn"
    if mh_type is not None:
        return "mn-cn"
    return OTHER
