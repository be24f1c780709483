"""Dashboard latency: from a packet's moment in the replay to its row on the screen.

Builds a capture of mobility packets 1 ms apart (the demo scenario's mobility frames, repeated,
re-timed), runs the real `mip6mon replay CAPTURE --keys KEYRING --speed 1` (so 1,000 mobility
packets a second go through tshark, the keyed analyzer, four attacker analyzers and the view),
opens the dashboard in headless Chromium (Debian's chromium, via Playwright) and reads the
page's latency probe: for every row, the epoch ms the packet was due in the replay (stamped by
the server's pacer) and the epoch ms the browser had put the row in the table (same host, same
clock). Prints p50 / p95 / p99 / max and whether p95 is under the 250 ms target.

    python benchmarks/bench_latency.py [--seconds 10] [--rate 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TARGET_P95_MS = 250.0


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def build_capture(workdir: Path, seconds: float, rate: float) -> tuple[Path, Path, int]:
    """The demo's mobility frames (pcapng comments kept), repeated and spaced 1/rate apart."""
    lab = workdir / "demo"
    subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "run", "demo", "-o", str(lab)],
                   cwd=ROOT, env=env(), check=True, capture_output=True)
    truth = json.loads((lab / "truth.json").read_text())
    sys.path.insert(0, str(ROOT))
    from dissectors.capfile import records
    from lab.pcapng import write_pcapng
    from monitor.sources import PcapSource
    # exactly the frames the monitor counts as mobility traffic, so the rate is mobility packets
    mobility = {event.frame for event in PcapSource(str(lab / "capture.pcapng")).events()}
    with open(lab / "capture.pcapng", "rb") as f:
        frames = [(rec.data, truth["frames"][str(rec.number)]["path"]) for rec in records(f)
                  if rec.number in mobility]
    count = int(seconds * rate)
    base_us = 1767225600 * 1_000_000
    out = [(base_us + int(i * 1_000_000 / rate), frames[i % len(frames)][0],
            "path=" + frames[i % len(frames)][1]) for i in range(count)]
    capture = workdir / "bench.pcapng"
    write_pcapng(capture, out)
    return capture, lab / "keyring.toml", count


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="mobility packets per second")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="mip6mon-bench-") as tmp:
        capture, keyring, count = build_capture(Path(tmp), args.seconds, args.rate)
        server = subprocess.Popen([sys.executable, "-m", "monitor.cli", "replay", str(capture),
                                   "--keys", str(keyring), "--speed", "1"],
                                  cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline()
            url = re.search(r"http://\S+", line).group(0)
            base, token = url.split("/?token=")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(url)              # the paced replay starts when the page connects
                deadline = time.monotonic() + args.seconds * 4 + 60
                status = {}
                while time.monotonic() < deadline:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}") as r:
                        status = json.load(r)
                    seen = page.evaluate("window.mip6monPerf.length")
                    settled = status["analysed"] + status["malformed"]
                    if status["state"] == "done" and seen >= settled:
                        break
                    time.sleep(1.0)
                perf = page.evaluate("window.mip6monPerf")
                plots = page.evaluate("window.mip6monPlots")
                browser.close()
        finally:
            server.terminate()
            server.wait(10)

    latencies = [render - due for _frame, due, _recv, render, _sent in perf]
    transit = [recv - due for _frame, due, recv, _render, _sent in perf]
    server = [sent - due for _frame, due, _recv, _render, sent in perf if sent]
    span = (perf[-1][1] - perf[0][1]) / 1000 if len(perf) > 1 else 0
    p95 = percentile(latencies, 95)
    print(f"capture: {count} mobility packets at {args.rate:.0f}/s; server: analysed "
          f"{status.get('analysed')}, malformed {status.get('malformed')}, "
          f"ESP decrypted {status.get('esp_decrypted')}")
    print(f"rows on screen: {len(perf)} over {span:.1f} s of replay "
          f"({len(perf) / span if span else 0:.0f} rows/s)")
    print(f"event to screen (ms): p50 {percentile(latencies, 50):.1f}  p95 {p95:.1f}  "
          f"p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}  "
          f"mean {statistics.fmean(latencies):.1f}")
    print(f"event to socket receive (ms): p50 {percentile(transit, 50):.1f}  "
          f"p95 {percentile(transit, 95):.1f}")
    if server:
        print(f"event to server emit (ms): p50 {percentile(server, 50):.1f}  "
              f"p95 {percentile(server, 95):.1f}")
    if plots:
        print("plot redraws (ms): " + " ".join(f"{name} {ms}" for name, ms in plots))
    buckets: dict[int, list[float]] = {}
    for (_f, due, _r, render, _s) in perf:
        buckets.setdefault(int((due - perf[0][1]) // 1000), []).append(render - due)
    print("p95 per second of replay (ms): " + " ".join(
        f"{percentile(v, 95):.0f}" for _, v in sorted(buckets.items())))
    verdict = "PASS" if p95 < TARGET_P95_MS and len(perf) >= count else "FAIL"
    print(f"target p95 < {TARGET_P95_MS:.0f} ms with every row delivered: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
