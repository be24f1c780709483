"""`mip6mon report` never presents a partial result as a finished one (issue 13): a damaged
capture or a dissector child that dies gives exit 3, one line on stderr saying what stopped
and how far it got, and `"complete": false` with the reason in the JSON."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from keys.errors import EXIT_INCOMPLETE
from tests.fuzz.captures import Capture
from tests.fuzz.conftest import base_capture
from tests.monitor.conftest import ROOT, run_cli


def _write(tmp_path: Path, capture: Capture, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(capture.to_bytes())
    return path


def test_an_intact_capture_is_complete(tmp_path):
    path = _write(tmp_path, base_capture(), "whole.pcapng")
    run = run_cli("report", str(path), "--format", "json")
    assert run.returncode == 0 and not run.stderr.strip()
    capture = json.loads(run.stdout)["capture"]
    assert capture["complete"] is True and capture["incomplete_reason"] is None


def test_a_damaged_capture_exits_3_with_where_and_why(tmp_path):
    base = base_capture()
    cut = Capture(base.kind, base.endian, base.units, cut=len(base.to_bytes()) - 30)
    path = _write(tmp_path, cut, "cut.pcapng")
    for fmt in ("json", "text"):
        run = run_cli("report", str(path), "--format", fmt)
        assert run.returncode == EXIT_INCOMPLETE == 3
        [line] = run.stderr.strip().splitlines()
        assert line.startswith(f"mip6mon: incomplete: {path}: damaged capture: block ")
        assert "cut short" in line and "after 39 whole frames" in line
    capture = json.loads(run_cli("report", str(path), "--format", "json").stdout)["capture"]
    assert capture["complete"] is False and capture["packets"] == 39
    assert "cut short" in capture["incomplete_reason"]
    text = run_cli("report", str(path)).stdout
    assert "INCOMPLETE: damaged capture" in text.splitlines()[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_report_runs_no_child_that_could_die_mid_run(tmp_path):
    """`report` used to run its dissector as a child (tshark), whose death had to give exit 3
    rather than a partial report; since issue 10 it dissects in its own process, so no child
    can stop it half way. Held: no child appears during a run, and the run is complete."""
    base = base_capture()
    big = Capture(base.kind, base.endian, base.units[:2] + base.units[2:] * 600)
    path = _write(tmp_path, big, "big.pcapng")
    out = tmp_path / "report.json"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "report", str(path),
                                 "--format", "json"], cwd=ROOT, stdout=sink,
                                stderr=subprocess.PIPE, text=True)
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(_children(proc.pid))
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
    assert not seen, "report ran a child process"
    assert proc.returncode == 0, err
    assert json.loads(out.read_text())["capture"]["complete"] is True
