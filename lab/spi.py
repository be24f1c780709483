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

    def chain(self, kph: bytes, first: int, renewals: int) -> list[int]:
        return F.spi_chain(kph, first, renewals + 1) if renewals else [first]

    def allocate(self, owner: str, kph: bytes, renewals: int, candidates: Iterable[int],
                 attempts: int = 1 << 20) -> int:
        """The first candidate whose chain of `renewals` draft 6.4 steps is free; the whole
        chain is then `owner`'s."""
        for first in itertools.islice(candidates, attempts):
            chain = self.chain(kph, first, renewals)
            if all(s >= FIRST_USABLE and s not in self.owner for s in chain) and \
                    len(set(chain)) == len(chain):
                for s in chain:
                    self.owner[s] = owner
                return first
        raise RuntimeError(f"no free SPI chain for {owner} in {attempts} candidates")
