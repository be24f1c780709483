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
from monitor.stream import EventStream
from web.view import PROCEDURES, PacketView

VANTAGES = ("all", "mn-ha", "ha-cn", "mn-cn")
SNAPSHOT_LIST_LIMIT = 100     # newest entries of each table sent per snapshot (totals are sent)


def parse_speed(text: str | float | None) -> float | None:
    """'1', '10', 'max' -> pace multiplier, None for as fast as possible."""
    from monitor.errors import UserError
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
    """Sleeps so events reach the analyzers at `speed` times their capture-time spacing."""
    speed: float | None
    stop: threading.Event
    _origin: tuple[float, float, float] | None = None  # first event time, monotonic, epoch

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


def _tail(items: list, limit: int = SNAPSHOT_LIST_LIMIT) -> list:
    return items[-limit:]


def profile_for_pane(profile: dict) -> dict:
    """A profile as the attacker pane shows it: its frames as a count, its evidence summed per
    rule and confidence. The full lists (every frame of every piece of evidence) made a
    snapshot of 1-2 MB at 10,000 packets, and parsing that every second in the page delayed
    the packet list (issue 5's 250 ms budget); the report export keeps them whole."""
    summary: dict[tuple, dict] = {}
    for ev in profile.get("evidence") or []:
        if not isinstance(ev, dict):
            continue
        key = (ev.get("rule"), ev.get("confidence"), ev.get("links"))
        item = summary.setdefault(key, {"rule": key[0], "confidence": key[1], "links": key[2],
                                        "frame_count": 0, "pieces": 0})
        item["frame_count"] += ev.get("frame_count", len(ev.get("frames") or ()))
        item["pieces"] += 1
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
        self.view = PacketView(max_rows=max_rows)
        # the view goes last: when it sees an event the analyzers have already taken it in
        self.stream = EventStream(source, [keyed, attackers, self.view])
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.state = "starting"
        self.error: str | None = None
        self.rate = RateMeter()
        self._attacker_cache: dict[str, dict] = {}
        self._keyed_cache: dict | None = None
        self.started = time.time()

    # --- the stream thread ---------------------------------------------------------------
    def run(self, gate: threading.Event | None = None) -> None:
        """Feed every event to the addons; with a gate, wait for it first (a paced replay
        starts when the first browser connects, so nobody misses its beginning)."""
        if gate is not None:
            self.state = "waiting for a browser"
            while not gate.wait(0.2):
                if self.stop.is_set():
                    self.state = "stopped"
                    return
        pacer = Pacer(self.speed, self.stop)
        self.state = "running"
        try:
            for event in self.source.events():
                due = pacer.wait(event.time)
                if self.stop.is_set():
                    break
                with self.lock:
                    self.view.due = due
                    self.stream.feed(event)
            self.state = "stopped" if self.stop.is_set() else "done"
        except Exception as exc:                      # shown in the status bar, never a crash
            self.state = "error"
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            try:
                self.source.close()
            except Exception:
                pass
            with self.lock:
                for addon in self.stream.addons:
                    hook = getattr(addon, "done", None)
                    if hook is not None:
                        try:
                            hook()
                        except Exception as exc:
                            self.error = self.error or f"{type(exc).__name__}: {exc}"[:300]

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
        return {"source": self.source.name if hasattr(self.source, "name") else "?",
                "state": self.state, "error": self.error,
                "read": acc.read, "analysed": acc.analysed, "malformed": acc.malformed,
                "filtered": acc.filtered, "dropped": acc.dropped,
                "esp_decrypted": acc.esp_decrypted, "esp_undecrypted": acc.esp_undecrypted,
                "rate": round(self.rate.update(analysed), 1),
                "rows": self.view.total, "evicted": self.view.evicted,
                "speed": "max" if self.speed is None else self.speed,
                "keyed": self.keyed_available}

    def keyed_report(self) -> dict:
        with self.lock:
            report = self.keyed.report()
        return report

    def _truth(self) -> tuple[dict, dict]:
        """The keyed truth privacy_score needs, copied under the lock as plain dicts."""
        with self.lock:
            nodes = dict(self.keyed.frame_nodes()) if hasattr(self.keyed, "frame_nodes") else {}
            trails = dict(self.keyed.care_of_trails()) if hasattr(self.keyed, "care_of_trails") else {}
        return nodes, trails

    def _attacker(self, vantage: str) -> tuple[dict, dict]:
        return self.attackers.report(vantage, *self._truth())

    def attacker_report(self, vantage: str) -> dict:
        return self._attacker(vantage)[0]

    def privacy(self, vantage: str) -> dict:
        return self._attacker(vantage)[1]

    def full_report(self, vantage: str = "all") -> dict:
        """The same sections as `mip6mon report --format json`, for the export button."""
        acc = self.stream.accounting
        report = {"capture": {"source": self.source.name if hasattr(self.source, "name") else "",
                              "packets": acc.read, "mobility_packets": acc.analysed + acc.malformed,
                              "malformed": acc.malformed, "filtered": acc.filtered,
                              "dropped": acc.dropped, "esp_decrypted": acc.esp_decrypted,
                              "esp_undecrypted": acc.esp_undecrypted}}
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

    def _attacker_state(self, vantage: str) -> dict:
        """Attacker report + privacy score, recomputed only when new packets came, and not more
        often than its cost allows (the worker process shares the CPU with the stream)."""
        cached = self._attacker_cache.get(vantage)
        seen = self.view.total
        now = time.monotonic()
        if cached is not None and (cached["seen"] == seen or now < cached["next"]):
            return cached["state"]
        started = time.monotonic()
        report, privacy = self._attacker(vantage)
        profiles = report.get("profiles", [])
        state = {"attacker": {"vantage": report.get("vantage", vantage),
                              "profiles": [profile_for_pane(p) for p in _tail(profiles)],
                              "profiles_total": len(profiles),
                              "packets_seen": report.get("packets_seen")},
                 "privacy": privacy}
        cost = time.monotonic() - started
        self._attacker_cache[vantage] = {"seen": seen, "next": now + max(1.0, 4 * cost),
                                         "state": state}
        return state

    def _keyed_state(self) -> dict:
        seen = self.view.total
        now = time.monotonic()
        cached = self._keyed_cache
        if cached is not None and (cached["seen"] == seen or now < cached["next"]):
            return cached["state"]
        started = time.monotonic()
        with self.lock:
            keyed = self.keyed.report()
            trails = self.keyed.care_of_trails() if hasattr(self.keyed, "care_of_trails") else {}
        home = keyed.get("home_bindings", [])
        corr = keyed.get("correspondent_bindings", [])
        findings = keyed.get("findings", [])
        state = {"keyed": {"home_bindings": _tail(home), "home_total": len(home),
                           "correspondent_bindings": _tail(corr), "correspondent_total": len(corr),
                           "findings": _tail(findings), "findings_total": len(findings)},
                 # the newest 200 moves of each node: the plot's story, at a bounded cost
                 "trails": {hoa: [[t, coa, frame] for (t, coa, frame) in _tail(points, 200)]
                            for hoa, points in trails.items()}}
        cost = time.monotonic() - started
        # the keyed report is read under the stream's lock: keep that under ~10 % of the time
        self._keyed_cache = {"seen": seen, "next": now + max(0.4, 10 * cost), "state": state}
        return state

    def snapshot(self, vantage: str) -> dict:
        """Keyed and attacker state for the panes; lists capped to their newest entries."""
        snap = {"status": self.status(), "names": self.names, "procedures": PROCEDURES}
        snap.update(self._keyed_state())
        snap.update(self._attacker_state(vantage))
        return snap

    def event(self, frame: int) -> PacketEvent | None:
        return self.view.event(frame)
