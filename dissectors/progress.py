"""A progress bar on stderr for a long pass (report, compare, lab run, evaluate): packets, rate
and how far through the input, drawn only when stderr is a terminal (issue 15).

tqdm draws it, imported only when a bar is drawn (pipes and CI logs stay quiet, and the
commands that run with no terminal do not pay its ~50 ms import: it reads its own version
through importlib.metadata). The bar is driven by a watcher thread that polls a `probe` a
few times a second: the pass itself pays nothing per packet, and frames that make no event
(filtered) move it too.
It lives here, the lowest layer its users share (the lab imports dissectors, never monitor).
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

# how often the watcher redraws (seconds), and the bar's resolution (parts of the whole)
INTERVAL = 0.2
STEPS = 1000
FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {status}"
DEFAULT_SIZE = (80, 24)
FORMAT_OPEN = "{desc}: {status}"           # no known end (a live interface, a stream)

# what a probe returns: items done so far, and the fraction of the input (None: unknown)
Probe = Callable[[], tuple[int, float | None]]


@functools.cache
def _tqdm_class() -> type:
    """tqdm with `{status}` in its format: our own text (its `{postfix}` adds a comma)."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    class StatusTqdm(tqdm):  # type: ignore[misc]
        status = ""

        @property
        def format_dict(self) -> dict[str, Any]:
            return {**super().format_dict, "status": self.status}

    return StatusTqdm


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn on `stream` (stderr by default)."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _size(stream: IO[str]) -> tuple[int, int]:
    """The terminal's columns and lines; 80 x 24 where it reports none (a pseudo-terminal
    never sized: tqdm would take its 0 lines as no room and draw nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns or DEFAULT_SIZE[0], size.lines or DEFAULT_SIZE[1]
    except (OSError, ValueError, AttributeError):
        return DEFAULT_SIZE


def _unicode(stream: IO[str]) -> bool:
    """Whether the bar's block characters can be written (a C locale's stderr is ASCII)."""
    return str(getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8"


class Bar:
    """One bar: `show(done, fraction)` from any thread; `close()` draws the final state."""

    def __init__(self, label: str, unit: str = "packets", stream: IO[str] | None = None):
        self.unit = unit
        self.started = time.monotonic()
        stream = sys.stderr if stream is None else stream
        self.enabled = on_terminal(stream)
        self.bounded = False             # a fraction was known: the bar has an end
        self._bar: Any = None
        if self.enabled:
            columns, lines = _size(stream)
            self._bar = _tqdm_class()(
                total=STEPS, desc=label, file=stream, bar_format=FORMAT, leave=True,
                ncols=columns, nrows=lines, ascii=not _unicode(stream), mininterval=INTERVAL)
        self._lock = threading.Lock()

    def show(self, done: int, fraction: float | None) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        with self._lock:
            bar = self._bar
            if fraction is not None:            # (it may be known only once the pass starts)
                self.bounded = True
                bar.bar_format = FORMAT
                bar.n = int(min(max(fraction, 0.0), 1.0) * STEPS)
            elif not self.bounded:
                bar.bar_format = FORMAT_OPEN
            bar.status = f"{done:,} {self.unit}, {done / elapsed:,.0f} {self.unit}/s"
            bar.refresh()

    def finish(self, done: int) -> None:
        """The pass is over: a bar with an end is full."""
        self.show(done, 1.0 if self.bounded else None)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
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
        bar.show(done, fraction)
        bar.finish(done)
    finally:
        stop.set()
        thread.join()
        bar.close()

