"""Deterministic values from a scenario's seed, independent of the order of drawing."""
from __future__ import annotations

import hashlib
import hmac


class Draw:
    """Deterministic values from the seed: HMAC-SHA256(seed, label), expanded by a counter."""

    def __init__(self, scenario: str, seed: int):
        self.key = f"mip6mon-lab|{scenario}|{seed}".encode()

    def bytes(self, label: str, n: int) -> bytes:
        out, counter = b"", 0
        while len(out) < n:
            out += hmac.new(self.key, f"{label}|{counter}".encode(), hashlib.sha256).digest()
            counter += 1
        return out[:n]

    def int(self, label: str, low: int, high: int) -> int:
        """An integer in [low, high)."""
        return low + int.from_bytes(self.bytes(label, 8), "big") % (high - low)
