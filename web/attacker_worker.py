"""The attacker analyzers in a worker process, fed incrementally, asked for reports on demand.

monitor.attacker takes each event once (its linker keeps bounded indexes), but four vantage
points' linking and a report of every profile still cost CPU that the dashboard process needs
for the packet list (issue 5's 250 ms budget). Here one worker process (at a lower scheduling
priority) holds an AttackerAnalyzer per vantage point; the dashboard sends it the new events in
batches (PacketEvents are plain frozen dataclasses and pickle as they are; the attacker never
gets a key), tells it when the capture ends (so a replay's pane equals `mip6mon report`), and
asks it for one vantage's report and privacy score when a browser needs them. The keyed truth
for the score (frame -> node, care-of trails) travels as plain dicts.

Routed (`mip6mon serve`, many sensors): the sensors say where each packet was seen, so the
eavesdropper at a vantage point is fed only what sensors at that point saw (`route(event)`
names the vantage points of each event, `observe_at` adds another point's own observation of
a packet already fed) and analyses all of it, placing nothing by address; colluders ("all")
see every sensor.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable

from dissectors.events import PacketEvent
from dissectors.supervisor import spawn_function
from monitor.placement import VANTAGES

FEED_SECONDS = 0.25      # new events go to the worker this often, in small batches
FEED_BATCH = 256         # events per message at most
# Live (a window): events a starved worker has not taken, at most, in the dashboard's process
# (about 750 bytes each): at 2,000 packets/s twice a 30,000-packet window held 45 MB there
PENDING_MAX = 8_192


def idle_priority() -> None:
    """Run only on CPU time nobody else wants (Linux SCHED_IDLE; else the lowest nice): the
    attacker must never delay the packet list (issue 5's 250 ms budget). With a nice of 10 it
    still took its share of two busy cores."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


def _worker(conn, parent_end, window: int | None = None, routed: bool = False) -> None:
    parent_end.close()                   # fork copied it: without this, recv() never sees EOF
    idle_priority()                      # rows before profiles: the stream keeps the CPU
    from monitor.attacker import AttackerAnalyzer
    from monitor.privacy import privacy_score
    from monitor.report_attacker import KeyedTruth
    # routed: the sensors' labels decide what each one sees, so none filters by placement
    attackers = {v: AttackerAnalyzer("all" if routed else v, max_packets=window)
                 for v in VANTAGES}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "feed":
            for event in message[1]:
                for attacker in attackers.values():
                    attacker.packet(event)
        elif kind == "feed-routed":
            for targets, event in message[1]:
                for vantage in targets:
                    attackers[vantage].packet(event)
        elif kind == "done":
            for attacker in attackers.values():
                attacker.done()            # the decisions still waiting are made now
        elif kind == "report":
            _, vantage, nodes, trails = message
            try:
                attacker = attackers[vantage]
                if window is not None:
                    # live (a windowed worker): capture time is the wall clock, and goes on
                    # while the traffic pauses; without this the last packets would wait
                    # for the next one to be placed and decided
                    attacker.advance(time.time())
                report = attacker.report()
                report["vantage"] = vantage
                try:
                    privacy = privacy_score(attacker, KeyedTruth(True, nodes, trails))
                except Exception as exc:
                    privacy = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                conn.send(("ok", report, privacy))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"[:300], None))
        elif kind == "stop":
            return


class AttackerWorker:
    """Addon on the stream (hook packet) + client of the worker process."""

    def __init__(self, window: int | None = None,
                 route: Callable[[PacketEvent], tuple[str, ...]] | None = None):
        """`window`: each vantage point's analyzer keeps only the newest `window` packets
        (monitor.attacker max_packets; for live capture); None keeps all. `route`: the
        vantage points that see each event (module docstring); None: every one, placed by
        address."""
        # fork, not spawn: spawn re-runs the caller's __main__, which a script may not guard.
        # The session makes this object before any server thread exists.
        # Started by dissectors.supervisor like every child: its own process group, dies with
        # this process, stopped and reaped at exit.
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.route = route
        self._proc = spawn_function("attacker", _worker,
                                    (child, self._conn, window, route is not None))
        child.close()
        self.window = window
        self._pending_max = min(2 * window, PENDING_MAX) if window is not None else 0
        self.shed = 0              # events never sent to a starved worker (window only)
        self._pending: list[PacketEvent] = []
        self._pending_lock = threading.Lock()
        self._pipe_lock = threading.Lock()
        self.seen = 0
        # A feeder thread sends the events a few hundred at a time, so pickling them is
        # spread out (a report used to send thousands at once and hold the GIL from the
        # stream for tens of ms), and a worker slow to read never blocks the stream thread.
        self._stopping = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="mip6mon-attacker-feed",
                                        daemon=True)
        self._feeder.start()

    # addon hooks (the stream thread)
    def packet(self, event: PacketEvent) -> None:
        item = event if self.route is None else (self.route(event), event)
        with self._pending_lock:
            self._pending.append(item)
            self.seen += 1
            if self.window is not None and len(self._pending) > self._pending_max:
                # the worker is starved (it runs only on idle CPU): what it has not taken
                # would leave its window anyway; shed it here, counted, not in memory
                drop = len(self._pending) - self._pending_max // 2
                del self._pending[:drop]
                self.shed += drop

    def observe_at(self, vantage: str, event: PacketEvent) -> None:
        """Routed: the eavesdropper at `vantage` also saw this packet (its own observation,
        under the frame number the packet already has)."""
        with self._pending_lock:
            self._pending.append(((vantage,), event))

    def done(self) -> None:
        """End of the capture: what is pending, then "done" (the analyzers place what waits
        and make the decisions still waiting for competing candidates)."""
        with self._pipe_lock:
            self._flush()
            self._send(("done",))

    # the dashboard's threads
    def _send(self, message) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError, BrokenPipeError):
            pass

    def _feed(self) -> None:
        while not self._stopping.wait(FEED_SECONDS):
            with self._pipe_lock:
                self._flush()

    def _flush(self) -> None:
        """Send what is pending (the caller holds the pipe lock: messages keep their order)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        kind = "feed" if self.route is None else "feed-routed"
        for start in range(0, len(batch), FEED_BATCH):
            self._send((kind, batch[start:start + FEED_BATCH]))

    def report(self, vantage: str, frame_nodes: dict, trails: dict) -> tuple[dict, dict]:
        """(attacker report, privacy score) for one vantage point, over every event so far."""
        if vantage not in VANTAGES:
            vantage = "all"
        with self._pipe_lock:
            self._flush()
            try:
                self._conn.send(("report", vantage, frame_nodes, trails))
                status, report, privacy = self._conn.recv()
            except (OSError, EOFError, ValueError):
                return ({"vantage": vantage, "profiles": []},
                        {"error": "the attacker analysis process is not running"})
        if status != "ok":
            return {"vantage": vantage, "profiles": []}, {"error": report}
        if self.shed:
            report["forgotten"] = report.get("forgotten", 0) + self.shed
        return report, privacy

    def close(self) -> None:
        self._stopping.set()
        with self._pipe_lock:
            self._send(("stop",))
        if self._proc.wait(2) is None:
            self._proc.stop(grace=1.0)
        self._proc.stop()                  # reaped, and off the list stopped at exit
        self._conn.close()
