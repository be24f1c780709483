"""Capture sources behind one interface (DESIGN.md, ROADMAP 1): a pcap file or a live
interface. Each has `.name`, `.accounting`, `.events()` and `.close()`; the dissection itself
is dissectors.tshark's job."""
from __future__ import annotations

from typing import Iterator

from dissectors.events import PacketEvent
from dissectors.tshark import DEFAULT_BPF, TsharkFile, TsharkLive
from keys.keyring import Keyring
from monitor.stream import Accounting

__all__ = ["PcapSource", "LiveSource", "DEFAULT_BPF"]


class PcapSource:
    """Events from a pcap / pcapng file. Raises UserError (one line) at construction for a
    missing file or one that is not a capture."""

    def __init__(self, path: str, keyring: Keyring | None = None, sensor: str = ""):
        self.path = str(path)
        self.name = self.path
        self.accounting = Accounting()
        self._tshark = TsharkFile(self.path, keyring, sensor=sensor, accounting=self.accounting)

    def events(self) -> Iterator[PacketEvent]:
        return self._tshark.events()

    def close(self) -> None:
        self._tshark.close()


class LiveSource:
    """Events from a live interface (needs root, or dumpcap capabilities). Every packet is
    delivered as soon as tshark has dissected it; kernel drops are counted in
    `accounting.dropped` when dumpcap reports them."""

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = ""):
        self.interface = interface
        self.name = f"live:{interface}"
        self.accounting = Accounting()
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self._tshark = TsharkLive(interface, keyring, self.bpf, sensor=sensor,
                                  accounting=self.accounting)

    def start(self) -> None:
        """Start capturing now (events() starts it otherwise)."""
        self._tshark.start()

    @property
    def ready(self):
        """threading.Event set once the first packet has been captured."""
        return self._tshark.ready

    def events(self) -> Iterator[PacketEvent]:
        return self._tshark.events()

    def close(self) -> None:
        self._tshark.close()
