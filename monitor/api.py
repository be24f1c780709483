"""mip6mon from a pyshark script: feed your own FileCapture / LiveCapture packets into the keyed
and attacker analyzers and get the report `mip6mon report --format json` prints (issue 15).

    import pyshark
    from monitor.api import PYSHARK_OPTIONS, Monitor
    capture = pyshark.FileCapture("capture.pcapng", **PYSHARK_OPTIONS)
    report = Monitor(keys="keyring.toml").feed(capture).report()
    print(report["privacy"])

Open captures with PYSHARK_OPTIONS (JSON with raw values: what the conversion reads,
dissectors.pyshark_packets); a capture opened otherwise is refused with a ValueError that says
so. Every packet fed is counted (`report()["capture"]`): analysed, filtered (not mobility
traffic: MOBILITY_FILTER, judged on tshark's fields) or malformed. A display filter of your own
is yours: the packets tshark left out were never fed, and are not counted.

pyshark run in the main thread installs asyncio's SafeChildWatcher, whose SIGCHLD handler then
fires for every child process your script starts; `eventloop=event_loop()` (from
dissectors.pyshark_engine, the loop mip6mon's own captures use) keeps it out.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.pyshark_engine import PYSHARK_OPTIONS, packet_events, watch_children
from keys.keyring import Keyring, load_keyring
from monitor.attacker import AttackerAnalyzer
from monitor.keyed import KeyedAnalyzer
from monitor.report import Analysis, MessageCounter, build_report, render_text
from monitor.sources import decrypted
from monitor.stream import EventStream

__all__ = ["PYSHARK_OPTIONS", "Monitor"]


class _Fed:
    """The stream's source: the packets the script feeds (monitor.stream.Source)."""
    name = "pyshark"

    def __init__(self) -> None:
        self.accounting = Accounting()

    def events(self) -> Iterator[PacketEvent]:
        return iter(())

    def close(self) -> None:
        pass


class Monitor:
    """The keyed analyzer (with `keys`: a keyring file or a loaded Keyring) and the attacker
    at `vantage` ("all", or one path or set of paths: monitor.placement.VANTAGES) over the
    packets fed, in the order fed."""

    def __init__(self, keys: str | Path | Keyring | None = None, vantage: str = "all",
                 sensor: str = "", allow_insecure_keyring: bool = False):
        if isinstance(keys, (str, Path)):
            keys = load_keyring(str(keys), allow_insecure_keyring)
        self.keyring: Keyring | None = keys
        self.sensor = sensor
        self.messages = MessageCounter()
        self.keyed = KeyedAnalyzer(self.keyring)
        self.attacker = AttackerAnalyzer(vantage)
        self._source = _Fed()
        self._stream = EventStream(self._source, [self.messages, self.keyed, self.attacker])
        self._finished = False

    @property
    def accounting(self) -> Accounting:
        return self._source.accounting

    def events(self, packets: Iterable[Any]) -> Iterator[PacketEvent]:
        """Each mobility packet's event, after the analyzers have seen it."""
        if self._finished:
            raise RuntimeError("report() was called: feed a new Monitor")
        watch_children()        # before the capture starts its tshark (pyshark's own watcher races)
        for event in decrypted(packet_events(packets, self.accounting, self.sensor),
                               self.keyring):
            self._stream.feed(event)
            yield event

    def feed(self, packets: Iterable[Any]) -> Monitor:
        """Analyse pyshark packets (a capture, or any iterable of its packets)."""
        for _ in self.events(packets):
            pass
        return self

    def report(self) -> dict[str, Any]:
        """The report of everything fed (the JSON `mip6mon report` prints); the analyzers
        are finished by the first call."""
        if not self._finished:
            self._finished = True
            for addon in self._stream.addons:
                done = getattr(addon, "done", None)
                if done is not None:
                    done()
        return build_report(Analysis(self.accounting, self.messages, self.keyed,
                                     self.attacker))

    def text(self) -> str:
        """The report as `mip6mon report --format text` prints it."""
        return render_text(self.report())
