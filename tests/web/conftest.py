"""Fixtures for the dashboard tests: real lab captures, a real `mip6mon replay` server."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
# short enough to survive the dissector's payload preview whole (the first 32 octets)
XSS_PAYLOADS = ("<script>__p=1</script>", "<img src=x onerror=__p=2>")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class LabRun:
    directory: Path
    capture: Path
    keyring: Path
    truth: dict


def build_lab(scenario: str, outdir: Path) -> LabRun:
    subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "run", scenario, "-o", str(outdir)],
                   cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=120)
    return LabRun(outdir, outdir / "capture.pcapng", outdir / "keyring.toml",
                  json.loads((outdir / "truth.json").read_text()))


@pytest.fixture(scope="session")
def demo_lab(tmp_path_factory) -> LabRun:
    """The demo scenario: three mobile nodes, pseudo home addresses, RR, background traffic."""
    return build_lab("demo", tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def ctr_lab(tmp_path_factory) -> LabRun:
    """draft 5.2.1 home registration, 9 frames over 8 seconds: the pause/resume timeline."""
    return build_lab("home-transport-ctr", tmp_path_factory.mktemp("ctr"))


@pytest.fixture(scope="session")
def xss_capture(tmp_path_factory) -> Path:
    """Route-optimised data (HAO, RFC 6275 6.3) whose UDP payload carries markup, and a Home
    BU: the dashboard must show the markup as text and run none of it."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import HAO, MIP6MH_BU, IPv6, IPv6ExtHdrDestOpt
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    packets = []
    base = 1767225600.0
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i, text in enumerate(XSS_PAYLOADS):
        p = (ether / IPv6(src="2001:db8:2::100", dst="2001:db8:3::5")
             / IPv6ExtHdrDestOpt(options=[HAO(hoa="2001:db8:1::100")])
             / UDP(sport=4000, dport=4001) / text.encode())
        p.time = base + i * 0.01
        packets.append(p)
    bu = (ether / IPv6(src="2001:db8:2::100", dst="2001:db8:1::1")
          / IPv6ExtHdrDestOpt(options=[HAO(hoa="2001:db8:1::100")])
          / MIP6MH_BU(seq=7, mhtime=105))   # scapy's default flags: A, H, K
    bu.time = base + 0.05
    packets.append(bu)
    path = tmp_path_factory.mktemp("xss") / "xss.pcap"
    wrpcap(str(path), packets)
    return path


@dataclass
class Server:
    process: subprocess.Popen
    url: str            # with ?token=
    base: str
    token: str

    def get(self, path: str):
        """GET path from the server (the token in the page's header), parsed as JSON."""
        import urllib.request
        request = urllib.request.Request(self.base + path, headers={"X-Mip6mon-Token": self.token})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(*argv: str, env: dict | None = None) -> Server:
    """`mip6mon ARGV...` in a subprocess; waits for the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", *argv], cwd=ROOT,
                            env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        match = re.search(r"(http://\S+)/\?token=(\S+)", line)
        if match:
            return Server(proc, match.group(0), match.group(1), match.group(2))
    proc.kill()
    raise RuntimeError(f"no URL printed: {line!r}")


def wait_status(server: Server, states: tuple[str, ...], timeout: float = 60) -> dict:
    """Poll /api/status until the session's state is one of `states`."""
    deadline = time.monotonic() + timeout
    status = {}
    while time.monotonic() < deadline:
        status = server.get("/api/status")
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"state never became one of {states}: {status}")


def wait_done(server: Server, timeout: float = 60) -> dict:
    """Poll /api/status until the replay has finished."""
    return wait_status(server, ("done", "error", "stopped"), timeout)


@pytest.fixture(scope="session")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("Debian's chromium is not installed")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def children(pid: int) -> list[int]:
    """The direct children of a process (every thread's, from /proc)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return found


def command_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def logging_wrapper(directory: Path, program: str) -> tuple[dict, Path]:
    """An environment whose PATH runs `program` through a wrapper that writes one line (its
    arguments) to the returned log, then becomes the real program (exec: same pid, same name).
    Every run is logged before it starts, however short it is and however loaded the machine:
    a count no polling can miss."""
    real, log = shutil.which(program), directory / f"{program}-runs"
    assert real is not None, f"{program} is not installed"
    wrapper = directory / "bin" / program
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    log.touch()
    env = _env()
    env["PATH"] = f"{wrapper.parent}:{env.get('PATH', os.defpath)}"
    return env, log


class ChildWatch:
    """Watches, in a thread, the children of `pid` called `name` (e.g. the dashboard's
    tshark runs): `most` alive at once and every pid `seen`. A context manager."""

    def __init__(self, pid: int, name: str = "tshark"):
        import threading
        self.pid, self.name = pid, name
        self.most = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            alive = [c for c in children(self.pid) if command_name(c) == self.name]
            self.seen.update(alive)
            self.most = max(self.most, len(alive))
            self._stop.wait(0.002)

    def __enter__(self) -> ChildWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
