"""monitor.merge: many sensors' observations in capture order, each packet once."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.merge import Dedup, Reorder


@st.composite
def sensors_publishing(draw):
    """Up to 5 sensors, each with its own increasing capture times, their entries arriving
    interleaved in any order that keeps each sensor's own order (as one Redis stream does),
    each sensor's beats carrying honest watermarks."""
    count = draw(st.integers(1, 5))
    streams = []
    for s in range(count):
        gaps = draw(st.lists(st.floats(0.0, 2.0), max_size=30))
        times, t = [], draw(st.floats(0, 5))
        for g in gaps:
            t += g
            times.append(t)
        entries = []
        for i, t in enumerate(times):
            entries.append(("event", s, t, (s, i)))
            if draw(st.booleans()):
                entries.append(("beat", s, t, None))       # everything up to t published
        entries.append(("bye", s, None, None))
        streams.append(entries)
    order = []
    cursors = [0] * count
    while any(c < len(e) for c, e in zip(cursors, streams, strict=True)):
        open_ = [i for i, (c, e) in enumerate(zip(cursors, streams, strict=True)) if c < len(e)]
        pick = draw(st.sampled_from(open_))
        order.append(streams[pick][cursors[pick]])
        cursors[pick] += 1
    return order


@settings(max_examples=300, deadline=None)
@given(sensors_publishing())
def test_released_in_capture_order_whatever_the_arrival(entries):
    reorder = Reorder(stale=math.inf, max_hold=math.inf, grace=0.0)
    for sensor in {e[1] for e in entries}:          # each said hello (the grace period's job)
        reorder.watermark(sensor, None, now=0.0)
    out = []
    for kind, sensor, t, item in entries:
        if kind == "event":
            reorder.add(sensor, t, (t, item), now=0.0)
        elif kind == "beat":
            reorder.watermark(sensor, t, now=0.0)
        else:
            reorder.finished(sensor, now=0.0)
        out += reorder.release(now=0.0)
    out += reorder.drain()
    events = [e for e in entries if e[0] == "event"]
    assert sorted(out, key=lambda x: x[0]) == out            # capture order
    assert sorted(i for _, i in out) == sorted(e[3] for e in events)   # each once
    assert reorder.late == 0 and reorder.forced == 0


def test_a_quiet_sensor_holds_back_until_its_watermark_passes():
    r = Reorder(stale=3.0, max_hold=10.0, grace=0.0)
    r.watermark("b", 0.0, now=0.0)
    r.add("a", 5.0, "a5", now=0.0)
    assert r.release(now=0.1) == []                  # b might still send something before 5
    r.watermark("b", 4.9, now=0.2)
    assert r.release(now=0.2) == []
    r.add("b", 4.95, "b4.95", now=0.3)
    r.watermark("b", 5.0, now=0.3)
    assert r.release(now=0.3) == ["b4.95", "a5"]


def test_a_silent_sensor_and_a_finished_one_hold_nothing_back():
    r = Reorder(stale=3.0, max_hold=10.0, grace=0.0)
    r.watermark("b", 0.0, now=0.0)
    r.add("a", 5.0, "a5", now=1.0)
    assert r.release(now=2.9) == []
    assert r.release(now=3.1) == ["a5"]              # b silent for more than 3 s
    r.watermark("c", 0.0, now=4.0)
    r.add("a", 6.0, "a6", now=4.0)
    r.finished("c", now=4.1)
    assert r.release(now=4.1) == ["a6"]


def test_what_comes_after_the_order_moved_on_is_late_and_what_waits_too_long_forced():
    r = Reorder(stale=100.0, max_hold=2.0, grace=0.0)
    r.watermark("b", 0.0, now=0.0)
    r.add("a", 5.0, "a5", now=0.0)
    assert r.release(now=1.0) == []
    assert r.release(now=2.5) == ["a5"] and r.forced == 1    # b's clock far behind
    r.add("b", 1.0, "b1", now=3.0)
    r.watermark("b", 6.0, now=3.0)
    assert r.release(now=3.0) == ["b1"] and r.late == 1      # released anyway, counted


def test_nothing_leaves_before_the_sensors_started_together_have_spoken():
    r = Reorder(stale=100.0, max_hold=100.0, grace=2.0)
    r.add("shard1", 10.0, "s1-10", now=0.0)
    r.finished("shard1", now=0.1)
    assert r.release(now=1.0) == []
    r.add("shard2", 5.0, "s2-5", now=1.5)
    r.finished("shard2", now=1.6)
    assert r.release(now=2.1) == ["s2-5", "s1-10"]


D1, D2 = b"\x01" * 16, b"\x02" * 16


def test_two_sensors_one_packet():
    d = Dedup(window=1.0)
    assert d.match(D1, "s1", "mn-ha", 10.0) is None
    d.remember(D1, 1, "s1", "mn-ha", 10.0)
    assert d.match(D1, "s2", "mn-ha", 10.001) == (1, False)      # the link's other end
    assert d.match(D1, "s3", "ha-cn", 10.002) == (1, True)       # one router further
    assert d.match(D1, "s4", "ha-cn", 10.5) == (1, False)
    assert d.merged == 3


def test_the_same_sensor_twice_is_two_packets_and_so_is_a_copy_outside_the_window():
    d = Dedup(window=1.0)
    d.remember(D1, 1, "s1", "mn-ha", 10.0)
    assert d.match(D1, "s1", "mn-ha", 10.2) is None              # a second packet, same bytes
    d.remember(D1, 2, "s1", "mn-ha", 10.2)
    assert d.match(D1, "s2", "mn-ha", 10.3) == (2, False)        # the newest copy first
    assert d.match(D1, "s2", "mn-ha", 10.31) == (1, False)       # and the older one
    assert d.match(D1, "s2", "mn-ha", 10.32) is None             # a third packet
    assert d.match(D1, "s2", "mn-ha", 11.5) is None              # far apart: another packet
    assert d.match(None, "s2", "mn-ha", 10.0) is None            # no digest, no merging
    assert d.match(D2, "s2", "mn-ha", 10.0) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=60),
       st.integers(2, 4))
def test_each_sensor_of_a_link_sees_every_packet_once(packets, sensors):
    """`sensors` sensors on one link each see every packet (digest d at time t): whatever
    the packets repeat, the merge keeps exactly one packet per packet sent."""
    d = Dedup(window=1.0)
    frames = 0
    for n, (digest, _) in enumerate(packets):
        t = n * 0.01
        for s in range(sensors):
            if d.match(bytes([digest]) * 16, s, "mn-ha", t) is None:
                frames += 1
                d.remember(bytes([digest]) * 16, frames, s, "mn-ha", t)
    assert frames == len(packets)
    assert d.merged == len(packets) * (sensors - 1)


def test_a_late_copy_still_finds_its_packet():
    """A sensor that started after the others: its copies come after the merge has moved
    on by seconds of capture time, and are still one packet each."""
    d = Dedup(window=1.0, keep=30.0)
    for n in range(2000):
        d.remember(n.to_bytes(16, "big"), n, "early", "mn-ha", n * 0.01)
    assert d.match((0).to_bytes(16, "big"), "late", "mn-ha", 0.0) == (0, False)


def test_memory_is_bounded():
    d = Dedup(window=1.0, keep=30.0, most=5000)
    for n in range(20_000):
        digest = n.to_bytes(16, "big")
        if d.match(digest, "s1", "mn-ha", n * 0.01) is None:
            d.remember(digest, n, "s1", "mn-ha", n * 0.01)
    assert len(d) <= 3002                     # 30 s of capture at 100 packets a second
    d = Dedup(window=1.0, keep=30.0, most=500)
    for n in range(20_000):
        digest = n.to_bytes(16, "big")
        if d.match(digest, "s1", "mn-ha", 0.0) is None:
            d.remember(digest, n, "s1", "mn-ha", 0.0)
    assert len(d) <= 501
