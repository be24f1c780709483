"""Speed of the dissect + report path against tshark alone, on one 200,000-packet capture.

Generates (once, cached in /tmp) a pcap of 200,000 raw-IPv6 packets: 10 % mobility (BU with
HAO, BA with RH2, HoTI/HoT, correspondent BU with the 0xFE option, ESP, IPv6-in-IPv6) and 90 %
other IPv6 (UDP, TCP). Packets are pre-built bytes (scapy once per template), so generation
takes about a second. Then, in the same run, times:
  tshark  : tshark -r FILE -Y <MOBILITY_FILTER> -T fields -e <our field list>
  dissect : PcapSource(FILE) through an EventStream with no addons (the dissector stage)
  report  : python -m monitor.cli report FILE --format json (dissect + every analyzer)
and prints packets/s for each and the ratio to tshark (> 1 means faster than tshark).

Usage: python benchmarks/bench_report.py [--packets N] [--runs R]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINKTYPE_RAW = 101


def templates() -> tuple[list[bytes], list[bytes]]:
    """(mobility packets, other packets) as bytes."""
    from scapy.all import MIP6MH_BA, MIP6MH_BU, TCP, UDP, IPv6, Raw

    from tests.dissectors import builders as b
    mobility = [
        bytes(IPv6(src=b.COA, dst=b.CN) / b.hao(b.HOA) / MIP6MH_BU(seq=5, flags=0, mhtime=10)),
        bytes(IPv6(src=b.CN, dst=b.COA) / b.rh2(b.HOA) / MIP6MH_BA(seq=5)),
        bytes(b.hoti_with_p()),
        bytes(b.hot_with_option18()),
        bytes(b.signed_cn_bu(b.KBM, b.COA, b.CN, 9, pseudo=b.PHOA)[0]),
        bytes(b.home_bu_tunnel(b.FIRST_SPI, 3)),
        bytes(IPv6(src=b.HA, dst=b.COA) / IPv6(src=b.CN, dst=b.HOA) / UDP(sport=5, dport=6)
              / Raw(b"data" * 10)),
        bytes(IPv6(src=b.CN, dst=b.COA) / b.rh2(b.HOA) / UDP(sport=80, dport=5000)
              / Raw(b"x" * 60)),
    ]
    other = [
        bytes(IPv6(src="2001:db8:9::1", dst="2001:db8:9::2") / UDP(sport=53, dport=5353)
              / Raw(b"q" * 40)),
        bytes(IPv6(src="2001:db8:9::3", dst="2001:db8:9::4") / TCP(sport=443, dport=40000,
                                                                     flags="A") / Raw(b"t" * 100)),
        bytes(IPv6(src="2001:db8:9::5", dst="2001:db8:9::6") / UDP(sport=123, dport=123)
              / Raw(b"n" * 48)),
    ]
    return mobility, other


def generate(path: Path, count: int) -> None:
    mobility, other = templates()
    t0 = 1767225600  # 2026-01-01
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    tcp = other[1]
    for n in range(count):
        if n % 10 == 0:
            data = mobility[(n // 10) % len(mobility)]
        elif n % len(other) == 1:
            # a TCP stream that moves forward (realistic for tshark's TCP analysis): 100 streams,
            # sequence numbers advance by the payload length; checksums are not verified
            stream, step = n % 100, n // 100
            data = (tcp[:40] + (40000 + stream).to_bytes(2, "big") + tcp[42:44]
                    + ((step * 100) & 0xFFFFFFFF).to_bytes(4, "big") + tcp[48:])
        else:
            data = other[n % len(other)]
        out += struct.pack("<IIII", t0 + n // 1000, (n % 1000) * 1000, len(data), len(data))
        out += data
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(out)
    os.replace(tmp, path)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)   # reaped children (tshark, ...)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measured(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children): on a shared machine the
    CPU time is the steadier measure, the wall time the one a user sees."""
    cpu, wall = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip-report", action="store_true")
    args = ap.parse_args()
    path = Path(f"/tmp/mip6mon-bench-{args.packets}.pcap")
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        print(f"  {timed(lambda: generate(path, args.packets)):.1f} s")

    from dissectors.tshark import FIELDS, MOBILITY_FILTER
    from monitor.sources import PcapSource
    from monitor.stream import EventStream

    tshark_argv = ["tshark", "-n", "-r", str(path), "-Y", MOBILITY_FILTER, "-T", "fields"]
    for f in FIELDS:
        tshark_argv += ["-e", f]

    def run_tshark():
        subprocess.run(tshark_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)

    counted = {}

    def run_dissect():
        acc = EventStream(PcapSource(str(path)), []).run()
        counted.update(acc.as_dict())

    def run_report():
        subprocess.run([sys.executable, "-m", "monitor.cli", "report", str(path), "--format",
                        "json"], cwd=ROOT, stdout=subprocess.DEVNULL, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})

    paths = [("tshark -T fields", run_tshark), ("dissect (PcapSource)", run_dissect)]
    if not args.skip_report:
        paths.append(("mip6mon report", run_report))
    results = {}
    for _ in range(args.runs):
        for name, fn in paths:
            results.setdefault(name, []).append(measured(fn))
    base = statistics.median(w for w, _ in results["tshark -T fields"])
    base_cpu = statistics.median(c for _, c in results["tshark -T fields"])
    print(f"{args.packets} packets, 10 % mobility; median of {args.runs} run(s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'path':24} {'wall s':>7} {'packets/s':>10} {'vs tshark':>9} {'CPU s':>7} "
          f"{'CPU vs tshark':>13}")
    for name, runs in results.items():
        sec = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:24} {sec:7.2f} {args.packets / sec:10.0f} {base / sec:9.2f} {cpu:7.2f} "
              f"{base_cpu / cpu:13.2f}")
    print("accounting:", counted)


if __name__ == "__main__":
    main()
