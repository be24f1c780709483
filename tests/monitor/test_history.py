"""A live keyed view keeps the newest part of what grows with every BU (monitor.history)."""
from __future__ import annotations

import dataclasses

import pytest

import monitor.keyed as keyed_module
from keys.keyring import load_keyring
from lab.crowd import run_crowd
from monitor.history import History
from monitor.keyed import KeyedAnalyzer
from monitor.sources import PcapSource


def test_history_counts_what_it_forgot():
    h: History[int] = History(keep=3)
    for i in range(20):
        h.append(i)
    assert len(h) == 20                          # everything ever appended
    held = list(h)
    assert 3 <= len(held) < 6 and held == list(range(20 - len(held), 20))
    assert h.forgotten == 20 - len(held)
    assert h[17:] == [17, 18, 19] and h[-1] == 19 and h[19] == 19
    assert h[0:20] == held                       # what is forgotten is simply not there
    assert h[max(0, len(h) - 100):] == held
    with pytest.raises(IndexError):
        h[0]
    unbounded: History[int] = History()
    for i in range(20):
        unbounded.append(i)
    assert list(unbounded) == list(range(20)) and unbounded[5:7] == [5, 6]


def looped(events, times: int):
    """The same traffic again and again, numbered and timed on (a lab left running)."""
    span = events[-1].time - events[0].time + 1.0
    out, frame = [], 0
    for lap in range(times):
        for e in events:
            frame += 1
            out.append(dataclasses.replace(e, frame=frame, time=e.time + lap * span))
    return out


def test_live_keyed_view_bounds_its_history_and_keeps_totals_and_news(tmp_path, monkeypatch):
    run_crowd(tmp_path, nodes=4, seed=41, spi="random", moves_per_node=4, return_home=0.3)
    keyring = load_keyring(tmp_path / "keyring.toml")
    events = looped(list(PcapSource(str(tmp_path / "capture.pcapng"),
                                    keyring=keyring).events()), 5)
    monkeypatch.setattr(keyed_module, "LIVE_HISTORY", 7)
    monkeypatch.setattr(keyed_module, "LIVE_TRAIL_POINTS", 3)
    live, whole = KeyedAnalyzer(keyring, max_frames=400), KeyedAnalyzer(keyring)
    mark, had = None, {"home_total": 0, "correspondent_total": 0, "findings_total": 0}
    for i, event in enumerate(events):
        live.packet(event)
        whole.packet(event)
        if i % 97 == 0:
            news, mark = live.news(mark, limit=5)
            for total in had:
                assert news[total] >= had[total]
                had[total] = news[total]
    news, mark = live.news(mark, limit=5)
    whole_news, _ = whole.news(None, limit=5)
    # the traffic repeats: what grows with BUs is more than the bound, and the bound held
    assert len(whole.home_cache.entries) > 3 * 7 and len(whole.findings.entries) > 3 * 7
    for held in (live.home_cache.entries, live.correspondent_cache.entries,
                 live.findings.entries, *live.home_cache.trails.values(),
                 *live.correspondent_cache.trails.values()):
        assert len(list(held)) < 2 * 7
    for points in live.home_cache.trails.values():
        assert len(list(points)) < 2 * 3
    # totals as if everything were kept; the newest rows the same; the bindings in force too
    for total in had:
        assert news[total] == whole_news[total]
    for rows in ("home_bindings", "correspondent_bindings", "findings"):
        assert live.news(None, limit=5)[0][rows] == whole_news[rows]
    assert live.home_cache.current == whole.home_cache.current
    assert live.care_of_trails().keys() == whole.care_of_trails().keys()
    for hoa, points in live.care_of_trails().items():
        assert points == whole.care_of_trails()[hoa][-len(points):]


def test_live_keyed_view_forgets_old_frames_waiting_for_a_pseudo_use(tmp_path):
    """Frames that used the real home address where no pseudo one was used yet wait to become
    findings; a live view keeps only the newest max_frames of them (a plain RFC 6275 node
    would add one per packet for ever), and those still held become findings as before."""
    run_crowd(tmp_path, nodes=3, seed=43, procedures="rfc3776", moves_per_node=4)
    keyring = load_keyring(tmp_path / "keyring.toml")
    events = looped(list(PcapSource(str(tmp_path / "capture.pcapng"),
                                    keyring=keyring).events()), 10)
    live, whole = KeyedAnalyzer(keyring, max_frames=50), KeyedAnalyzer(keyring)
    for event in events:
        live.packet(event)
        whole.packet(event)

    def waiting(keyed: KeyedAnalyzer) -> list[int]:
        return sorted(f for state in keyed._nodes.values()
                      for frames in state.clear_waiting.values() for f in frames)
    assert len(waiting(whole)) > 3 * len(waiting(live))    # it grows with the traffic
    assert waiting(live) and set(waiting(live)) <= set(waiting(whole))
    for state in live._nodes.values():
        for frames in state.clear_waiting.values():      # the newest 50 frames of each use
            assert all(f > max(frames) - 50 for f in frames)
    whole_uses = {(hoa, use): sorted(frames) for hoa, state in whole._nodes.items()
                  for use, frames in state.clear_waiting.items()}
    for hoa, state in live._nodes.items():
        for use, frames in state.clear_waiting.items():
            newest = max(frames)
            assert sorted(frames) == [f for f in whole_uses[hoa, use] if f > newest - 50]


def test_history_holds_at_most_an_eighth_more_than_it_keeps():
    """What a live view holds at its peak stays resident (issue 12's soak): a History drops
    its oldest an eighth of `keep` at a time, never holding twice `keep`."""
    h: History[int] = History(keep=800)
    peak = 0
    for i in range(10_000):
        h.append(i)
        peak = max(peak, len(list(h)))
    assert 800 <= len(list(h)) <= peak == 900
    assert list(h) == list(range(10_000 - len(list(h)), 10_000)) and len(h) == 10_000
