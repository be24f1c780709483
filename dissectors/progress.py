"""A progress bar on stderr for a long pass (report, compare, lab run, evaluate): packets, rate
and how far through the input, drawn only when stderr is a terminal (issue 15).

tqdm draws it (`disable=None`: off when the stream is not a TTY, so pipes and CI logs stay
quiet). The bar is driven by a watcher thread that polls a `probe` a few times a second: the
pass itself pays nothing per packet, and frames that make no event (filtered) move it too.
It lives here, the lowest layer its users share (the lab imports dissectors, never monitor).
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from tqdm import tqdm  # type: ignore[import-untyped]

# how often the watcher redraws (seconds), and the bar's resolution (parts of the whole)
INTERVAL = 0.2
STEPS = 1000
FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {postfix}"
FORMAT_OPEN = "{desc}: {postfix}"          # no known end (a live interface, a stream)

# what a probe returns: items done so far, and the fraction of the input (None: unknown)
Probe = Callable[[], tuple[int, float | None]]


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn on `stream` (stderr by default)."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Bar:
    """One bar: `show(done, fraction)` from any thread; `close()` draws the final state."""

    def __init__(self, label: str, unit: str = "packets", stream: IO[str] | None = None):
        self.unit = unit
        self.started = time.monotonic()
        self._bar: Any = tqdm(total=STEPS, desc=label, file=sys.stderr if stream is None
                              else stream, disable=None, bar_format=FORMAT, leave=True,
                              dynamic_ncols=True, mininterval=INTERVAL)
        self.enabled = not self._bar.disable
        self._lock = threading.Lock()

    def show(self, done: int, fraction: float | None) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        with self._lock:
            bar = self._bar
            if fraction is None:
                bar.bar_format = FORMAT_OPEN
            else:
                bar.n = int(min(max(fraction, 0.0), 1.0) * STEPS)
            bar.set_postfix_str(f"{done:,} {self.unit}, {done / elapsed:,.0f} {self.unit}/s",
                                refresh=False)
            bar.refresh()

    def close(self) -> None:
        with self._lock:
            self._bar.close()


@contextmanager
def watching(probe: Probe, label: str, unit: str = "packets",
             stream: IO[str] | None = None) -> Iterator[Bar]:
    """A bar redrawn from `probe` every INTERVAL while the block runs, and once at its end.
    Nothing at all (no thread, no output) when the stream is not a terminal."""
    bar = Bar(label, unit, stream)
    if not bar.enabled:
        try:
            yield bar
        finally:
            bar.close()
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(INTERVAL):
            try:
                bar.show(*probe())
            except Exception:  # noqa: BLE001 - a probe racing the pass's end: next tick
                continue

    thread = threading.Thread(target=watch, name="progress", daemon=True)
    thread.start()
    try:
        yield bar
        done, fraction = probe()
        bar.show(done, 1.0 if fraction is not None else None)
    finally:
        stop.set()
        thread.join()
        bar.close()


class Counter:
    """A probe for a pass that counts for itself (`step`), out of a known total."""

    def __init__(self, total: int | None = None):
        self.total = total
        self.done = 0

    def step(self, done: int | None = None) -> None:
        self.done = self.done + 1 if done is None else done

    def __call__(self) -> tuple[int, float | None]:
        fraction = self.done / self.total if self.total else None
        return self.done, fraction
