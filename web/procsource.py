"""A capture source run in a child process, so dissection and analysis use two cores.

Dissection (every frame walked, and ESP decrypted when keys are given: dissectors.dissect,
dissectors.decrypt) costs Python time as the analyzers do; in one process the GIL puts them in
series and a 1,000 packet/s replay falls behind. Here a child process owns the source (it runs
no tshark since issue 10; the group and reaping below hold for any child), and sends events
in small batches over a bounded queue (back-pressure: the child never runs far ahead of the
replay); the parent runs the analyzers and the dashboard. Events are plain frozen dataclasses
(dissectors.events), so they pickle as they are; keys never cross: the child loads the keyring
from its file itself.

Ending (issues 12, 13): the child is started by dissectors.supervisor (spawn_function), like
every child of mip6mon: it dies with its parent, runs in a process group of its own so Ctrl-C
reaches only the parent, which decides, and on SIGTERM leaves at once without flushing its
queue or joining its threads (the fork gave it the queue's read end too, so a write into a
full pipe whose only other reader is dead blocked it forever). A child that dies, or whose
capture ends early, makes `events()` say so (the replay's state turns to `error`), never a
quiet end.
"""
from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterator

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.supervisor import spawn_function
from keys.errors import UserError

BATCH = 64                 # events per message at most
FLUSH_SECONDS = 0.003      # a partial batch leaves the child after at most 3 ms
# what the source counts
SOURCE_FIELDS = ("read", "filtered", "dropped", "kernel_dropped", "incomplete")
CHILD_NICE = 5


def _batches(events: Iterator[PacketEvent], pending: list[PacketEvent], lock: threading.Lock,
             flush: Callable[[], None]) -> None:
    """A child's loop: each event into `pending`, sent (`flush`) once BATCH wait; the child's
    flusher thread sends a partial batch after FLUSH_SECONDS."""
    for event in events:
        with lock:
            pending.append(event)
            full = len(pending) >= BATCH
        if full:
            flush()


def _child(path: str, keyring_path: str | None, out: multiprocessing.Queue) -> None:
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
        import warnings

        from keys.keyring import KeyringPermissionWarning, load_keyring
        from monitor.sources import PcapSource
        with warnings.catch_warnings():
            # the parent loaded it first: it refused it or warned once (--allow-insecure-keyring)
            warnings.simplefilter("ignore", KeyringPermissionWarning)
            keyring = load_keyring(keyring_path, allow_insecure=True) if keyring_path else None
        source = PcapSource(path, keyring=keyring)
        threading.Thread(target=flusher, daemon=True).start()
        _batches(source.events(), pending, lock, flush)
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
            source.close()                         # ends and reaps its tshark
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
        self._events = 0
        # a replay's dissection runs up to 2,048 events ahead of the pacer, so it can yield
        # the CPU to the analyzers and the page for a moment (CHILD_NICE)
        self._proc = spawn_function("dissector", _child,
                                    (self.path, keyring_path, self._queue), nice=CHILD_NICE)
        # the child writes and this process only reads: with its own copy of the write end
        # closed, the pipe ends (EOFError) when the child does, even halfway through a batch,
        # instead of leaving get() waiting for the rest of a message forever
        self._queue._writer.close()                    # type: ignore[attr-defined]

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
                    if not self._proc.alive and self._queue.empty():
                        raise UserError(self._died()) from None
                    continue
                except (EOFError, OSError):              # the child's end closed: it ended
                    raise UserError(self._died()) from None
                self._take(acc)
                if kind == "events":
                    self._events += len(payload)
                    yield from payload
                elif kind == "end":
                    return
                else:
                    raise UserError(payload)
        finally:
            self.close()

    def _died(self) -> str:
        how = self._proc.how_it_ended()
        # frames it had read and not yet handed on: dropped, with why (the stream has counted
        # every event this process yielded by now)
        self.accounting.drop("dissector-died", self.accounting.unaccounted())
        self.accounting.incomplete = (f"the dissector process {how} after {self._events} "
                                      "mobility events; the rest of the capture was not read")
        return f"{self.path}: {self.accounting.incomplete}"

    def close(self) -> None:
        self._closed.set()
        # SIGTERM (the child leaves at once), SIGKILL if it does not, reaped. Not drained
        # with get(): a child ended in the middle of writing a batch leaves half a message in
        # the pipe, and get() would wait for the rest forever.
        self._proc.stop(grace=5.0)


# --- live capture (issue 12): dumpcap, dissection and decryption in a child -----------------
# what the live child counts (the stream here counts the rest: analysed, malformed, ESP)
LIVE_FIELDS = ("read", "filtered", "dropped", "dropped_reasons", "kernel_dropped", "unwalked",
               "incomplete")
LIVE_STATE_SECONDS = 0.25   # the child says how its capture goes at least this often
LIVE_BATCHES = 64           # batches of BATCH events on their way at most (4,096 events)


def _live_state(source) -> dict:
    acc = source.accounting
    return {"accounting": {name: getattr(acc, name) for name in LIVE_FIELDS},
            "supervision": source.supervision(), "recovering": source.recovering,
            "pid": source.pid, "ready": source.ready.is_set()}


def _live_child(interface: str, keyring, bpf: str | None, out: multiprocessing.Queue) -> None:
    """The forked child: monitor.sources.LiveSource (dumpcap under its supervisor, the pipe's
    reader, dissection, ESP decryption) sending events in batches with its counts and state."""
    source = None
    pending: list[PacketEvent] = []
    lock = threading.Lock()
    done = threading.Event()

    def flush(kind: str = "events", payload=None) -> None:
        with lock:
            batch = list(pending)
            pending.clear()
        # a state without events too: the parent's status follows gaps and restarts
        out.put((kind, batch if payload is None else payload, _live_state(source)))

    def flusher() -> None:
        quiet = 0.0
        while not done.wait(FLUSH_SECONDS):
            quiet += FLUSH_SECONDS
            with lock:
                have = bool(pending)
            if have or quiet >= LIVE_STATE_SECONDS:
                quiet = 0.0
                flush()

    try:
        from monitor.sources import LiveSource
        source = LiveSource(interface, keyring=keyring, bpf=bpf, checked=True)
        source.start()
        threading.Thread(target=flusher, daemon=True).start()
        _batches(source.events(), pending, lock, flush)
        done.set()
        flush("end", [])
    except Exception as exc:                       # CaptureStopped, UserError: one line
        done.set()
        text = str(exc) if isinstance(exc, UserError) or type(exc).__name__ == \
            "CaptureStopped" else f"{type(exc).__name__}: {exc}"
        try:
            out.put(("error", text.splitlines()[0][:300] if text else type(exc).__name__,
                     _live_state(source) if source is not None else None))
        except Exception:
            pass
    finally:
        done.set()
        if source is not None:
            source.close()                         # stops and reaps dumpcap
        out.close()
        out.join_thread()


class ProcessLiveSource:
    """Like monitor.sources.LiveSource (`.name`, `.accounting`, `.ready`, `.pid`,
    `.recovering`, `.supervision()`, `.events()`, `.close()`), with the capture, dissection
    and decryption in a child process: at 2,000 packets/s one process's GIL could not both
    dissect and analyse (issue 12's soak: about 1,300 packets/s, the dissection and ESP
    decryption 55 % of it), so they take the second core. The child is supervised like every
    child (dissectors.supervisor), and supervises dumpcap itself (restarts and gaps, as in one
    process: its state comes with every batch). The queue between them is bounded: a parent
    that falls behind holds the child back, whose own queue then drops the newest frames,
    counted as 'analysis-behind' (dissectors.live)."""

    def __init__(self, interface: str, keyring=None, bpf: str | None = None):
        from monitor.sources import check_live
        self.bpf = check_live(interface, bpf)    # one-line errors before anything starts
        self.interface = interface
        self.name = f"live:{interface}"
        self.accounting = Accounting()
        self.ready = threading.Event()
        self._keyring = keyring
        self._state: dict = {}
        self._closed = threading.Event()
        self._proc = None

    def start(self) -> None:
        """Start the child (events() starts it otherwise). The keyring is the parent's own
        object, inherited by the fork: nothing of it crosses a pipe."""
        if self._proc is not None:
            return
        ctx = multiprocessing.get_context("fork")
        self._queue = ctx.Queue(maxsize=LIVE_BATCHES)
        self._proc = spawn_function("live", _live_child,
                                    (self.interface, self._keyring, self.bpf, self._queue))
        self._queue._writer.close()                    # type: ignore[attr-defined]

    @property
    def pid(self) -> int | None:
        """dumpcap's process id while it runs (the child's dumpcap)."""
        return self._state.get("pid")

    @property
    def child_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def recovering(self) -> str | None:
        if self._proc is not None and not self._proc.alive and not self._closed.is_set():
            return None               # events() says what happened: the state turns to error
        return self._state.get("recovering")

    def supervision(self) -> dict | None:
        supervised = self._state.get("supervision")
        if supervised is None:
            return None
        child = {"name": "live", "pid": self.child_pid, "restarts": 0}
        return dict(supervised, children=[child, *supervised.get("children", [])])

    def _take(self, state: dict | None) -> None:
        if not state:
            return
        self._state = state
        for name, value in state["accounting"].items():
            setattr(self.accounting, name, value)
        if state.get("ready"):
            self.ready.set()

    def events(self) -> Iterator[PacketEvent]:
        self.start()
        try:
            while not self._closed.is_set():
                try:
                    kind, payload, state = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if not self._proc.alive and self._queue.empty():
                        raise UserError(self._died()) from None
                    continue
                except (EOFError, OSError):
                    if self._closed.is_set():
                        return
                    raise UserError(self._died()) from None
                self._take(state)
                if kind == "events":
                    yield from payload
                elif kind == "end":
                    return
                else:
                    raise UserError(f"{self.name}: {payload}")
        finally:
            self.close()

    def _died(self) -> str:
        how = self._proc.how_it_ended()
        self.accounting.drop("dissector-died", self.accounting.unaccounted())
        self.accounting.incomplete = f"the live capture process {how}"
        return f"{self.name}: {self.accounting.incomplete}"

    def close(self) -> None:
        self._closed.set()
        if self._proc is not None:
            # SIGTERM: the child leaves at once; its dumpcap dies with it (die_with_parent)
            self._proc.stop(grace=5.0)
