"""Waiting in tests for the state itself (never for a time that usually suffices)."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], seconds: float = 15.0) -> bool:
    """Polls `condition` every 50 ms until it holds or `seconds` have passed; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
