"""`mip6mon report` never presents a partial result as a finished one (issue 13): a damaged
capture or a dissector child that dies gives exit 3, one line on stderr saying what stopped
and how far it got, and `"complete": false` with the reason in the JSON."""
from __future__ import annotations

import contextlib
import json
import os
import signal
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


def _big(tmp_path: Path) -> Path:
    base = base_capture()
    return _write(tmp_path, Capture(base.kind, base.endian, base.units[:2] + base.units[2:] * 600),
                  "big.pcapng")


def _report(path: Path, out: Path, one_process: bool, kill_children: bool = False
            ) -> tuple[subprocess.Popen, str, set[int]]:
    """Run `report` on `path` into `out`: (the process, its stderr, the children seen);
    `kill_children`: SIGKILL each child as soon as it is seen."""
    env = {**os.environ, "MIP6MON_ONE_PROCESS": "1" if one_process else "0"}
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "report", str(path),
                                 "--format", "json"], cwd=ROOT, stdout=sink, env=env,
                                stderr=subprocess.PIPE, text=True)
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            for child in set(_children(proc.pid)) - seen:
                seen.add(child)
                if kill_children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
    return proc, err, seen


def test_report_in_one_process_runs_no_child_that_could_die_mid_run(tmp_path):
    """`report` used to run its dissector as a child (tshark), whose death had to give exit 3
    rather than a partial report; since issue 10 it dissects in its own process. On one core
    (or MIP6MON_ONE_PROCESS=1) no child appears during a run, and the run is complete."""
    proc, err, seen = _report(_big(tmp_path), tmp_path / "report.json", one_process=True)
    assert not seen, "report ran a child process"
    assert proc.returncode == 0, err
    assert json.loads((tmp_path / "report.json").read_text())["capture"]["complete"] is True


def test_the_attacker_process_killed_mid_run_leaves_no_partial_report(tmp_path):
    """With two cores the attacker runs in a child (monitor.report_attacker); killed half way,
    the report says so in one line and analyses the capture again in one process: exit 0, the
    whole report, the same as one process gives."""
    path = _big(tmp_path)
    proc, err, seen = _report(path, tmp_path / "killed.json", one_process=False,
                              kill_children=True)
    assert seen, "no attacker process was seen"
    assert proc.returncode == 0, err
    [line] = err.strip().splitlines()
    assert line == (f"mip6mon: {path}: the attacker's process was killed by SIGKILL; analysing "
                    "it again in one process")
    one, err_one, _ = _report(path, tmp_path / "one.json", one_process=True)
    assert one.returncode == 0 and not err_one.strip(), err_one
    killed = json.loads((tmp_path / "killed.json").read_text())
    assert killed["capture"]["complete"] is True
    assert killed == json.loads((tmp_path / "one.json").read_text())
