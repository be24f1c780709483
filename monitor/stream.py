"""The event stream: one source of neutral events feeding independent addons.

Modelled on mitmproxy's addons: an addon is any object with some of the hook methods
`packet(event)` and `done()`. The stream never interprets an event; it only keeps the
accounting that says where every frame went (captured = analysed + filtered + malformed +
dropped).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent


class Source(Protocol):
    """A capture source: a pcap file or a live interface, behind one interface (ROADMAP 1)."""
    name: str
    accounting: Accounting

    def events(self) -> Iterator[PacketEvent]: ...

    def close(self) -> None: ...


class EventStream:
    """Pulls events from a source and hands each to every addon, in order."""

    def __init__(self, source: Source, addons: Iterable[object]):
        self.source = source
        self.addons = list(addons)
        self.accounting = source.accounting

    def _count(self, event: PacketEvent) -> None:
        acc = self.accounting
        if event.malformed:
            acc.malformed += 1
        else:
            acc.analysed += 1
        for esp in event.esp_headers():
            if esp.decrypted:
                acc.esp_decrypted += 1
            else:
                acc.esp_undecrypted += 1

    def feed(self, event: PacketEvent) -> None:
        self._count(event)
        for addon in self.addons:
            hook = getattr(addon, "packet", None)
            if hook is not None:
                hook(event)

    def run(self, stop: threading.Event | None = None) -> Accounting:
        try:
            for event in self.source.events():
                self.feed(event)
                if stop is not None and stop.is_set():
                    break
        finally:
            self.source.close()
            for addon in self.addons:
                hook = getattr(addon, "done", None)
                if hook is not None:
                    hook()
        return self.accounting
