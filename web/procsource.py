"""A capture source run in a child process, so dissection and analysis use two cores.

Dissection (tshark's output parsed into PacketEvents) costs about as much Python time as all
the analyzers together; in one process the GIL puts them in series and a 1,000 packet/s
replay falls behind. Here a child process owns the source (and its tshark), and sends events
in small batches over a bounded queue (back-pressure: the child never runs far ahead of the
replay); the parent runs the analyzers and the dashboard. Events are plain frozen dataclasses
(dissectors.events), so they pickle as they are; keys never cross: the child loads the keyring
from its file itself.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from keys.errors import UserError

BATCH = 64                 # events per message at most
FLUSH_SECONDS = 0.003      # a partial batch leaves the child after at most 3 ms
SOURCE_FIELDS = ("read", "filtered", "dropped")
CHILD_NICE = 5   # what the source counts (the stream the rest)


def die_with_parent() -> None:
    """Linux prctl(PR_SET_PDEATHSIG, SIGTERM): a child whose parent was killed (no cleanup ran)
    ends too, instead of lingering with its tshark. Best effort elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)          # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(path: str, keyring_path: str | None, out: multiprocessing.Queue) -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    die_with_parent()
    try:
        # a replay's dissection runs up to 2,048 events ahead of the pacer, so it can yield
        # the CPU to the analyzers and the page for a moment (its tshark inherits this)
        os.nice(CHILD_NICE)
    except OSError:
        pass
    source = None
    pending: list[PacketEvent] = []
    lock = threading.Lock()
    done = threading.Event()

    def flush() -> None:
        with lock:
            if not pending:
                return
            batch = list(pending)
            pending.clear()
        out.put(("events", batch, source.accounting.as_dict()))

    def flusher() -> None:
        while not done.wait(FLUSH_SECONDS):
            flush()

    try:
        from keys.keyring import load_keyring
        from monitor.sources import PcapSource
        keyring = load_keyring(keyring_path) if keyring_path else None
        source = PcapSource(path, keyring=keyring)
        threading.Thread(target=flusher, daemon=True).start()
        for event in source.events():
            with lock:
                pending.append(event)
                full = len(pending) >= BATCH
            if full:
                flush()
        done.set()
        flush()
        out.put(("end", None, source.accounting.as_dict()))
    except UserError as exc:
        out.put(("error", str(exc), None))
    except Exception as exc:                       # reported, never a silent stop
        out.put(("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:300], None))
    finally:
        done.set()
        if source is not None:
            source.close()
        out.close()
        out.join_thread()


class ProcessPcapSource:
    """Like monitor.sources.PcapSource (same `.name`, `.path`, `.accounting`, `.events()`,
    `.close()`), with the dissection in a child process."""

    def __init__(self, path: str, keyring_path: str | None = None):
        from monitor.sources import PcapSource
        PcapSource(path)                     # a missing file / not a capture: UserError here
        self.path = str(path)
        self.name = self.path
        self.accounting = Accounting()
        # fork, not spawn: spawn re-runs the caller's __main__, which a script may not guard.
        # The child starts here, in the caller's thread, before the dashboard's threads exist;
        # the bounded queue holds it back until events() reads.
        ctx = multiprocessing.get_context("fork")
        self._queue = ctx.Queue(maxsize=32)            # 32 x 64 events ahead at most
        self._closed = threading.Event()
        self._proc = ctx.Process(target=_child, name="mip6mon-dissector", daemon=True,
                                 args=(self.path, keyring_path, self._queue))
        self._proc.start()

    def _take(self, acc: dict | None) -> None:
        if acc:
            for name in SOURCE_FIELDS:
                setattr(self.accounting, name, acc[name])

    def events(self) -> Iterator[PacketEvent]:
        try:
            while not self._closed.is_set():
                try:
                    kind, payload, acc = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if not self._proc.is_alive() and self._queue.empty():
                        raise UserError(f"{self.path}: the dissector process ended "
                                        f"(exit code {self._proc.exitcode})") from None
                    continue
                self._take(acc)
                if kind == "events":
                    yield from payload
                elif kind == "end":
                    return
                else:
                    raise UserError(payload)
        finally:
            self.close()

    def close(self) -> None:
        self._closed.set()
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()                 # the child's SIGTERM handler closes its tshark
        deadline = time.monotonic() + 5
        while proc.is_alive() and time.monotonic() < deadline:
            try:                             # drain so the child's queue feeder can finish
                self._queue.get(timeout=0.05)
            except (queue.Empty, OSError, ValueError):
                pass
        if proc.is_alive():
            proc.kill()
        proc.join(1)
