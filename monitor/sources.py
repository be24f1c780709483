"""Capture sources behind one interface (DESIGN.md, ROADMAP 1): a pcap file or a live
interface. Each has `.name`, `.accounting`, `.events()` and `.close()`. The dissection is
dissectors.dissect's (no keys); with a keyring, the keyed stage dissectors.decrypt opens the
ESP of each event before it is handed on. `tap(record, event)` sees each event's capture
record just before the event (a sensor digests the frame it dissected)."""
from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

from dissectors.accounting import Accounting
from dissectors.decrypt import EspDecryptor
from dissectors.dissect import DEFAULT_BPF, CaptureFile, Tap
from dissectors.events import PacketEvent
from dissectors.live import DUMPCAP, LiveCapture
from dissectors.supervisor import Backoff
from keys.errors import UserError
from keys.keyring import Keyring

__all__ = ["PcapSource", "LiveSource", "DEFAULT_BPF", "decrypted"]

GAPS_SHOWN = 20        # the newest gaps a status carries (gaps_total counts them all)


def decrypted(events: Iterator[PacketEvent], keyring: Keyring | None) -> Iterator[PacketEvent]:
    """The keyed stage between a source and the analyzers (nothing to do without keys)."""
    decryptor = keyed_stage(keyring)
    return events if decryptor is None else decryptor.opened(events)


def keyed_stage(keyring: Keyring | None) -> EspDecryptor | None:
    """The keyed stage for `keyring`; None without keys or without an ESP SA to open."""
    return EspDecryptor(keyring) if keyring is not None and keyring.esp_sas else None


class PcapSource:
    """Events from a pcap / pcapng file. Raises UserError (one line) at construction for a
    missing file or one that is not a capture."""

    read_ahead = True    # a file: every event is there already (monitor.stream.Source)

    def __init__(self, path: str, keyring: Keyring | None = None, sensor: str = "",
                 prefilter: bool = True, tap: Tap | None = None):
        self.path = str(path)
        self.name = self.path
        self.keyring = keyring
        self.accounting = Accounting()
        self._file = CaptureFile(self.path, self.accounting, sensor, prefilter, tap)

    def events(self) -> Iterator[PacketEvent]:
        decryptor = keyed_stage(self.keyring)
        if decryptor is None:
            return self._file.events()
        if self._file.dissector.tap is None:
            # the dissector opens each frame's ESP in its walk: the events `decrypted` gives,
            # each made once (a tap sees the events the dissector makes: they stay encrypted)
            return self._file.events(decryptor)
        return decryptor.opened(self._file.events())

    def fraction(self) -> float | None:
        """How far through the file the pass is (0..1), for progress bars."""
        return self._file.fraction()

    def close(self) -> None:
        self._file.close()


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
        problem = next((line for line in run.stderr.splitlines() if line.strip()),
                       "dumpcap failed")
        raise UserError(f"{interface}: dumpcap: {problem.strip()}")


def check_live(interface: str, bpf: str | None) -> str:
    """The interface exists and the capture filter compiles (None: DEFAULT_BPF), or one
    UserError line; returns the filter. Once per capture, where it is asked for: a process that
    captures for a parent which checked already is told so (web.procsource)."""
    _check_interface(interface)
    bpf = DEFAULT_BPF if bpf is None else bpf
    _check_capture_filter(interface, bpf)
    return bpf


class LiveSource:
    """Events from a live interface (needs root, or dumpcap capabilities). Every packet is
    delivered as soon as dumpcap has written it. dumpcap is restarted when it dies, with
    `backoff` (dissectors.live): `gaps`, `restarts`, `recovering` and `supervision()` say what
    was missed; the kernel's drops are counted in `accounting.kernel_dropped` whenever a
    dumpcap ends."""

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = "", tap: Tap | None = None, backoff: Backoff | None = None,
                 checked: bool = False):
        """`checked`: check_live(interface, bpf) has passed already (a parent process ran it:
        dumpcap -d once per capture, not once per process)."""
        self.bpf = (DEFAULT_BPF if bpf is None else bpf) if checked else check_live(interface, bpf)
        self.interface = interface
        self.name = f"live:{interface}"
        self.keyring = keyring
        self.accounting = Accounting()
        self._capture = LiveCapture(interface, self.accounting, self.bpf, sensor, tap, backoff)

    def start(self) -> None:
        """Start capturing now (events() starts it otherwise)."""
        self._capture.start()

    @property
    def ready(self) -> threading.Event:
        """Set once dumpcap has started writing its capture."""
        return self._capture.ready

    @property
    def pid(self) -> int | None:
        """dumpcap's process id while it runs."""
        return self._capture.pid

    @property
    def recovering(self) -> str | None:
        """Why nothing is captured right now (a gap is open), or None."""
        # another engine's capture (monitor.engines) may have no supervision of its own
        return getattr(self._capture, "recovering", None)

    def supervision(self) -> dict | None:
        """Children, restarts and gaps, for the dashboard's status (newest gaps last); None
        for another engine's capture (monitor.engines), which is not supervised here."""
        capture = self._capture
        if not isinstance(capture, LiveCapture):
            return None
        with capture._lock:
            gaps = [gap.as_dict() for gap in capture.gaps[-GAPS_SHOWN:]]
        return {"children": [{"name": DUMPCAP, "pid": capture.pid,
                              "restarts": capture.restarts}],
                "restarts": capture.restarts, "gaps": gaps,
                "gaps_total": capture.gaps_total, "recovering": capture.recovering}

    def events(self) -> Iterator[PacketEvent]:
        return decrypted(self._capture.events(), self.keyring)

    def close(self) -> None:
        self._capture.close()
