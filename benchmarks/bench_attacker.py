"""Does the attacker view scale linearly with a crowd? (issue 9: `report` took 29x the time of a
10-node crowd for a 100-node one.)

Generates lab crowds with the same moves per node (mixed procedures, moves in turn; by default
10 and 100 nodes, random and sequential SPIs), then, in the same run, times on each capture:
  tshark  : tshark -r FILE -Y <mobility filter> -T fields -e <our fields>  (the yardstick)
  report  : mip6mon report FILE --vantage all --format json                (no keys: the
            attacker, and the keyed view with nothing to decrypt)
  attacker: the four vantage points' AttackerAnalyzers alone on the dissected events
and prints each against tshark on the same file, and the largest crowd's times against the
smallest's next to the traffic ratio. The issue's bar: report on 100 nodes within 12x of 10.

Usage: python benchmarks/bench_attacker.py [--nodes 10 100] [--runs 3] [--moves-per-node 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_report import TSHARK_FIELDS, measured  # noqa: E402  (a process's wall, CPU s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--spi", nargs="+", default=["random", "sequential"])
    ap.add_argument("--moves-per-node", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from dissectors.walk import MOBILITY_FILTER
    from lab.crowd import run_crowd
    from monitor.attacker import AttackerAnalyzer
    from monitor.placement import VANTAGES
    from monitor.sources import PcapSource

    work = Path(tempfile.mkdtemp(prefix="mip6mon-bench-attacker-"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of "
          f"{args.runs} run(s); crowds: mixed procedures, moves in turn, "
          f"{args.moves_per_node} moves per node")
    print(f"{'crowd':22} {'packets':>8} {'tshark s':>9} {'report s':>9} {'vs tshark':>9} "
          f"{'attacker s':>10} {'CPU report s':>12}")
    rows = {}
    try:
        for spi in args.spi:
            for n in args.nodes:
                d = work / f"{spi}-{n}"
                truth = run_crowd(d, nodes=n, spi=spi, moves_per_node=args.moves_per_node,
                                  procedures="mixed", seed=1)
                capture = str(d / "capture.pcapng")
                tshark = ["tshark", "-n", "-r", capture, "-Y", MOBILITY_FILTER, "-T", "fields"]
                for f in TSHARK_FIELDS:
                    tshark += ["-e", f]
                report = [sys.executable, "-m", "monitor.cli", "report", capture,
                          "--vantage", "all", "--format", "json"]
                events = list(PcapSource(capture).events())

                def run_attacker(events=events) -> tuple[float, float]:
                    """The four vantage points' analyzers alone, in this process."""
                    wall, cpu = time.perf_counter(), time.process_time()
                    attackers = [AttackerAnalyzer(v) for v in VANTAGES]
                    for e in events:
                        for a in attackers:
                            a.packet(e)
                    for a in attackers:
                        a.done()
                        a.report()
                    return time.perf_counter() - wall, time.process_time() - cpu

                times: dict[str, list[tuple[float, float]]] = {}
                for _ in range(args.runs):
                    times.setdefault("tshark", []).append(measured(tshark)[:2])
                    times.setdefault("report", []).append(measured(report)[:2])
                    times.setdefault("attacker", []).append(run_attacker())
                med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
                       for k, v in times.items()}
                rows[(spi, n)] = (len(truth["frames"]), med)
                print(f"{spi + ' N=' + str(n):22} {len(truth['frames']):8} "
                      f"{med['tshark'][0]:9.2f} {med['report'][0]:9.2f} "
                      f"{med['tshark'][0] / med['report'][0]:9.2f} {med['attacker'][0]:10.2f} "
                      f"{med['report'][1]:12.2f}", flush=True)
        lo, hi = min(args.nodes), max(args.nodes)
        for spi in args.spi:
            (p0, m0), (p1, m1) = rows[(spi, lo)], rows[(spi, hi)]
            print(f"{spi}: N={hi} against N={lo}: traffic x{p1 / p0:.1f}, report x"
                  f"{m1['report'][0] / m0['report'][0]:.1f} (CPU x"
                  f"{m1['report'][1] / m0['report'][1]:.1f}), attacker x"
                  f"{m1['attacker'][0] / m0['attacker'][0]:.1f}, tshark x"
                  f"{m1['tshark'][0] / m0['tshark'][0]:.1f}")
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
