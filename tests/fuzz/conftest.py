"""Hypothesis profiles for the fuzz tests, and the base capture they damage.

`make test` runs the "ci" profile (a few dozen files, well under a minute on 2 cores; 4 live
examples, MIP6MON_FUZZ_LIVE=N for more). For a
long search: `MIP6MON_FUZZ=long .venv/bin/python -m pytest tests/fuzz` (a thousand files per test,
derandomized off), or any profile with `--hypothesis-profile NAME`.
"""
from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

from hypothesis import HealthCheck, settings

from tests.fuzz.captures import EPB, Capture, parse_pcapng

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("MIP6MON_FUZZ", "ci"))

BASE_FRAMES = 40      # rr-privacy: MH of six kinds in the clear, ESP, data, comments


@lru_cache(maxsize=1)
def base_capture() -> Capture:
    """The first BASE_FRAMES frames of the lab's `rr-privacy` scenario, as pcapng units."""
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    with tempfile.TemporaryDirectory(prefix="mip6mon-fuzz-") as out:
        run_scenario(load_scenario("rr-privacy"), out)
        whole = parse_pcapng((Path(out) / "capture.pcapng").read_bytes())
    units, frames = [], 0
    for unit in whole.units:
        if unit.btype == EPB:
            frames += 1
            if frames > BASE_FRAMES:
                continue
        units.append(unit)
    return Capture("pcapng", whole.endian, units)
