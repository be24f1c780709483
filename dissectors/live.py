"""Live capture that survives (issue 12): dumpcap -> pcapng on a pipe -> this process.

dumpcap runs under dissectors.supervisor with a back-off: when it dies (killed, or its
interface was removed), it is started again, the first time at once, and the frames go on
being numbered where they stopped, into the same Dissector (and so the same analyzers: all
their state is kept). When the interface goes down (or loses its carrier) dumpcap keeps its
socket and captures again once it is back up (seen on veths: nothing to restart), but
nothing can be captured meanwhile.

Either way the time in which nothing was captured is a `Gap`: when it started and ended, why,
the frames dumpcap's own counters say the kernel dropped before it ended (None: it was killed
and could not say), and the frames the interface counted meanwhile (an upper bound of what
was missed, any protocol). While a gap is open the capture is `recovering`; when restarts keep
failing (the interface is gone for good) `events()` raises CaptureStopped, one line, and the
dashboard's state turns to `error`. Each gap and restart is logged on the `mip6mon` logger.

The interface's state is watched by a thread that wakes on every rtnetlink link message (and
at least every second) and reads the interface's flags (SIOCGIFFLAGS) and counters
(/proc/self/net/dev: this process's network namespace, whatever /sys shows).
"""
from __future__ import annotations

import fcntl
import logging
import queue
import select
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.dissect import DEFAULT_BPF, Dissector, Tap, settle
from dissectors.events import PacketEvent
from dissectors.supervisor import (
    Backoff,
    Child,
    Command,
    GaveUp,
    Stopped,
    Supervisor,
    spawn_command,
)
from keys.errors import UserError

log = logging.getLogger("mip6mon")

DUMPCAP = "dumpcap"
SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_RUNNING = 0x1, 0x40
RTMGRP_LINK = 1
LINK_POLL_SECONDS = 1.0       # the link is looked at this often even without a netlink message
GAPS_KEPT = 1000              # the newest gaps kept (a capture that runs for days)
# dumpcap's kernel buffer (-B, MiB; its default is 2): at 2,000 packets/s of a few hundred
# octets, 16 MiB hold several seconds of a dissector or analyzer that fell behind (a core
# taken by something else) before the kernel drops
DUMPCAP_BUFFER_MB = 16
# Records read from dumpcap and not yet dissected, at most. dumpcap's pipe is read by a thread
# of its own into this queue; when the dissector and analyzers fall further behind, the newest
# records are dropped here and counted at once ("analysis-behind"): a dumpcap left waiting on
# a full pipe would have the kernel drop them instead, unseen until dumpcap ends. 20,000 are
# 10 s at 2,000 packets/s (a core taken a while by something else), about 9 MB when full.
LIVE_QUEUE = 20_000


class CaptureStopped(Exception):
    """Live capture ended for good (restarts kept failing): why, in one line."""


def link_problem(interface: str, index: int | None = None) -> str | None:
    """Why nothing can be captured on `interface` now, or None when it is up and running (and,
    given `index`, still the interface of that index: one removed and made again is another
    interface, which a dumpcap started on the first one does not see)."""
    if index is not None:
        try:
            if socket.if_nametoindex(interface) != index:
                return f"{interface} was replaced (dumpcap still holds the one removed)"
        except OSError:
            return f"{interface} does not exist"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH14x", interface.encode()[:15], 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]
    except OSError:
        return f"{interface} does not exist"
    if not flags & IFF_UP:
        return f"{interface} is down"
    if not flags & IFF_RUNNING:
        return f"{interface} has no carrier"
    return None


def interface_packets(interface: str) -> tuple[int, int] | None:
    """(ifindex, frames received + sent) of `interface` in this network namespace."""
    try:
        index = socket.if_nametoindex(interface)
        with open("/proc/self/net/dev") as f:
            for line in f:
                name, _, counts = line.partition(":")
                if name.strip() == interface:
                    fields = counts.split()
                    return index, int(fields[1]) + int(fields[9])
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class Gap:
    """A stretch of time in which the live capture captured nothing."""
    start: float                          # epoch seconds
    why: list[str] = field(default_factory=list)
    end: float | None = None              # None while it lasts
    # frames the kernel dropped before dumpcap ended, by dumpcap's own count; None when it
    # ended without writing its counts (killed)
    lost: int | None = 0
    # frames the interface counted (received + sent, any protocol) during the gap: at most
    # this many were missed; None when the interface was replaced meanwhile
    interface_packets: int | None = None
    restarts: int = 0                     # dumpcap restarts it took
    _counters: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end,
                "seconds": None if self.end is None else round(self.end - self.start, 3),
                "why": "; ".join(self.why), "lost": self.lost,
                "interface_packets": self.interface_packets, "restarts": self.restarts}


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
        if not line or line.startswith(("Running as user", "Capturing on", "File:",
                                        "Packets captured", "Packets received")) \
                or "cut short" in line:
            continue
        return line.removeprefix("dumpcap: ").removeprefix("tshark: ")
    return None


class LiveCapture:
    """Every frame dumpcap captures on `interface`, as an event as soon as dumpcap has written
    it, across dumpcap's restarts and the interface's outages (the module's docstring).
    `gaps`, `restarts` and `recovering` say what was missed and whether it is capturing."""

    def __init__(self, interface: str, accounting: Accounting, bpf: str | None = None,
                 sensor: str = "", tap: Tap | None = None, backoff: Backoff | None = None):
        self.interface = interface
        self.accounting = accounting
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self.dissector = Dissector(accounting, sensor, tap=tap, counts_read=False)
        self.ready = threading.Event()          # set once dumpcap has started its capture
        self.supervisor = Supervisor(DUMPCAP, self._spawn, backoff or Backoff())
        self.gaps: list[Gap] = []
        self.gaps_total = 0
        self._causes: dict[str, str] = {}      # what keeps the capture from capturing now
        self._lock = threading.Lock()
        self._errors: _StderrFile | None = None
        self._numbered = 0                      # frames numbered by earlier dumpcaps
        self._index: int | None = None          # the interface index dumpcap captures on
        self._closed = False
        self._watcher: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._queue: queue.Queue[Record] | None = None

    # --- dumpcap ---------------------------------------------------------------------------
    def _spawn(self) -> Child:
        if self._errors is not None:
            self._errors.close()
        self._errors = _StderrFile()
        argv = [DUMPCAP, "-q", "-i", self.interface, "-B", str(DUMPCAP_BUFFER_MB),
                "-w", "-"]                                       # pcapng by default
        if self.bpf:
            argv += ["-f", self.bpf]
        return spawn_command(DUMPCAP, argv, stdout=-1, stderr=self._errors.file)

    @property
    def pid(self) -> int | None:
        child = self.supervisor.child
        return child.pid if child is not None and child.alive else None

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts

    @property
    def recovering(self) -> str | None:
        """Why nothing is being captured now (a gap is open), or None."""
        with self._lock:
            return "; ".join(self._causes.values()) or None

    def start(self) -> None:
        if self.supervisor.child is not None:
            return
        try:
            self.supervisor.start()
        except FileNotFoundError:
            raise UserError("dumpcap not found: install Wireshark's tshark") from None

    def events(self) -> Iterator[PacketEvent]:
        self.start()
        self._watcher = threading.Thread(target=self._watch_link, name="mip6mon-link",
                                         daemon=True)
        self._watcher.start()
        try:
            yield from self.dissector.events(self._queued())
        finally:
            self.close()
            if self._reader is not None:
                self._reader.join(5)
            if self._queue is not None:
                # read from dumpcap and still queued when the capture stopped: never analysed
                self.accounting.drop("capture-stopped", self._queue.qsize())
            if self._errors is not None:
                self._errors.close()
                self._errors = None

    def _queued(self) -> Iterator[Record]:
        """The records `_records` reads (in a thread of its own, which counts them `read`, and
        those it cannot queue `dropped` at once), through a bounded queue. `read` runs ahead
        of the rest of the identity by the records queued."""
        records: queue.Queue[Record] = queue.Queue(maxsize=LIVE_QUEUE)
        self._queue = records
        ended: list[BaseException | None] = []
        acc = self.accounting

        def pump() -> None:
            try:
                for record in self._records():
                    acc.read += 1
                    try:
                        records.put_nowait(record)
                    except queue.Full:
                        acc.drop("analysis-behind", 1)
                ended.append(None)
            except BaseException as exc:                # handed to the dissecting thread
                ended.append(exc)

        self._reader = threading.Thread(target=pump, name="mip6mon-dumpcap-reader", daemon=True)
        self._reader.start()
        while True:
            try:
                yield records.get(timeout=0.2)
                continue
            except queue.Empty:
                if not ended or not records.empty():
                    continue
            if ended[0] is not None:
                raise ended[0]
            return

    def _records(self) -> Iterator[Record]:
        """Records of every dumpcap in turn, numbered on from the last one."""
        first = True
        while True:
            child = self.supervisor.child
            assert isinstance(child, Command) and child.stdout is not None
            stream = cast(BinaryIO, child.stdout)
            drops = capfile.DropCounter()
            count = 0
            capturing = False
            try:
                for block in capfile.blocks(stream, drops):
                    if not capturing:            # dumpcap writes its header as it starts
                        capturing = True
                        self._capturing()
                    record = block.record
                    if record is not None and not self._closed:
                        count += 1
                        record.number = self._numbered + count
                        yield record
                    # once closed, dumpcap's output is read to its end for its drop counts
            except (OSError, ValueError, EOFError, capfile.NotACapture):
                pass           # the pipe closed under us, or dumpcap died mid-block
            self._numbered += count
            settle(self.accounting, drops)
            stream.close()
            if self._closed:
                return
            how = self.supervisor.ended()
            problem = stderr_problem(self._errors.text()) if self._errors is not None else None
            why = how + (f": {problem}" if problem else "")
            if first and not capturing:
                # it never started: the user's to fix (permissions, the interface), as before
                raise UserError(f"{self.interface}: dumpcap {why}")
            first = False
            if capturing:
                self._interrupted(DUMPCAP, f"dumpcap {why}",
                                  lost=drops.dropped if drops.statistics else None)
                log.warning("%s: dumpcap %s after %d frames", self.interface, why,
                            self._numbered)
            try:
                self.supervisor.restart(why, ready=lambda: link_problem(self.interface))
            except Stopped:
                return
            except GaveUp as exc:
                raise CaptureStopped(f"{self.interface}: capture stopped: {exc}") from None
            with self._lock:
                if self.gaps and self.gaps[-1].end is None:
                    self.gaps[-1].restarts += 1

    # --- gaps --------------------------------------------------------------------------------
    def _interrupted(self, cause: str, why: str, lost: int | None = 0) -> None:
        with self._lock:
            if cause in self._causes:
                return
            gap = self.gaps[-1] if self._causes and self.gaps else None
            if gap is None:
                gap = Gap(time.time(), lost=0, _counters=interface_packets(self.interface))
                self.gaps.append(gap)
                self.gaps_total += 1
                del self.gaps[:-GAPS_KEPT]
            self._causes[cause] = why
            gap.why.append(why)
            if gap.lost is not None:
                gap.lost = None if lost is None else gap.lost + lost
        log.warning("%s: capture interrupted: %s", self.interface, why)

    def _resumed(self, cause: str) -> None:
        with self._lock:
            if self._causes.pop(cause, None) is None or self._causes or not self.gaps:
                return
            gap = self.gaps[-1]
            gap.end = time.time()
            now = interface_packets(self.interface)
            before = gap._counters
            if now is not None and before is not None and now[0] == before[0] \
                    and now[1] >= before[1]:
                gap.interface_packets = now[1] - before[1]
        log.warning("%s: capture resumed after %.1f s (%s; lost by dumpcap's count: %s; "
                    "frames on the interface meanwhile: %s)", self.interface,
                    gap.end - gap.start, "; ".join(gap.why),
                    "unknown" if gap.lost is None else gap.lost,
                    "unknown" if gap.interface_packets is None else gap.interface_packets)

    def _capturing(self) -> None:
        try:
            self._index = socket.if_nametoindex(self.interface)
        except OSError:
            self._index = None
        self.ready.set()
        self._resumed(DUMPCAP)

    def _watch_link(self) -> None:
        """Open a gap while the interface is down, gone or without carrier; close it after."""
        try:
            sock: socket.socket | None = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                       socket.NETLINK_ROUTE)
            assert sock is not None
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
        except OSError:
            sock = None                    # no rtnetlink here: look every second
        try:
            while not self._closed:
                problem = link_problem(self.interface, self._index)
                if problem is None:
                    self._resumed("link")
                elif self.ready.is_set():
                    self._interrupted("link", problem)
                if sock is None:
                    time.sleep(LINK_POLL_SECONDS)
                    continue
                readable, _, _ = select.select([sock], [], [], LINK_POLL_SECONDS)
                if readable:
                    try:
                        while sock.recv(65536):
                            pass
                    except BlockingIOError:
                        pass
        finally:
            if sock is not None:
                sock.close()

    def close(self) -> None:
        """Stop dumpcap (it writes its drop counts on the way out) and reap it."""
        self._closed = True
        self.ready.set()
        self.supervisor.stop()
