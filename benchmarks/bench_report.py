"""Speed of `mip6mon report` and of its dissector stage against tshark, on generated captures.

For each size (packets) and mobility share asked for, generates once (cached in /tmp) a pcap
of raw-IPv6 packets: that share of mobility (BU with HAO, BA with RH2, HoTI/HoT, correspondent
BU with the 0xFE option, a Home BU in ESP tunnel mode, IPv6-in-IPv6, RH2 data) and the rest
other IPv6 (UDP, TCP streams). Packets are pre-built bytes (scapy once per template), so two
million take seconds. Then, in the same run, each path runs as its own process:
  tshark         : tshark -n -r FILE -Y <MOBILITY_FILTER> -T fields -e <a dozen fields>
  dissect        : the dissector stage alone (PcapSource through an EventStream, no addons)
  dissect+keys   : the same with the keyed ESP stage (the capture's ESP is keyed: a keyring
                   with its SA is written beside it)
  report         : python -m monitor.cli report FILE --format json (dissect + keyed +
                   attacker + privacy + JSON)
  report --keys  : the same with the keyring
  report --keys 1p, 2p: the same in one process, and with the attacker in a second process
                   beside the keyed view (monitor.report.two_processes, which the two above
                   choose by the capture's size and the machine's cores)
and prints wall and CPU seconds, packets per second, the ratio to tshark (> 1: faster than
tshark) and the peak RSS of each path, summed over all its processes (each process's VmHWM). The
machine is often shared: the ratios in one run are what to compare, and the load average is
printed.

With `--crowd N ...`, lab crowds instead (lab.crowd: N nodes, the same moves per node, SPIs
allocated 16 apart so the draft 6.4 chains cross, the keyring listing each SA under its first
SPI only): `report --keys` against tshark on each, its cost against the smallest crowd's (issue
10: a 100-node crowd at most 12x a 10-node one), and whether the keyed view equals the lab's
truth (every home and correspondent binding, no finding).

Usage: python benchmarks/bench_report.py [--packets N ...] [--mobility PCT ...] [--runs R]
                                         [--paths NAME ...]
       python benchmarks/bench_report.py --crowd 10 100 500 [--runs R]
  e.g. --packets 200000 2000000 --mobility 1 10 100
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINKTYPE_RAW = 101
TSHARK_FIELDS = ("frame.number", "frame.time_epoch", "frame.len", "frame.protocols",
                 "_ws.col.Info", "frame.comment", "_ws.expert.severity", "_ws.expert.message",
                 "mip6.mhtype", "esp.spi", "ipv6.src", "ipv6.dst")


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


def generate(path: Path, count: int, mobility_percent: float) -> None:
    mobility, other = templates()
    every = 100 / mobility_percent            # one mobility packet every `every` packets
    t0 = 1767225600  # 2026-01-01
    tcp = other[1]
    with open(path.with_suffix(".tmp"), "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        chunk = bytearray()
        mobile = 0
        for n in range(count):
            if int((n + 1) / every) > int(n / every):
                data = mobility[mobile % len(mobility)]
                mobile += 1
            elif n % len(other) == 1:
                # a TCP stream that moves forward (realistic for tshark's TCP analysis):
                # 100 streams, sequence numbers advance; checksums are not verified
                stream, step = n % 100, n // 100
                data = (tcp[:40] + (40000 + stream).to_bytes(2, "big") + tcp[42:44]
                        + ((step * 100) & 0xFFFFFFFF).to_bytes(4, "big") + tcp[48:])
            else:
                data = other[n % len(other)]
            chunk += struct.pack("<IIII", t0 + n // 1000, (n % 1000) * 1000, len(data),
                                 len(data))
            chunk += data
            if len(chunk) > 1 << 22:
                out.write(chunk)
                chunk.clear()
        out.write(chunk)
    os.replace(path.with_suffix(".tmp"), path)


def write_keyring(path: Path) -> None:
    """The SA of the capture's ESP packets (tests.dissectors.builders), chmod 600."""
    from tests.dissectors import builders as b
    path.write_text(
        "[[mobile_node]]\nname = \"mn1\"\n"
        f"home_address = \"{b.HOA}\"\nhome_agent = \"{b.HA}\"\nks = \"{b.KS.hex()}\"\n\n"
        f"[[esp_sa]]\nspi = \"{b.FIRST_SPI:#010x}\"\nsrc = \"*\"\ndst = \"*\"\n"
        f"encryption = \"aes-cbc\"\nencryption_key = \"{b.ENC_KEY.hex()}\"\n"
        f"authentication = \"hmac-sha1-96\"\nauthentication_key = \"{b.AUTH_KEY.hex()}\"\n")
    path.chmod(0o600)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tree_peaks(root: int, peaks: dict[int, int], cpu: dict[int, float]) -> None:
    """Record the peak resident size (VmHWM) of `root` and of every process below it, and the
    CPU seconds (user + system) each of those below it has used so far."""
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            # proc(5): utime and stime are fields 14 and 15
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            continue
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]) * 1024)
        except (OSError, IndexError, ValueError):
            pass
        if pid != root and pid in used:
            cpu[pid] = used[pid]
        todo += children.get(pid, [])


class Run(NamedTuple):
    """One measured run."""
    wall: float          # s
    cpu: float           # s, every process of the run
    rss: int             # bytes: the peak RSS of each process of the run, summed
    first_cpu: float     # s, the first process alone (report 2p: the keyed process)


def measured(argv: list[str], out: Path | None = None) -> Run:
    """One run. VmHWM is sampled every 20 ms (it holds each process's peak since its exec, so
    nothing between samples is missed; ru_maxrss would count the benchmark's own memory at
    the fork). The first process's own CPU is the run's less what the processes below it had
    used at their last sample (each at most 20 ms short). `out`: where its standard output
    goes (else nowhere)."""
    start = time.perf_counter()
    sink = open(out, "wb") if out is not None else subprocess.DEVNULL   # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peaks: dict[int, int] = {}
    below: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            _tree_peaks(proc.pid, peaks, below)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if out is not None:
        sink.close()
    errors = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {errors.strip()[-300:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, sum(peaks.values()), cpu - sum(below.values()))


STAGE = ("import sys; from monitor.sources import PcapSource; from monitor.stream import "
         "EventStream; from keys.keyring import load_keyring; "
         "k = load_keyring(sys.argv[2]) if len(sys.argv) > 2 else None; "
         "EventStream(PcapSource(sys.argv[1], keyring=k), []).run()")


def paths(capture: Path, keyring: Path) -> dict[str, list[str]]:
    from dissectors.walk import MOBILITY_FILTER
    tshark = ["tshark", "-n", "-r", str(capture), "-Y", MOBILITY_FILTER, "-T", "fields"]
    for f in TSHARK_FIELDS:
        tshark += ["-e", f]
    report = [sys.executable, "-m", "monitor.cli", "report", str(capture), "--format", "json"]
    return {
        "tshark -T fields": tshark,
        "dissect": [sys.executable, "-c", STAGE, str(capture)],
        "dissect+keys": [sys.executable, "-c", STAGE, str(capture), str(keyring)],
        "report": report,
        "report --keys": report + ["--keys", str(keyring)],
        # the attacker beside the keyed view or after it, whatever the capture's size
        # (monitor.report.two_processes decides for the two above)
        "report --keys 1p": ["env", "MIP6MON_ONE_PROCESS=1", *report, "--keys", str(keyring)],
        "report --keys 2p": ["env", "MIP6MON_ONE_PROCESS=0", *report, "--keys", str(keyring)],
    }


CROWD = {"moves_per_node": 5, "spi": "sequential", "spi_step": 16, "keyring": "initial",
         "seed": 1}


def crowd_capture(nodes: int) -> Path:
    """A lab crowd of `nodes` nodes (CROWD), generated once (cached in /tmp)."""
    from lab.crowd import run_crowd
    out = Path(f"/tmp/mip6mon-bench-crowd-{nodes}")
    if not (out / "truth.json").exists():
        started = time.perf_counter()
        run_crowd(out, nodes=nodes, **CROWD)
        (out / "keyring.toml").chmod(0o600)
        print(f"generated {out} in {time.perf_counter() - started:.1f} s")
    return out


def crowds(sizes: list[int], runs: int) -> None:
    print(f"\nlab crowds ({', '.join(f'{k}={v}' for k, v in CROWD.items())}); median of "
          f"{runs} run(s)")
    print(f"{'nodes':>5} {'packets':>8} {'tshark s':>8} {'report s':>8} {'vs tshark':>9} "
          f"{'CPU s':>6} {'CPU vs first':>12} {'RSS MB':>6} {'keyed view = truth':>18}")
    first_cpu = None
    for nodes in sizes:
        out = crowd_capture(nodes)
        capture, keyring = out / "capture.pcapng", out / "keyring.toml"
        argv = paths(capture, keyring)
        truth = json.loads((out / "truth.json").read_text())
        tshark, report = [], []
        for _ in range(runs):
            tshark.append(measured(argv["tshark -T fields"]))
            report.append(measured(argv["report --keys"], out / "report.json"))
        got = json.loads((out / "report.json").read_text())
        exact = all(got[k] == truth[k] for k in ("home_bindings", "correspondent_bindings"))
        verdict = f"{'yes' if exact else 'NO'}, {len(got['findings'])} findings"
        wall = statistics.median(r.wall for r in report)
        cpu = statistics.median(r.cpu for r in report)
        base = statistics.median(r.wall for r in tshark)
        first_cpu = first_cpu or cpu
        print(f"{nodes:5} {len(truth['frames']):8} {base:8.2f} {wall:8.2f} {base / wall:9.2f} "
              f"{cpu:6.2f} {cpu / first_cpu:12.1f} {max(r.rss for r in report) / 1e6:6.0f} "
              f"{verdict:>18}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, nargs="+", default=[200_000])
    ap.add_argument("--mobility", type=float, nargs="+", default=[10.0],
                    help="percent of packets that are mobility traffic")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--paths", nargs="+", help="only these paths (tshark is always run)")
    ap.add_argument("--crowd", type=int, nargs="+", metavar="NODES",
                    help="lab crowds of these sizes instead of --packets / --mobility")
    args = ap.parse_args()
    keyring = Path("/tmp/mip6mon-bench-keyring.toml")
    write_keyring(keyring)
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}")
    if args.crowd:
        crowds(args.crowd, args.runs)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
    for count in args.packets:
        for share in args.mobility:
            capture = Path(f"/tmp/mip6mon-bench-{count}-{share:g}.pcap")
            if not capture.exists():
                started = time.perf_counter()
                generate(capture, count, share)
                print(f"generated {capture} in {time.perf_counter() - started:.1f} s")
            chosen = {name: argv for name, argv in paths(capture, keyring).items()
                      if name.startswith("tshark") or not args.paths or name in args.paths}
            results: dict[str, list[Run]] = {}
            for _ in range(args.runs):
                for name, argv in chosen.items():
                    results.setdefault(name, []).append(measured(argv))
            print_paths(results, count, share, args.runs)


def print_paths(results: dict[str, list[Run]], count: int, share: float,
                runs: int, cpu_ratio: bool = True) -> None:
    """One table of measured() runs per path (medians; RSS: the peak), each against
    `tshark -T fields` of the same run; then the keyed process's own share of `report --keys
    2p` (its CPU less the dissect+keys stage's, when both ran): keyed view, the events'
    trip to the attacker's process, the report's assembly and JSON."""
    base = statistics.median(r.wall for r in results["tshark -T fields"])
    base_cpu = statistics.median(r.cpu for r in results["tshark -T fields"])
    print(f"\n{count:,} packets, {share:g} % mobility; median of {runs} run(s); "
          f"load average {os.getloadavg()[0]:.1f}")
    cpu_head = f" {'CPU vs tshark':>13}" if cpu_ratio else ""
    print(f"{'path':18} {'wall s':>7} {'packets/s':>10} {'vs tshark':>9} "
          f"{'CPU s':>7}{cpu_head} {'1st proc CPU s':>14} {'peak RSS MB':>11}")
    for name, measured_runs in results.items():
        wall = statistics.median(r.wall for r in measured_runs)
        cpu = statistics.median(r.cpu for r in measured_runs)
        first = statistics.median(r.first_cpu for r in measured_runs)
        rss = max(r.rss for r in measured_runs) / 1e6
        cpu_cell = f" {base_cpu / cpu:13.2f}" if cpu_ratio else ""
        print(f"{name:18} {wall:7.2f} {count / wall:10.0f} {base / wall:9.2f} "
              f"{cpu:7.2f}{cpu_cell} {first:14.2f} {rss:11.0f}")
    if "report --keys 2p" in results and "dissect+keys" in results:
        keyed = statistics.median(r.first_cpu for r in results["report --keys 2p"])
        stage = statistics.median(r.cpu for r in results["dissect+keys"])
        print(f"keyed process's own share (2p keyed process less dissect+keys): "
              f"{keyed - stage:.2f} CPU s")


if __name__ == "__main__":
    main()
