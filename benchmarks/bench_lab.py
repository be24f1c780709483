"""Speed of the lab's crowd generator, against tshark reading what it generated, in one run.

For each crowd size (default 20, 100, 500 nodes; mixed procedures, 5 moves per node, sequential
SPIs with step 16, the crowd's own defaults otherwise) times:
  lab     : lab.crowd.run_crowd (plan, every packet built and encrypted, the 4 files written)
  tshark  : tshark -r capture.pcapng -T fields -e frame.number (reading the same capture)
and prints packets, seconds, packets/s and the ratio lab / tshark (how many tshark reads of
its own capture one generation costs).

Usage: python benchmarks/bench_lab.py [--nodes 20 100 500] [--runs R] [--moves-per-node M]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--moves-per-node", type=int, default=5)
    args = parser.parse_args()
    from lab.crowd import run_crowd

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| nodes | packets | lab s | packets/s | tshark -T fields s | lab / tshark |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in args.nodes:
        lab_times, tshark_times, packets = [], [], 0
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="mip6mon-bench-lab-") as out:
                seconds, truth = timed(lambda out=out, n=n: run_crowd(
                    out, nodes=n, moves_per_node=args.moves_per_node, spi="sequential",
                    spi_step=16, procedures="mixed", seed=1))
                lab_times.append(seconds)
                packets = len(truth["frames"])
                cmd = ["tshark", "-r", str(Path(out) / "capture.pcapng"), "-T", "fields",
                       "-e", "frame.number"]
                seconds, done = timed(lambda cmd=cmd: subprocess.run(
                    cmd, capture_output=True, check=True))
                tshark_times.append(seconds)
        lab, tshark = statistics.median(lab_times), statistics.median(tshark_times)
        print(f"| {n} | {packets:,} | {lab:.2f} | {packets / lab:,.0f} | {tshark:.2f} | "
              f"{lab / tshark:.2f} |")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
