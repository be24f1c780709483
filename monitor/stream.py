"""The event stream: one source of neutral events feeding independent addons.

Modelled on mitmproxy's addons: an addon is any object with some of the hook methods below;
the stream calls each addon's hook in the addons' order. The stream never interprets an event;
it only keeps the accounting that says where every frame went (captured = analysed + filtered
+ malformed + dropped).

- `pace(event)`: before the event is analysed, outside the stream's lock; it may wait (a
  replay at the capture's pace, web.session.Pacer). After it, a set `stop` ends the run.
- `packet(event)`: the event, under the lock (readers in other threads that take the same
  lock never see an addon half-way through a packet). Each addon sees every event in order;
  in a batch run of a file (no lock, stop or pace: `mip6mon report`) a batch of events goes
  to one addon, then to the next (EventStream._read_ahead), so an addon never reads
  another's state per event.
- `packets(events)`: optional, beside `packet`: a batch run gives an addon that has it each
  batch in one call (its own loop, no call per event); it must do what `packet` does for each
  event in order.
- `done()`: once the source has ended, failed or been stopped, under the lock; every addon's
  runs even when one raises.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Protocol

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent

# The cyclic collector of a batch run: `mip6mon report` in one process, or the keyed one of its
# two (the attacker's runs none: monitor.report_attacker.main). Its analyzers keep what they
# build until the end (every binding, decision and profile goes into the report), make almost
# no cyclic garbage, and hold objects for seconds of capture (placement waits, timing windows):
# they outlive the young generations by the thousand. Python's default (a young collection
# every 700 new objects, a full one after 10 young ones once the long-lived grew by a quarter)
# scans that growing state over and over: 10-12 % of a one-process report, ~1 s of the
# attacker's ~8 on 200,000 packets at 100 % mobility. So what exists when the run starts
# (modules, classes, the keyring) is frozen out of every collection, and collections are rarer.
BATCH_GC_THRESHOLDS = (100_000, 50, 1000)
READ_AHEAD = 512        # events a batch run reads from its source before the addons see them


@contextlib.contextmanager
def batch_collector() -> Iterator[None]:
    """The cyclic collector of a batch run (BATCH_GC_THRESHOLDS, what exists frozen) inside;
    as it was after (in-process callers such as the tests keep their own). Not nested: leaving
    it unfreezes every frozen object."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*BATCH_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class Source(Protocol):
    """A capture source: a pcap file or a live interface, behind one interface (ROADMAP 1).
    One whose events are all there already (a file) may say `read_ahead = True`: a batch run
    reads it ahead of the addons and gives them its events a batch at a time
    (EventStream._read_ahead). A live one never: its events would wait for the ones after
    them."""
    name: str
    accounting: Accounting

    def events(self) -> Iterator[PacketEvent]: ...

    def close(self) -> None: ...


def _each(packet: Any) -> Any:
    """A batch hook made of an addon's `packet` hook: the hook for each event, in order."""
    def packets(events: list[PacketEvent]) -> None:
        for event in events:
            packet(event)
    return packets


class EventStream:
    """Pulls events from a source and hands each to every addon, in order."""

    def __init__(self, source: Source, addons: Iterable[object]):
        self.source = source
        self.addons = tuple(addons)
        self.accounting = source.accounting
        # looked up once: `feed` runs for every event (200,000 a second at best)
        self._packet_hooks = tuple(self._hooks("packet"))
        # a batch run's: each addon's `packets`, else its `packet` for each event
        self._batch_hooks = tuple(getattr(addon, "packets", None) or _each(packet)
                                  for addon in self.addons
                                  if (packet := getattr(addon, "packet", None)) is not None)

    def _count(self, events: Sequence[PacketEvent]) -> None:
        """Count `events` as analysed or malformed, and each one's ESP headers (SA bundles
        included) as decrypted or not, with the reason (one pass for a batch)."""
        acc = self.accounting
        reasons = acc.esp_undecrypted_reasons
        malformed = 0
        for event in events:
            if event.malformed:
                malformed += 1
            for esp in event.esp_headers():   # () or (esp,) for the usual packet
                if esp.decrypted:
                    acc.esp_decrypted += 1
                else:
                    acc.esp_undecrypted += 1
                    reason = esp.undecrypted or "no-keyring"
                    reasons[reason] = reasons.get(reason, 0) + 1
        acc.malformed += malformed
        acc.analysed += len(events) - malformed

    def feed(self, event: PacketEvent) -> None:
        self._count((event,))
        for hook in self._packet_hooks:
            hook(event)

    def _hooks(self, name: str) -> list[Any]:
        return [hook for addon in self.addons if (hook := getattr(addon, name, None)) is not None]

    def run(self, stop: threading.Event | None = None,
            lock: contextlib.AbstractContextManager[Any] | None = None) -> Accounting:
        """Every event of the source to the addons (`pace`, then `packet` under `lock`), then
        the source closed and `done()`; a `stop` set while an event is paced ends the run
        before that event. An error while reading is raised (after the events read before
        it); one from closing the source or from a `done()` hook only when nothing failed
        before it. A batch run of a source that may be read ahead (no `stop`, no `lock`, no
        `pace` hook: `mip6mon report` of a file) reads it READ_AHEAD events ahead of the
        addons (_read_ahead)."""
        guard = lock if lock is not None else contextlib.nullcontext()
        pace = self._hooks("pace")
        failed = False
        try:
            if stop is None and lock is None and not pace and \
                    getattr(self.source, "read_ahead", False):
                self._read_ahead(self.source.events())
            else:
                self._paced(self.source.events(), pace, stop, lock)
        except BaseException:
            failed = True
            raise
        finally:
            errors = [self._close(), self._done(guard)]
            first = next((exc for exc in errors if exc is not None), None)
            if first is not None and not failed:
                raise first
        return self.accounting

    def _paced(self, events: Iterator[PacketEvent], pace: list[Any],
               stop: threading.Event | None,
               lock: contextlib.AbstractContextManager[Any] | None) -> None:
        """One event at a time: paced, then fed (under `lock`), a `stop` seen in between."""
        feed = self.feed
        for event in events:
            for hook in pace:
                hook(event)
            if stop is not None and stop.is_set():
                break
            if lock is None:      # no nullcontext entered per event
                feed(event)
            else:
                with lock:
                    feed(event)

    def _read_ahead(self, events: Iterator[PacketEvent]) -> None:
        """Every event to every addon, READ_AHEAD events at a time: the dissector's walk runs
        for a batch of frames, then each addon in turn for the whole batch (each sees every
        event in order; the addons of a batch run are independent of each other and meet at
        `done()`, as `mip6mon report`'s are). Taking turns per frame, the walk and the addons
        evict each other's data and code from the CPU's caches: the keyed process of a
        200,000-packet report at 100 % mobility spent ~1 of its ~6 CPU s on it (issue 10,
        tools/stages.py: 5.7 -> 4.9 s read ahead, event after event; 4.4 -> 4.1 addon after
        addon). An error while reading is raised once the events read before it are fed
        (the extend keeps what it took)."""
        batch: list[PacketEvent] = []
        while True:
            try:
                batch.extend(islice(events, READ_AHEAD))
            except BaseException:
                self._feed_batch(batch)
                raise
            self._feed_batch(batch)
            if len(batch) < READ_AHEAD:
                return
            batch.clear()

    def _feed_batch(self, batch: list[PacketEvent]) -> None:
        """`feed` for each event of `batch`, addon after addon (an empty one: nothing)."""
        if not batch:
            return
        self._count(batch)
        for hook in self._batch_hooks:
            hook(batch)

    def _close(self) -> Exception | None:
        try:
            self.source.close()
        except Exception as exc:
            return exc
        return None

    def _done(self, guard: contextlib.AbstractContextManager[Any]) -> Exception | None:
        """Every addon's `done()`, each one even when an earlier one failed: the first failure."""
        failed: Exception | None = None
        with guard:
            for hook in self._hooks("done"):
                try:
                    hook()
                except Exception as exc:
                    failed = failed or exc
        return failed
