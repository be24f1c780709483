"""Which real mobile node each frame belongs to: the truth the attacker view is scored against.

A frame belongs to the node whose home or pseudo home address it carries (any layer's source,
destination, HAO, RH2 or option 0xFE, decrypted tunnels included), else whose SA carries its
verified ESP, else whose care-of address it uses (when one node only was bound there).
Addresses are looked up in the keyed analyzer's `AddressBook`; SAs as below.

The keyed analyzer (monitor.keyed) feeds `FrameAttribution` for every packet:

- `seen(frame, esps)` first: `esps` holds the frame's *verified* ESP headers only
  (decrypted by a keyring SA), each as (receiver, SPI, node's home address when the keyed
  stage is certain of the SA's node, else None): a certain node ties the frame at once;
- `attribute(frame, home_address)` whenever a message shows whose the frame is (the first wins);
- `settle(frame, layers, esps)` last: a frame tied to a node now is done with, and its SAs
  become that node's; a frame not tied yet keeps its addresses (`addresses_of(layers)`) and SAs
  and is resolved again each time it is asked about, with what is known by then (a CoTI before
  its BU, ESP of an SA tied later).

and reads it with `node(frame)`, `nodes()` and `explain(frame)`.

SAs (RFC 4301 4.1: an SA is found by SPI and destination; draft 6.4 moves SPIs, and in a crowd
the chains of different nodes cross) never guess: `tie_spi((receiver, spi), home_address)` is
the one place an SA becomes a node's, and only a verified packet calls it (the keyed stage's
certain node, or a decrypted packet whose content names the node). Nothing is predicted: no
SPI chain is walked here, no keyring SA is assumed to be anyone's. An SA two nodes were tied
to (an SPI reused after a chain moved on) names nobody. ESP that no SA verified (an ICV that
fails, an SPI no SA has, null authentication two SAs fit) ties nothing and is tied by nothing.

With `max_frames`, per-frame state is kept for the latest frames only (`forget_before`).
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import chain
from typing import Any

from dissectors.events import IPv6Layer
from monitor.caches import AddressBook

SaKey = tuple[str, int]                       # (receiver address, SPI): RFC 4301 4.1
VerifiedEsp = tuple[str, int, str | None]     # (receiver, SPI, certain node's home address)
PendingKey = tuple[tuple[str, ...], tuple[SaKey, ...]]   # an untied frame's addresses and SAs

# every address a layer carries, in the order a frame's are looked up: HAO, RH2, option 0xFE,
# source, destination (None where absent), in one C call
_LAYER_ADDRESSES = operator.attrgetter("home_address", "routing_home_address",
                                       "pseudo_home_address", "src", "dst")


def addresses_of(layers: Sequence[IPv6Layer]) -> tuple[str | None, ...]:
    """Every address of a frame's layers, outermost layer first, each as _LAYER_ADDRESSES."""
    if len(layers) == 1:
        return _LAYER_ADDRESSES(layers[0])    # the usual packet: no copy
    return tuple(chain.from_iterable(map(_LAYER_ADDRESSES, layers)))


def forget_before(table: dict[int, Any], oldest: int) -> None:
    """Drop the entries of frames before `oldest` from a frame-keyed dict filled in frame
    order (dicts keep insertion order, so only the dropped entries are visited)."""
    while table:
        frame = next(iter(table))
        if frame >= oldest:
            break
        del table[frame]


class FrameAttribution:
    """Frame -> real home address, from what the keyed analyzer learns (see module docstring)."""

    def __init__(self, book: AddressBook, max_frames: int | None = None):
        self.book = book
        self.max_frames = max_frames
        # (receiver, SPI) -> real home address: SAs a node's verified packets showed (tie_spi)
        self.spis: dict[SaKey, str] = {}
        self.contested: set[SaKey] = set()    # SAs tied to two nodes: they name nobody
        self._direct: dict[int, str] = {}                  # frame -> home address, settled
        # addresses and SAs of frames not attributed while processed: resolved when asked;
        # frames that carry the same share one key (_keys: as read -> without the Nones)
        self._pending: dict[int, PendingKey] = {}
        self._keys: dict[tuple[tuple[str | None, ...], tuple[SaKey, ...]], PendingKey] = {}
        # addresses as read -> (size of the book then, _carried's answer then)
        self._carried_at: dict[tuple[str | None, ...], tuple[int, str | None]] = {}

    # --- fed by the analyzer ---------------------------------------------------------------

    def seen(self, frame: int, esps: tuple[VerifiedEsp, ...]) -> None:
        for receiver, spi, home in esps:
            if home is not None:
                # the keyed stage is certain whose SA opened it (dissectors.decrypt)
                self.attribute(frame, home)
                self.tie_spi((receiver, spi), home)

    def attribute(self, frame: int, home_address: str | None) -> None:
        if home_address is not None:
            self._direct.setdefault(frame, home_address)

    def tie_spi(self, sa: SaKey, home_address: str) -> None:
        """An SA carries one node's traffic (RFC 3776), shown by a verified packet of the
        node's: later verified packets on it name the node too. Tied to a second node, it
        names nobody from then on (no guess between the two)."""
        owner = self.spis.setdefault(sa, home_address)
        if owner != home_address:
            self.contested.add(sa)

    def settle(self, frame: int, layers: Sequence[IPv6Layer],
               esps: tuple[VerifiedEsp, ...]) -> None:
        """After the frame's messages: tied to a node by them, or by a known home or pseudo
        home address it carries (a decrypted packet naming one), it is the node's. The
        addresses of `layers` are read only for a frame no message tied (most are tied)."""
        home = self._direct.get(frame)
        if home is None:
            addresses = addresses_of(layers)
            home = self._carried(addresses)
            if home is not None:
                self._direct[frame] = home
        if home is not None:
            for receiver, spi, _ in esps:
                self.tie_spi((receiver, spi), home)
            return
        # kept only while not tied (most frames are tied at once: nothing to keep): one shared
        # key per distinct (addresses, SAs), a frame costs its dict entry (200,000 frames at
        # 100 % mobility leave most untied; a tuple per frame cost 1.2 of 7.9 profiled s)
        seen = (addresses, tuple([(receiver, spi) for receiver, spi, _ in esps])
                if esps else ())
        key = self._keys.get(seen)
        if key is None:
            if self.max_frames is not None and len(self._keys) > 4 * self.max_frames:
                self._keys.clear()       # only a de-duplication cache: safe to restart
            key = self._keys[seen] = (tuple(filter(None, seen[0])), seen[1])
        self._pending[frame] = key

    def _carried(self, addresses: tuple[str | None, ...]) -> str | None:
        """The real home address behind the first of `addresses` the book knows, else None.
        The book only grows and never changes what it knows: the answer for a tuple of
        addresses holds until it learns something, so frames that carry the same addresses
        (a flow, a retransmission) are looked up again only after it did."""
        size = len(self.book.identities)
        memo = self._carried_at.get(addresses)
        if memo is not None and memo[0] == size:
            return memo[1]
        home = None
        known = self.book.identities.get     # never holds None
        for address in addresses:
            ident = known(address)
            if ident is not None:
                home = ident.home_address
                break
        if memo is None and self.max_frames is not None and \
                len(self._carried_at) > 4 * self.max_frames:
            self._carried_at.clear()         # only a memo: safe to restart
        self._carried_at[addresses] = (size, home)
        return home

    def forget_before(self, oldest: int) -> None:
        forget_before(self._pending, oldest)
        forget_before(self._direct, oldest)

    # --- read -----------------------------------------------------------------------------

    def node(self, frame: int) -> str | None:
        """The real home address `frame` belongs to, as far as the keys tell now."""
        node = self._direct.get(frame)
        if node is None and frame in self._pending:
            node = self._resolve(*self._pending[frame])[0]
        return node

    def nodes(self) -> dict[int, str]:
        """{frame: real home address} for every frame attributed to a node, by frame."""
        result = {}
        resolved: dict[int, str | None] = {}   # id of a shared key -> its node, this once
        for frame, key in self._pending.items():
            node = resolved.get(id(key), "")
            if node == "":
                node = resolved[id(key)] = self._resolve(*key)[0]
            if node is not None:
                result[frame] = node
        result.update(self._direct)
        return dict(sorted(result.items()))

    def explain(self, frame: int) -> tuple[str, str] | None:
        """(home address, why) for a frame no message tied to a node but what it carries
        does, e.g. ("2001:db8:1::100", "ESP SPI 0x00001075 toward 2001:db8:1::1 of an SA
        of"); else None."""
        if frame not in self._pending:
            return None
        node, why = self._resolve(*self._pending[frame])
        return (node, why) if node is not None else None

    # --- inside -----------------------------------------------------------------------------

    def _resolve(self, addresses: tuple[str, ...],
                 sas: tuple[SaKey, ...]) -> tuple[str | None, str]:
        """The node behind a frame: its (pseudo) home addresses first, then a verified SA a
        verified packet tied to one node, then a care-of address only that node was bound to."""
        for address in addresses:
            ident = self.book.get(address)
            if ident is not None:
                return ident.home_address, (f"home address {address} of" if ident.kind == "home"
                                            else f"pseudo HoA {address} (via {ident.how}) of")
        for sa in sas:
            owner = self.spis.get(sa)
            if owner is not None and sa not in self.contested:
                return owner, f"ESP SPI {sa[1]:#010x} toward {sa[0]} of an SA of"
        for address in addresses:
            node = self.book.node_at(address)
            if node is not None:
                return node, f"care-of address {address} bound to"
        return None, ""
