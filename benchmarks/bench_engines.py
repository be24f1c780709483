"""Both engines of `mip6mon report` side by side, against tshark on the same file in the same run.

The captures are bench_report.py's (raw IPv6, that share of mobility traffic, cached in /tmp).
Each path runs as its own process:
  tshark -T fields  : tshark -n -r FILE -Y <MOBILITY_FILTER> -T fields -e <a dozen fields>
  tshark -T json -x : the same filter, the output pyshark parses (JSON with raw values)
  pyshark alone     : pyshark's FileCapture over that output, packets parsed, nothing else
  report walk       : mip6mon report FILE --format json (the default engine)
  report pyshark    : mip6mon report FILE --format json --engine pyshark
Printed: wall and CPU seconds (of all the path's processes), packets per second, the ratio to
`tshark -T fields` (> 1: faster than tshark), peak RSS summed over the path's processes, and
the load average (the machine is shared: compare the ratios of one run).

Usage: python benchmarks/bench_engines.py [--packets N ...] [--mobility PCT ...] [--runs R]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_report import (  # noqa: E402 - after the path is set
    TSHARK_FIELDS,
    generate,
    measured,
    print_paths,
)

PYSHARK_ALONE = (
    "import sys, pyshark; from dissectors.walk import MOBILITY_FILTER; "
    "from dissectors.pyshark_packets import PYSHARK_OPTIONS; "
    "c = pyshark.FileCapture(sys.argv[1], display_filter=MOBILITY_FILTER, keep_packets=False, "
    "**PYSHARK_OPTIONS); n = sum(1 for _ in c); c.close()")


def paths(capture: Path) -> dict[str, list[str]]:
    from dissectors.walk import MOBILITY_FILTER
    tshark = ["tshark", "-n", "-r", str(capture), "-Y", MOBILITY_FILTER]
    fields = tshark + ["-T", "fields"]
    for f in TSHARK_FIELDS:
        fields += ["-e", f]
    report = [sys.executable, "-m", "monitor.cli", "report", str(capture), "--format", "json"]
    return {
        "tshark -T fields": fields,
        "tshark -T json -x": tshark + ["-T", "json", "-x", "--no-duplicate-keys"],
        "pyshark alone": [sys.executable, "-c", PYSHARK_ALONE, str(capture)],
        "report walk": report + ["--engine", "walk"],
        "report pyshark": report + ["--engine", "pyshark"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, nargs="+", default=[200_000])
    ap.add_argument("--mobility", type=float, nargs="+", default=[10.0],
                    help="percent of packets that are mobility traffic")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}")
    for count in args.packets:
        for share in args.mobility:
            capture = Path(f"/tmp/mip6mon-bench-{count}-{share:g}.pcap")
            if not capture.exists():
                started = time.perf_counter()
                generate(capture, count, share)
                print(f"generated {capture} in {time.perf_counter() - started:.1f} s")
            results: dict[str, list[tuple[float, float, int]]] = {}
            for _ in range(args.runs):
                for name, argv in paths(capture).items():
                    results.setdefault(name, []).append(measured(argv))
            print_paths(results, count, share, args.runs, cpu_ratio=False)
            walk = statistics.median(w for w, _, _ in results["report walk"])
            shark = statistics.median(w for w, _, _ in results["report pyshark"])
            print(f"report --engine pyshark takes {shark / walk:.1f}x the default engine's time")


if __name__ == "__main__":
    main()
