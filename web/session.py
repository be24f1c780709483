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
SNAPSHOT_LIST_LIMIT = 500     # newest entries of each table sent per snapshot (totals are sent)


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
    _origin: tuple[float, float] | None = None    # (first event time, wall clock then)

    def wait(self, event_time: float) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (event_time, time.monotonic())
            return
        due = self._origin[1] + (event_time - self._origin[0]) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)


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


class MonitorSession:
    """Source + analyzers + the packet view; `run()` in a background thread."""

    def __init__(self, source, keyring=None, speed: float | None = None,
                 capture_path: str | None = None, keyed=None, attackers=None,
                 max_rows: int = 100_000):
        if keyed is None:
            from monitor.keyed import KeyedAnalyzer
            keyed = KeyedAnalyzer(keyring)
        if attackers is None:
            from monitor.attacker import AttackerAnalyzer
            attackers = {v: AttackerAnalyzer(v) for v in VANTAGES}
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
        self.stream = EventStream(source, [keyed, *attackers.values(), self.view])
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.state = "starting"
        self.error: str | None = None
        self.rate = RateMeter()
        self.started = time.time()

    # --- the stream thread ---------------------------------------------------------------
    def run(self) -> None:
        pacer = Pacer(self.speed, self.stop)
        self.state = "running"
        try:
            for event in self.source.events():
                pacer.wait(event.time)
                if self.stop.is_set():
                    break
                with self.lock:
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
        try:
            self.source.close()
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

    def attacker_report(self, vantage: str) -> dict:
        attacker = self.attackers.get(vantage) or self.attackers["all"]
        with self.lock:
            return attacker.report()

    def privacy(self, vantage: str) -> dict:
        from monitor.privacy import privacy_score
        attacker = self.attackers.get(vantage) or self.attackers["all"]
        with self.lock:
            return privacy_score(attacker, self.keyed)

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

    def snapshot(self, vantage: str) -> dict:
        """Keyed and attacker state for the panes; lists capped to their newest entries."""
        with self.lock:
            keyed = self.keyed.report()
            trails = self.keyed.care_of_trails() if hasattr(self.keyed, "care_of_trails") else {}
        attacker = self.attacker_report(vantage)
        try:
            privacy = self.privacy(vantage)
        except Exception as exc:
            privacy = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        home = keyed.get("home_bindings", [])
        corr = keyed.get("correspondent_bindings", [])
        findings = keyed.get("findings", [])
        profiles = attacker.get("profiles", [])
        return {
            "status": self.status(),
            "names": self.names,
            "procedures": PROCEDURES,
            "keyed": {"home_bindings": _tail(home), "home_total": len(home),
                      "correspondent_bindings": _tail(corr), "correspondent_total": len(corr),
                      "findings": _tail(findings), "findings_total": len(findings)},
            "trails": {hoa: [[t, coa, frame] for (t, coa, frame) in _tail(points, 2000)]
                       for hoa, points in trails.items()},
            "attacker": {"vantage": attacker.get("vantage", vantage),
                         "profiles": _tail(profiles), "profiles_total": len(profiles)},
            "privacy": privacy,
        }

    def event(self, frame: int) -> PacketEvent | None:
        return self.view.event(frame)
