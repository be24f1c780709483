"""`mip6mon sensor`: capture (or read a file), dissect here with no keys, publish to Redis.

One sensor per link (issue 14): it runs the same keyless dissector as every other command
(monitor.sources: a live interface through the same LiveSource as `mip6mon live`, or a
capture file, e.g. one shard of an archive), digests each packet (dissectors.digest) and
publishes each event to a Redis Stream with its name and vantage point (monitor.entries).
It never takes a keyring: ESP leaves it encrypted, and `mip6mon serve` decrypts.

Two threads: the capture thread dissects into a bounded buffer (the Outbox); the publisher
takes from it in batches (one pipeline of XADDs each) and adds a beat every BEAT_SECONDS when
it has nothing else to say. When Redis is unreachable the publisher retries with redis-py's
back-off (monitor.redisconn.outlast) while the buffer fills: a live capture then drops what
does not fit, counted (`buffer_dropped`, in every beat, in the log and on serve's status
bar); a file waits, since nothing is lost by reading it later. A batch that failed half way
is sent again whole: serve knows each entry's number and skips what it already has.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dissectors.capfile import Record
from dissectors.digest import packet_digest
from dissectors.events import PacketEvent
from keys.errors import UserError
from monitor import entries

# redis-py is imported by the functions that talk to Redis (monitor.redisconn), not here: the
# command line reads this module's defaults for every command, `report` included

BATCH = 256                  # entries per pipeline
BEAT_SECONDS = 0.1           # a beat when idle: serve's order waits on the quietest sensor
STATUS_SECONDS = 1.0         # counters at least this often, even while events flow
MAX_DELAY = 0.25             # s a live packet may take from the wire to the buffer (--max-delay)
BUFFER = 100_000             # events the buffer holds while Redis is away (--buffer)
MAXLEN = 200_000             # entries the stream keeps, trimmed approximately (--maxlen)
FLUSH_SECONDS = 10.0         # at the end, how long unpublished events wait for Redis
READY_SECONDS = 30.0         # for dumpcap to start


class Outbox:
    """The bounded buffer between the capture thread and the publisher."""

    def __init__(self, capacity: int, block: bool):
        self.capacity = capacity
        self.block = block             # a file waits for room; a live capture drops
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Any) -> bool:
        with self._cond:
            while self.block and len(self._items) >= self.capacity and not self.closed:
                self._cond.wait(0.5)
            if len(self._items) >= self.capacity:
                self.dropped += 1
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def take(self, limit: int, timeout: float) -> list[Any]:
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout)
            out = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
            self._cond.notify_all()
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Digests:
    """The source's tap (monitor.sources tap=): the digest of each event's packet, from the
    frame's octets, kept until the capture thread takes the event (the same thread, right
    after)."""

    def __init__(self) -> None:
        self._last: tuple[int, bytes | None] | None = None

    def __call__(self, record: Record, event: PacketEvent) -> None:
        self._last = (event.frame, packet_digest(record.linktype, record.data))

    def of(self, event: PacketEvent) -> bytes | None:
        last = self._last
        return last[1] if last is not None and last[0] == event.frame else None


def default_name(interface: str | None, capture: str | None) -> str:
    where = interface if interface else os.path.basename(capture or "capture")
    return f"{socket.gethostname()}:{where}"


class Sensor:
    """A source's events to a Redis Stream (module docstring). `run()` returns the exit code."""

    def __init__(self, client: Any, source: Any, *, name: str, vantage: str,
                 stream: str = entries.STREAM, maxlen: int = MAXLEN, buffer: int = BUFFER,
                 live: bool = True, max_delay: float = MAX_DELAY, speed: float | None = None,
                 digests: Digests | None = None, log: Callable[[str], None] | None = None):
        self.client = client
        self.source = source
        self.name = name
        self.vantage = vantage
        self.stream = stream
        self.maxlen = maxlen
        self.live = live
        self.max_delay = max_delay
        self.speed = speed             # a file at its capture pace x speed (None: at once)
        self.run_id = secrets.token_hex(8)
        from monitor.redisconn import Outage
        self.outbox = Outbox(buffer, block=not live)
        self.outage = Outage()
        self.log = log or (lambda text: print(f"mip6mon: sensor {name}: {text}",
                                              file=sys.stderr, flush=True))
        self.state = "starting"
        self.error: str | None = None
        self.events = 0                # events the dissector made
        self.published = 0             # events Redis took
        self.unsent = 0                # events of the last batch when publishing gave up
        self._number = 0               # the last entry number given
        self._last_time = -float("inf")  # capture time of the newest event put in the buffer
        self.digests = digests         # the source's tap, or None: no digests, no merging
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._publisher: threading.Thread | None = None
        self.bye_sent = False

    # --- the capture thread ------------------------------------------------------------------
    def run(self) -> int:
        self._publisher = threading.Thread(target=self._publish, name="mip6mon-publisher",
                                           daemon=True)
        self._publisher.start()
        try:
            if self.live and hasattr(self.source, "start"):
                self.source.start()
                # 'capturing' once dumpcap has started (a packet sent before is not seen);
                # the source may need its events read to notice, so this waits aside
                threading.Thread(target=self._wait_ready, name="mip6mon-ready",
                                 daemon=True).start()
            else:
                self._started("reading")
            pace: tuple[float, float] | None = None     # (first capture time, monotonic)
            for event in self.source.events():
                if self.speed is not None:
                    pace = pace or (event.time, time.monotonic())
                    delay = pace[1] + (event.time - pace[0]) / self.speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                digest = self.digests.of(event) if self.digests is not None else None
                self.events += 1
                item = (event.time, entries.event_fields(entries.encode_event(event), digest))
                if self.outbox.put(item):
                    self._last_time = max(self._last_time, event.time)
                if self._stop.is_set():
                    break
            if self.state != "error":
                self.state = "stopped" if self._stop.is_set() else "done"
        except UserError as exc:
            self.state, self.error = "error", str(exc)
        except Exception as exc:                  # said in the log and in the bye, not hidden
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            try:
                self.source.close()
            except Exception:
                pass
            self._capture_done.set()
            self.outbox.close()
        self._publisher.join()
        unpublished = len(self.outbox) + self.unsent
        self.log(f"{self.state}: {self.events} events, {self.published} published, "
                 f"{self.outbox.dropped} dropped (buffer full)"
                 + (f", {unpublished} never published (Redis unreachable)" if unpublished else "")
                 + (f"; error: {self.error}" if self.error else ""))
        if self.state == "error":
            raise UserError(self.error or "the capture failed")
        return 1 if unpublished or not self.bye_sent else 0

    def _started(self, state: str) -> None:
        self.state = state
        self.log(f"{state} {self.source.name} as vantage point {self.vantage}, publishing to "
                 f"stream {self.stream!r}")

    def _wait_ready(self) -> None:
        if self.source.ready.wait(READY_SECONDS):
            if self.state == "starting":
                self._started("capturing")
        elif self.state == "starting":
            self.state = "error"
            self.error = f"{self.source.name}: the capture did not start within " \
                         f"{READY_SECONDS:.0f} s"
            self.stop()

    def stop(self) -> None:
        """End the capture (SIGTERM / SIGINT); what is buffered is still published."""
        self._stop.set()
        try:
            self.source.close()
        except Exception:
            pass

    # --- the publisher thread ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        acc = self.source.accounting
        return {"state": self.state, "error": self.error, "source": self.source.name,
                "read": acc.read, "filtered": acc.filtered, "malformed": acc.malformed,
                # "dropped": never read (the kernel's, by dumpcap's count); "buffer_dropped":
                # read and never published (the outbox full, or the live capture's queue:
                # dissectors.live "analysis-behind")
                "dropped": getattr(acc, "kernel_dropped", 0), "events": self.events,
                "published": self.published,
                "unwalked": dict(getattr(acc, "unwalked", {})),
                "buffered": len(self.outbox),
                "buffer_dropped": self.outbox.dropped + acc.dropped,
                "outages": self.outage.count, "down_since": self.outage.since}

    def _entry(self, fields: dict[str, str]) -> dict[str, str]:
        self._number += 1
        return {"s": self.name, "r": self.run_id, "v": self.vantage, "n": str(self._number),
                **fields}

    def _send(self, batch: list[dict[str, str]], deadline: float | None) -> None:
        from monitor.redisconn import Outage, outlast

        def do() -> None:
            pipe = self.client.pipeline(transaction=False)
            now = repr(time.time())
            for fields in batch:
                pipe.xadd(self.stream, {**fields, "t": now}, maxlen=self.maxlen,
                          approximate=True)
            pipe.execute()

        def failed(outage: Outage) -> None:
            if outage.failures == 1:
                self.log(f"Redis unreachable ({outage.reason}); buffering up to "
                         f"{self.outbox.capacity} events"
                         + ("" if self.outbox.block else ", dropping beyond"))

        outlast(do, self.outage, lambda: deadline is not None and time.monotonic() > deadline,
                failed)
        length = self.outage.ended()
        if length is not None:
            self.log(f"Redis reachable again after {length:.1f} s; {len(self.outbox)} events "
                     f"buffered, {self.outbox.dropped} dropped so far")

    def _publish(self) -> None:
        last_beat = last_status = 0.0
        deadline: float | None = None
        pending: list[dict[str, str]] = []        # numbered entries not yet taken by Redis
        while True:
            if self._capture_done.is_set() and deadline is None:
                deadline = time.monotonic() + FLUSH_SECONDS
            if not pending:
                mark_before = self._last_time
                items = self.outbox.take(BATCH, BEAT_SECONDS)
                pending = [self._entry(fields) for _, fields in items]
                drained = not len(self.outbox)
                now = time.monotonic()
                ending = self._capture_done.is_set() and drained
                if ending or (drained and now - last_beat >= BEAT_SECONDS) \
                        or now - last_status >= STATUS_SECONDS:
                    mark: float | None = None
                    if drained:
                        newest = max([mark_before] + [t for t, _ in items])
                        mark = max(newest, time.time() - self.max_delay) if self.live \
                            else newest
                        mark = None if mark == -float("inf") else mark
                    status = self.status()
                    status["published"] += sum(1 for f in pending if f["k"] == entries.EVENT)
                    pending.append(self._entry(entries.beat_fields(
                        entries.BYE if ending else entries.BEAT, mark, status)))
                    last_beat = last_status = now
            if not pending:
                continue
            from monitor.redisconn import Stopped
            try:
                self._send(pending, deadline)
            except Stopped:
                self.unsent = sum(1 for f in pending if f["k"] == entries.EVENT)
                return
            except Exception as exc:              # not transient (ACL, a key of another type)
                self.error = f"Redis: {exc}".splitlines()[0][:300]
                self.state = "error"
                self.log(self.error)
                self.unsent = sum(1 for f in pending if f["k"] == entries.EVENT)
                self.outbox.close()            # a file's capture thread waits for room no more
                self.stop()
                return
            self.published += sum(1 for f in pending if f["k"] == entries.EVENT)
            if pending[-1]["k"] == entries.BYE:
                self.bye_sent = True
                return
            pending = []


def command_sensor(args: Any) -> int:
    """`mip6mon sensor (-i IFACE | -r CAPTURE) --vantage V --publish URL [--name NAME]`."""
    if args.buffer < 1 or args.maxlen < 1:
        raise UserError("--buffer and --maxlen must be positive")
    if args.max_delay < 0:
        raise UserError("--max-delay must not be negative")
    if args.speed is not None and (args.interface or not args.speed > 0):
        raise UserError("--speed is for a capture file (-r), and positive")
    from monitor.redisconn import check, connect, redact
    client = connect(args.publish)
    check(client, args.publish)
    name = args.name or default_name(args.interface, args.capture)
    digests = Digests()
    from monitor.sources import LiveSource, PcapSource
    if args.interface:
        source: Any = LiveSource(args.interface, bpf=args.bpf, sensor=name, tap=digests)
    else:
        source = PcapSource(args.capture, sensor=name, tap=digests)
    sensor = Sensor(client, source, name=name, vantage=args.vantage, stream=args.stream,
                    maxlen=args.maxlen, buffer=args.buffer, live=bool(args.interface),
                    max_delay=args.max_delay, speed=args.speed, digests=digests)

    def on_signal(_signum: int, _frame: Any) -> None:
        sensor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"mip6mon: sensor {name}: Redis at {redact(args.publish)}", file=sys.stderr,
          flush=True)
    return sensor.run()
