"""Helpers for the many-sensors tests: real `mip6mon sensor` and `mip6mon serve` processes,
lab traffic cut into one capture per path, and reports compared without frame numbers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dissectors.protocol import PATHS
from lab.actors import EPOCH_BASE_USEC
from lab.pcapng import write_pcapng
from lab.run import build, write_output
from tests.redis_server import end

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def mip6mon(*argv: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *argv]


def lab_with_shards(scenario, outdir: Path) -> tuple[object, dict[str, Path]]:
    """The scenario's capture, keyring and truth in outdir, and one capture per path (the
    background traffic goes with mn-ha): what a sensor on each path would have captured."""
    out = build(scenario)
    write_output(out, outdir)
    shards = {}
    for path in PATHS:
        frames = [(EPOCH_BASE_USEC + f.usec, f.data, f"path={f.path}") for f in out.frames
                  if f.path == path or (path == "mn-ha" and f.path == "other")]
        shards[path] = outdir / f"{path}.pcapng"
        write_pcapng(shards[path], frames)
    return out, shards


def sensor(url: str, vantage: str, name: str, *, capture: Path | None = None,
           interface: str | None = None, netns: str | None = None, log: Path | None = None,
           extra: tuple[str, ...] = ()) -> subprocess.Popen:
    where = ["-r", str(capture)] if capture is not None else ["-i", str(interface)]
    argv = mip6mon("sensor", *where, "--vantage", vantage, "--publish", url, "--name", name,
                   *extra)
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT
                            if log is not None else subprocess.DEVNULL)


class Served:
    """A running `mip6mon serve`, read through its HTTP API."""

    def __init__(self, url: str, *extra: str, log: Path):
        self.log = log
        self.proc = subprocess.Popen(mip6mon("serve", "--subscribe", url, *extra), cwd=ROOT,
                                     env=env(), stdout=subprocess.PIPE, text=True,
                                     stderr=open(log, "ab"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"(http://\S+)/\?token=(\S+)", line)
            if match:
                self.base, self.token, self.url = match.group(1), match.group(2), match.group(0)
                return
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text()[-2000:]}")
        self.stop()
        raise AssertionError("serve printed no URL")

    def get(self, path: str, **query: str) -> dict:
        q = "&".join(f"{k}={v}" for k, v in {"token": self.token, **query}.items())
        with urllib.request.urlopen(f"{self.base}{path}?{q}", timeout=60) as r:
            return json.load(r)

    def status(self) -> dict:
        return self.get("/api/status")

    def wait(self, predicate, timeout: float = 120, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        status = {}
        while time.monotonic() < deadline:
            status = self.status()
            if predicate(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"serve never reached {what}: {json.dumps(status)[:3000]}")

    def stop(self) -> None:
        end(self.proc)


def sensors_done(names, events: int | None = None):
    """Every named sensor said bye, serve holds and queues nothing (all it has read is
    analysed), and (events) serve has analysed that many."""
    def ok(status: dict) -> bool:
        done = {s["name"] for s in status.get("sensors", []) if s["state"] == "done"}
        return set(names) <= done and status["held"] == 0 and status["queued"] == 0 and \
            (events is None or status["analysed"] + status["malformed"] >= events)
    return ok


def report(capture: Path, *extra: str) -> dict:
    # --detail: the whole report, as serve's report.json gives it
    run = subprocess.run(mip6mon("report", str(capture), "--format", "json", "--detail", *extra),
                         cwd=ROOT,
                         env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


NUMBERED = {"frame", "frames", "first_frame", "time", "first_time", "last_time", "source",
            "subject"}         # subject: the frames an attacker's decision was about
_FRAME_TEXT = re.compile(r"\bframes? \d+(, \d+)*")


def without_frames(value):
    """A report with frame numbers and times taken out (serve numbers the frames it merged;
    a live capture has its own times), the rest as it is."""
    if isinstance(value, dict):
        return {k: without_frames(v) for k, v in value.items() if k not in NUMBERED}
    if isinstance(value, list):
        return [without_frames(v) for v in value]
    if isinstance(value, str):
        return _FRAME_TEXT.sub("frame N", value)
    return value


def bindings(report: dict) -> dict:
    """The binding caches: addresses, sequence numbers, lifetimes (no frames, no times)."""
    return {cache: [without_frames(b) for b in report[cache]]
            for cache in ("home_bindings", "correspondent_bindings")}
