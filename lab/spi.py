"""SPIs for the lab's SAs: drawn at random or handed out in sequence, never one SPI for two SAs.

Draft 6.4 moves an SA's SPI along a chain, `SPI + First(8, HMAC_SHA1(Kph, SPI))` after every
Home BU exchange, so an SPI handed out today may collide tomorrow with another SA's renewed
one. The allocator takes each SA's whole chain at once (as long as the timeline can renew it)
and gives an SA the first candidate whose chain meets no SPI already taken: no SPI is ever used
by two SAs of one capture, toward the same receiver or any other, so a keyring that lists every
SPI with `src = dst = "*"` (lab.run) names exactly one SA for each.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from keys import formulas as F

SPI_SPACE = 1 << 32
FIRST_USABLE = 256          # RFC 4303 2.1: 1..255 reserved by IANA, 0 for local use


def sequential(start: int) -> Iterator[int]:
    """start, start + 1, ... (mod 2^32, over the reserved values): manual keying's next SPI."""
    spi = start
    while True:
        if spi >= FIRST_USABLE:
            yield spi
        spi = (spi + 1) % SPI_SPACE


class SpiAllocator:
    def __init__(self) -> None:
        self.owner: dict[int, str] = {}          # every SPI taken -> the SA that owns it
        # one node's SAs share its Kph and walk nearly the same candidates (sequential SPIs):
        # its 6.4 steps are computed once (a crowd of 500 nodes: millions of HMACs otherwise)
        self._steps_kph = b""
        self._steps: dict[int, int] = {}

    def _next(self, kph: bytes, spi: int) -> int:
        if kph != self._steps_kph:
            self._steps_kph, self._steps = kph, {}
        following = self._steps.get(spi)
        if following is None:
            following = self._steps[spi] = F.next_spi(kph, spi)
        return following

    def free_chain(self, kph: bytes, first: int, renewals: int) -> list[int] | None:
        """`first` and its `renewals` draft 6.4 successors, or None as soon as one is taken
        (or reserved, or met twice)."""
        chain = [first]
        while True:
            spi = chain[-1]
            if spi < FIRST_USABLE or spi in self.owner or spi in chain[:-1]:
                return None
            if len(chain) > renewals:
                return chain
            chain.append(self._next(kph, spi))

    def allocate(self, owner: str, kph: bytes, renewals: int, candidates: Iterable[int],
                 attempts: int = 1 << 24) -> int:
        """The first candidate whose chain of `renewals` draft 6.4 steps is free; the whole
        chain is then `owner`'s."""
        taken = self.owner
        for first in itertools.islice(candidates, attempts):
            if first in taken:
                continue                # most candidates in a crowd of sequential SPIs
            chain = self.free_chain(kph, first, renewals)
            if chain is not None:
                for s in chain:
                    self.owner[s] = owner
                return first
        raise RuntimeError(f"no free SPI chain for {owner} in {attempts} candidates")
