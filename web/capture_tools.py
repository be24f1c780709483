"""Display filters and pcapng export, done by tshark and editcap on the capture file itself.

A display filter is tshark's own syntax, so tshark applies it: we ask for the matching frame
numbers and the browser shows the rows with those numbers. Export cuts the capture file with
editcap, which keeps every record (and its pcapng comments) byte for byte.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dissectors import luaplugin

TSHARK = "tshark"
EDITCAP = "editcap"
MAX_FILTER_LENGTH = 2000
# tshark reads the whole capture for every filter: on 2 cores, two at once is all that helps;
# the next few wait their turn and the rest are refused (HTTP 429), so a page or a script
# firing requests can never fork a tshark per request
MAX_RUNNING = 2
MAX_WAITING = 6


class FilterError(ValueError):
    """A display filter tshark refused; the message is tshark's, one line."""


class ToolsBusy(RuntimeError):
    """Every tshark/editcap slot is taken and the queue is full: try again later."""


class Slots:
    """At most `running` holders at once, at most `waiting` queued behind them; one more is
    refused at once with ToolsBusy, and a queued one gives up after `patience` seconds."""

    def __init__(self, running: int = MAX_RUNNING, waiting: int = MAX_WAITING,
                 patience: float = 120.0):
        self._free = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.limit_waiting = waiting
        self.patience = patience

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if not self._free.acquire(blocking=False):
                if self.waiting >= self.limit_waiting:
                    raise ToolsBusy(f"{self.running} display filters or exports are running "
                                    f"and {self.waiting} are waiting: try again shortly")
                self.waiting += 1
                queued = True
            else:
                queued = False
                self.running += 1
        if queued:
            got = self._free.acquire(timeout=self.patience)
            with self._lock:
                self.waiting -= 1
                if got:
                    self.running += 1
            if not got:
                raise ToolsBusy("waited too long for a running display filter or export")
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._free.release()


def _first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        line = line.strip()
        # tshark's own chatter when run as root is not the error
        if not line or line.startswith("Running as user"):
            continue
        return line.removeprefix("tshark: ")[:300]
    return "tshark rejected the filter"


def frame_ranges(frames: list[int]) -> list[str]:
    """[1,2,3,7,9,10] -> ["1-3", "7", "9-10"] (editcap's record selection syntax)."""
    out: list[str] = []
    ordered = sorted(set(f for f in frames if f > 0))
    start = prev = None
    for f in ordered:
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = f
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return out


@dataclass
class CaptureTools:
    """tshark/editcap over one capture file; filter results cached by filter text."""
    path: str
    # the keyring's ESP SAs go to tshark as the dissector gives them (a private 0700 config
    # directory, dissectors.espsa), so a filter sees the decrypted fields the monitor sees
    keyring: object = None
    timeout: float = 120.0
    slots: Slots = field(default_factory=Slots)
    _cache: dict[str, list[int]] = field(default_factory=dict)

    def filter_frames(self, display_filter: str) -> list[int]:
        text = display_filter.strip()
        if len(text) > MAX_FILTER_LENGTH:
            raise FilterError("filter too long")
        if "\n" in text or "\r" in text or "\0" in text:
            raise FilterError("filter must be one line")
        if text in self._cache:
            return self._cache[text]
        with self.slots.hold():
            if text in self._cache:            # the same filter ran while this one waited
                return self._cache[text]
            return self._run_filter(text)

    def _run_filter(self, text: str) -> list[int]:
        # the profile's extensions are named by mip6mon's Lua plugin (`mip6lp.*` filters)
        cmd = [TSHARK, *luaplugin.tshark_options(), "-n", "-r", self.path, "-Y", text,
               "-T", "fields", "-e", "frame.number"]
        from dissectors.espsa import TsharkConfig
        try:
            with TsharkConfig(self.keyring) as config:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout,
                                      stdin=subprocess.DEVNULL, env=config.env())
        except subprocess.TimeoutExpired:
            raise FilterError("tshark took too long on this filter") from None
        if proc.returncode != 0:
            raise FilterError(_first_error_line(proc.stderr))
        frames = [int(line) for line in proc.stdout.split() if line.isdigit()]
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[text] = frames
        return frames

    def export(self, frames: list[int]) -> bytes:
        """The listed frames as a pcapng file (bytes)."""
        ranges = frame_ranges(frames)
        if not ranges:
            raise FilterError("no packets to export")
        fd, out = tempfile.mkstemp(prefix="mip6mon-export-", suffix=".pcapng")
        os.close(fd)
        try:
            # editcap -r keeps the selected records; runs collapse to ranges, which keeps the
            # argument list short for any ordinary selection
            if len(ranges) > 5000:
                raise FilterError("too many disjoint packets selected (limit 5000 ranges)")
            cmd = [EDITCAP, "-F", "pcapng", "-r", self.path, out, *ranges]
            with self.slots.hold():
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True,
                                          timeout=self.timeout, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    raise FilterError("editcap took too long on this export") from None
            if proc.returncode != 0:
                raise FilterError(_first_error_line(proc.stderr))
            with open(out, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(out)
