"""A live attacker's window counts the packets it was fed, at every vantage point (issue 12).

The dashboard feeds the four vantage points' analyzers the same packets; each keeps only what
it observed of the newest `max_packets` of them. Counted in packets observed instead, a vantage
point that observes a sixth of the traffic (HA-CN in a crowd) held six times as much of the
capture, and at the soak's 2,000 packets/s the worker still grew after the other windows were
full."""
from __future__ import annotations

import dataclasses

import pytest

from lab.crowd import run_crowd
from monitor.attacker import AttackerAnalyzer
from monitor.placement import VANTAGES
from monitor.sources import PcapSource


@pytest.fixture(scope="module")
def crowd_events(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd")
    run_crowd(out, nodes=7, seed=29, spi="random", moves_per_node=4, procedures="mixed")
    return list(PcapSource(str(out / "capture.pcapng")).events())


def laps(events, times: int):
    """The same traffic round and round, numbered and timed on (the soak's sender)."""
    span = events[-1].time - events[0].time + 1.0
    frame = 0
    for lap in range(times):
        batch = []
        for e in events:
            frame += 1
            batch.append(dataclasses.replace(e, frame=frame, time=e.time + lap * span))
        yield batch


@pytest.mark.parametrize("vantage", VANTAGES)
def test_a_live_window_holds_the_newest_packets_fed_at_every_vantage(crowd_events, vantage):
    window = len(crowd_events) // 2
    attacker = AttackerAnalyzer(vantage, max_packets=window)
    fed, sizes = 0, []
    for batch in laps(crowd_events, 8):
        for e in batch:
            attacker.packet(e)
        fed += len(batch)
        # frames are the positions fed here: what is held lies in the newest window of the
        # packets placed (and the tenth forgotten at once), in the profiles, the union-find
        # and the decisions alike
        floor = fed - len(attacker._waiting) - window - window // 10
        held = [s.frame for s in attacker.seen()]
        assert all(f > floor for f in held)
        assert all(f > floor for f in attacker._linker.profiles.frames())
        assert all(e.frames[-1] > floor for e in attacker._linker.decided)
        assert {f for p in attacker.report()["profiles"] for f in p["frames"]} == set(held)
        sizes.append(len(held))
    # the window was full after two laps, and stays the same size after eight (within the
    # tenth forgotten at once)
    assert sizes[-1] and max(sizes[3:]) <= max(sizes[2:4]) * 1.1 + 1
    assert attacker.report()["forgotten"] > 0


def test_timing_rules_keep_only_what_a_decision_still_reads(crowd_events):
    """The timing rules' indexes hold 2 x RATE_SPAN of capture (a claim is decided
    RR_WINDOW + FORWARD_WINDOW after its subject, and reads RATE_SPAN around it), forgotten
    every RATE_SPAN; at 2,000 packets/s each second kept is 2,000 observations."""
    from monitor.linking import RATE_SPAN, Timing
    attacker = AttackerAnalyzer("all", max_packets=len(crowd_events))
    for batch in laps(crowd_events, 12):
        for e in batch:
            attacker.packet(e)
    linker = attacker._linker
    timing = [f for f in linker.finders if isinstance(f, Timing)]
    assert timing and linker.now - min(e.time for e in crowd_events) > 100
    held = [o.time for f in timing for table in (f.index, f.subjects)
            for times in table.values() for o in times.items[times.start:]]
    assert held and min(held) >= linker.now - 3 * RATE_SPAN
