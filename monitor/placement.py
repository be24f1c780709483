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
from collections import defaultdict
from dataclasses import dataclass, field

from dissectors.events import IPv6Layer, MobilePrefix, MobilityMessage, PacketEvent
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


@dataclass(frozen=True, slots=True)
class View:
    """What an eavesdropper can read of one packet: the layers up to the first ESP header,
    and the payload only when no ESP hides it."""
    layers: tuple[IPv6Layer, ...]
    mobility: MobilityMessage | None
    prefix_discovery: MobilePrefix | None
    encrypted: bool                       # an ESP header hides the rest

    @property
    def outer(self) -> IPv6Layer:
        return self.layers[0]

    @property
    def innermost(self) -> IPv6Layer:
        return self.layers[-1]

    @property
    def esp(self):
        for layer in self.layers:
            if layer.esp is not None:
                return layer.esp
        return None


def visible(event: PacketEvent) -> View | None:
    """The keyless eavesdropper's view of a packet (None when it has no IPv6 layer)."""
    layers: list[IPv6Layer] = []
    encrypted = False
    for layer in event.layers:
        layers.append(layer)
        if layer.esp is not None:          # RFC 4303: what follows is ciphertext on the wire
            encrypted = True
            break
    if not layers:
        return None
    if encrypted:
        return View(tuple(layers), None, None, True)
    return View(tuple(layers), event.mobility, event.prefix_discovery, False)


@dataclass
class Roles:
    """Home agents, home prefixes and care-of addresses, learnt from wire facts only."""
    home_agents: set[str] = field(default_factory=set)
    home_prefixes: set[str] = field(default_factory=set)
    care_of_addresses: set[str] = field(default_factory=set)
    # why each home agent was recognised (rule -> frames), for the report
    reasons: dict[str, str] = field(default_factory=dict)

    _prefixes: dict[str, str | None] = field(default_factory=dict, repr=False)

    def prefix(self, address: str) -> str | None:
        """prefix64, remembered per address (parsing addresses dominates the analysis time)."""
        p = self._prefixes.get(address, "")
        if p == "":
            p = self._prefixes[address] = prefix64(address)
        return p

    def is_home_side(self, address: str | None) -> bool:
        return address is not None and address not in self.home_agents \
            and self.prefix(address) in self.home_prefixes

    def _agent(self, address: str, why: str) -> None:
        if address not in self.home_agents:
            self.home_agents.add(address)
            self.reasons[address] = why
        p = prefix64(address)
        if p:
            self.home_prefixes.add(p)


def learn_roles(views: list[tuple[int, View]]) -> Roles:
    """First pass over every readable packet: who is a home agent, which prefixes are home."""
    roles = Roles()
    esp_peers: dict[str, set[str]] = defaultdict(set)
    for frame, view in views:
        outer, inner, mh = view.outer, view.innermost, view.mobility
        if mh is not None and mh.mh_type == MHType.BU and "H" in mh.flags:
            # RFC 6275 6.1.7
            roles._agent(inner.dst, f"destination of the Home BU in frame {frame}")
        if view.prefix_discovery is not None:
            pd = view.prefix_discovery
            if pd.icmp_type == ICMPV6_MPS:
                roles._agent(inner.dst,
                             f"destination of the Mobile Prefix Solicitation in frame {frame}")
            elif pd.icmp_type == ICMPV6_MPA:
                roles._agent(inner.src,
                             f"source of the Mobile Prefix Advertisement in frame {frame}")
                for p in pd.prefixes:
                    q = prefix64(p.split("/")[0])
                    if q:
                        roles.home_prefixes.add(q)
        if view.esp is not None:
            # RFC 3776 / draft 5.2.1, 5.5: HAO + ESP goes to the home agent, RH2 + ESP comes from it
            if outer.home_address and outer.esp is not None:
                roles._agent(outer.dst,
                             f"destination of ESP with a Home Address option, frame {frame}")
            if outer.routing_home_address and outer.esp is not None:
                roles._agent(outer.src,
                             f"source of ESP with a type 2 routing header, frame {frame}")
            esp_peers[outer.src].add(outer.dst)
            esp_peers[outer.dst].add(outer.src)
        if len(view.layers) >= 2:
            # RFC 6275 10.4.5 / draft 5.4: a tunnel's home agent end shares the home address's /64
            second = view.layers[1]
            if roles.prefix(outer.dst) == roles.prefix(second.src) and outer.dst != second.src:
                roles._agent(outer.dst,
                             f"outer end of a reverse tunnel on its home prefix, frame {frame}")
            elif roles.prefix(outer.src) == roles.prefix(second.dst) and outer.src != second.dst:
                roles._agent(outer.src, f"outer end of a tunnel on its home prefix, frame {frame}")
    # An ESP end with several peers is the home agent (the mobile node's care-of address changes).
    for address, peers in esp_peers.items():
        if len(peers) >= 2 and not peers & roles.home_agents:
            roles._agent(address, f"ESP end with {len(peers)} different peers")
    # Home-side addresses seen in HAO/RH2 next to a home agent, or in visible HoTI/HoT, are on
    # home prefixes (a 5.1.3 pseudo home address may use another prefix of the home agent).
    for _frame, view in views:
        outer, mh = view.outer, view.mobility
        if outer.dst in roles.home_agents and outer.home_address:
            roles.home_prefixes.add(roles.prefix(outer.home_address))
        if outer.src in roles.home_agents and outer.routing_home_address:
            roles.home_prefixes.add(roles.prefix(outer.routing_home_address))
        if mh is not None and len(view.layers) == 1 and not outer.home_address \
                and not outer.routing_home_address:
            if mh.mh_type == MHType.HOTI:   # RFC 6275 5.2.5: HoTI leaves from the home address
                roles.home_prefixes.add(roles.prefix(outer.src))
            elif mh.mh_type == MHType.HOT:
                roles.home_prefixes.add(roles.prefix(outer.dst))
    roles.home_prefixes.discard(None)
    # Care-of addresses: the mobile end of everything that meets a home agent, plus addresses
    # that the mobility options name as care-of addresses.
    for _frame, view in views:
        outer, mh = view.outer, view.mobility
        if outer.dst in roles.home_agents and outer.src not in roles.home_agents:
            roles.care_of_addresses.add(outer.src)
        elif outer.src in roles.home_agents and outer.dst not in roles.home_agents:
            roles.care_of_addresses.add(outer.dst)
        if outer.home_address and not roles.is_home_side(outer.src):
            roles.care_of_addresses.add(outer.src)       # RFC 6275 6.3: HAO rides with the CoA
        if outer.routing_home_address and not roles.is_home_side(outer.dst):
            roles.care_of_addresses.add(outer.dst)       # RFC 6275 6.4: RH2 goes to the CoA
        if mh is not None:
            if mh.alternate_care_of_address:
                roles.care_of_addresses.add(mh.alternate_care_of_address)
            if mh.mh_type == MHType.COTI and len(view.layers) == 1:
                roles.care_of_addresses.add(outer.src)
            elif mh.mh_type == MHType.COT and len(view.layers) == 1:
                roles.care_of_addresses.add(outer.dst)
    roles.care_of_addresses -= roles.home_agents
    # a node back home talks from its home address: that is home-side, not a care-of address
    roles.care_of_addresses = {a for a in roles.care_of_addresses if not roles.is_home_side(a)}
    return roles


def place(view: View, roles: Roles) -> str:
    """The path a packet is on, from its outer addresses and the roles (never event.path)."""
    outer, mh = view.outer, view.mobility
    if outer.src in roles.home_agents or outer.dst in roles.home_agents:
        return "mn-ha"
    if mh is not None and len(view.layers) == 1 and mh.mh_type in (MHType.HOTI, MHType.HOT) \
            and not outer.home_address and not outer.routing_home_address:
        return "ha-cn"                    # RFC 6275 5.2.5: HoTI/HoT travel via the home agent
    if outer.src in roles.care_of_addresses or outer.dst in roles.care_of_addresses:
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
