"""The event stream's hooks (monitor.stream): `pace` outside the lock, `packet` under it, `done`
for every addon once, and which failure is raised. The source here is a list of events (the
stream's contract, not tshark's, is under test; tests/monitor/test_sources.py runs tshark)."""
from __future__ import annotations

import threading

import pytest

from dissectors.accounting import Accounting
from dissectors.events import Esp, IPv6Layer, PacketEvent
from monitor.stream import EventStream


class ListSource:
    name = "list"

    def __init__(self, count: int, fail_at: int | None = None):
        self.accounting = Accounting()
        self.count, self.fail_at, self.closed = count, fail_at, 0

    def events(self):
        for frame in range(1, self.count + 1):
            if frame == self.fail_at:
                raise OSError("the capture broke")
            yield PacketEvent(frame=frame, time=float(frame), length=60,
                              layers=(IPv6Layer("2001:db8::1", "2001:db8::2"),))

    def close(self) -> None:
        self.closed += 1


class FileSource(ListSource):
    read_ahead = True        # as a file's (monitor.sources.PcapSource)


class Recorder:
    """Records each hook call and whether the stream's lock was held at that moment."""

    def __init__(self, lock, log: list, stop_after: int | None = None, stop=None,
                 fail_done: bool = False):
        self.lock, self.log, self.stop_after, self.stop = lock, log, stop_after, stop
        self.fail_done = fail_done

    def _held(self) -> bool:
        """Is the lock taken? (Another thread tries it: an RLock lets its owner in again.)"""
        taken = []

        def probe() -> None:
            got = self.lock.acquire(blocking=False)
            if got:
                self.lock.release()
            taken.append(not got)

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return taken[0]

    def pace(self, event) -> None:
        self.log.append(("pace", event.frame, self._held()))
        if self.stop_after is not None and event.frame > self.stop_after:
            self.stop.set()

    def packet(self, event) -> None:
        self.log.append(("packet", event.frame, self._held()))

    def done(self) -> None:
        self.log.append(("done", None, self._held()))
        if self.fail_done:
            raise RuntimeError("done failed")


def test_pace_runs_outside_the_lock_and_packet_and_done_under_it():
    lock, log = threading.RLock(), []
    source = ListSource(3)
    acc = EventStream(source, [Recorder(lock, log)]).run(lock=lock)
    assert log == [("pace", 1, False), ("packet", 1, True), ("pace", 2, False),
                   ("packet", 2, True), ("pace", 3, False), ("packet", 3, True),
                   ("done", None, True)]
    assert acc.analysed == 3 and source.closed == 1


def test_a_stop_set_while_pacing_ends_the_run_before_that_event():
    lock, log, stop = threading.RLock(), [], threading.Event()
    source = ListSource(10)
    second = []
    EventStream(source, [Recorder(lock, log, stop_after=2, stop=stop),
                         Recorder(lock, second)]).run(stop, lock)
    fed = [frame for hook, frame, _ in log if hook == "packet"]
    assert fed == [1, 2] and [f for h, f, _ in second if h == "packet"] == [1, 2]
    assert log[-1][0] == second[-1][0] == "done" and source.closed == 1


def test_every_done_runs_and_the_first_failure_is_raised():
    lock, log, later = threading.RLock(), [], []
    with pytest.raises(RuntimeError, match="done failed"):
        EventStream(ListSource(2), [Recorder(lock, log, fail_done=True),
                                    Recorder(lock, later)]).run(lock=lock)
    assert log[-1][0] == "done" and later[-1][0] == "done"


def test_a_broken_source_is_the_error_raised_not_a_done_that_fails_after_it():
    lock, log = threading.RLock(), []
    source = ListSource(5, fail_at=3)
    with pytest.raises(OSError, match="the capture broke"):
        EventStream(source, [Recorder(lock, log, fail_done=True)]).run(lock=lock)
    assert [f for h, f, _ in log if h == "packet"] == [1, 2]
    assert log[-1][0] == "done" and source.closed == 1


class Order:
    """Records (addon, frame) for each packet: the order events reach the addons."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def packet(self, event) -> None:
        self.log.append((self.name, event.frame))


@pytest.mark.parametrize("count", [0, 1, 4, 5, 11])
def test_a_batch_run_reads_ahead_and_gives_each_addon_every_event_in_order(monkeypatch, count):
    # a file, no lock, stop or pace hook: read READ_AHEAD at a time (whole batches, a short
    # last one, none at all), each batch to one addon, then the next
    monkeypatch.setattr("monitor.stream.READ_AHEAD", 4)
    log: list = []
    source = FileSource(count)
    acc = EventStream(source, [Order("a", log), Order("b", log)]).run()
    batches = [range(start, min(start + 4, count + 1)) for start in range(1, count + 1, 4)]
    assert log == [(name, frame) for batch in batches for name in "ab" for frame in batch]
    assert acc.analysed == count and source.closed == 1


@pytest.mark.parametrize("fail_at", [1, 3, 5, 6])
def test_a_batch_run_feeds_what_it_read_before_the_source_broke(monkeypatch, fail_at):
    monkeypatch.setattr("monitor.stream.READ_AHEAD", 4)
    log: list = []
    source = FileSource(9, fail_at=fail_at)
    with pytest.raises(OSError, match="the capture broke"):
        EventStream(source, [Order("a", log), Order("b", log)]).run()
    assert sorted(log) == [(name, frame) for name in "ab" for frame in range(1, fail_at)]
    assert source.accounting.analysed == fail_at - 1 and source.closed == 1


def test_a_source_that_may_not_be_read_ahead_is_fed_each_event_as_it_comes(monkeypatch):
    # a live source: the addons see each event before the next one is read
    monkeypatch.setattr("monitor.stream.READ_AHEAD", 4)
    log: list = []

    class Live(ListSource):
        def events(self):
            for event in super().events():
                log.append(("read", event.frame))
                yield event

    EventStream(Live(3), [Order("a", log)]).run()
    assert log == [("read", 1), ("a", 1), ("read", 2), ("a", 2), ("read", 3), ("a", 3)]


class BatchOrder(Order):
    """An addon with a `packets` hook beside `packet`: it logs each call's frames."""

    def packets(self, events) -> None:
        self.log.append((self.name, tuple(event.frame for event in events)))


@pytest.mark.parametrize("count", [0, 1, 4, 9])
def test_a_batch_run_gives_an_addon_with_packets_each_batch_in_one_call(monkeypatch, count):
    # beside an addon that has packet() only (each event), in the addons' order
    monkeypatch.setattr("monitor.stream.READ_AHEAD", 4)
    log: list = []
    EventStream(FileSource(count), [BatchOrder("a", log), Order("b", log)]).run()
    batches = [tuple(range(start, min(start + 4, count + 1)))
               for start in range(1, count + 1, 4)]
    assert log == [entry for batch in batches
                   for entry in [("a", batch)] + [("b", frame) for frame in batch]]


def test_an_event_at_a_time_an_addon_with_packets_gets_packet():
    log: list = []
    EventStream(ListSource(2), [BatchOrder("a", log)]).run(lock=threading.RLock())
    assert log == [("a", 1), ("a", 2)]


def esp_event(frame: int, malformed: str | None = None) -> PacketEvent:
    """A tunnel: an outer ESP that opened, an SA bundle (RFC 4301 4.5) inside it whose inner
    header did not, and an inner layer with its own ESP of no keyring SA."""
    inner_bundle = Esp(0x2002, 1, undecrypted="icv-failed")
    outer = IPv6Layer("2001:db8::1", "2001:db8::2",
                      esp=Esp(0x1001, 1, decrypted=True, bundled=inner_bundle))
    inner = IPv6Layer("2001:db8::3", "2001:db8::4", esp=Esp(0x3003, 1, undecrypted="no-sa"))
    return PacketEvent(frame=frame, time=float(frame), length=60, layers=(outer, inner),
                       malformed=malformed)


@pytest.mark.parametrize("read_ahead", [False, True])
def test_every_esp_header_and_malformed_event_is_counted_batch_or_not(monkeypatch, read_ahead):
    monkeypatch.setattr("monitor.stream.READ_AHEAD", 2)

    class EspSource(ListSource):
        def events(self):
            for frame in range(1, 6):
                yield esp_event(frame, "bad" if frame % 2 else None)

    source = EspSource(0)
    source.read_ahead = read_ahead
    acc = EventStream(source, []).run()
    assert (acc.analysed, acc.malformed) == (2, 3)
    assert (acc.esp_decrypted, acc.esp_undecrypted) == (5, 10)
    assert acc.esp_undecrypted_reasons == {"icv-failed": 5, "no-sa": 5}
