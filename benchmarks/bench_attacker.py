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

With `--capture FILE ...` or `--generated PACKETS:PCT ...` (bench_report's generated captures,
e.g. 200000:100) or `--crowd N ...` (a lab crowd with sequential SPIs, 5 moves per node; e.g.
500, the issue's crowd), instead, in the same run on each capture, as processes of their own:
  tshark          : tshark -r FILE -Y <mobility filter> -T fields -e <our fields>
  dissect         : the events alone (PcapSource through an EventStream with no addon)
  dissect+attacker: the same with one AttackerAnalyzer (--vantage, default all) and its report
and prints each one's wall and CPU seconds and summed peak RSS, the attacker's share (the
difference of the two) and the ratio of `dissect+attacker` to tshark (issue 10: per-event cost
and memory of the attacker; issue 12: its memory bounded by what is distinct).

With `--replay N`, the live attacker alone (issue 12's soak without the network): a lab crowd
of N nodes (random SPIs) dissected once, its mobility events fed round and round, renumbered,
at `--rate` events per second of capture time for `--seconds`, into the windowed analyzer the
live dashboard runs (max_packets=`--window`, web.cli's LIVE_ATTACKER_WINDOW), its report taken
every `--every` seconds as the dashboard does; prints this process's resident memory and the
CPU per event each time: flat memory is the target.

Usage: python benchmarks/bench_attacker.py [--nodes 10 100] [--runs 3] [--moves-per-node 5]
       python benchmarks/bench_attacker.py --generated 200000:100 [--crowd 500] [--runs 1]
       python benchmarks/bench_attacker.py --replay 50 [--seconds 600] [--rate 2000]
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

from benchmarks.bench_report import (  # noqa: E402  (a process's wall, CPU s, peak RSS)
    STAGE,
    TSHARK_FIELDS,
    generate,
    measured,
)

# the dissector stage with one attacker on it, to the end and its report (the analysis that
# `report` runs without keys, less the keyed view and the JSON), with the collector settings
# of report's attacker process
ATTACKER_STAGE = """
import sys
from monitor.attacker import AttackerAnalyzer
from monitor.sources import PcapSource
from monitor.stream import EventStream, batch_collector
with batch_collector():
    a = AttackerAnalyzer(sys.argv[2])
    EventStream(PcapSource(sys.argv[1]), [a]).run()
    r = a.report()
print(r['packets_seen'], len(r['profiles']))
"""


def _captures(args, work: Path) -> list[tuple[str, Path]]:
    out = []
    for path in args.capture or ():
        out.append((Path(path).name, Path(path)))
    for spec in args.generated or ():
        count, share = spec.split(":")
        path = Path(f"/tmp/mip6mon-bench-{int(count)}-{share}.pcap")
        if not path.exists():                 # bench_report's cache, made once
            generate(path, int(count), float(share))
        out.append((f"{int(count):,} packets, {share} % mobility", path))
    for n in args.crowd or ():
        from lab.crowd import run_crowd
        d = work / f"crowd-{n}"
        run_crowd(d, nodes=n, spi="sequential", moves_per_node=args.moves_per_node,
                  procedures="mixed", seed=1)
        out.append((f"crowd of {n}, sequential SPIs", d / "capture.pcapng"))
    return out


def attacker_paths(args) -> None:
    """The attacker's time and peak RSS against tshark, in the same run, per capture."""
    from dissectors.walk import MOBILITY_FILTER
    work = Path(tempfile.mkdtemp(prefix="mip6mon-bench-attacker-"))
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of "
              f"{args.runs} run(s); attacker at vantage {args.vantage}")
        for name, capture in _captures(args, work):
            tshark = ["tshark", "-n", "-r", str(capture), "-Y", MOBILITY_FILTER, "-T", "fields"]
            for f in TSHARK_FIELDS:
                tshark += ["-e", f]
            argvs = {"tshark -T fields": tshark,
                     "dissect": [sys.executable, "-c", STAGE, str(capture)],
                     "dissect+attacker": [sys.executable, "-c", ATTACKER_STAGE, str(capture),
                                          args.vantage]}
            runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in argvs}
            for _ in range(args.runs):
                for k, argv in argvs.items():
                    runs[k].append(measured(argv))
            med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3))
                   for k, v in runs.items()}
            base = med["tshark -T fields"][0]
            print(f"{name} (load {os.getloadavg()[0]:.1f})")
            print(f"  {'path':18} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} "
                  f"{'vs tshark':>9}")
            for k, (wall, cpu, rss) in med.items():
                print(f"  {k:18} {wall:8.2f} {cpu:8.2f} {rss / 1e6:12.0f} {base / wall:9.2f}")
            (_, c0, r0), (_, c1, r1) = med["dissect"], med["dissect+attacker"]
            print(f"  {'attacker (diff.)':18} {'':8} {c1 - c0:8.2f} {(r1 - r0) / 1e6:12.0f} "
                  f"{med['tshark -T fields'][1] / max(1e-9, c1 - c0):9.2f} (CPU)", flush=True)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def _rss() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def replay(args) -> None:
    """The live attacker fed a crowd's mobility events round and round (module docstring)."""
    import dataclasses

    from lab.crowd import run_crowd
    from monitor.attacker import AttackerAnalyzer
    from monitor.sources import PcapSource
    work = Path(tempfile.mkdtemp(prefix="mip6mon-bench-attacker-"))
    try:
        run_crowd(work, nodes=args.replay, spi="random", moves_per_node=args.moves_per_node,
                  procedures="mixed", seed=1)
        events = [e for e in PcapSource(str(work / "capture.pcapng")).events()
                  if not e.malformed and e.layers]
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    a = AttackerAnalyzer("all", max_packets=args.window)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; crowd of "
          f"{args.replay}: {len(events)} events sent round and round at {args.rate} per second "
          f"of capture time, window {args.window}, report every {args.every:g} s")
    print(f"{'capture s':>9} {'events':>9} {'RSS MB':>7} {'CPU us/event':>12} "
          f"{'profiles':>8} {'seen':>7}")
    spacing = 1.0 / args.rate
    sent, now, next_report = 0, 0.0, args.every
    cpu = time.process_time()
    done_cpu, done_sent = cpu, 0
    while now < args.seconds:
        for e in events:
            now = sent * spacing
            a.packet(dataclasses.replace(e, frame=sent + 1, time=1e9 + now))
            sent += 1
            if now >= next_report:
                a.advance(1e9 + now)
                report = a.report()
                spent = time.process_time() - done_cpu
                print(f"{now:9.0f} {sent:9} {_rss() / 1e6:7.0f} "
                      f"{spent / max(1, sent - done_sent) * 1e6:12.1f} "
                      f"{len(report['profiles']):8} {report['packets_seen']:7}", flush=True)
                done_cpu, done_sent = time.process_time(), sent
                next_report += args.every
            if now >= args.seconds:
                break


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--spi", nargs="+", default=["random", "sequential"])
    ap.add_argument("--moves-per-node", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--capture", nargs="+", metavar="FILE")
    ap.add_argument("--generated", nargs="+", metavar="PACKETS:PCT")
    ap.add_argument("--crowd", type=int, nargs="+", metavar="NODES")
    ap.add_argument("--vantage", default="all")
    ap.add_argument("--replay", type=int, metavar="NODES")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--window", type=int, default=30_000)
    ap.add_argument("--every", type=float, default=60.0)
    args = ap.parse_args()
    if args.replay:
        replay(args)
        return
    if args.capture or args.generated or args.crowd:
        attacker_paths(args)
        return

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
