"""The dissection engines behind `--engine` on report, replay and live (issue 15).

- `walk` (default): dissectors.dissect reads the capture's records and walks their octets in
  Python (no tshark: the fast path, benchmarks/bench_engines.py);
- `pyshark`: pyshark drives tshark and each packet's dissected fields become the same event
  (dissectors.pyshark_engine); the tests hold both equal on every lab scenario and every
  shared capture.

Both give a capture source with the interface of monitor.stream.Source, the keyed stage
(monitor.sources.decrypted) behind it, and `fraction()` for progress bars (files).
"""
from __future__ import annotations

from collections.abc import Iterator

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.progress import Probe
from keys.keyring import Keyring
from monitor.sources import LiveSource, PcapSource, decrypted

ENGINES = ("walk", "pyshark")
DEFAULT_ENGINE = "walk"
ENGINE_HELP = ("dissection engine: walk (default, Python on the capture's octets, faster) or "
               "pyshark (tshark's fields through pyshark)")


class PysharkPcapSource:
    """Events from a pcap / pcapng file through pyshark (UserError at construction for a
    missing file or one that is not a capture, as PcapSource)."""

    read_ahead = True    # a file: every event is there already (monitor.stream.Source)

    def __init__(self, path: str, keyring: Keyring | None = None, sensor: str = ""):
        from dissectors.pyshark_engine import PysharkFile  # imports pyshark: only when used
        self.path = str(path)
        self.name = self.path
        self.keyring = keyring
        self.accounting = Accounting()
        self._file = PysharkFile(self.path, self.accounting, sensor)

    def events(self) -> Iterator[PacketEvent]:
        return decrypted(self._file.events(), self.keyring)

    def fraction(self) -> float | None:
        return self._file.fraction()

    def close(self) -> None:
        self._file.close()


class PysharkLiveSource(LiveSource):
    """Events from a live interface through pyshark's LiveCapture: the same checks as
    LiveSource (interface, capture filter) before anything starts."""

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = ""):
        from dissectors.pyshark_engine import PysharkLive
        super().__init__(interface, keyring, bpf, sensor)
        self._capture = PysharkLive(interface, self.accounting, self.bpf, sensor)  # type: ignore

    def start(self) -> None:
        """pyshark starts tshark (and its dumpcap) when the first packet is asked for."""

    @property
    def pid(self) -> int | None:
        return None


def source_probe(source: PcapSource | PysharkPcapSource | LiveSource) -> Probe:
    """What a progress bar shows of a pass over `source`: frames read, fraction of the file."""
    def probe() -> tuple[int, float | None]:
        fraction = getattr(source, "fraction", None)
        return source.accounting.read, fraction() if fraction is not None else None
    return probe


def pcap_source(path: str, keyring: Keyring | None = None, engine: str = DEFAULT_ENGINE,
                sensor: str = "") -> PcapSource | PysharkPcapSource:
    if engine == "pyshark":
        return PysharkPcapSource(path, keyring, sensor)
    return PcapSource(path, keyring=keyring, sensor=sensor)


def live_source(interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                engine: str = DEFAULT_ENGINE, sensor: str = "") -> LiveSource:
    if engine == "pyshark":
        return PysharkLiveSource(interface, keyring, bpf, sensor)
    return LiveSource(interface, keyring=keyring, bpf=bpf, sensor=sensor)
