"""The binding caches a keyed monitor rebuilds, and the small stores that feed them.

- `HomeBindingCache`: the home agent's cache extended by draft 5.2.1 with a pseudo home
  address column (pseudo home address | home address | care-of address | lifetime | sequence).
- `CorrespondentBindingCache`: each correspondent's cache (RFC 6275 9.1), with the pseudo home
  address draft 4.1 / 4.2 / 5.3.x store beside the home address.
- `AddressBook`: which real home address an address stands for, and how the keys showed it
  (for annotations). Never holds key material.
- `TokenStore`: keygen tokens seen on the wire (HoT/CoT in clear or decrypted from ESP), so a
  Kbm can be had without Kcn (RFC 6275 5.2.5).
- `merged_trails(home, correspondents)`: where each node was, from the two caches.

Plain data and dicts; no global state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.history import History


@dataclass(slots=True)
class HomeBinding:
    """One accepted Home BU (DESIGN.md "Report semantics"; draft 5.2.1 cache row)."""
    home_agent: str
    home_address: str | None
    pseudo_home_address: str | None
    care_of_address: str
    sequence: int | None
    lifetime: int | None
    frame: int
    time: float

    def as_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and a live view asks for these every second
        return {"home_agent": self.home_agent, "home_address": self.home_address,
                "pseudo_home_address": self.pseudo_home_address,
                "care_of_address": self.care_of_address, "sequence": self.sequence,
                "lifetime": self.lifetime, "frame": self.frame, "time": self.time}


@dataclass(slots=True)
class CorrespondentBinding:
    """One correspondent BU as delivered to the correspondent (DESIGN.md "Report semantics")."""
    correspondent: str
    home_address: str | None
    pseudo_home_address: str | None
    care_of_address: str
    sequence: int | None
    authenticator_valid: bool | None
    frame: int
    time: float

    def as_dict(self) -> dict[str, Any]:
        return {"correspondent": self.correspondent, "home_address": self.home_address,
                "pseudo_home_address": self.pseudo_home_address,
                "care_of_address": self.care_of_address, "sequence": self.sequence,
                "authenticator_valid": self.authenticator_valid, "frame": self.frame,
                "time": self.time}


@dataclass
class HomeBindingCache:
    """draft 5.2.1: the home agent's Binding Cache with the pseudo home address column.

    `entries` is the history of accepted Home BUs (capture order of the BU); `current` maps
    (home agent, home address or pseudo home address) to the binding in force, so the cache can
    be looked up by either address as the draft says ("if the pseudo home address is unique in
    any snapshot of the Binding Cache").
    """
    entries: list[HomeBinding] = field(default_factory=list)
    current: dict[tuple[str, str], HomeBinding] = field(default_factory=dict)
    # home address -> [(time, care-of address, frame)]: where the node was, kept as BUs are
    # accepted so a live view never walks the whole history
    trails: dict[str, list[tuple[float, str, int]]] = field(default_factory=dict)
    # a live capture's bound (monitor.history): the newest `keep` accepted Home BUs and
    # `trail_keep` points of each node's trail; None keeps everything (`report`)
    keep: int | None = None
    trail_keep: int | None = None

    def __post_init__(self) -> None:
        if self.keep is not None:
            self.entries = History(self.keep)  # type: ignore[assignment]

    def accept(self, binding: HomeBinding) -> None:
        self.entries.append(binding)
        for key in (binding.home_address, binding.pseudo_home_address):
            if key is not None:
                self.current[(binding.home_agent, key)] = binding
        # a de-registration's "care-of address" is the home address: not a place
        if binding.home_address is not None and binding.lifetime != 0 \
                and binding.care_of_address != binding.home_address:
            _trail(self.trails, binding.home_address, self.trail_keep).append(
                (binding.time, binding.care_of_address, binding.frame))

    def lookup(self, address: str) -> HomeBinding | None:
        """The binding in force whose home or pseudo home address is `address` (any agent)."""
        found = [b for (_, key), b in self.current.items() if key == address]
        return max(found, key=lambda b: b.frame) if found else None

    def sorted_entries(self) -> list[HomeBinding]:
        return sorted(self.entries, key=lambda b: b.frame)


@dataclass
class CorrespondentBindingCache:
    """RFC 6275 9.1 plus the draft's pseudo home address, one list for every correspondent."""
    entries: list[CorrespondentBinding] = field(default_factory=list)
    # (correspondent, node identity) -> (last sequence number, binding expiry time): draft 6.3
    last_sequence: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    # home address -> [(time, care-of address, frame)], as HomeBindingCache.trails
    trails: dict[str, list[tuple[float, str, int]]] = field(default_factory=dict)
    keep: int | None = None          # as HomeBindingCache's
    trail_keep: int | None = None

    def __post_init__(self) -> None:
        if self.keep is not None:
            self.entries = History(self.keep)  # type: ignore[assignment]

    def add(self, binding: CorrespondentBinding) -> None:
        self.entries.append(binding)
        home = binding.home_address
        if home is not None and binding.care_of_address != home:
            points = self.trails.get(home)
            if points is None:       # (one per node: _trail makes it)
                points = _trail(self.trails, home, self.trail_keep)
            points.append((binding.time, binding.care_of_address, binding.frame))

    def sorted_entries(self) -> list[CorrespondentBinding]:
        return sorted(self.entries, key=lambda b: b.frame)


def _trail(trails: dict, home_address: str, keep: int | None) -> list:
    points = trails.get(home_address)
    if points is None:
        points = trails[home_address] = [] if keep is None else History(keep)
    return points


def merged_trails(home: HomeBindingCache, correspondents: CorrespondentBindingCache
                   ) -> dict[str, list[tuple[float, str, int]]]:
    """{home address: [(time, care-of address, frame)]} in the order the bindings were
    accepted (no copy of the lists, no sort): the home agent's view of a node, else its
    correspondents' when no home binding of it is in view."""
    trails = dict(home.trails)
    for hoa, points in correspondents.trails.items():
        trails.setdefault(hoa, points)
    return trails


@dataclass(frozen=True)
class Identity:
    """What the keys say an address is: the real home address behind it, and how we know."""
    home_address: str
    kind: str          # "home" (the real one), "routable" (5.1), "rr" (4.1), "enc" (4.2/5.3.2)
    how: str           # human text for annotations, e.g. "Kph of mn1, i = ESP seq 7"


@dataclass
class AddressBook:
    """Address -> Identity; the first explanation of an address is kept (stable annotations):
    `identities` only grows, and what it says of an address never changes (FrameAttribution
    reads its size as a version)."""
    identities: dict[str, Identity] = field(default_factory=dict)
    # care-of address -> real home addresses bound to it (from verified BUs)
    care_of: dict[str, set[str]] = field(default_factory=dict)

    def learn(self, address: str | None, identity: Identity) -> None:
        if address is not None and address not in self.identities:
            self.identities[address] = identity

    def get(self, address: str | None) -> Identity | None:
        return self.identities.get(address) if address is not None else None

    def learn_care_of(self, care_of_address: str, home_address: str) -> None:
        if care_of_address != home_address:
            homes = self.care_of.get(care_of_address)   # (no new set per BU for setdefault)
            if homes is None:
                homes = self.care_of[care_of_address] = set()
            homes.add(home_address)

    def node_at(self, care_of_address: str) -> str | None:
        homes = self.care_of.get(care_of_address)
        return next(iter(homes)) if homes and len(homes) == 1 else None


@dataclass
class TokenStore:
    """Keygen tokens seen on the wire (RFC 6275 6.1.5, 6.1.6; privacy token PROFILE.md)."""
    # (correspondent, home or pseudo home address, home nonce index) -> home keygen token
    home: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    # (correspondent, home nonce index) -> privacy keygen token (draft 4.1: over ::, so no address)
    privacy: dict[tuple[str, int], bytes] = field(default_factory=dict)
    # (correspondent, care-of address, care-of nonce index) -> care-of keygen token
    care_of: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
