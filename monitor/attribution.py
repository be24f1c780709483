"""Which real mobile node each frame belongs to: the truth the attacker view is scored against.

A frame belongs to the node whose home or pseudo home address it carries (any layer's source,
destination, HAO, RH2 or option 0xFE, decrypted tunnels included), else whose SA's SPI it
carries, else whose care-of address it uses (when one node only was bound there). Addresses are
looked up in the keyed analyzer's `AddressBook`; SPIs in the map below.

The keyed analyzer (monitor.keyed) feeds `FrameAttribution` for every packet:

- `seen(frame, addresses, spis)` first: what the frame carries;
- `attribute(frame, home_address)` whenever a message shows whose the frame is (the first wins);
- `settle(frame, addresses, spis)` last: a frame tied to a node now is done with, and its SPIs
  become that node's; a frame not tied yet keeps its addresses and SPIs and is resolved again
  each time it is asked about, with what is known by then (a CoTI before its BU, ESP of an SA
  whose SPI showed up later).

and reads it with `node(frame)`, `nodes()` and `explain(frame)`.

SPIs (RFC 4303, draft 6.4): `tie_spi(spi, home_address)` is the one place an SPI becomes a
node's, from the node's own packets; `spi_owners()` adds the keyring's SAs and, with each node's
Kph, the next `SPI_LOOKAHEAD` SPIs of every chain. How SPIs are tied is decided here only.

With `max_frames`, per-frame state is kept for the latest frames only (`forget_before`).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dissectors.protocol import SPI_LOOKAHEAD
from keys import formulas
from keys.keyring import Keyring
from monitor.caches import AddressBook


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

    def __init__(self, book: AddressBook, keyring: Keyring | None,
                 max_frames: int | None = None):
        self.book = book
        self.keyring = keyring
        self.max_frames = max_frames
        # ESP SPI -> real home address: SPIs a node's own packets showed (tie_spi)
        self.spis: dict[int, str] = {}
        self._direct: dict[int, str] = {}                  # frame -> home address, settled
        # addresses and SPIs of frames not attributed while processed: resolved when asked
        self._pending: dict[int, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._strings: dict[str, str] = {}   # one copy of each address (long captures)
        self._owners: tuple[int, dict[int, str]] | None = None   # (len(spis), spi_owners())

    # --- fed by the analyzer ---------------------------------------------------------------

    def seen(self, frame: int, addresses: Iterable[str], spis: tuple[int, ...]) -> None:
        intern = self._strings.setdefault
        self._pending[frame] = (tuple(intern(a, a) for a in addresses), spis)

    def attribute(self, frame: int, home_address: str | None) -> None:
        if home_address is not None:
            self._direct.setdefault(frame, home_address)

    def tie_spi(self, spi: int, home_address: str) -> None:
        """An SA carries one node's traffic (RFC 3776): its SPI now names the node, so later
        packets on it (or on its draft 6.4 successors) do too, decrypted or not."""
        self.spis.setdefault(spi, home_address)

    def settle(self, frame: int, addresses: Iterable[str], spis: Iterable[int]) -> None:
        """After the frame's messages: tied to a node by them, or by a known home or pseudo
        home address it carries (a decrypted packet naming one), it is the node's."""
        home = self._direct.get(frame)
        if home is None:
            home = next((i.home_address for i in map(self.book.get, addresses) if i), None)
            self.attribute(frame, home)
        if home is not None:
            del self._pending[frame]
            for spi in spis:
                self.tie_spi(spi, home)

    def forget_before(self, oldest: int) -> None:
        forget_before(self._pending, oldest)
        forget_before(self._direct, oldest)
        if self.max_frames is not None and len(self._strings) > 4 * self.max_frames:
            self._strings.clear()      # only a de-duplication cache: safe to restart

    # --- read -----------------------------------------------------------------------------

    def node(self, frame: int) -> str | None:
        """The real home address `frame` belongs to, as far as the keys tell now."""
        node = self._direct.get(frame)
        if node is None and frame in self._pending:
            node = self._resolve(*self._pending[frame], self.spi_owners())[0]
        return node

    def nodes(self) -> dict[int, str]:
        """{frame: real home address} for every frame attributed to a node, by frame."""
        owners = self.spi_owners()
        result = {}
        for frame, (addresses, spis) in self._pending.items():
            node = self._resolve(addresses, spis, owners)[0]
            if node is not None:
                result[frame] = node
        result.update(self._direct)
        return dict(sorted(result.items()))

    def explain(self, frame: int) -> tuple[str, str] | None:
        """(home address, why) for a frame no message tied to a node but what it carries
        does, e.g. ("2001:db8:1::100", "ESP SPI 0x00001075 of an SA of"); else None."""
        if frame not in self._pending:
            return None
        node, why = self._resolve(*self._pending[frame], self.spi_owners())
        return (node, why) if node is not None else None

    def spi_owners(self) -> dict[int, str]:
        """SPI -> home address: tied by the node's packets, keyring SAs, and 6.4 chains ahead.
        Cached: `spis` only grows, so its size tells whether the map is stale."""
        if self._owners is not None and self._owners[0] == len(self.spis):
            return self._owners[1]
        owners = self._predict_owners()
        self._owners = (len(self.spis), owners)
        return owners

    # --- inside -----------------------------------------------------------------------------

    def _predict_owners(self) -> dict[int, str]:
        owners = dict(self.spis)
        if self.keyring is None:
            return owners
        for sa in self.keyring.esp_sas:
            for end in (sa.src, sa.dst):
                if self.keyring.mobile_node_by_home_address(end):
                    owners.setdefault(sa.spi, end)
        for spi, home in list(owners.items()):
            node = self.keyring.mobile_node_by_home_address(home)
            if node is None:
                continue
            for nxt in formulas.spi_chain(node.kph.value, spi, SPI_LOOKAHEAD)[1:]:
                owners.setdefault(nxt, home)
        return owners

    def _resolve(self, addresses: tuple[str, ...], spis: tuple[int, ...],
                 owners: dict[int, str]) -> tuple[str | None, str]:
        """The node behind a frame: its (pseudo) home addresses first, then the SPI of one of
        its SAs (draft 6.4 chain), then a care-of address only that node was bound to."""
        for address in addresses:
            ident = self.book.get(address)
            if ident is not None:
                return ident.home_address, (f"home address {address} of" if ident.kind == "home"
                                            else f"pseudo HoA {address} (via {ident.how}) of")
        for spi in spis:
            if spi in owners:
                return owners[spi], f"ESP SPI {spi:#010x} of an SA of"
        for address in addresses:
            node = self.book.node_at(address)
            if node is not None:
                return node, f"care-of address {address} bound to"
        return None, ""
