"""Real tshark as the reference the Python dissector is held to (tests only).

`tshark_frames(capture, keyring)` runs tshark once over a capture (ESP SAs from the keyring in
a private configuration directory, dissectors.espsa) and returns, per frame, what tshark says:
its protocols, Info column, expert errors, MH types and whether MOBILITY_FILTER selects it.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from dissectors.espsa import TsharkConfig
from dissectors.walk import MH_TRUNCATED, MOBILITY_FILTER
from keys.keyring import Keyring

SEPARATOR, AGGREGATOR = "\x1f", "\x1e"
PI_ERROR = 0x00800000          # epan/proto.h expert severity "error"
FIELDS = ("frame.number", "frame.protocols", "_ws.col.Info", "_ws.expert.severity",
          "_ws.expert.message", "mip6.mhtype", "ipv6.dst")


@dataclass
class TsharkFrame:
    number: int
    protocols: str
    info: str
    errors: list[str]             # expert messages of severity error, in order
    mh_types: list[int]
    ipv6: bool                    # it has a whole IPv6 header (an event can be made of it)
    selected: bool = False        # MOBILITY_FILTER matches it

    def malformed_matches(self, ours: str | None) -> bool:
        """Our malformed text against tshark's: its first error, or none; a Mobility Header
        the snap length cut (tshark: 'Packet size limited') is malformed for mip6mon too."""
        if self.errors:
            return ours == self.errors[0]
        if ours == MH_TRUNCATED:
            return "Packet size limited during capture" in self.info
        return ours is None


def _run(capture: Path, keyring: Keyring | None, *args: str) -> list[str]:
    argv = ["tshark", "-n", "-r", str(capture), *args, "-T", "fields",
            "-E", f"separator={SEPARATOR}", "-E", f"aggregator={AGGREGATOR}", "-E", "quote=n"]
    with TsharkConfig(keyring) as config:
        env = config.env() | {"HOME": config.path}
        out = subprocess.run(argv, capture_output=True, env=env, check=True, timeout=600)
    return out.stdout.decode("utf-8", "replace").split("\n")


def tshark_frames(capture: Path, keyring: Keyring | None = None) -> dict[int, TsharkFrame]:
    fields = [a for f in FIELDS for a in ("-e", f)]
    frames: dict[int, TsharkFrame] = {}
    for line in _run(capture, keyring, *fields):
        cols = line.split(SEPARATOR)
        if len(cols) < len(FIELDS) or not cols[0].isdigit():
            continue
        number, protocols, info, severities, messages, types, destinations = cols[:len(FIELDS)]
        pairs = zip(severities.split(AGGREGATOR), messages.split(AGGREGATOR), strict=False)
        errors = [m for s, m in pairs if s.isdigit() and int(s) >= PI_ERROR] \
            if severities else []
        frames[int(number)] = TsharkFrame(
            int(number), protocols, info, errors,
            [int(t) for t in types.split(AGGREGATOR) if t.isdigit()] if types else [],
            bool(destinations))
    for line in _run(capture, keyring, "-Y", MOBILITY_FILTER, "-e", "frame.number"):
        if line.strip().isdigit():
            frames[int(line)].selected = True
    return frames
