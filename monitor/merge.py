"""Many sensors' observations made into one capture: in capture-time order, each packet once.

Two stages, both plain logic (monitor.subscribe feeds them from Redis):

- `Reorder`: sensors publish independently, so a packet captured early on one link can reach
  serve after a later one from another link (a HoT on HA-CN after the BU it enabled on MN-CN).
  The analyzers need capture order, as `mip6mon report` has it from one file. Each sensor's
  own events come in its capture order, and its beats carry a watermark (every event captured
  before it has been published); an observation is released once every sensor that is still
  alive has passed its capture time (the watermark idea of stream processors, e.g. Flink).
  A sensor that has said bye no longer holds anything back; one not heard from for
  `stale` seconds neither (a crashed sensor must not stop the dashboard). A sensor holds
  nothing back before serve has heard of it, so nothing is released in the first `grace`
  seconds after the first entry (sensors started together, e.g. the shards of an archive,
  all announce themselves within it). What comes after the order has moved past it is
  released at once and counted `late`; what waits longer than `max_hold` seconds (a sensor's
  clock far behind) is released and counted `forced`.

- `Dedup`: one packet seen by two sensors (the two ends of a link, or two links one router or
  one tunnel end apart) is one observation at two vantage points: same canonical digest
  (dissectors.digest: the inner IPv6 packet, hop limit aside, with or without the tunnel
  header one path adds), from a different sensor, within `window` seconds of capture time.
  Two identical packets seen by the same sensor stay two packets. A packet is remembered for
  `keep` seconds of capture time after the newest seen (at most `most` of them), so that a
  copy that comes late (a sensor that started or caught up after the others) still finds
  it. The keyed view, the packet
  list and the colluding eavesdroppers take the packet once, as first observed; the
  eavesdropper at each further vantage point takes that vantage point's own observation,
  under the same frame number.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

STALE_SECONDS = 3.0        # a sensor silent this long holds nothing back (beats come 10 a second)
MAX_HOLD_SECONDS = 5.0     # longest an observation waits for the others' watermarks
GRACE_SECONDS = 2.0        # nothing released before every sensor started with the first spoke
DEDUP_WINDOW = 1.0         # capture-time seconds within which two sensors' copies are one packet
DEDUP_KEEP = 30.0          # capture-time seconds a packet is remembered (for late copies) ...
DEDUP_MOST = 200_000       # ... and how many at the most


@dataclass
class _Clock:
    mark: float = -math.inf        # every event of this sensor captured before it has come
    heard: float = 0.0             # monotonic time of its last entry
    finished: bool = False


@dataclass(order=True)
class _Held:
    time: float
    order: int
    item: Any = field(compare=False)
    since: float = field(compare=False, default=0.0)


class Reorder:
    """Releases items in capture-time order once every live sensor's watermark has passed."""

    def __init__(self, stale: float = STALE_SECONDS, max_hold: float = MAX_HOLD_SECONDS,
                 grace: float = GRACE_SECONDS):
        self.stale = stale
        self.max_hold = max_hold
        self.grace = grace
        self._first: float | None = None  # monotonic time the first sensor was heard
        self._clocks: dict[Hashable, _Clock] = {}
        self._heap: list[_Held] = []
        self._order = itertools.count()
        self.released_time = -math.inf    # capture time of the newest item released
        self.late = 0
        self.forced = 0

    def __len__(self) -> int:
        return len(self._heap)

    def _clock(self, sensor: Hashable, now: float) -> _Clock:
        clock = self._clocks.get(sensor)
        if clock is None:
            clock = self._clocks[sensor] = _Clock()
            if self._first is None:
                self._first = now
        clock.heard = now
        return clock

    def add(self, sensor: Hashable, capture_time: float, item: Any,
            now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        clock = self._clock(sensor, now)
        clock.mark = max(clock.mark, capture_time)
        heapq.heappush(self._heap, _Held(capture_time, next(self._order), item, now))

    def watermark(self, sensor: Hashable, mark: float | None, now: float | None = None) -> None:
        """A beat: the sensor is alive, and (mark) has published everything before `mark`."""
        clock = self._clock(sensor, time.monotonic() if now is None else now)
        if mark is not None:
            clock.mark = max(clock.mark, mark)

    def finished(self, sensor: Hashable, now: float | None = None) -> None:
        self._clock(sensor, time.monotonic() if now is None else now).finished = True

    def forget(self, sensor: Hashable) -> None:
        self._clocks.pop(sensor, None)

    def horizon(self, now: float | None = None) -> float:
        """The capture time up to which every live sensor has published."""
        now = time.monotonic() if now is None else now
        marks = [c.mark for c in self._clocks.values()
                 if not c.finished and now - c.heard <= self.stale]
        return min(marks) if marks else math.inf

    def release(self, now: float | None = None) -> list[Any]:
        """The items due, oldest capture time first."""
        now = time.monotonic() if now is None else now
        if self._first is None or now - self._first < self.grace:
            return []
        horizon = self.horizon(now)
        out = []
        heap = self._heap
        while heap and (heap[0].time <= horizon or now - heap[0].since > self.max_hold):
            held = heapq.heappop(heap)
            if held.time > horizon:
                self.forced += 1
            if held.time < self.released_time:
                self.late += 1
            else:
                self.released_time = held.time
            out.append(held.item)
        return out

    def drain(self) -> list[Any]:
        """Everything held, in order (the end)."""
        out = [heapq.heappop(self._heap).item for _ in range(len(self._heap))]
        return out


@dataclass
class _Packet:
    time: float
    frame: int
    sensors: set[Hashable]
    vantages: set[str]


class Dedup:
    """Which observations are one packet (module docstring)."""

    def __init__(self, window: float = DEDUP_WINDOW, keep: float = DEDUP_KEEP,
                 most: int = DEDUP_MOST):
        self.window = window
        self.keep = max(keep, 2 * window)
        self.most = most
        self._packets: dict[bytes, list[_Packet]] = {}
        self._order: deque[tuple[float, bytes]] = deque()
        self._newest = -math.inf
        self.merged = 0                   # observations that were a packet already seen

    def match(self, digest: bytes | None, sensor: Hashable, vantage: str,
              capture_time: float) -> tuple[int, bool] | None:
        """(frame of the packet this observation belongs to, whether its vantage point is new
        for it), or None: a new packet (then `remember` it)."""
        if digest is None:
            return None
        self._newest = max(self._newest, capture_time)
        self._expire()
        for packet in reversed(self._packets.get(digest, ())):
            if sensor not in packet.sensors and abs(capture_time - packet.time) <= self.window:
                packet.sensors.add(sensor)
                new_vantage = vantage not in packet.vantages
                packet.vantages.add(vantage)
                self.merged += 1
                return packet.frame, new_vantage
        return None

    def remember(self, digest: bytes | None, frame: int, sensor: Hashable, vantage: str,
                 capture_time: float) -> None:
        if digest is None:
            return
        self._packets.setdefault(digest, []).append(
            _Packet(capture_time, frame, {sensor}, {vantage}))
        self._order.append((capture_time, digest))

    def _expire(self) -> None:
        """Forget packets `keep` seconds older than the newest (capture time), and the
        oldest beyond `most`."""
        order = self._order
        while order and (order[0][0] < self._newest - self.keep or len(order) > self.most):
            _, digest = order.popleft()
            packets = self._packets.get(digest)
            if packets:
                packets.pop(0)
                if not packets:
                    del self._packets[digest]

    def __len__(self) -> int:
        return len(self._order)
