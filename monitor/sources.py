"""Capture sources behind one interface (DESIGN.md, ROADMAP 1): a pcap file or a live
interface. Each has `.name`, `.accounting`, `.events()` and `.close()`; the dissection itself
is dissectors.tshark's job."""
from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.tshark import DEFAULT_BPF, DUMPCAP, TsharkFile, TsharkLive
from keys.errors import UserError
from keys.keyring import Keyring

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


def _check_interface(interface: str) -> None:
    """Fail before anything is served or started: an unknown interface is the user's typo."""
    try:
        socket.if_nametoindex(interface)
    except OSError:
        raise UserError(f"{interface}: no such network interface") from None


def _check_capture_filter(interface: str, bpf: str) -> None:
    """Compile the BPF filter with dumpcap (-d) so a bad one is one clear line, not a dead
    capture thread behind a running dashboard."""
    try:
        run = subprocess.run([DUMPCAP, "-i", interface, "-f", bpf, "-d"], capture_output=True,
                             text=True, timeout=30)
    except FileNotFoundError:
        raise UserError("dumpcap not found: install Wireshark's tshark package") from None
    if "isn't a valid capture filter" in run.stderr:
        raise UserError(f"capture filter {bpf!r} is not valid BPF (tcpdump syntax)")
    if run.returncode != 0:
        problem = next((ln for ln in run.stderr.splitlines() if ln.strip()), "dumpcap failed")
        raise UserError(f"{interface}: dumpcap: {problem.strip()}")


class LiveSource:
    """Events from a live interface (needs root, or dumpcap capabilities). Every packet is
    delivered as soon as tshark has dissected it; kernel drops are counted in
    `accounting.dropped` when dumpcap reports them."""

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = ""):
        _check_interface(interface)
        self.interface = interface
        self.name = f"live:{interface}"
        self.accounting = Accounting()
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        _check_capture_filter(interface, self.bpf)
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
