"""The pyshark engine (`--engine pyshark`): pyshark drives tshark, and each packet it parses
becomes the event the default engine (dissectors.dissect) makes of the same frame.

The default engine stays the faster one (benchmarks/bench_engines.py measures both against
tshark in one run). This one is for researchers who want tshark's dissection as the source of
truth, and it is what monitor.api builds on for their own pyshark captures.

Accounting (read = analysed + filtered + malformed + dropped), as the default engine keeps it:
- a file: tshark is given MOBILITY_FILTER as its display filter (the measured fast path,
  PLATFORM-NOTES), so it hands over only the frames the filter selects. The frames it did not
  hand over are `filtered`: the capture's records are counted in a pass that reads record
  headers only (dissectors.capfile), which also gives the kernel drops dumpcap wrote and where
  a damaged capture ends (issue 13);
- live: pyshark reads every frame dumpcap's capture filter lets through (no display filter),
  each counted as read and judged here with `selected` (MOBILITY_FILTER on tshark's fields).

PLATFORM-NOTES' pyshark workarounds: JSON mode with raw values (PDML mangles the mipv6 names
and is ~3x slower, EK fails on IPv6-in-IPv6: PYSHARK_OPTIONS); `keep_packets=False` (flat
memory); a live capture's last packet is delivered at once (pyshark's JSON reader holds it back
until the next one arrives: `PromptJsonParser`); pyshark's tshark and dumpcap are ended by
`close()` (its own leaks, #168/#238/#711).
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pyshark  # type: ignore[import-untyped]
from pyshark.capture.capture import TSharkCrashException  # type: ignore[import-untyped]
from pyshark.tshark.output_parser.tshark_json import (  # type: ignore[import-untyped]
    TsharkJsonParser,
)

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.dissect import DEFAULT_BPF, check_capture_file
from dissectors.events import IPv6Layer, PacketEvent
from dissectors.pyshark_packets import (
    PYSHARK_OPTIONS,
    Packet,
    UnsupportedPacket,
    convert,
    selected,
)
from dissectors.walk import MOBILITY_FILTER
from keys.errors import UserError

__all__ = ["PYSHARK_OPTIONS", "PysharkFile", "PysharkLive", "event_loop", "packet_events",
           "watch_children"]


def packet_events(packets: Iterable[Any], accounting: Accounting, sensor: str = "",
                  prefiltered: bool = False) -> Iterator[PacketEvent]:
    """pyshark packets -> events, each packet counted in `accounting` (`read` and `filtered`
    too unless `prefiltered`: tshark applied MOBILITY_FILTER and the caller counts those).

    A packet this conversion cannot read (not JSON with raw values) is a UserError: the
    user's capture was opened without PYSHARK_OPTIONS, and every packet would fail alike."""
    acc = accounting
    for raw in packets:
        packet = Packet(raw)                    # UnsupportedPacket is the caller's to report
        if not prefiltered:
            acc.read += 1
            if not selected(packet):
                acc.filtered += 1
                continue
        try:
            event = convert(packet, sensor)
        except Exception as exc:  # noqa: BLE001 - a conversion bug becomes a counted frame
            number = int(packet.frame.get("frame.number", 0) or 0)
            event = PacketEvent(frame=number, time=float(packet.frame["frame.time_epoch"]),
                                length=int(packet.frame.get("frame.len", 0) or 0),
                                layers=(IPv6Layer("::", "::"),), sensor=sensor,
                                malformed=f"dissector error: {exc.__class__.__name__}")
        if event is None:
            acc.malformed += 1              # selected as malformed, no IPv6 header: no event
            continue
        yield event


class PidfdWatcher(asyncio.AbstractChildWatcher):
    """Child processes watched through pidfds, on whichever loop started them (what Python
    3.12 does itself). Python 3.11's watchers lost tshark's exit status in a thread: the
    default ThreadedChildWatcher ('Unknown child process pid', reported by pyshark as a crash
    with code 255: 1 of 3 replays here), SafeChildWatcher (pyshark's choice) serves only the
    main thread's loop, PidfdChildWatcher only the one loop it is attached to."""

    def add_child_handler(self, pid: int, callback: Any,  # type: ignore[override]
                          *args: Any) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._exited, loop, pid, pidfd,  # type: ignore[attr-defined]
                         callback, args)

    @staticmethod
    def _exited(loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Any,
                args: tuple[Any, ...]) -> None:
        loop._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            # reaped already, by the transport's own subprocess.Popen: pyshark's clean-up
            # kills a tshark whose exit the loop has not handled yet, and Popen.send_signal
            # polls first (bpo-38630), which reaps it. That Popen kept the exit status; 255
            # (what asyncio says of a child reaped elsewhere) only if it did not. Seen as
            # "TShark seems to have crashed (retcode: 255)" in about 1 run of 20 here.
            popen = getattr(args[0], "_proc", None) if args else None
            kept = getattr(popen, "returncode", None)
            code = kept if isinstance(kept, int) else 255
        finally:
            os.close(pidfd)
        callback(pid, code, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return True

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for one pyshark capture, run by the thread that reads it (pyshark
    #611), never made the thread's current loop (the caller's own asyncio and pyshark code
    keep theirs); its tshark watched by PidfdWatcher (Python 3.11; 3.12 and later watch
    with pidfds)."""
    loop = asyncio.new_event_loop()
    watch_children()
    return loop


def watch_children() -> None:
    """tshark watched by PidfdWatcher from now on (Python 3.11; 3.12 and later watch with
    pidfds), in place of the SafeChildWatcher pyshark sets when a capture is made in the main
    thread: that one loses tshark's exit status to the same race (PidfdWatcher._exited)."""
    if sys.version_info < (3, 12) and \
            not isinstance(asyncio.get_child_watcher(), PidfdWatcher):
        try:
            asyncio.set_child_watcher(PidfdWatcher())
        except ValueError:
            # the watcher pyshark set in the main thread (SafeChildWatcher) can only be
            # closed there: leave it be, and put ours in its place
            policy: Any = asyncio.get_event_loop_policy()
            policy._watcher = PidfdWatcher()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a capture's event loop once what pyshark leaves in it is settled. pyshark never
    closes its tshark's subprocess transport, and a tshark stopped mid-capture leaves the
    task reading its stderr pending: each sits in a reference cycle, and one the collector
    finalises after the loop is closed raises "Event loop is closed" in whatever code runs
    then (a PytestUnraisableExceptionWarning in a later test). So: the pending tasks
    cancelled, the cycles collected while the loop still runs their callbacks, then closed."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    gc.collect()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def _terminate(capture: Any) -> None:
    """Ask a pyshark capture's tshark to stop, from any thread (SIGTERM: tshark also stops
    its dumpcap); its output then ends, and the thread reading it cleans up."""
    for process in list(getattr(capture, "_running_processes", ()) or ()):
        if process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _unsupported(exc: UnsupportedPacket) -> UserError:
    return UserError(f"pyshark engine: {exc}")


class PysharkFile:
    """Events of a capture file through pyshark's FileCapture (pcap, pcapng, gzip)."""

    def __init__(self, path: str, accounting: Accounting, sensor: str = ""):
        self.path = str(path)
        check_capture_file(self.path)
        self.accounting = accounting
        self.sensor = sensor
        self.size = os.path.getsize(self.path)
        self.frames: int | None = None         # the capture's frames, once counted
        self.position = 0                      # frame number of the last packet handed over
        self._selected = 0
        self._capture: Any = None
        self._reader: int | None = None          # the thread reading the capture

    def _count(self) -> None:
        """Every record, drops and damage, from the record headers alone."""
        drops = capfile.DropCounter()
        frames = 0
        try:
            with capfile.open_capture(self.path) as stream:
                for _ in capfile.records(stream, drops, keep_data=False):
                    frames += 1
        except (EOFError, OSError):
            pass               # a gzip file cut short: the frames before the cut are counted
        self.frames = frames
        acc = self.accounting
        acc.dropped = max(acc.dropped, drops.dropped)
        if drops.damage is not None and acc.incomplete is None:
            acc.incomplete = f"damaged capture: {drops.damage}"

    def fraction(self) -> float | None:
        """How far through the capture the engine is (0..1), for progress bars."""
        if not self.frames:
            return None
        return min(1.0, self.position / self.frames)

    def events(self) -> Iterator[PacketEvent]:
        self._count()
        assert self.frames is not None
        acc = self.accounting
        self._reader = threading.get_ident()
        self._capture = pyshark.FileCapture(self.path, display_filter=MOBILITY_FILTER,
                                            keep_packets=False, eventloop=event_loop(),
                                            **PYSHARK_OPTIONS)
        self._selected = 0
        try:
            yield from packet_events(self._frames(iter(self._capture)), acc, self.sensor,
                                     prefiltered=True)
        except UnsupportedPacket as exc:
            raise _unsupported(exc) from None
        finally:
            self.close()
        self.position = self.frames
        # tshark handed over the frames MOBILITY_FILTER selected; the rest were filtered
        acc.read = self.frames
        acc.filtered = max(0, self.frames - self._selected)

    def _frames(self, packets: Iterator[Any]) -> Iterator[Any]:
        """The selected packets, each counted (as `read` too: the frames before it, up to its
        number, were read by tshark; the filtered ones are settled at the end)."""
        acc = self.accounting
        try:
            for packet in packets:
                self._selected += 1
                number = int(getattr(packet, "number", 0) or 0)
                self.position = max(self.position, number)
                acc.read = max(acc.read, number)
                yield packet
        except TSharkCrashException:
            self._tshark_failed(self._capture)

    def _tshark_failed(self, capture: Any) -> None:
        """tshark stopped with an error. Where the count pass found damage, that is why (the
        accounting says so already); otherwise the report is incomplete in tshark's own
        words (exit code 3), never silently short."""
        if capture is None:
            return
        capture._running_processes.clear()          # pyshark's __del__ would raise it again
        acc = self.accounting
        if acc.incomplete is None:
            line = str(capture._last_error_line or "").strip()
            acc.incomplete = f"tshark stopped: {line or 'no reason given'}"

    def close(self) -> None:
        """End the pass. From another thread than the one reading (a dashboard stopping a
        replay), tshark is asked to stop (SIGTERM) and the reading thread cleans up after
        pyshark: pyshark's own close() needs the event loop that thread is running."""
        if self._reader is not None and self._reader != threading.get_ident():
            _terminate(self._capture)
            return
        capture, self._capture = self._capture, None
        if capture is not None:
            try:
                capture.close()
            except TSharkCrashException:
                self._tshark_failed(capture)
            finally:
                close_loop(capture.eventloop)


class PromptJsonParser(TsharkJsonParser):  # type: ignore[misc]
    """tshark's JSON with each packet delivered as soon as tshark has written it.

    pyshark ends a packet at the separator tshark writes *before the next one* (`  },`), so a
    live capture's last packet waits for the next packet (PLATFORM-NOTES: seen 28 s late). A
    packet's closing brace is the only line `  }` at two spaces of indent (everything inside
    is indented deeper), so it ends the packet on its own."""

    END = b"\n  }"

    def _extract_packet_from_data(self, data: bytes,
                                  got_first_packet: bool = True) -> tuple[bytes | None, bytes]:
        start = data.find(b"{")
        if start == -1:
            return None, data
        end = data.find(self.END, start)
        if end == -1:
            return None, data
        end += len(self.END)
        return data[start:end], data[end:]


class _LiveCapture(pyshark.LiveCapture):  # type: ignore[misc]
    ready: threading.Event

    def _setup_tshark_output_parser(self) -> Any:
        return PromptJsonParser(self._get_tshark_version())

    def _created_new_process(self, parameters: Any, process: Any,
                             process_name: str = "TShark") -> None:
        super()._created_new_process(parameters, process, process_name)
        self.ready.set()


class PysharkLive:
    """Events of a live interface through pyshark's LiveCapture (dumpcap under tshark; needs
    root or dumpcap's capabilities), behind dumpcap's capture filter (DEFAULT_BPF)."""

    def __init__(self, interface: str, accounting: Accounting, bpf: str | None = None,
                 sensor: str = ""):
        self.interface = interface
        self.accounting = accounting
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self.sensor = sensor
        self.ready = threading.Event()          # set once pyshark has started tshark
        self._capture: Any = None
        self._closed = False

    def events(self) -> Iterator[PacketEvent]:
        # sniff_continuously keeps no packet (keep_packets is FileCapture's)
        self._capture = _LiveCapture(interface=self.interface, bpf_filter=self.bpf or None,
                                     eventloop=event_loop(), **PYSHARK_OPTIONS)
        self._capture.ready = self.ready
        try:
            yield from packet_events(self._packets(), self.accounting, self.sensor)
        except UnsupportedPacket as exc:
            raise _unsupported(exc) from None
        finally:
            capture, self._capture = self._capture, None
            self._closed = True
            try:
                capture.close()               # in the thread whose event loop ran it
            except Exception:  # noqa: BLE001 - tshark stopped by close() exits non-zero
                capture._running_processes.clear()      # (pyshark's __del__ would re-raise)
            finally:
                close_loop(capture.eventloop)

    def _packets(self) -> Iterator[Any]:
        try:
            for packet in self._capture.sniff_continuously():
                if self._closed:
                    return
                yield packet
        except Exception:
            if not self._closed:
                raise

    def close(self) -> None:
        """End the capture from any thread: tshark is asked to stop (SIGTERM: it stops its
        dumpcap), its output ends, and the reading thread cleans up after pyshark there
        (pyshark's own close() needs the event loop that thread is running)."""
        self._closed = True
        self.ready.set()
        _terminate(self._capture)
