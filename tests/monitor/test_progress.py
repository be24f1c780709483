"""Progress bars (issue 15): drawn on stderr when it is a terminal (a real pseudo-terminal
here), never in a pipe; the report on stdout is the same either way."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED_CAPTURES

ROOT = Path(__file__).resolve().parents[2]


def _under_pty(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal and stdout on a pipe: (exit code, stdout, what
    the terminal received)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:                  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(30), out, seen.decode(errors="replace")


def _mip6mon(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *args]


@pytest.mark.parametrize("engine", ["walk", "pyshark"])
def test_report_draws_a_bar_on_a_terminal_only(tmp_path: Path, engine: str):
    capture = str(SHARED_CAPTURES / "zeek" / "ip6_esp.pcap")
    argv = _mip6mon("report", capture, "--format", "json", "--engine", engine)
    code, out, terminal = _under_pty(argv, ROOT)
    assert code == 0, terminal
    assert "report" in terminal and "100%" in terminal
    assert "121 packets" in terminal and "packets/s" in terminal     # every frame read
    piped = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout == out


def test_lab_run_and_compare_draw_bars_on_a_terminal_only(tmp_path: Path):
    run = _mip6mon("lab", "run", "home-transport-ctr", "-o", str(tmp_path / "a"))
    code, _, terminal = _under_pty(run, ROOT)
    assert code == 0, terminal
    assert "lab run home-transport-ctr" in terminal and "100%" in terminal and "frames" in terminal
    piped = subprocess.run(_mip6mon("lab", "run", "home-transport-ctr", "-o",
                                    str(tmp_path / "b")), cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and "%" not in piped.stderr     # its one summary line only
    compare = _mip6mon("compare", str(tmp_path / "a" / "capture.pcapng"),
                       str(tmp_path / "b" / "capture.pcapng"),
                       "--keys", str(tmp_path / "a" / "keyring.toml"))
    code, out, terminal = _under_pty(compare, ROOT)
    assert code == 0, terminal
    assert terminal.count("100%") >= 2 and "compare" in terminal
    piped = subprocess.run(compare, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == out


def test_bar_follows_the_pass_on_a_long_capture(tmp_path: Path):
    """On a capture that takes a while, the bar is redrawn during the pass (not only at its
    end): several distinct percentages reach the terminal."""
    from lab.crowd import PARAMETERS, run_crowd
    run_crowd(tmp_path, **{**{p.name: p.default for p in PARAMETERS}, "nodes": 30,
                           "moves_per_node": 10, "background": 0.8})
    code, _, terminal = _under_pty(_mip6mon("report", str(tmp_path / "capture.pcapng"),
                                            "--engine", "pyshark"), ROOT)
    assert code == 0, terminal
    shown = {int(p) for p in re.findall(r"(\d+)%\|", terminal)}
    assert len(shown) >= 3 and max(shown) == 100, terminal[-2000:]
