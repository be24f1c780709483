"""dissectors.capfile on the damaged captures of issue 13, each held against real tshark:
the frames before the damage are read, the damage says where and why, nothing raises."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest

from dissectors import capfile

PKT = bytes.fromhex("6000000000083b4020010db8000000000000000000000001"
                    "20010db8000000000000000000000002") + bytes(8)     # IPv6, no next header


def block(btype: int, body: bytes, length: int | None = None) -> bytes:
    body += bytes(-len(body) % 4)
    total = 12 + len(body) if length is None else length
    return struct.pack("<II", btype, total) + body + struct.pack("<I", 12 + len(body))


SHB = block(capfile.SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
IDB = block(capfile.IDB, struct.pack("<HHI", 101, 0, 0))       # raw IP


def epb(data: bytes = PKT, length: int | None = None) -> bytes:
    return block(capfile.EPB, struct.pack("<IIIII", 0, 0, 0, len(data), len(data)) + data,
                 length)


def pcap(*records: bytes) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + b"".join(records)


def record(data: bytes = PKT, incl: int | None = None) -> bytes:
    return struct.pack("<IIII", 1, 0, len(data) if incl is None else incl, len(data)) + data


def read(path: Path) -> tuple[int, capfile.Damage | None]:
    drops = capfile.DropCounter()
    with capfile.open_capture(str(path)) as f:
        frames = sum(1 for _ in capfile.records(f, drops))
    return frames, drops.damage


def tshark_frames(path: Path) -> tuple[int, int]:
    run = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60)
    return len(run.stdout.split()), run.returncode


DAMAGED = {
    # issue 13's cases: (file octets, frames before the damage, what the damage names)
    "garbage-mid-file": (SHB + IDB + epb() * 3 + bytes(range(200, 240)) + epb() * 2, 3,
                         "too large"),
    "block-length-8": (SHB + IDB + epb() * 3 + struct.pack("<II", capfile.EPB, 8) + epb(), 3,
                       "total block length 8 of an EPB"),
    "huge-shb-length": (SHB[:4] + struct.pack("<I", 0xFFFFFFF0) + SHB[8:] + IDB + epb(), 0,
                        "total block length 4294967280 is too large"),
    "epb-block-length-13": (SHB + IDB + epb() * 3 + epb(length=13) + epb(), 3,
                            "total block length 16 of an EPB is less than 32"),
    # (past the first three records: wiretap guesses among pcap variants from those)
    "pcap-record-length-0xfffffff0": (pcap(record(), record(), record(),
                                           record(incl=0xFFFFFFF0), record()), 3,
                                      "captured length 4294967280 is larger than 262144"),
    "trailer-mismatch": (SHB + IDB + epb() + epb()[:-4] + struct.pack("<I", 999) + epb(), 1,
                         "don't match"),
    "interface-not-described": (SHB + epb(), 0, "interface index 0"),
    "cut-in-a-record": (pcap(record(), record(), record())[:-10], 2, "cut short"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_captures_read_as_far_as_tshark_and_say_where(tmp_path, name):
    data, frames, reason = DAMAGED[name]
    path = tmp_path / f"{name}.cap"
    path.write_bytes(data)
    count, damage = read(path)
    assert (count, tshark_frames(path)) == (frames, (frames, 2))
    assert damage is not None and reason in damage.reason
    assert damage.frames == frames and 0 <= damage.offset < len(data)
    assert str(damage).startswith(f"{damage.unit} {damage.number} at offset {damage.offset}")


def test_a_gzip_capture_cut_short_is_damage_after_its_whole_frames(tmp_path):
    whole = SHB + IDB + epb() * 40
    path = tmp_path / "cut.pcapng.gz"
    compressed = gzip.compress(whole, mtime=0)
    path.write_bytes(compressed[:len(compressed) * 2 // 3])
    count, damage = read(path)
    assert damage is not None and "gzip" in damage.reason
    assert tshark_frames(path) == (count, 2) and 0 < count < 40


def test_an_intact_capture_has_no_damage_and_frames_tshark_counts_are_counted(tmp_path):
    custom = block(0xBAD, struct.pack("<I", 32473) + b"data")          # a frame for tshark
    journal = block(9, b"__REALTIME_TIMESTAMP=1\nMESSAGE=x\n")         # a frame for tshark
    unknown = block(0x101, bytes(8))                                    # skipped by both
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(SHB + IDB + epb() + custom + journal + unknown + epb())
    drops = capfile.DropCounter()
    with capfile.open_capture(str(path)) as f:
        recs = list(capfile.records(f, drops))
    assert drops.damage is None and tshark_frames(path) == (4, 0)
    assert [(r.number, r.linktype) for r in recs] == [
        (1, 101), (2, capfile.OTHER_RECORD), (3, capfile.OTHER_RECORD), (4, 101)]


def test_without_a_counter_damage_raises_after_the_whole_frames():
    frames = []
    with pytest.raises(capfile.CaptureDamaged) as err:
        for rec in capfile.records(BytesIO(SHB + IDB + epb() * 2 + epb(length=13))):
            frames.append(rec.number)
    assert frames == [1, 2] and err.value.damage.number == 5


def test_a_huge_record_length_allocates_nothing_under_a_memory_limit(tmp_path):
    """A pcap record length of 0xFFFFFFF0 under a 512 MB address-space limit: the damage is
    reported, no MemoryError (issue 13)."""
    path = tmp_path / "huge.pcap"
    path.write_bytes(pcap(record(), record(incl=0xFFFFFFF0) + bytes(64)))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
            "from dissectors import capfile\n"
            "d = capfile.DropCounter()\n"
            "n = sum(1 for _ in capfile.records(capfile.open_capture(sys.argv[1]), d))\n"
            "print(n, d.damage.reason)")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1 captured length 4294967280 is larger than 262144"


def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "capture.pcap"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(capfile.NotARegularFile):
            capfile.open_capture(path)


def _both_ways(data: bytes) -> tuple[object, object]:
    """(records and damage by `blocks`, the same by `records`: the pcap reader's buffered
    path) of a stream."""
    out = []
    for read_all in (lambda f, d: [b.record for b in capfile.blocks(f, d) if b.record],
                     lambda f, d: list(capfile.records(f, d))):
        drops = capfile.DropCounter()
        out.append((read_all(BytesIO(data), drops), drops.damage))
    return out[0], out[1]


def test_pcap_records_read_buffered_are_the_blocks_frames_whole_or_cut_anywhere():
    """records() cuts pcap frames from 1 MiB reads; blocks() reads each on its own: the same
    frames and the same damage (where, which record, why), frames longer than one read too."""
    big = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 231)   # D-Bus: 128 MiB frames
    big += b"".join(record(bytes([n % 251]) * n) for n in (10, 3 << 20, 5, (1 << 20) - 3, 7))
    small = pcap(*(record(PKT + bytes(n % 97)) for n in range(30_000)))   # several reads
    for data in (big, small):
        cuts = {len(data), len(data) - 1, 24, 30, 24 + 16 + 10 + 8, 24 + 16 + 10 + 16 + 100,
                *range(len(data) - 200_000, len(data), 77_777), (1 << 20) + 5}
        for cut in sorted(c for c in cuts if 24 <= c <= len(data)):
            by_blocks, by_records = _both_ways(data[:cut])
            assert by_records == by_blocks, cut
    assert len(_both_ways(small)[1][0]) == 30_000
    at = 24 + sum(16 + len(PKT) + n % 97 for n in range(20_000))      # record 20,001
    bad = bytearray(small)
    bad[at + 8:at + 12] = struct.pack("<I", 1 << 30)                       # its captured length
    by_blocks, by_records = _both_ways(bytes(bad))
    assert by_records == by_blocks and len(by_records[0]) == 20_000
    assert "larger than" in by_records[1].reason and by_records[1].offset == at


def test_a_pcap_prefilter_counts_the_frames_it_passes_over_and_keeps_the_numbering():
    """records(prefilter=(wanted, counts)): a frame `wanted` refuses is counted read and
    filtered instead of being yielded (a plain pcap's never made a Record); the others keep
    their frame numbers, across several reads; pcapng the same."""
    from dissectors.accounting import Accounting

    frames = [bytes([n % 3]) + PKT[1:] + bytes(n % 200) for n in range(40_000)]
    data = pcap(*(record(f) for f in frames))                       # several 1 MiB reads
    counts = Accounting()
    kept = []
    for rec in capfile.records(BytesIO(data), capfile.DropCounter(),
                               prefilter=(lambda linktype, octets: octets[0] == 1, counts)):
        kept.append(rec)           # the frames passed over before it are counted by now
        assert counts.read == counts.filtered == rec.number - len(kept)
    assert [r.number for r in kept] == [n + 1 for n in range(40_000) if n % 3 == 1]
    assert [r.data for r in kept] == [f for f in frames if f[0] == 1]
    assert counts.read == counts.filtered == 40_000 - len(kept)
    every = list(capfile.records(BytesIO(data)))
    assert [r for r in every if r.data[0] == 1] == kept
    ng = Accounting()
    shb = block(capfile.SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(capfile.IDB, struct.pack("<HHI", 1, 0, 0))
    stopped = Accounting()       # a pass stopped early counts what it passed over
    reader = capfile.records(BytesIO(data), prefilter=(lambda lt, octets: octets[0] == 2,
                                                       stopped))
    assert next(reader).number == 3
    for _ in range(40):
        next(reader)
    reader.close()
    assert stopped.read == stopped.filtered == 123 - 41
    ng_data = shb + idb + epb() + epb(PKT[:-1] + b"\x01") + epb()
    ng_kept = list(capfile.records(BytesIO(ng_data),
                                   prefilter=(lambda linktype, octets: octets[-1] == 1, ng)))
    assert [r.number for r in ng_kept] == [2] and ng.read == ng.filtered == 2
