"""The attacker's profiles as the report builds them after the last packet (issue 10): each
frame's profile read off the union-find's parents list at once, the same as a find() per frame
(and as a live window, which reads it frame by frame, gets)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monitor.attacker as attacker_module
from lab.crowd import run_crowd
from monitor.attacker import AttackerAnalyzer, _roots_by_frame
from monitor.linking import UnionFind
from monitor.placement import VANTAGES
from monitor.sources import PcapSource


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=120),
       st.lists(st.tuples(st.integers(0, 119), st.integers(0, 119)), max_size=150),
       st.lists(st.integers(0, 119), max_size=40))
def test_roots_read_at_once_are_each_frames_find(frames, unions, finds):
    """Whatever was added and joined in whatever order, and whatever finds compressed."""
    uf = UnionFind()
    for f in frames:
        uf.add(f)
    for a, b in unions:
        uf.union(frames[a % len(frames)], frames[b % len(frames)])
    for i in finds:
        uf.find(frames[i % len(frames)])
    roots = _roots_by_frame(uf, observed=len(uf._parent))    # dense enough, whatever held
    assert roots is not None
    assert all(roots[f] == uf.find(f) for f in uf.frames())


def test_a_trimmed_or_sparse_union_find_is_read_frame_by_frame():
    uf = UnionFind(range(10, 20))
    uf.keep(15)
    assert _roots_by_frame(uf, observed=5) is None
    # a frame in every hundred observed (a capture of 10 % mobility): its slots would cost more
    # memory than the frames
    sparse = UnionFind(range(0, 100_000, 100))
    assert _roots_by_frame(sparse, observed=1000) is None
    assert _roots_by_frame(UnionFind(range(10_000)), observed=10_000) is not None


@pytest.fixture(scope="module")
def crowd_events(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd")
    run_crowd(out, nodes=9, seed=41, spi="random", moves_per_node=3, procedures="mixed")
    events = list(PcapSource(str(out / "capture.pcapng")).events())
    random.Random(5).shuffle(events)        # frames out of order too: another build path
    return events


@pytest.mark.parametrize("vantage", VANTAGES)
@pytest.mark.parametrize("shuffled", [False, True])
def test_profiles_are_the_same_read_at_once_or_frame_by_frame(crowd_events, vantage, shuffled,
                                                               monkeypatch):
    events = crowd_events if shuffled else sorted(crowd_events, key=lambda e: e.frame)

    def profiles():
        attacker = AttackerAnalyzer(vantage)
        for e in events:
            attacker.packet(e)
        attacker.done()
        return attacker.report()

    monkeypatch.setattr(attacker_module, "DENSE", 10**9)      # read at once, whatever the slots
    at_once = profiles()
    monkeypatch.setattr(attacker_module, "_roots_by_frame", lambda uf, observed: None)
    frame_by_frame = profiles()
    assert at_once == frame_by_frame
    assert len(at_once["profiles"]) > 1 and any(p["evidence"] for p in at_once["profiles"])
