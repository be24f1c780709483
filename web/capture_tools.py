"""Display filters and pcapng export, done by tshark and editcap on the capture file itself.

A display filter is tshark's own syntax, so tshark applies it: we ask for the matching frame
numbers and the browser shows the rows with those numbers. Export cuts the capture file with
editcap, which keeps every record (and its pcapng comments) byte for byte.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field

from dissectors import luaplugin

TSHARK = "tshark"
EDITCAP = "editcap"
MAX_FILTER_LENGTH = 2000


class FilterError(ValueError):
    """A display filter tshark refused; the message is tshark's, one line."""


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
    _cache: dict[str, list[int]] = field(default_factory=dict)

    def filter_frames(self, display_filter: str) -> list[int]:
        text = display_filter.strip()
        if len(text) > MAX_FILTER_LENGTH:
            raise FilterError("filter too long")
        if "\n" in text or "\r" in text or "\0" in text:
            raise FilterError("filter must be one line")
        if text in self._cache:
            return self._cache[text]
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
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
            if proc.returncode != 0:
                raise FilterError(_first_error_line(proc.stderr))
            with open(out, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(out)
