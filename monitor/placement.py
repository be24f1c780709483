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

import ipaddress
from dataclasses import dataclass, field

from dissectors.events import Esp, IPv6Layer, MobilePrefix, MobilityMessage, PacketEvent
from dissectors.protocol import ICMPV6_MPA, ICMPV6_MPS, OTHER_PATH, PATHS, MHType

OTHER = OTHER_PATH
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


@dataclass(slots=True, eq=False)
class View:
    """What an eavesdropper can read of one packet: the layers up to the first ESP header,
    and the payload only when no ESP hides it. (Not frozen: a frozen dataclass sets each field
    through object.__setattr__, and one is made per packet; nothing changes one once made.)"""
    layers: tuple[IPv6Layer, ...]
    mobility: MobilityMessage | None
    prefix_discovery: MobilePrefix | None
    encrypted: bool                       # an ESP header hides the rest
    outer: IPv6Layer                      # layers[0]
    esp: Esp | None                       # the first ESP header (the last layer's), if any

    @property
    def innermost(self) -> IPv6Layer:
        return self.layers[-1]


def visible(event: PacketEvent) -> View | None:
    """The keyless eavesdropper's view of a packet (None when it has no IPv6 layer)."""
    layers = event.layers
    if not layers:
        return None
    if type(layers) is not tuple:
        layers = tuple(layers)
    for n, layer in enumerate(layers):
        if layer.esp is not None:          # RFC 4303: what follows is ciphertext on the wire
            return View(layers[:n + 1], None, None, True, layers[0], layer.esp)
    return View(layers, event.mobility, event.prefix_discovery, False, layers[0], None)


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

    def prefix(self, address: str) -> str | None:
        """prefix64, remembered per address (parsing addresses dominates the analysis time)."""
        p = self._prefixes.get(address, "")
        if p == "":
            p = self._prefixes[address] = prefix64(address)
        return p

    def is_home_side(self, address: str | None) -> bool:
        return address is not None and address not in self.home_agents \
            and self.prefix(address) in self.home_prefixes

    def is_care_of(self, address: str | None) -> bool:
        # a node back home talks from its home address: that is home-side, not a care-of address
        return address in self.care_of_addresses and address not in self.home_agents \
            and not self.is_home_side(address)

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
        peers = self._esp_peers.setdefault(address, set())
        if peers is None or peer in peers:
            return False
        peers.add(peer)
        if len(peers) < 2:
            return False
        self._esp_peers[address] = None
        if peers & self.home_agents:
            return False
        return self._agent(address, f"ESP end with {len(peers)} different peers")

    def learn(self, frame: int, view: View) -> bool:
        """What one packet says about home agents and home prefixes; True when it names a home
        agent not known before (what earlier packets said about care-of addresses may change)."""
        outer, inner, mh = view.outer, view.innermost, view.mobility
        new = False
        if mh is not None and mh.mh_type == MHType.BU and "H" in mh.flags:
            # RFC 6275 6.1.7
            new |= self._agent(inner.dst, "destination of the Home BU in frame {frame}", frame)
        if view.prefix_discovery is not None:
            pd = view.prefix_discovery
            if pd.icmp_type == ICMPV6_MPS:
                new |= self._agent(inner.dst, "destination of the Mobile Prefix Solicitation "
                                              "in frame {frame}", frame)
            elif pd.icmp_type == ICMPV6_MPA:
                new |= self._agent(inner.src, "source of the Mobile Prefix Advertisement "
                                              "in frame {frame}", frame)
                for p in pd.prefixes:
                    q = prefix64(p.split("/")[0])
                    if q:
                        self.home_prefixes.add(q)
        if view.esp is not None:
            # RFC 3776 / draft 5.2.1, 5.5: HAO + ESP goes to the home agent, RH2 + ESP comes from it
            if outer.home_address and outer.esp is not None:
                new |= self._agent(outer.dst, "destination of ESP with a Home Address option, "
                                              "frame {frame}", frame)
            if outer.routing_home_address and outer.esp is not None:
                new |= self._agent(outer.src, "source of ESP with a type 2 routing header, "
                                              "frame {frame}", frame)
            new |= self._peer(outer.src, outer.dst)
            new |= self._peer(outer.dst, outer.src)
        if len(view.layers) >= 2:
            # RFC 6275 10.4.5 / draft 5.4: a tunnel's home agent end shares the home address's /64
            second = view.layers[1]
            if self.prefix(outer.dst) == self.prefix(second.src) and outer.dst != second.src:
                new |= self._agent(outer.dst, "outer end of a reverse tunnel on its home "
                                              "prefix, frame {frame}", frame)
            elif self.prefix(outer.src) == self.prefix(second.dst) and outer.src != second.dst:
                new |= self._agent(outer.src, "outer end of a tunnel on its home prefix, "
                                              "frame {frame}", frame)
        return new

    def learn_sides(self, view: View) -> None:
        """What one packet says about home prefixes and care-of addresses, given the home agents
        known now (run again over recent packets when a new home agent is recognised)."""
        outer, mh = view.outer, view.mobility
        # Home-side addresses seen in HAO/RH2 next to a home agent, or in visible HoTI/HoT, are
        # on home prefixes (a 5.1.3 pseudo home address may use another prefix of the agent).
        found: list[str | None] = []
        if outer.dst in self.home_agents and outer.home_address:
            found.append(self.prefix(outer.home_address))
        if outer.src in self.home_agents and outer.routing_home_address:
            found.append(self.prefix(outer.routing_home_address))
        if mh is not None and len(view.layers) == 1 and not outer.home_address \
                and not outer.routing_home_address:
            if mh.mh_type == MHType.HOTI:   # RFC 6275 5.2.5: HoTI leaves from the home address
                found.append(self.prefix(outer.src))
            elif mh.mh_type == MHType.HOT:
                found.append(self.prefix(outer.dst))
        for p in found:
            if p:
                self.home_prefixes.add(p)
        # Care-of addresses: the mobile end of everything that meets a home agent, plus
        # addresses that the mobility options name as care-of addresses.
        coa = self.care_of_addresses
        if outer.dst in self.home_agents and outer.src not in self.home_agents:
            coa.add(outer.src)
        elif outer.src in self.home_agents and outer.dst not in self.home_agents:
            coa.add(outer.dst)
        if outer.home_address:
            coa.add(outer.src)                 # RFC 6275 6.3: HAO rides with the CoA
        if outer.routing_home_address:
            coa.add(outer.dst)                 # RFC 6275 6.4: RH2 goes to the CoA
        if mh is not None:
            if mh.alternate_care_of_address:
                coa.add(mh.alternate_care_of_address)
            if mh.mh_type == MHType.COTI and len(view.layers) == 1:
                coa.add(outer.src)
            elif mh.mh_type == MHType.COT and len(view.layers) == 1:
                coa.add(outer.dst)


def learn_roles(views: list[tuple[int, View]]) -> Roles:
    """Every readable packet at once: who is a home agent, which prefixes are home, which
    addresses are care-of addresses."""
    roles = Roles()
    for frame, view in views:
        roles.learn(frame, view)
    for _, view in views:
        roles.learn_sides(view)
    roles.care_of_addresses = {a for a in roles.care_of_addresses if roles.is_care_of(a)}
    return roles


def place(view: View, roles: Roles) -> str:
    """The path a packet is on, from its outer addresses and the roles (never event.path)."""
    outer, mh = view.outer, view.mobility
    if outer.src in roles.home_agents or outer.dst in roles.home_agents:
        return "mn-ha"
    if mh is not None and len(view.layers) == 1 and mh.mh_type in (MHType.HOTI, MHType.HOT) \
            and not outer.home_address and not outer.routing_home_address:
        return "ha-cn"                    # RFC 6275 5.2.5: HoTI/HoT travel via the home agent
    if roles.is_care_of(outer.src) or roles.is_care_of(outer.dst):
        return "mn-cn"
    if outer.home_address or outer.routing_home_address or outer.pseudo_home_address:
        if roles.is_home_side(outer.src) and not outer.home_address:
            return "ha-cn"                # draft 4.2: 0xFE on the BU forwarded by the home agent
        return "mn-cn"
    if roles.is_home_side(outer.src) or roles.is_home_side(outer.dst):
        return "ha-cn"
    if mh is not None:
        return "mn-cn"
    return OTHER
