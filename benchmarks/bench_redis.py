"""Many sensors, one dashboard (issue 14): events per second through Redis with 1 to 4
sensors, and the delay from a packet's capture to the dashboard.

Throughput (no root needed). Four lab crowds (different seeds: distinct traffic whose
capture times interleave) are written once. For k = 1..4, a fresh redis-server (private unix
socket, append-only file with fsync always, as README says to run it) and one `mip6mon serve`
are started, then k `mip6mon sensor -r` processes publish one crowd each, all at once. Timed:
  publish : until the slowest sensor has published everything (its process ends)
  through : until serve has analysed every event (sensor start to the last event analysed:
            the sensors' start-up and serve's 2 s wait for every sensor to speak included)
  steady  : events per second from serve's first analysed event to its last
and, in the same run, `tshark -r F -Y <mobility filter> -T fields` on the same k files (one
after the other, as tshark is single-threaded), so each rate is also a ratio against tshark.
serve runs without a keyring here (four crowds have four keyrings); `--keyed` adds one run
with k = 1 and the crowd's keyring. Last, `replay --speed max` of one crowd: the same
analysis with no Redis in between.

Delay (root: network namespaces). The netns lab, three live sensors (MN-HA, HA-CN, MN-CN
links), serve with the keyring, and the dashboard in headless Chromium (Debian's chromium,
Playwright). A crowd with one correspondent is sent at --rate packets a second; for every
row the page shows, the page's latency probe gives when the server emitted it and when the
page rendered it, and /api/rows its capture time (the sensor's dumpcap timestamp, same host,
same clock). Prints p50 / p95 / p99 of capture -> published by its sensor (the stream's entries),
capture -> emitted by serve, and capture -> on screen.

    python benchmarks/bench_redis.py [--nodes 100] [--keyed] [--rate 200] [--seconds 20]
                                     [--no-delay]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.streams import env, mip6mon  # noqa: E402 - the checkout's own modules, above

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Redis:
    def __init__(self, directory: Path):
        directory.mkdir(mode=0o700, parents=True)
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(directory), "--appendonly", "yes",
             "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(unix_socket_path=str(self.socket))
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Serve:
    def __init__(self, url: str, *extra: str):
        self.proc = subprocess.Popen(mip6mon("serve", "--subscribe", url, *extra), cwd=ROOT,
                                     env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.url = re.search(r"http://\S+", line).group(0)
        self.base, self.token = self.url.split("/?token=")

    def get(self, path: str) -> dict | list:
        with urllib.request.urlopen(f"{self.base}{path}?token={self.token}", timeout=60) as r:
            return json.load(r)

    def analysed(self) -> int:
        status = self.get("/api/status")
        return status["analysed"] + status["malformed"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def mobility_events(capture: Path) -> int:
    from monitor.sources import PcapSource
    return sum(1 for _ in PcapSource(str(capture)).events())


def tshark_seconds(captures: list[Path]) -> float:
    from dissectors.walk import MOBILITY_FILTER
    start = time.perf_counter()
    for capture in captures:
        subprocess.run(["tshark", "-n", "-r", str(capture), "-Y", MOBILITY_FILTER, "-T",
                        "fields", "-e", "frame.number"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def throughput(work: Path, nodes: int, keyed: bool) -> None:
    from lab.crowd import run_crowd
    crowds = []
    for seed in range(1, 5):
        directory = work / f"crowd{seed}"
        run_crowd(directory, nodes=nodes, seed=seed)
        crowds.append((directory / "capture.pcapng", directory / "keyring.toml"))
    counts = [mobility_events(c) for c, _ in crowds]
    print(f"throughput: {nodes}-node crowds, {counts[0]:,} to {max(counts):,} mobility events "
          f"each; {load()}")
    print("| sensors | events | publish s | events/s published | through s | events/s "
          "through serve | events/s analysed once started | tshark s (same files) | "
          "through / tshark |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [(k, False) for k in range(1, 5)] + ([(1, True)] if keyed else [])
    for k, with_keys in runs:
        redis = Redis(work / f"redis-{k}-{int(with_keys)}")
        extra = ("--keys", str(crowds[0][1])) if with_keys else ()
        serve = Serve(redis.url, *extra)
        try:
            total = sum(counts[:k])
            start = time.perf_counter()
            sensors = [subprocess.Popen(mip6mon("sensor", "-r", str(crowds[i][0]), "--vantage",
                                                "all", "--publish", redis.url, "--name",
                                                f"s{i}"), cwd=ROOT, env=env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for i in range(k)]
            first: tuple[float, int] | None = None      # (when, how many) serve began
            done = [False] * k
            published = 0.0
            while True:
                analysed = serve.analysed()
                now = time.perf_counter()
                if first is None and analysed:
                    first = (now, analysed)
                for i, proc in enumerate(sensors):
                    if not done[i] and proc.poll() is not None:
                        done[i], published = True, now - start
                if analysed >= total and all(done):
                    break
                time.sleep(0.02)
            through = now - start
            steady = (total - first[1]) / (now - first[0]) if first and now > first[0] else 0
        finally:
            serve.stop()
            redis.stop()
        tshark = tshark_seconds([c for c, _ in crowds[:k]])
        label = f"{k} (keyed)" if with_keys else str(k)
        print(f"| {label} | {total:,} | {published:.2f} | {total / published:,.0f} | "
              f"{through:.2f} | {total / through:,.0f} | {steady:,.0f} | {tshark:.2f} | "
              f"{tshark / through:.2f} |")
    replay = replay_seconds(crowds[0][0])
    print(f"the same analysis without Redis (`replay --speed max`, one crowd, keyless): "
          f"{replay:.2f} s, {counts[0] / replay:,.0f} events/s")
    print(f"after: {load()}")


def delay(work: Path, rate: float, seconds: float) -> None:
    from playwright.sync_api import sync_playwright

    from lab import netns
    from lab.crowd import crowd_scenario
    from lab.run import build, write_output
    scenario = crowd_scenario(nodes=40, correspondents=1, seed=3)
    out = build(scenario)
    write_output(out, work / "delay")
    frames = out.frames
    span = (frames[-1].usec - frames[0].usec) / 1e6
    speed = max(1.0, rate * span / len(frames))
    frames = [f for f in frames if (f.usec - frames[0].usec) / 1e6 / speed <= seconds]
    print(f"delay: {len(frames)} packets at about {len(frames) / seconds:.0f}/s over "
          f"{seconds:.0f} s, three live sensors; {load()}")
    netns.build_topology()
    redis = Redis(work / "redis-delay")
    serve = Serve(redis.url, "--keys", str(work / "delay" / "keyring.toml"))
    sensors = []
    try:
        for interface, ns, vantage in (("ha-mn", "ha", "mn-ha"), ("cn1-ha", "cn1", "ha-cn"),
                                       ("cn1-mn", "cn1", "mn-cn")):
            sensors.append(subprocess.Popen(
                ["ip", "netns", "exec", netns.namespace(ns),
                 *mip6mon("sensor", "-i", interface, "--vantage", vantage, "--publish",
                          redis.url, "--name", interface)],
                cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while sum(s["state"] == "capturing" for s in serve.get("/api/status")["sensors"]) < 3:
            time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(serve.url)
            page.wait_for_selector("#st-conn.ok")
            netns.send_frames(frames, speed)
            expected = mobility_frames(work / "delay" / "capture.pcapng", len(frames))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                    serve.analysed() < expected
                    or page.evaluate("window.mip6monPerf.length") < expected):
                time.sleep(0.5)
            perf = page.evaluate("window.mip6monPerf")
            browser.close()
        captured = {row["n"]: row["t"] * 1000 for row in serve.get("/api/rows")}
        published = publish_delays(redis.url)
    finally:
        for proc in sensors:
            proc.terminate()
        for proc in sensors:
            proc.wait(20)
        serve.stop()
        redis.stop()
        netns.down()
    screen = [render - captured[frame] for frame, _due, _recv, render, _sent in perf
              if frame in captured]
    emitted = [sent - captured[frame] for frame, _due, _recv, _render, sent in perf
               if frame in captured and sent]
    print(f"rows on screen: {len(screen)} of {expected} mobility packets sent")
    for name, values in (("capture -> published by its sensor", published),
                         ("capture -> emitted by serve", emitted),
                         ("capture -> on screen", screen)):
        if values:
            print(f"{name} (ms): p50 {percentile(values, 50):.0f}  p95 "
                  f"{percentile(values, 95):.0f}  p99 {percentile(values, 99):.0f}  "
                  f"max {max(values):.0f}")
    print(f"after: {load()}")


def publish_delays(url: str) -> list[float]:
    """ms from each event's capture to its sensor's XADD (the sensor's own clock both times):
    what the sensors' --max-delay must cover."""
    import redis

    from monitor import entries
    client = redis.Redis.from_url(url)
    delays = []
    for _id, fields in client.xrange(entries.STREAM):
        entry = entries.decode(fields)
        if entry.event is not None:
            delays.append((entry.sent - entry.event.time) * 1000)
    return delays


def replay_seconds(capture: Path) -> float:
    """The same analysis with no Redis: `mip6mon replay --speed max` until it is done."""
    start = time.perf_counter()
    proc = subprocess.Popen(mip6mon("replay", str(capture), "--speed", "max"), cwd=ROOT,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    base, token = re.search(r"http://\S+", proc.stdout.readline()).group(0).split("/?token=")
    try:
        while True:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=60) as r:
                if json.load(r)["state"] in ("done", "error"):
                    return time.perf_counter() - start
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(15)


def mobility_frames(capture: Path, first: int) -> int:
    """Mobility events among the capture's first `first` frames."""
    from monitor.sources import PcapSource
    return sum(1 for e in PcapSource(str(capture)).events() if e.frame <= first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="mobile nodes per crowd")
    parser.add_argument("--keyed", action="store_true", help="also k = 1 with the keyring")
    parser.add_argument("--rate", type=float, default=200.0, help="delay: packets per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="delay: how long")
    parser.add_argument("--no-delay", action="store_true", help="throughput only")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian package redis-server)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mip6mon-bench-redis-") as tmp:
        throughput(Path(tmp), args.nodes, args.keyed)
        if not args.no_delay:
            if os.geteuid() != 0:
                print("delay: skipped (network namespaces need root)")
            else:
                delay(Path(tmp), args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
