"""One observation per packet an eavesdropper sees: the identifiers it can read there.

The attacker's raw material (draft 6.1): on MN-HA the care-of address, the home or pseudo home
address (HAO / RH2 in transport mode), the SPI and ESP sequence number; on MN-CN the care-of
address, the home or pseudo home address, the correspondent BU sequence number and nonce
indices; on HA-CN the home-side address and whatever the forwarded signalling shows (e.g. the
Alternate CoA of a reverse-tunnelled BU, draft 5.3.2). Built from `placement.View` only, so
nothing behind an ESP header is ever used.
"""
from __future__ import annotations

from typing import NamedTuple

from dissectors.protocol import MH_NAMES, MHType, mh_name
from monitor.placement import Roles, View


class Observation(NamedTuple):
    """One packet as the eavesdropper reads it at its place. A plain tuple (as View): made in
    one step from the packet's own fields and its head's Stem (`observation`), with no Python
    per field; every field read in one step as a slot's would be."""
    frame: int
    time: float
    path: str                               # placed by monitor.placement, never event.path
    src: str                                # outer addresses
    dst: str
    length: int = 0                         # frame length (size correlation across the HA)
    care_of: str | None = None              # the mobile node's end, when the packet shows it
    homes: tuple[str, ...] = ()             # home or pseudo home addresses it carries
    correspondent: str | None = None
    home_agent: str | None = None
    towards_ha: bool | None = None          # MN-HA direction: True mobile node -> home agent
    spi: int | None = None
    esp_sequence: int | None = None
    encrypted: bool = False
    tunnelled: bool = False                 # a visible inner IPv6 layer
    mh_type: int | None = None
    mh_name: str = ""
    mh_sequence: int | None = None
    home_flag: bool = False
    home_nonce_index: int | None = None     # BU Nonce Indices option, or HoT nonce index
    care_of_nonce_index: int | None = None  # BU Nonce Indices option, or CoT nonce index
    cookie: str | None = None               # init cookie (HoTI/CoTI/HoT/CoT), hex

    @property
    def identities(self) -> tuple[str, ...]:
        """Addresses that belong to the mobile node (care-of, home, pseudo home)."""
        homes = self.homes
        if homes and not all(homes):
            homes = tuple(a for a in homes if a)
        return (self.care_of, *homes) if self.care_of else homes


def _home(homes: list[str], agents: set[str], address: str | None) -> None:
    """A home or pseudo home address, once, unless it is a home agent's."""
    if address and address not in homes and address not in agents:
        homes.append(address)


# As plain ints: an IntEnum member is looked up through its class at each use (70 ns where a
# global int takes 12), and observe runs for every packet.
_RR_TO_MOBILE = frozenset(map(int, (MHType.BA, MHType.COT, MHType.HOT)))  # RFC 6275 6.1.4-8
_RR_FROM_MOBILE = frozenset(map(int, (MHType.BU, MHType.COTI, MHType.HOTI)))  # 6.1.3, 6.1.7
_BU, _HOTI, _HOT, _COT = (int(t) for t in (MHType.BU, MHType.HOTI, MHType.HOT, MHType.COT))


class Ends(NamedTuple):
    """Who a packet's ends are at its place, as its head shows them (monitor.placement.HEAD:
    the same for every packet of that head while the roles stay as they were)."""
    care_of: str | None
    homes: tuple[str, ...]
    correspondent: str | None
    home_agent: str | None
    towards_ha: bool | None


def ends(view: View, path: str, roles: Roles) -> Ends:
    """Its ends, read from the packet's head at its place, given the roles now."""
    src, dst, agents = view.src, view.dst, roles.home_agents
    care_of = correspondent = home_agent = None
    towards_ha = None
    homes: list[str] = []

    # Options on the outer header are readable on every path (they sit before any ESP).
    hao, rh2, pseudo = view.home_address, view.routing_home_address, view.pseudo_home_address
    if hao or rh2 or pseudo:
        _home(homes, agents, hao)            # RFC 6275 6.3 HAO
        _home(homes, agents, rh2)            # RFC 6275 6.4 RH2
        _home(homes, agents, pseudo)         # PROFILE.md option 0xFE (draft 4.1, 4.2)

    tunnel, mh_type = view.tunnel, view.mh_type
    if path == "mn-ha":
        towards_ha = dst in agents
        home_agent, care_of = (dst, src) if towards_ha else (src, dst)
        if tunnel:
            # a visible (not ESP) tunnel: RFC 6275 10.4.5 / draft 5.4 inner packet
            inner = tunnel[0]
            mobile, other = (inner.src, inner.dst) if towards_ha else (inner.dst, inner.src)
            _home(homes, agents, mobile)
            if other not in agents:
                correspondent = other
            for layer in tunnel:
                _home(homes, agents, layer.home_address)
                _home(homes, agents, layer.routing_home_address)
                _home(homes, agents, layer.pseudo_home_address)
    elif path == "mn-cn":
        if roles.is_care_of(src) or hao:
            care_of, correspondent = src, dst
        elif roles.is_care_of(dst) or rh2:
            care_of, correspondent = dst, src
        elif mh_type in _RR_TO_MOBILE:
            care_of, correspondent = dst, src
        elif mh_type in _RR_FROM_MOBILE:
            care_of, correspondent = src, dst
        # else: nothing says which end is the mobile node; guessing would link correspondents
    elif path == "ha-cn":
        if roles.is_home_side(src) or mh_type == _HOTI or mh_type == _BU:
            _home(homes, agents, src)
            correspondent = dst
        else:
            _home(homes, agents, dst)
            correspondent = src
    if mh_type is not None:
        if view.alternate_care_of_address:        # RFC 6275 6.2.5: the CoA, visible in clear
            care_of = view.alternate_care_of_address
        if view.error_home_address:
            _home(homes, agents, view.error_home_address)
    if care_of is not None and (care_of in homes or roles.is_home_side(care_of)):
        # RFC 6275 11.5.4: a node back home talks from its home address: an identity, not a
        # location (and the same key as its home address seen anywhere else)
        if care_of not in homes:
            homes.append(care_of)
        care_of = None
    # Ends(...) without its Python-level __new__ (a packet of a head not seen before makes one)
    return tuple.__new__(Ends, (care_of, tuple(homes), correspondent, home_agent, towards_ha))


class Stem(NamedTuple):
    """What the packets of one head share at their place: every Observation field but each
    packet's own (its frame, time, length, counters, nonces and cookie), read from the head
    alone (monitor.placement.HEAD), given the roles, so the same while they stay as they were.
    Made once per head and state of the roles (monitor.attacker); the fields are the
    Observation's of the same names."""
    path: str
    src: str
    dst: str
    care_of: str | None
    homes: tuple[str, ...]
    correspondent: str | None
    home_agent: str | None
    towards_ha: bool | None
    encrypted: bool
    tunnelled: bool
    mh_type: int | None
    mh_name: str
    home_flag: bool


def stem(view: View, path: str, roles: Roles) -> Stem:
    """The Stem of a packet's head on `path`, given the roles now."""
    care_of, homes, correspondent, home_agent, towards_ha = ends(view, path, roles)
    mh_type = view.mh_type
    name = "" if mh_type is None else MH_NAMES.get(mh_type) or mh_name(mh_type)
    return Stem(path, view.src, view.dst, care_of, homes, correspondent, home_agent, towards_ha,
                view.encrypted, bool(view.tunnel), mh_type, name, view.home_flag)


_new = tuple.__new__          # Observation(...) without its Python-level __new__: one a packet


def observation(view: View, at: Stem) -> Observation:
    """The observation of a packet whose head's Stem is `at` (`stem(view, path, roles)`): the
    stem's fields and what this packet itself carries."""
    (path, src, dst, care_of, homes, correspondent, home_agent, towards_ha, encrypted,
     tunnelled, mh_type, name, home_flag) = at
    home_nonce_index = care_of_nonce_index = cookie = None
    if mh_type is not None:
        if view.cookie:
            cookie = view.cookie.hex()
        if mh_type == _BU:
            home_nonce_index, care_of_nonce_index = view.home_nonce_index, \
                view.care_of_nonce_index
        elif mh_type == _HOT:
            home_nonce_index = view.nonce_index
        elif mh_type == _COT:
            care_of_nonce_index = view.nonce_index
    # in the fields' order
    return _new(Observation, (
        view.frame, view.time, path, src, dst, view.length, care_of, homes, correspondent,
        home_agent, towards_ha, view.spi, view.esp_sequence, encrypted, tunnelled, mh_type,
        name, view.mh_sequence, home_flag, home_nonce_index, care_of_nonce_index, cookie))


def observe(view: View, path: str, roles: Roles) -> Observation:
    """The observation of a packet on `path`, given the roles now."""
    return observation(view, stem(view, path, roles))
