"""`mip6mon serve`'s source: the sensors' events from a Redis Stream, as one capture.

`StreamSource` has the interface of monitor.sources (`.name`, `.accounting`, `.events()`,
`.close()`), so the dashboard runs on it as on a file or an interface. Inside:

- A reader thread consumes the stream with a consumer group (XREADGROUP): at-least-once
  delivery, each entry acknowledged (XACK) only after the analyzers took its event (or it was
  found to be a beat, a duplicate, a resend or unusable). Redis down or restarted: redis-py's
  retries and back-off (monitor.redisconn.outlast) until it answers again, then this
  consumer's pending entries first, then new ones: it resumes from its last acknowledged
  entry, and an entry delivered twice (a restart that lost the acknowledgement) is recognised
  by its id and not analysed again.
- Entries are checked (monitor.entries.decode: a bad one is counted, never analysed), and
  per sensor run an entry number already seen is a resend (the sensor retried a batch Redis
  had taken), a gap is entries lost, and events the sensor published but serve never got are
  counted as dropped.
- monitor.merge puts the observations in capture order (watermarks) and makes each packet
  one observation (canonical digests); frames are numbered here, in that order.
- The keyed stage: ESP is opened here, with the keyring, never on a sensor
  (monitor.sources.decrypted, dissectors.decrypt.EspDecryptor).

A new StreamSource re-reads everything the stream holds (`start="start"`; a dashboard's
binding caches are only right from the beginning) or only what comes (`start="new"`).
"""
from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.protocol import PATHS
from keys.errors import UserError
from keys.keyring import Keyring
from monitor import entries
from monitor.merge import DEDUP_WINDOW, MAX_HOLD_SECONDS, STALE_SECONDS, Dedup, Reorder
from monitor.redisconn import Outage, Stopped, check, connect, outlast, redact
from monitor.sources import decrypted

READ_COUNT = 512             # entries per XREADGROUP
BLOCK_MS = 100               # how long one XREADGROUP waits for new entries
RATE_SECONDS = 3.0           # the sensors' event rate is measured over this long
IN_USE_MS = 10_000           # a consumer idle for less than this is another running serve
COUNTED = ("filtered", "malformed", "dropped", "buffer_dropped")   # sensors' frame counts


_SLOTS = PacketEvent.__slots__
_AT = {name: _SLOTS.index(name) for name in ("frame", "sensor", "path")}


def _as_seen_here(event: PacketEvent, frame: int, sensor: str, path: str | None) -> PacketEvent:
    """The event under serve's frame number, its sensor's name and path (dataclasses.replace,
    without its per-call look at the fields: a tenth of serve's time per event)."""
    values = [getattr(event, name) for name in _SLOTS]
    values[_AT["frame"]], values[_AT["sensor"]], values[_AT["path"]] = frame, sensor, path
    return PacketEvent(*values)


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


@dataclass
class SensorRun:
    """What serve knows of one sensor process (name + run)."""
    name: str
    run: str
    vantage: str
    number: int = 0                  # the last entry number taken
    first_number: int = 0
    heard: float = 0.0               # epoch s of its last entry (serve's clock)
    lag: float = 0.0                 # serve's clock - the sensor's, at its last entry
    received: int = 0                # distinct events
    resent: int = 0
    gaps: int = 0                    # entries never seen (numbers skipped)
    lost: int = 0                    # events it published that never came
    before: int | None = None        # events it published before its first entry seen here
    finished: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    counted: dict[str, float] = field(default_factory=dict)   # COUNTED, as last added
    unwalked: dict[str, int] = field(default_factory=dict)    # its filtered frames, by why
    rates: deque[tuple[float, int]] = field(default_factory=deque)

    def rate(self, now: float) -> float:
        self.rates.append((now, self.received))
        while len(self.rates) > 2 and now - self.rates[0][0] > RATE_SECONDS:
            self.rates.popleft()
        (t0, c0), (t1, c1) = self.rates[0], self.rates[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def as_dict(self, now: float) -> dict[str, Any]:
        st = self.status
        state = st.get("state") or "starting"
        if not self.finished and now - self.heard > STALE_SECONDS:
            state = "silent"
        return {"name": self.name, "vantage": self.vantage, "state": state,
                "error": st.get("error"), "source": st.get("source"),
                "rate": round(self.rate(now), 1), "lag": round(self.lag, 3),
                "last_seen": round(now - self.heard, 1), "events": self.received,
                "published": st.get("published", 0), "read": st.get("read", 0),
                "drops": (st.get("buffer_dropped", 0) or 0) + (st.get("dropped", 0) or 0)
                + self.lost,
                "buffer_dropped": st.get("buffer_dropped", 0),
                "kernel_dropped": st.get("dropped", 0),
                "lost": self.lost, "gaps": self.gaps, "resent": self.resent,
                "buffered": st.get("buffered", 0), "outages": st.get("outages", 0),
                "redis_down_since": st.get("down_since")}


@dataclass(frozen=True, slots=True)
class _Observation:
    entry_id: bytes
    sensor: tuple[str, str]
    vantage: str
    event: PacketEvent
    digest: bytes | None


class StreamSource:
    """The sensors' events as one capture (module docstring)."""

    def __init__(self, url: str, keyring: Keyring | None = None, *,
                 stream: str = entries.STREAM, group: str = entries.GROUP,
                 consumer: str = "serve", start: str = "start",
                 window: float = DEDUP_WINDOW, stale: float = STALE_SECONDS,
                 max_hold: float = MAX_HOLD_SECONDS,
                 log: Callable[[str], None] | None = None):
        if start not in ("start", "new"):
            raise UserError(f"--from must be start or new, not {start!r}")
        self.url = redact(url)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.name = f"{self.url} stream {stream}"
        self.accounting = Accounting()
        self.log = log or (lambda text: print(f"mip6mon: serve: {text}", file=sys.stderr,
                                              flush=True))
        self._connects = 0            # connections made to Redis: a change is a reconnection
        self.client = connect(url, on_connect=self._connected)
        check(self.client, url)
        self._start = start
        self._keyring = keyring
        self.outage = Outage()
        self.state = "starting"
        self._cond = threading.Condition()
        self._reorder = Reorder(stale=stale, max_hold=max_hold)
        self._dedup = Dedup(window)
        self._ready: deque[_Observation] = deque()
        self._released = 0            # observations out of the reorder stage ...
        self._delivered = 0           # ... and analysed (or merged) since: their difference
        self._acks: list[bytes] = []
        self._held: set[bytes] = set()
        self._last_id = (0, 0)
        self._sensors: dict[tuple[str, str], SensorRun] = {}
        self._counts: dict[str, int] = dict.fromkeys(COUNTED + ("read",), 0)  # not yet added
        self._unwalked: dict[str, int] = {}                                   # not yet added
        self._routes: dict[int, tuple[str, ...]] = {}
        self._frames = itertools.count(1)
        self.on_observation: Callable[[str, PacketEvent], None] | None = None
        self.counters = {"merged": 0, "resent": 0, "redelivered": 0, "bad_entries": 0,
                         "group_resets": 0, "trimmed": 0}
        self._closing = threading.Event()
        self._pending_first = True    # read this consumer's pending entries before new ones
        self._reader: threading.Thread | None = None
        self._reader_error: str | None = None
        self._setup_group()

    # --- the group -------------------------------------------------------------------------
    def _setup_group(self) -> None:
        first = "0" if self._start == "start" else "$"
        try:
            self.client.xgroup_create(self.stream, self.group, id=first, mkstream=True)
            return
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise UserError(f"{self.url}: cannot create consumer group {self.group!r} on "
                                f"{self.stream!r}: {exc}") from None
        for consumer in self.client.xinfo_consumers(self.stream, self.group):
            idle = consumer.get("idle", IN_USE_MS)
            if idle < IN_USE_MS:
                raise UserError(f"consumer group {self.group!r} of stream {self.stream!r} is in "
                                f"use (consumer {consumer.get('name')!r} active {idle} ms ago):"
                                f" give this dashboard its own --group")
        # an earlier serve's group: start it over, so its pending entries are not ours
        self.client.xgroup_destroy(self.stream, self.group)
        self.client.xgroup_create(self.stream, self.group, id=first, mkstream=True)

    # --- the reader thread -----------------------------------------------------------------
    def _connected(self) -> None:
        self._connects += 1

    def _redis(self, do: Callable[[], Any]) -> Any:
        def failed(outage: Outage) -> None:
            if outage.failures == 1:
                self.log(f"Redis unreachable ({outage.reason}); retrying")
            self.state = "Redis unreachable, retrying"

        result = outlast(do, self.outage, self._closing.is_set, failed)
        length = self.outage.ended()
        if length is not None:
            self.log(f"Redis reachable again after {length:.1f} s; resuming from the last "
                     f"acknowledged entry")
            self._pending_first = True
        self.state = "running"
        return result

    def _read(self) -> None:
        cursor = "0"
        try:
            while not self._closing.is_set():
                self._flush_acks()
                pending = self._pending_first     # this consumer's pending entries first
                connects = self._connects
                try:
                    reply = self._redis(lambda c=cursor, p=pending: self.client.xreadgroup(
                        self.group, self.consumer, {self.stream: c if p else ">"},
                        count=READ_COUNT, block=None if p else BLOCK_MS))
                except ResponseError as exc:
                    # the group, or the whole stream (UNBLOCKED: deleted under a blocked read)
                    if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                        raise
                    self._group_lost()
                    self._pending_first, cursor = False, "0"
                    continue
                got = reply[0][1] if reply else []
                if not pending and (self._pending_first or self._connects != connects):
                    # Redis failed during this read of new entries, and it was retried (by
                    # outlast, or inside redis-py): a reply lost in the failure may have
                    # delivered older entries to this consumer that it never saw. Taking
                    # these first would make those look like redeliveries when they come
                    # (analysed already), and they would be lost: read this consumer's
                    # pending entries from the oldest instead, which hold these too.
                    self._pending_first, cursor = True, "0"
                    continue
                if pending:
                    if got:
                        cursor = got[-1][0].decode()
                    else:
                        self._pending_first, cursor = False, "0"
                self._take(got)
        except Stopped:
            pass
        except Exception as exc:                 # said in the status bar; events() ends
            self._reader_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.log(f"reading the stream failed: {self._reader_error}")
        finally:
            with self._cond:
                self._cond.notify_all()

    def _group_lost(self) -> None:
        """Redis came back without its data (no append-only file): the group is created again
        and everything the new stream gets is read; what the old one held is lost, and each
        sensor's entry numbers say how much."""
        self.counters["group_resets"] += 1
        self.log("the consumer group is gone (Redis restarted without its data?): created "
                 "again; entries lost meanwhile are counted per sensor")
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        with self._cond:
            self._last_id = (0, 0)

    def _take(self, got: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        now, wall = time.monotonic(), time.time()
        with self._cond:
            for entry_id, fields in got:
                self._one(entry_id, fields, now, wall)
            released = self._reorder.release(now)
            if released:
                self._ready.extend(released)
                self._released += len(released)
                self._cond.notify_all()

    def _one(self, entry_id: bytes, fields: dict[bytes, bytes] | None, now: float,
             wall: float) -> None:
        ident = _id(entry_id)
        if ident <= self._last_id:
            if entry_id not in self._held:       # analysed before Redis lost the ack
                self.counters["redelivered"] += 1
                self._acks.append(entry_id)
            return
        self._last_id = ident
        if not fields:                           # trimmed away while pending
            self.counters["trimmed"] += 1
            self._acks.append(entry_id)
            return
        try:
            entry = entries.decode(fields)
        except entries.BadEntry as exc:
            self.counters["bad_entries"] += 1
            if self.counters["bad_entries"] <= 5:
                self.log(f"entry {entry_id.decode()} skipped: {exc}")
            self._acks.append(entry_id)
            return
        key = (entry.sensor, entry.run)
        run = self._sensors.get(key)
        if run is None:
            run = self._sensors[key] = SensorRun(entry.sensor, entry.run, entry.vantage,
                                                 first_number=entry.number,
                                                 number=entry.number - 1)
            self.log(f"sensor {entry.sensor} ({entry.vantage}) joined")
        if entry.number <= run.number:
            run.resent += 1
            self.counters["resent"] += 1
            self._acks.append(entry_id)
            return
        run.gaps += entry.number - run.number - 1
        run.number = entry.number
        run.heard, run.lag = wall, max(0.0, wall - entry.sent)
        if entry.kind == entries.EVENT:
            assert entry.event is not None
            run.received += 1
            self._counts["read"] += 1
            self._held.add(entry_id)
            self._reorder.add(key, entry.event.time,
                              _Observation(entry_id, key, entry.vantage, entry.event,
                                           entry.digest), now)
            return
        self._acks.append(entry_id)
        assert entry.status is not None
        run.status = entry.status
        published = int(entry.status.get("published") or 0)
        if run.before is None:
            # a run that started before this dashboard's stream position (--from new, or a
            # trimmed stream): what it published before is not lost, only not ours
            run.before = published - run.received if run.first_number > 1 else 0
        lost = max(0, published - run.before - run.received)
        news = {name: float(entry.status.get(name) or 0) for name in COUNTED}
        news["dropped"] += lost
        for name, value in news.items():
            # deltas may be negative: a sensor may count a frame filtered until its event
            # comes (the tshark pump does), then correct it
            delta = int(value - run.counted.get(name, 0.0))
            self._counts[name] += delta
            if name != "dropped":    # what the sensor filtered or dropped, it had read
                self._counts["read"] += delta
            run.counted[name] = value
        self._counts["read"] += lost - run.lost
        run.lost = lost
        unwalked = entry.status.get("unwalked") or {}
        for why in set(unwalked) | set(run.unwalked):
            delta = unwalked.get(why, 0) - run.unwalked.get(why, 0)
            if delta:
                self._unwalked[why] = self._unwalked.get(why, 0) + delta
        run.unwalked = dict(unwalked)
        if entry.kind == entries.BYE:
            run.finished = True
            self._reorder.finished(key, now)
            self.log(f"sensor {entry.sensor} ({entry.vantage}) ended: {entry.status.get('state')}")
        else:
            self._reorder.watermark(key, entry.watermark, now)

    def _flush_acks(self) -> None:
        with self._cond:
            acks, self._acks = self._acks, []
        if acks:
            self._redis(lambda: self.client.xack(self.stream, self.group, *acks))
            with self._cond:
                self._held.difference_update(acks)

    # --- the stream thread (events) ----------------------------------------------------------
    def events(self) -> Iterator[PacketEvent]:
        """The sensors' events in capture order, each packet once, ESP opened with the keyring
        (monitor.sources.decrypted: the keyed stage, here on the analyzer's side)."""
        return decrypted(self._merged(), self._keyring)

    def _merged(self) -> Iterator[PacketEvent]:
        if self._reader is None:
            self.state = "running"
            self._reader = threading.Thread(target=self._read, name="mip6mon-subscriber",
                                            daemon=True)
            self._reader.start()
        while True:
            with self._cond:
                while not self._ready and not self._closing.is_set() \
                        and self._reader.is_alive():
                    self._cond.wait(0.2)
                    released = self._reorder.release()
                    self._ready.extend(released)
                    self._released += len(released)
                self._add_counts()
                if not self._ready:
                    if self._reader_error:
                        raise UserError(f"{self.url}: {self._reader_error}")
                    return
                batch = list(self._ready)
                self._ready.clear()
            for obs in batch:
                yield from self._deliver(obs)

    def _add_counts(self) -> None:
        """The sensors' counts into the accounting (in the stream's thread, which counts the
        rest: one writer per field at a time)."""
        acc = self.accounting
        counts = self._counts
        acc.read += counts["read"]
        acc.filtered += counts["filtered"]
        acc.malformed += counts["malformed"]
        acc.dropped += counts["dropped"] + counts["buffer_dropped"]
        for name in counts:
            counts[name] = 0
        unwalked = getattr(acc, "unwalked", None)      # the dissector's reasons (issue 10)
        if unwalked is not None:
            for why, delta in self._unwalked.items():
                unwalked[why] = unwalked.get(why, 0) + delta
                if not unwalked[why]:
                    del unwalked[why]
        self._unwalked.clear()

    def _deliver(self, obs: _Observation) -> Iterator[PacketEvent]:
        name, vantage = obs.sensor[0], obs.vantage
        path = vantage if vantage in PATHS else obs.event.path
        match = self._dedup.match(obs.digest, obs.sensor, vantage, obs.event.time)
        if match is None:
            frame = next(self._frames)
            self._dedup.remember(obs.digest, frame, obs.sensor, vantage, obs.event.time)
            event = _as_seen_here(obs.event, frame, name, path)
            self._routes[frame] = ("all", vantage) if vantage in PATHS else ("all",)
            yield event
        else:
            self.counters["merged"] += 1
            frame, new_vantage = match
            if new_vantage and vantage in PATHS and self.on_observation is not None:
                self.on_observation(vantage, _as_seen_here(obs.event, frame, name, path))
        with self._cond:
            self._acks.append(obs.entry_id)      # analysed (or merged): acknowledged
            self._delivered += 1

    def route(self, event: PacketEvent) -> tuple[str, ...]:
        """The eavesdroppers that see `event` (its sensor's vantage point, and the colluders):
        asked once per event by the attacker stage, right after events() gave it."""
        return self._routes.pop(event.frame, ("all",))

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.time()
        with self._cond:
            sensors = [run.as_dict(now) for run in self._sensors.values()]
            held = len(self._reorder)
            queued = self._released - self._delivered
            late, forced = self._reorder.late, self._reorder.forced
            counters = dict(self.counters)
        return {"redis": {"url": self.url, "stream": self.stream, "group": self.group,
                          "state": self.state, "error": self._reader_error,
                          **self.outage.as_dict()},
                "sensors": sorted(sensors, key=lambda s: (s["vantage"], s["name"])),
                "held": held, "queued": queued, "late": late, "forced": forced, **counters}

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        try:
            with self._cond:
                acks, self._acks = self._acks, []
            if acks:
                self.client.xack(self.stream, self.group, *acks)
        except Exception:
            pass                                  # unacknowledged entries stay pending
        try:
            self.client.close()
        except Exception:
            pass
