"""A list that only grows, of which a live capture keeps the newest part (issue 12).

The keyed view's binding caches, care-of trails and finding log grow with every Binding
Update and finding. `mip6mon report` keeps them whole; a live capture that runs for days keeps
the newest `keep` (the dashboard's panes show the newest 50). Readers of the live view hold
marks that are counts of what they have had (monitor.keyed_news), so a `History` keeps
counting what was ever appended: `len()` is that count and indices are positions in it, the
forgotten ones (before `forgotten`) simply no longer there.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class History(Generic[T]):
    """Append-only; with `keep`, the newest `keep` items at least and an eighth more at most
    (the oldest are dropped an eighth of `keep` at a time, so an append costs O(1) amortised).
    Not twice `keep`: a live view's peak is what stays resident, and at 2,000 packets/s a
    50-node crowd's care-of trails took 25 minutes to fill twice their bound (issue 12)."""

    __slots__ = ("_items", "forgotten", "keep")

    def __init__(self, keep: int | None = None) -> None:
        self._items: list[T] = []
        self.forgotten = 0           # items dropped from the front
        self.keep = keep

    def append(self, item: T) -> None:
        self._items.append(item)
        if self.keep is not None and len(self._items) > self.keep + (self.keep >> 3):
            drop = len(self._items) - self.keep
            del self._items[:drop]
            self.forgotten += drop

    def __len__(self) -> int:
        """Everything ever appended (held or forgotten)."""
        return self.forgotten + len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        """Positions count every item ever appended; a slice yields what is still held."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("History slices step by 1")
            base = self.forgotten
            return self._items[max(start - base, 0):max(stop - base, 0)]
        if index < 0:
            return self._items[index]
        if index < self.forgotten:
            raise IndexError(f"item {index} was forgotten (the newest {self.keep} are kept)")
        return self._items[index - self.forgotten]

    def __repr__(self) -> str:
        return f"History({self._items!r}, forgotten={self.forgotten})"
