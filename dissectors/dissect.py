"""The dissector stage: capture records in, neutral events out, every frame counted.

No tshark (issue 10: tshark only for what it alone gives: the dashboard's display filter,
detail tree and export). A file is read record by record (dissectors.capfile); live, dumpcap
writes pcapng to a pipe that is read the same way. Each record goes through the octet
pre-filter (plain TCP/UDP/ICMPv6 never reach the walk), then dissectors.walk, which decides
relevance with MOBILITY_FILTER's meaning and makes the event. ESP stays encrypted here: the
keyed stage (dissectors.decrypt) opens it, in this process or another.

Accounting (read = analysed + filtered + malformed + dropped): the stage counts `read`,
`filtered` (with the reason when the walk could not see into a frame: `unwalked`), the
malformed frames that have no IPv6 header to make an event of, and `dropped`; the event
stream counts the events (analysed, or malformed).
"""
from __future__ import annotations

import gzip
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, BinaryIO, cast

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.events import IPv6Layer, PacketEvent
from dissectors.walk import Walker, candidate, event
from keys.errors import UserError

DUMPCAP = "dumpcap"

# Default capture filter (BPF, pcap-filter(7)) for live mode. BPF follows only the fixed IPv6
# header's Next Header, so it keeps every IPv6 packet whose first header after the fixed one
# is mobility-related or can carry mobility data:
#   135 Mobility Header, 50 ESP, 51 AH, 41 IPv6-in-IPv6, 60 destination options (HAO, 0xFE),
#   43 routing header (RH2), 0 hop-by-hop (a chain that may continue to the above),
#   ICMPv6 146/147 (byte 40 is the ICMPv6 type when it follows the fixed header).
# The walk then keeps exactly the mobility frames; the rest are `filtered`.
DEFAULT_BPF = ("ip6 and (ip6[6] == 135 or ip6[6] == 50 or ip6[6] == 51 or ip6[6] == 41"
               " or ip6[6] == 60 or ip6[6] == 43 or ip6[6] == 0"
               " or (ip6[6] == 58 and (ip6[40] == 146 or ip6[40] == 147)))")


# Called with each event's capture record just before the event is yielded, in the same
# thread: what needs the frame's octets beside the event (a sensor's packet digest).
Tap = Callable[[Record, PacketEvent], None]


class Dissector:
    """Records -> events, counting every record in `accounting`."""

    def __init__(self, accounting: Accounting, sensor: str = "", prefilter: bool = True,
                 tap: Tap | None = None):
        self.accounting = accounting
        self.sensor = sensor
        self.prefilter = prefilter
        self.tap = tap
        self.walker = Walker()

    def events(self, records: Iterable[Record]) -> Iterator[PacketEvent]:
        acc = self.accounting
        walker = self.walker
        prefilter = self.prefilter
        sensor = self.sensor
        for rec in records:
            acc.read += 1
            data = rec.data
            if prefilter and not candidate(rec.linktype, data):
                acc.filtered += 1
                continue
            try:
                walk = walker.frame(rec.linktype, data, rec.length)
                if not walk.selected:
                    acc.filtered += 1
                    if walk.unwalked is not None:
                        acc.unwalked[walk.unwalked] = acc.unwalked.get(walk.unwalked, 0) + 1
                    continue
                if not walk.layers:
                    # selected as malformed, with no IPv6 header to analyse: counted, no event
                    acc.malformed += 1
                    continue
                ev = event(walk, rec.number, rec.time, rec.length, rec.comments, sensor)
            except Exception as exc:  # noqa: BLE001 - a walk bug becomes a counted frame
                ev = PacketEvent(frame=rec.number, time=rec.time, length=rec.length,
                                 layers=(IPv6Layer("::", "::"),), sensor=sensor,
                                 malformed=f"dissector error: {exc.__class__.__name__}")
            if self.tap is not None:
                self.tap(rec, ev)
            yield ev


def check_capture_file(path: str) -> None:
    """UserError (one line) unless `path` is a readable pcap or pcapng file."""
    try:
        with capfile.open_capture(path) as f:
            next(capfile.records(f, keep_data=False), None)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except (capfile.NotACapture, gzip.BadGzipFile, EOFError):
        raise UserError(f"{path}: not a capture file (pcap or pcapng)") from None
    except capfile.CaptureDamaged:
        pass       # a capture, damaged from its first frame: reading it says where and why
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def _settle(acc: Accounting, drops: capfile.DropCounter) -> None:
    """What the reader itself found: kernel drops reported by dumpcap are dropped; a damaged
    capture ends after its last whole frame, and the accounting says where and why the rest
    could not be read (issue 13: `report` exits 3, `"complete": false`)."""
    acc.dropped = max(acc.dropped, drops.dropped)
    if drops.damage is not None and acc.incomplete is None:
        acc.incomplete = f"damaged capture: {drops.damage}"


class CaptureFile:
    """Events of a capture file (pcap, pcapng, gzip-compressed too)."""

    def __init__(self, path: str, accounting: Accounting, sensor: str = "",
                 prefilter: bool = True, tap: Tap | None = None):
        self.path = str(path)
        check_capture_file(self.path)
        self.accounting = accounting
        self.dissector = Dissector(accounting, sensor, prefilter, tap)
        self._stream: BinaryIO | None = None
        self._read: float | None = None          # how far the last pass read (fraction())

    def events(self) -> Iterator[PacketEvent]:
        try:
            self._stream = capfile.open_capture(self.path)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read: {exc.strerror}") from None
        drops = capfile.DropCounter()
        try:
            try:
                yield from self.dissector.events(capfile.records(self._stream, drops))
            except (EOFError, gzip.BadGzipFile):
                pass           # a gzip file cut short: the frames before the cut were read
            _settle(self.accounting, drops)
        finally:
            self.close()

    def fraction(self) -> float | None:
        """How far through the file the reader is (0..1; None when not reading), for progress
        bars: the file descriptor's offset, which another thread may ask for (lseek)."""
        stream = self._stream
        if stream is None:
            return self._read
        try:
            size = os.fstat(stream.fileno()).st_size
            return os.lseek(stream.fileno(), 0, os.SEEK_CUR) / size if size else None
        except (OSError, ValueError):
            return self._read               # closed under us: the pass has ended

    def close(self) -> None:
        if self._stream is not None:
            self._read = self.fraction()
            self._stream.close()
            self._stream = None


class _StderrFile:
    """A child's stderr, kept in a temporary file (no pipe to fill and block on)."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")

    def close(self) -> None:
        self.file.close()


def stderr_problem(text: str) -> str | None:
    """The first line of a Wireshark tool's stderr that is an error (not the root warning)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("Running as user", "Capturing on", "File:")) \
                or "cut short" in line:
            continue
        return line.removeprefix("dumpcap: ").removeprefix("tshark: ")
    return None


def _reap(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LiveCapture:
    """dumpcap -> pcapng on a pipe -> this process (count, pre-filter, walk): every frame is
    an event as soon as dumpcap has written it. Kernel drops come from dumpcap's Interface
    Statistics Block, written when it stops."""

    def __init__(self, interface: str, accounting: Accounting, bpf: str | None = None,
                 sensor: str = "", tap: Tap | None = None):
        self.interface = interface
        self.accounting = accounting
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self.dissector = Dissector(accounting, sensor, tap=tap)
        self.ready = threading.Event()          # set once dumpcap has started its capture
        self._dumpcap: subprocess.Popen[bytes] | None = None
        self._errors: _StderrFile | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._dumpcap.pid if self._dumpcap is not None else None

    def start(self) -> None:
        if self._dumpcap is not None:
            return
        self._errors = _StderrFile()
        argv = [DUMPCAP, "-q", "-i", self.interface, "-w", "-"]   # pcapng by default
        if self.bpf:
            argv += ["-f", self.bpf]
        try:
            self._dumpcap = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=self._errors.file,
                                             start_new_session=True)
        except FileNotFoundError:
            raise UserError("dumpcap not found: install Wireshark's tshark") from None

    def _records(self, stream: IO[bytes], drops: capfile.DropCounter) -> Iterator[Record]:
        for block in capfile.blocks(cast(BinaryIO, stream), drops):
            self.ready.set()                    # dumpcap writes its header as it starts
            if block.record is not None and not self._closed:
                yield block.record
            # once closed, dumpcap's output is still read to its end for the drop counts

    def events(self) -> Iterator[PacketEvent]:
        self.start()
        assert self._dumpcap is not None and self._dumpcap.stdout is not None
        drops = capfile.DropCounter()
        try:
            try:
                yield from self.dissector.events(self._records(self._dumpcap.stdout, drops))
            except (OSError, ValueError, EOFError, capfile.NotACapture):
                pass       # the pipe closed under us (close() from another thread)
            _settle(self.accounting, drops)
            if not self._closed:
                try:
                    rc = self._dumpcap.wait(5)
                except subprocess.TimeoutExpired:
                    rc = None
                problem = stderr_problem(self._errors.text()) if rc and self._errors else None
                if problem:
                    raise UserError(f"{self.interface}: dumpcap: {problem}")
        finally:
            self.close()
            if self._errors is not None:
                self._errors.close()
                self._errors = None

    def close(self) -> None:
        """Stop dumpcap (it writes its drop counts on the way out) and reap it."""
        self._closed = True
        self.ready.set()
        if self._dumpcap is not None and self._dumpcap.poll() is None:
            self._dumpcap.terminate()
        _reap(self._dumpcap)
