"""Soak: `mip6mon live` on a veth for a long time at a steady rate (issue 12).

Builds a lab crowd (`mip6mon lab crowd`: RFC 8981 care-of addresses, random SPIs), keeps the
frames the monitor counts as mobility traffic, and sends them round and round from a network
namespace through a veth pair at `--rate` packets a second (AF_PACKET, in 10 ms batches),
while the real `mip6mon live -i VETH --keys KEYRING` dashboard captures the other end (dumpcap,
dissector, keyed analyzer, attacker worker, packet view). Every `--every` seconds it prints the
dashboard's own counts (/api/status) and the resident memory of the dashboard and all its
children (dumpcap, attacker worker); at the end, whether the issue's targets held:

- every packet sent was read and analysed (read == sent, nothing dropped, the kernel's drops
  by dumpcap's own count included);
- resident memory below `--max-mb` (400 MB) all along;
- no dumpcap restart, no gap.

Needs root (network namespaces). The issue asks for one hour at 2,000 packets a second:

    sudo .venv/bin/python benchmarks/soak_live.py --seconds 3600 --rate 2000

There is no tshark ratio here: this measures endurance, not speed (bench_report.py does).
The machine's load average is printed beside the numbers, since other work shares the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETNS = f"mip6soak{os.getpid()}"
# the veth pair named by this run too (15 characters at most): two soaks, or a soak and the
# root tests' fixed names, never take each other's interface
CAPTURED, SENDING = f"mip6sa{os.getpid()}", f"mip6sb{os.getpid()}"

SENDER = """
import socket, struct, sys, time
frames, at = [], 0
data = open(sys.argv[1], "rb").read()
while at < len(data):
    (n,) = struct.unpack_from("!I", data, at)
    frames.append(data[at + 4:at + 4 + n])
    at += 4 + n
rate, seconds = float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[4], 0))
print("ready", flush=True)
start, sent = time.monotonic(), 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = min(int(now * rate), int(seconds * rate))
    while sent < due:
        s.send(frames[sent % len(frames)])
        sent += 1
    time.sleep(0.01)
print(sent, flush=True)
"""


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def build_frames(workdir: Path, nodes: int) -> tuple[Path, Path, int]:
    """A lab crowd's mobility frames, length-prefixed in one file for the sender."""
    lab = workdir / "crowd"
    subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "crowd", "-o", str(lab),
                    "-n", str(nodes), "--seed", "12"],
                   cwd=ROOT, env=env(), check=True, capture_output=True)
    sys.path.insert(0, str(ROOT))
    from dissectors.capfile import records
    from monitor.sources import PcapSource
    mobility = {event.frame for event in PcapSource(str(lab / "capture.pcapng")).events()}
    out = workdir / "frames.bin"
    count = 0
    with open(lab / "capture.pcapng", "rb") as f, open(out, "wb") as w:
        for rec in records(f):
            if rec.number in mobility:
                w.write(len(rec.data).to_bytes(4, "big") + rec.data)
                count += 1
    return out, lab / "keyring.toml", count


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and every descendant, MB."""
    return sum(tree_rss(pid).values())


def _name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _children(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children += [int(c) for c in
                         Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue        # a thread that ended meanwhile (the web server's come and go)
    return children


def _tree(pid: int) -> Iterator[tuple[int, list[int]]]:
    """`pid` and every descendant still there, each with its children."""
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            children = _children(p)
        except OSError:
            continue
        todo += children
        yield p, children


def _kb(path: str, field: str) -> float:
    match = re.search(rf"{field}:\s+(\d+)", Path(path).read_text())
    return int(match.group(1)) if match else 0.0


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and every descendant, MB: pages the forks still share
    with the dashboard counted once (summed RSS counts them in each)."""
    total = 0.0
    for p, _ in _tree(pid):
        try:
            total += _kb(f"/proc/{p}/smaps_rollup", "Pss") / 1024
        except OSError:
            continue
    return total


def tree_rss(pid: int) -> dict[str, float]:
    """Resident memory of `pid` ("dashboard") and every descendant, MB, by role: the
    dashboard's Python children are forks, told apart by what they run: "capture" (the live
    capture child, dumpcap's parent) and "attacker" (the attacker worker)."""
    by_name: dict[str, float] = {}
    for p, children in _tree(pid):
        try:
            name = _name(p)
            if p == pid:
                name = "dashboard"
            elif name.startswith("python"):
                name = "capture" if any(_name(c) == "dumpcap" for c in children) \
                    else "attacker"
            by_name[name] = by_name.get(name, 0.0) + _kb(f"/proc/{p}/status", "VmRSS") / 1024
        except OSError:
            continue
    return by_name


def rss_slopes(samples: list[tuple[float, dict[str, float]]], since: float
               ) -> dict[str, float]:
    """Least-squares slope of each process's RSS (MB a minute) over the samples from `since`
    seconds on: flat is the target once the live windows are full."""
    out = {}
    for name in {k for _, parts in samples for k in parts}:
        points = [(t / 60, parts[name]) for t, parts in samples if t >= since and name in parts]
        if len(points) < 3:
            continue
        mt = sum(t for t, _ in points) / len(points)
        mv = sum(v for _, v in points) / len(points)
        var = sum((t - mt) ** 2 for t, _ in points)
        out[name] = sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="packets per second")
    parser.add_argument("--nodes", type=int, default=50, help="mobile nodes in the crowd")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--max-mb", type=float, default=400.0)
    parser.add_argument("--flat-from", type=float, default=180.0,
                        help="seconds after which each process's RSS slope is measured")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("soak_live: needs root (network namespaces)", file=sys.stderr)
        return 2

    server = sender = None
    ip("link", "del", CAPTURED, check=False)
    ip("netns", "add", NETNS)
    try:
        with tempfile.TemporaryDirectory(prefix="mip6mon-soak-") as tmp:
            frames, keyring, distinct = build_frames(Path(tmp), args.nodes)
            ip("link", "add", CAPTURED, "type", "veth", "peer", "name", SENDING)
            ip("link", "set", SENDING, "netns", NETNS)
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{CAPTURED}.disable_ipv6=1"],
                           check=True)
            ip("netns", "exec", NETNS, "sysctl", "-qw",
               f"net.ipv6.conf.{SENDING}.disable_ipv6=1")
            ip("link", "set", CAPTURED, "up")
            ip("netns", "exec", NETNS, "ip", "link", "set", SENDING, "up")
            server = subprocess.Popen([sys.executable, "-m", "monitor.cli", "live", "-i",
                                       CAPTURED, "--keys", str(keyring), "--port", "0"],
                                      cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
            assert server.stdout is not None
            match = None
            while match is None:
                line = server.stdout.readline()
                if not line:
                    raise SystemExit("soak_live: the dashboard did not start")
                match = re.search(r"(http://\S+)/\?token=(\S+)", line)
            base, token = match.group(1), match.group(2)

            def status() -> dict:
                with urllib.request.urlopen(f"{base}/api/status?token={token}",
                                            timeout=30) as r:
                    return json.load(r)

            deadline = time.monotonic() + 30
            while status()["state"] != "running" and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)                 # dumpcap has written its header: it captures
            sender = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable, "-c",
                                       SENDER, str(frames), str(args.rate), str(args.seconds),
                                       SENDING], stdout=subprocess.PIPE, text=True)
            assert sender.stdout is not None
            assert sender.stdout.readline().strip() == "ready"
            print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} pkt/s, {distinct} distinct "
                  f"mobility frames of a {args.nodes}-node crowd, round and round", flush=True)
            start, peak = time.monotonic(), 0.0
            samples: list[tuple[float, dict[str, float]]] = []
            while sender.poll() is None:
                time.sleep(min(args.every, 1.0) if args.every < 1 else args.every)
                s, parts = status(), tree_rss(server.pid)
                samples.append((time.monotonic() - start, parts))
                rss = sum(parts.values())
                peak = max(peak, rss)
                print(f"{time.monotonic() - start:7.0f} s  read {s['read']:>9}  analysed "
                      f"{s['analysed']:>9}  dropped {s['dropped']:>5}  state {s['state']}  "
                      f"rss {rss:6.1f} MB ("
                      + ", ".join(f"{k} {v:.0f}" for k, v in sorted(parts.items()))
                      + f"; pss {tree_pss_mb(server.pid):.0f})  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            sent = int(sender.stdout.read().split()[-1])
            def settled(s: dict) -> bool:      # everything read was analysed or dropped
                return s["read"] >= sent and s["read"] == (
                    s["analysed"] + s["filtered"] + s["malformed"] + s["dropped"])
            deadline = time.monotonic() + 120
            s = status()
            while not settled(s) and time.monotonic() < deadline:
                time.sleep(0.5)
                s = status()
            rss = tree_rss_mb(server.pid)
            peak = max(peak, rss)
            sup = s.get("supervision", {})
            # only the sender's frames cross the veth (IPv6 is off at both ends): what the
            # interface received and dumpcap did not hand on, the kernel dropped (dumpcap says
            # how many only when it ends)
            received = int(Path(f"/sys/class/net/{CAPTURED}/statistics/rx_packets").read_text())
            print(f"veth received {received}, not read {received - s['read']}")
            ok_count = s["read"] == sent and s["dropped"] == 0
            ok_all = (s["read"] == s["analysed"] + s["filtered"] + s["malformed"]
                      + s["dropped"])
            print(f"sent {sent}  read {s['read']}  analysed {s['analysed']}  malformed "
                  f"{s['malformed']}  filtered {s['filtered']}  dropped {s['dropped']} "
                  f"{s.get('dropped_reasons', {})}  restarts {sup.get('restarts')}  gaps "
                  f"{sup.get('gaps_total')}")
            print(f"peak rss {peak:.1f} MB (dashboard + children)  load {os.getloadavg()}")
            slopes = rss_slopes(samples, args.flat_from)
            if slopes:
                print(f"rss slope from {args.flat_from:.0f} s, MB/min: "
                      + ", ".join(f"{k} {v:+.2f}" for k, v in sorted(slopes.items())))
            targets = {"every packet read, none dropped": ok_count,
                       "read = analysed + filtered + malformed + dropped": ok_all,
                       f"peak rss < {args.max_mb:.0f} MB": peak < args.max_mb,
                       "no restart, no gap": not sup.get("restarts") and not sup.get(
                           "gaps_total")}
            for name, ok in targets.items():
                print(f"{'met' if ok else 'NOT MET'}: {name}")
            return 0 if all(targets.values()) else 1
    finally:
        for proc in (sender, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        ip("link", "del", CAPTURED, check=False)
        ip("netns", "del", NETNS, check=False)


if __name__ == "__main__":
    sys.exit(main())
