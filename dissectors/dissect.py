"""The dissector stage: capture records in, neutral events out, every frame counted.

No tshark (issue 10: tshark only for what it alone gives: the dashboard's display filter,
detail tree and export). A file is read record by record (dissectors.capfile); live, dumpcap
writes pcapng to a pipe that is read the same way (dissectors.live). Each record goes through
the octet pre-filter (plain TCP/UDP/ICMPv6 never reach the walk), then dissectors.walk, which
decides relevance with MOBILITY_FILTER's meaning and makes the event. ESP stays encrypted
here: the keyed stage (dissectors.decrypt) opens it, in this process or another.

Accounting (read = analysed + filtered + malformed + dropped): the stage counts `read`,
`filtered` (with the reason when the walk could not see into a frame: `unwalked`), the
malformed frames that have no IPv6 header to make an event of, and the kernel's drops dumpcap
reported (`kernel_dropped`); the event stream counts the events (analysed, or malformed).
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import BinaryIO, TypeVar, cast

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.decrypt import EspDecryptor
from dissectors.events import IPv6Layer, PacketEvent
from dissectors.walk import Walk, Walker, candidate, common_event, event
from keys.errors import UserError

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
                 tap: Tap | None = None, counts_read: bool = True):
        self.accounting = accounting
        self.sensor = sensor
        self.prefilter = prefilter
        self.tap = tap
        # False: whoever hands the records counts them read (dissectors.live, whose reading
        # thread may drop some before they get here)
        self.counts_read = counts_read
        self.walker = Walker()

    def events(self, records: Iterable[Record],
               decryptor: EspDecryptor | None = None) -> Iterator[PacketEvent]:
        """The events of `records`; with a `decryptor` (the keyed stage in this process, for a
        file's events, which may wait), each frame's ESP opened, OPEN_BATCH frames at a time
        (_opened): a common chain's in its event (EspDecryptor.decrypt), any other frame's
        in its walk (EspDecryptor.open_walk), each event made once and the one
        EspDecryptor.opened would give. The tap sees them as they are handed on."""
        made = self._made(records, decryptor is not None)
        if decryptor is None:
            return cast(Iterator[PacketEvent], made)      # nothing _Sealed without keys
        return self._opened(made, decryptor)

    def _made(self, records: Iterable[Record], keyed: bool) -> Iterator[PacketEvent | _Sealed]:
        """Each record's event; `keyed`: each handed on _Sealed instead (with its record: its
        ESP opened and the tap shown it by _open_batch, in order)."""
        acc = self.accounting
        walker = self.walker
        prefilter = self.prefilter
        sensor = self.sensor
        counts_read = self.counts_read
        tap = self.tap
        for rec in records:
            if counts_read:
                acc.read += 1
            data = rec.data
            if prefilter and not candidate(rec.linktype, data):
                acc.filtered += 1
                continue
            try:
                # most frames take a common chain, made into their event at once; the others
                # are walked in general (the same event for a common one: walk.common_event)
                ev = common_event(rec, sensor)
                if ev is None:
                    walk = walker.frame(rec.linktype, data, rec.length)
                    if not walk.selected:
                        acc.filtered += 1
                        if walk.unwalked is not None:
                            acc.unwalked[walk.unwalked] = acc.unwalked.get(walk.unwalked, 0) + 1
                        continue
                    if not walk.layers:
                        # selected as malformed, with no IPv6 header to analyse: counted
                        acc.malformed += 1
                        continue
                    if keyed:
                        yield rec, None, walk
                        continue
                    ev = event(walk, rec.number, rec.time, rec.length, rec.comments, sensor)
            except Exception as exc:  # noqa: BLE001 - a walk bug becomes a counted frame
                ev = _failed(rec, sensor, exc)
            if keyed:
                yield rec, ev, None
                continue
            if tap is not None:
                tap(rec, ev)
            yield ev

    def _opened(self, made: Iterator[PacketEvent | _Sealed],
                decryptor: EspDecryptor) -> Iterator[PacketEvent]:
        """`made` with each _Sealed frame opened, in order, OPEN_BATCH frames at a time: the
        batch's frames dissected, then its ESP opened one after the other. Taking turns per
        frame, the walk and the decryption (other code, the SAs' state and contexts) evict
        each other from the CPU's caches: 200,000 frames at 100 % mobility, 25,000 ESP, the
        ESP stage took 0.48 CPU s turn by turn, 0.26 in batches (tools/stages.py keys minus
        nokeys, as EventStream._read_ahead found for the addons). An error from the reader
        is raised once the frames before it are handed on (batches)."""
        for batch in batches(made, OPEN_BATCH):
            yield from self._open_batch(batch, decryptor)

    def _open_batch(self, batch: list[PacketEvent | _Sealed],
                    decryptor: EspDecryptor) -> list[PacketEvent]:
        """The batch's _Sealed frames made events (in place, in order), each ESP header
        opened: a common chain's in its event (a common chain's only ESP header ends it:
        walk.common_event), any other frame's in its walk, before its event is made (what
        EspDecryptor.opened passes on as it is, one layer and no ESP, as it is)."""
        tap, sensor = self.tap, self.sensor
        for n, item in enumerate(batch):
            rec, ev, walk = cast(_Sealed, item)
            try:
                if walk is not None:
                    layers = walk.layers
                    if len(layers) > 1 or layers[0].esp is not None:
                        decryptor.open_walk(walk)
                    ev = event(walk, rec.number, rec.time, rec.length, rec.comments, sensor)
                else:
                    assert ev is not None
                    if ev.layers[-1].esp is not None:
                        ev = decryptor.decrypt(ev)
            except Exception as exc:  # noqa: BLE001 - as a walk bug (_made)
                ev = _failed(rec, sensor, exc)
            if tap is not None:
                tap(rec, ev)
            batch[n] = ev
        return cast(list[PacketEvent], batch)


# frames a keyed Dissector makes before it opens their ESP (Dissector._opened)
OPEN_BATCH = 512
# records a capture file's reader reads before they are dissected (CaptureFile.events)
READ_AHEAD = 512

_T = TypeVar("_T")


def batches(items: Iterator[_T], size: int) -> Iterator[list[_T]]:
    """`items` in lists of `size` (the last one shorter, never empty). An error while taking
    them is raised once the items taken before it are handed on, in their batch."""
    while True:
        batch: list[_T] = []
        try:
            batch.extend(islice(items, size))      # keeps what it took before an error
        except BaseException:
            if batch:
                yield batch
            raise
        if batch:
            yield batch
        if len(batch) < size:
            return


def read_ahead(records: Iterator[Record]) -> Iterator[Record]:
    """`records` READ_AHEAD at a time: a batch read, then dissected. Taking turns per frame,
    the reader and the walk evict each other from the CPU's caches: 200,000 frames at 100 %
    mobility, no keys, 1.25 -> 1.15 CPU s (CaptureFile's events, in-process, same run)."""
    for batch in batches(records, READ_AHEAD):
        yield from batch


# A frame whose ESP is yet to be opened: its record, and its common chain's event or its
# walk (a plain tuple: one is made for every frame with keys)
_Sealed = tuple[Record, PacketEvent | None, Walk | None]


def _failed(rec: Record, sensor: str, exc: Exception) -> PacketEvent:
    """The event of a frame whose dissection raised: malformed, with the error's class."""
    return PacketEvent(frame=rec.number, time=rec.time, length=rec.length,
                       layers=(IPv6Layer("::", "::"),), sensor=sensor,
                       malformed=f"dissector error: {exc.__class__.__name__}")


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


def settle(acc: Accounting, drops: capfile.DropCounter) -> None:
    """What the reader itself found in one capture stream: the kernel drops dumpcap reported
    (never read: `kernel_dropped`, beside the identity); a damaged capture ends after its last
    whole frame, and the accounting says where and why the rest could not be read (issue 13:
    `report` exits 3, `"complete": false`)."""
    acc.kernel_dropped += drops.dropped
    if drops.damage is not None and acc.incomplete is None:
        acc.incomplete = f"damaged capture: {drops.damage}"


class CaptureFile:
    """Events of a capture file (pcap, pcapng, gzip-compressed too)."""

    def __init__(self, path: str, accounting: Accounting, sensor: str = "",
                 prefilter: bool = True, tap: Tap | None = None):
        self.path = str(path)
        check_capture_file(self.path)
        self.accounting = accounting
        # the reader applies the pre-filter (capfile.records), so the dissector does not
        self.prefilter = prefilter
        self.dissector = Dissector(accounting, sensor, False, tap)
        self._stream: BinaryIO | None = None
        self._read: float | None = None          # how far the last pass read (fraction())

    def events(self, decryptor: EspDecryptor | None = None) -> Iterator[PacketEvent]:
        """Its events (`decryptor`: as Dissector.events)."""
        try:
            self._stream = capfile.open_capture(self.path)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read: {exc.strerror}") from None
        drops = capfile.DropCounter()
        try:
            # frames the pre-filter refuses are counted by the reader, never handed on
            prefilter = (candidate, self.accounting) if self.prefilter else None
            try:
                # a file's records may wait: read ahead of their dissection
                yield from self.dissector.events(read_ahead(
                    capfile.records(self._stream, drops, prefilter=prefilter)), decryptor)
            except (EOFError, gzip.BadGzipFile):
                pass           # a gzip file cut short: the frames before the cut were read
            settle(self.accounting, drops)
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
