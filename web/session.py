"""One monitoring session: a source, the analyzers on its stream, pacing, and snapshots.

The stream runs in one background thread; the web threads read the analyzers only under
`self.lock`, which the stream holds while it feeds one event, so a snapshot never sees an
analyzer half-way through a packet.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from dissectors.events import PacketEvent
from keys.errors import UserError
from monitor.keyed import KeyedMark
from monitor.report import MessageCounter, capture_section
from monitor.stream import EventStream
from web.panes import CARE_OF_TRAILS, PROFILES, fed_by, layout
from web.view import PACKET_CLASSES, PacketView

# what a snapshot carries of each list: what its panes keep (web.panes), the totals besides
KEYED_ROWS = max(pane.rows for pane in fed_by("keyed") if pane.kind != "plot")
TRAIL_POINTS = CARE_OF_TRAILS.rows          # newest care-of points per node
PROFILE_ROWS = PROFILES.rows                # newest attacker profiles
UNRESOLVED_WINDOW = 2000      # newest frames not tied to a node yet, retried each second
LATE_NODES_KEPT = 50_000      # late node labels kept for browsers that connect later


@dataclass
class PaneCursor:
    """What one browser has had of the panes, so each refresh carries only what is new."""
    keyed: KeyedMark | None = None
    late_nodes: int = 0
    attacker: tuple | None = None     # (vantage, version) of the attacker state last sent
    first: bool = True


def parse_speed(text: str | float | None) -> float | None:
    """'1', '10', 'max' -> pace multiplier, None for as fast as possible."""
    if text is None or str(text).strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise UserError(f"--speed must be 1, 10 or max, not {text!r}") from None
    if not speed > 0:
        raise UserError(f"--speed must be positive, not {text!r}")
    return speed


@dataclass
class Pacer:
    """Addon (the stream's `pace` hook, outside its lock): sleeps so events reach the analyzers
    at `speed` times their capture-time spacing, and keeps when the current one was due."""
    speed: float | None
    stop: threading.Event
    _origin: tuple[float, float, float] | None = None  # first event time, monotonic, epoch
    due: float | None = None      # epoch ms the current event was due (PacketView stamps rows)

    def pace(self, event: PacketEvent) -> None:
        self.due = self.wait(event.time)

    def wait(self, event_time: float) -> float:
        """Sleep until the event is due; return when it was due (epoch ms): the moment the
        event 'happens' in the replay, from which the dashboard's latency is measured."""
        if self.speed is None:
            return time.time() * 1000.0
        if self._origin is None:
            self._origin = (event_time, time.monotonic(), time.time())
        offset = max(0.0, event_time - self._origin[0]) / self.speed
        delay = self._origin[1] + offset - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)
        return (self._origin[2] + offset) * 1000.0


@dataclass
class RateMeter:
    """Packets per second over the last few seconds, for the status bar."""
    window: float = 3.0
    samples: deque = field(default_factory=deque)

    def update(self, count: int) -> float:
        now = time.monotonic()
        self.samples.append((now, count))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _tail(items: list, limit: int = PROFILE_ROWS) -> list:
    return items[-limit:]


def profile_for_pane(profile: dict) -> dict:
    """A profile as the attacker pane shows it: its frames as a count, its evidence summed per
    rule and whether it links, with the weakest link's confidence and the strongest competitor
    the links ruled out (its profile and probability); the anonymity set as the report has it.
    The full lists (every frame and candidate of every piece of evidence) made a snapshot of
    1-2 MB at 10,000 packets, and parsing that every second in the page delayed the packet list
    (issue 5's 250 ms budget); the report export keeps them whole."""
    summary: dict[tuple, dict] = {}
    for ev in profile.get("evidence") or []:
        if not isinstance(ev, dict):
            continue
        links = bool(ev.get("links"))
        item = summary.setdefault((ev.get("rule"), links), {
            "rule": ev.get("rule"), "links": links, "confidence": ev.get("confidence"),
            "frame_count": 0, "pieces": 0, "over": None})
        item["frame_count"] += ev.get("frame_count", len(ev.get("frames") or ()))
        item["pieces"] += 1
        conf = ev.get("confidence")
        if isinstance(conf, (int, float)) and isinstance(item["confidence"], (int, float)):
            # links: the weakest; evidence that did not link: the strongest
            item["confidence"] = min(item["confidence"], conf) if links else \
                max(item["confidence"], conf)
        for c in ev.get("candidates") or ():
            if links and isinstance(c, dict) and not c.get("chosen") and \
                    (item["over"] is None or c.get("probability", 0) > item["over"]["probability"]):
                item["over"] = {"profile": c.get("profile"), "probability": c.get("probability", 0)}
    frames = profile.get("frames")
    return dict(profile, frames=len(frames) if isinstance(frames, list) else frames,
                evidence=list(summary.values()))


class MonitorSession:
    """Source + analyzers + the packet view; `run()` in a background thread."""

    def __init__(self, source, keyring=None, speed: float | None = None,
                 capture_path: str | None = None, keyed=None, attackers=None,
                 max_rows: int = 100_000):
        if keyed is None:
            from monitor.keyed import KeyedAnalyzer
            keyed = KeyedAnalyzer(keyring)
        if attackers is None:
            # the four vantage points' eavesdroppers, in a worker process (attacker_worker.py)
            from web.attacker_worker import AttackerWorker
            attackers = AttackerWorker()
        self.source = source
        self.keyed_available = keyring is not None
        # home address -> node name, for display only (names and addresses are not key material)
        self.names = {mn.home_address: mn.name
                      for mn in (getattr(keyring, "mobile_nodes", None) or [])}
        self.speed = speed
        self.capture_path = capture_path
        self.keyed = keyed
        self.attackers = attackers
        self._unresolved: deque[int] = deque(maxlen=UNRESOLVED_WINDOW)
        self._late_nodes: list[list] = []      # [frame, home address], in the order learnt
        self._late_base = 0                    # late labels dropped from the front
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.pacer = Pacer(speed, self.stop)
        self.view = PacketView(max_rows=max_rows,
                               node_of=self._node_of if keyring is not None else None,
                               pacer=self.pacer)
        # the pacer first (it waits outside the lock), the view last: when it sees an event
        # the analyzers have already taken it in
        self.messages = MessageCounter()       # the report's message counts (report.json)
        self.stream = EventStream(source, [self.pacer, keyed, attackers, self.messages,
                                           self.view])
        self.state = "starting"
        self.error: str | None = None
        self.rate = RateMeter()
        self._attacker_cache: dict[str, dict] = {}
        self._attacker_version = 0
        self._attacker_lock = threading.Lock()
        self.started = time.time()

    # --- the stream thread ---------------------------------------------------------------
    def run(self, gate: threading.Event | None = None) -> None:
        """The stream (monitor.stream.EventStream.run, under this session's lock, paced by
        `self.pacer`); with a gate, wait for it first (a paced replay starts when the first
        browser has built its panes, so nobody misses its beginning)."""
        if gate is not None:
            self.state = "waiting for a browser"
            while not gate.wait(0.2):
                if self.stop.is_set():
                    self.state = "stopped"
                    return
        self.state = "running"
        try:
            self.stream.run(self.stop, self.lock)
            incomplete = getattr(self.stream.accounting, "incomplete", None)
            if incomplete and not self.stop.is_set():
                # a capture not read to its end is a failure, never "done" (issue 13)
                self.state, self.error = "error", incomplete
            else:
                self.state = "stopped" if self.stop.is_set() else "done"
        except Exception as exc:                      # shown in the status bar, never a crash
            self.state = "error"
            # a UserError is already the one line a user reads; anything else says its type
            text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.error = text.splitlines()[0][:300]

    def close(self) -> None:
        """Stop the stream; closing the source here too ends its tshark even when the stream
        thread is blocked waiting for tshark's next line."""
        self.stop.set()
        for part in (self.source, self.attackers):
            try:
                part.close()
            except Exception:
                pass

    # --- what the browser sees -----------------------------------------------------------
    def status(self) -> dict:
        acc = self.stream.accounting
        analysed = acc.analysed + acc.malformed
        state, error = self.state, self.error
        # `running` only while packets can be analysed: a live capture in a gap (dumpcap
        # being restarted, the interface down) is `recovering`, with why (issue 12)
        recovering = getattr(self.source, "recovering", None)
        if state == "running" and recovering:
            state, error = "recovering", recovering
        # and a live capture is `starting` until dumpcap captures (its filter checked, the
        # capture child forked, dumpcap started): packets sent before then are not seen
        ready = getattr(self.source, "ready", None)
        if state == "running" and ready is not None and not ready.is_set():
            state = "starting"
        status = {"source": self.source.name if hasattr(self.source, "name") else "?",
                  "state": state, "error": error,
                  "read": acc.read, "analysed": acc.analysed, "malformed": acc.malformed,
                  "filtered": acc.filtered,
                  # frames never analysed, with why: read and dropped (dropped_reasons), and
                  # dropped by the kernel before dumpcap could read them
                  "dropped": acc.dropped + acc.kernel_dropped,
                  "dropped_reasons": dict(acc.dropped_reasons,
                                          **({"kernel": acc.kernel_dropped}
                                             if acc.kernel_dropped else {})),
                  "esp_decrypted": acc.esp_decrypted, "esp_undecrypted": acc.esp_undecrypted,
                  "rate": round(self.rate.update(analysed), 1),
                  "rows": self.view.total, "evicted": self.view.evicted,
                  "speed": "max" if self.speed is None else self.speed,
                  "keyed": self.keyed_available}
        supervision = getattr(self.source, "supervision", None)
        supervised = supervision() if supervision is not None else None
        if supervised is not None:         # a live capture: dumpcap's restarts and the gaps
            status["supervision"] = supervised
        return status

    def keyed_report(self) -> dict:
        with self.lock:
            report = self.keyed.report()
        return report

    def _truth(self) -> tuple[dict, dict]:
        """The keyed truth privacy_score needs, copied under the lock as plain dicts. None
        without a keyring, as in `report` (monitor.privacy: what the keyed analyzer knows then
        is what the attacker knows, and scoring against it would flatter the attacker)."""
        if not self.keyed_available:
            return {}, {}
        with self.lock:
            nodes = dict(self.keyed.frame_nodes()) if hasattr(self.keyed, "frame_nodes") else {}
            trails = (dict(self.keyed.care_of_trails())
                      if hasattr(self.keyed, "care_of_trails") else {})
        return nodes, trails

    def _attacker(self, vantage: str) -> tuple[dict, dict]:
        return self.attackers.report(vantage, *self._truth())

    def attacker_report(self, vantage: str) -> dict:
        return self._attacker(vantage)[0]

    def privacy(self, vantage: str) -> dict:
        return self._attacker(vantage)[1]

    def full_report(self, vantage: str = "all") -> dict:
        """The same sections as `mip6mon report --format json`, for the export button."""
        with self.lock:
            capture = capture_section(self.stream.accounting)
            messages = self.messages.as_dict()
        report = {"capture": {"source": getattr(self.source, "name", ""), **capture},
                  "messages": messages}
        report.update(self.keyed_report())
        report["attacker"] = self.attacker_report(vantage)
        report["privacy"] = self.privacy(vantage)
        return report

    def annotations(self, frame: int) -> list[str]:
        with self.lock:
            try:
                return [str(a) for a in self.keyed.annotations(frame)]
            except Exception:
                return []

    def frame_nodes(self) -> dict[int, str]:
        """Frame -> real home address it belongs to (keyed truth), for the node quick filter."""
        with self.lock:
            nodes = self.keyed.frame_nodes() if hasattr(self.keyed, "frame_nodes") else {}
        return {int(f): n for f, n in nodes.items() if n}

    # --- the panes: one refresh per browser per second, carrying only what is new ---------
    def refresh_attacker(self, vantage: str) -> dict:
        """Recompute one vantage's attacker report and score if packets came since, and not
        more often than its cost allows (the worker shares the CPU with the stream); called
        from the dashboard's attacker thread, so a slow analysis delays no snapshot."""
        with self._attacker_lock:
            cached = self._attacker_cache.get(vantage)
            seen = self.view.total
            now = time.monotonic()
            # no packet since: still recomputed while decisions wait (a live attacker's clock
            # goes on without traffic: monitor.attacker advance)
            if cached is not None and ((cached["seen"] == seen and not cached["waiting"])
                                       or now < cached["next"]):
                return cached
            return self._refresh_attacker(vantage, seen, now)

    def _refresh_attacker(self, vantage: str, seen: int, now: float) -> dict:
        started = time.monotonic()
        try:
            report, privacy = self._attacker(vantage)
        except Exception as exc:                     # shown in the pane, never a dead thread
            report = {"vantage": vantage, "profiles": []}
            privacy = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
        profiles = report.get("profiles", [])
        state = {"attacker": {"vantage": report.get("vantage", vantage),
                              "profiles": [profile_for_pane(p) for p in _tail(profiles)],
                              "profiles_total": len(profiles),
                              "packets_seen": report.get("packets_seen"),
                              "window": report.get("window"),
                              "forgotten": report.get("forgotten", 0)},
                 "privacy": privacy}
        cost = time.monotonic() - started
        self._attacker_version += 1
        cached = {"seen": seen, "next": now + max(1.0, 4 * cost), "state": state,
                  "version": self._attacker_version, "waiting": report.get("waiting", 0)}
        self._attacker_cache[vantage] = cached
        return cached

    def attacker_versions(self) -> dict[str, int]:
        return {v: c["version"] for v, c in list(self._attacker_cache.items())}

    def _node_of(self, frame: int) -> str | None:
        """PacketView's label for a row (the stream thread, under the lock): the node the keys
        tie the frame to now; frames not tied yet are tried again later (resolve_late)."""
        node = self.keyed.frame_node(frame)
        if node is None:
            self._unresolved.append(frame)
        return node

    def resolve_late(self) -> None:
        """Frames tied to a node only after their row was sent (a CoTI before its BU, ESP of
        an SA whose SPI showed up later): logged for every browser's node quick filter. Only
        the newest UNRESOLVED_WINDOW frames are retried, so the cost stays flat."""
        with self.lock:
            still = deque(maxlen=UNRESOLVED_WINDOW)
            for frame in self._unresolved:
                node = self.keyed.frame_node(frame)
                if node is None:
                    still.append(frame)
                else:
                    self._late_nodes.append([frame, node])
            self._unresolved = still
            if len(self._late_nodes) > 2 * LATE_NODES_KEPT:
                drop = len(self._late_nodes) - LATE_NODES_KEPT
                del self._late_nodes[:drop]
                self._late_base += drop

    def pane_update(self, cursor: PaneCursor, vantage: str) -> dict:
        """What one browser needs for its panes since `cursor` (updated here): the status
        always; the panes' layout (web.panes) and the names of packet classes and nodes once;
        the keyed tables' new rows, trail points and late node labels (KeyedAnalyzer.news:
        costs what is new, not what was seen); the
        attacker pane only when its state changed. A whole report every second cost more
        each second and held the stream's lock (issue 5's 250 ms budget)."""
        snap: dict = {"status": self.status()}
        if cursor.first:
            # what the page builds itself from (web.panes), and the names it shows
            snap.update(panes=layout(), packet_classes=PACKET_CLASSES, names=self.names)
        with self.lock:
            keyed, cursor.keyed = self.keyed.news(cursor.keyed, KEYED_ROWS, TRAIL_POINTS)
            late = self._late_nodes[max(0, cursor.late_nodes - self._late_base):]
            cursor.late_nodes = self._late_base + len(self._late_nodes)
        snap["trails"] = keyed.pop("trails")
        snap["keyed"] = keyed
        snap["late_nodes"] = late
        cached = self._attacker_cache.get(vantage)
        if cached is None and cursor.first:
            cached = self.refresh_attacker(vantage)
        if cached is not None and cursor.attacker != (vantage, cached["version"]):
            snap.update(cached["state"])
            cursor.attacker = (vantage, cached["version"])
        cursor.first = False
        return snap

    def snapshot(self, vantage: str) -> dict:
        """Both panes whole (the newest entries of each list), for /api/snapshot."""
        self.refresh_attacker(vantage)
        snap = self.pane_update(PaneCursor(), vantage)
        snap["frame_nodes"] = {str(f): n for f, n in self.frame_nodes().items()}
        return snap

    def event(self, frame: int) -> PacketEvent | None:
        return self.view.event(frame)
