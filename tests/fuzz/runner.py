"""Run a capture file through real tshark and through mip6mon, and check the invariants that
hold for ANY input (issue 13): no traceback, no hang, no silent success, and what mip6mon
reports of the readable part equals what tshark reads of it.

Reusable: `tshark_view(path)` is the reference, `capfile_view(path)` the reader under test,
`run_report(path)` the whole command; `check_report(path)` asserts the invariants of one file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT_TIMEOUT = 60.0          # one small file: a run past this is a hang
MH_NAMES = {0: "BRR", 1: "HoTI", 2: "CoTI", 3: "HoT", 4: "CoT", 5: "BU", 6: "BA", 7: "BE"}
# captype's names of the formats wiretap reads as plain pcap/pcapng; from a damaged file's first
# records it may guess a pcap variant (RedHat, SuSE, Nokia) and read other records
PLAIN_PCAP = {"pcap", "nsecpcap", "pcapng"}


@dataclass(frozen=True)
class View:
    frames: int                 # whole frames read
    damaged: bool               # the reader said it could not read the file to its end
    messages: dict[str, int]    # Mobility Header messages by type (tshark only)
    plain: bool = True          # tshark read it as the plain format (pcap heuristics)


def tshark_view(path: Path) -> View:
    """What tshark reads: frames, and MH messages as mip6mon counts them (first MH type of a
    frame that is MH over IPv6 and not DSMIPv6's UDP)."""
    run = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number",
                          "-e", "mip6.mhtype", "-e", "udp.port", "-e", "ipv6.src"],
                         capture_output=True, text=True, timeout=REPORT_TIMEOUT)
    lines = [line.split("\t") for line in run.stdout.splitlines() if line]
    messages: Counter = Counter()
    for cols in lines:
        cols += [""] * (4 - len(cols))
        if cols[1] and not cols[2] and cols[3]:
            mh_type = int(cols[1].split(",")[0])
            messages[MH_NAMES.get(mh_type, f"MH{mh_type}")] += 1
    # captype names the format wiretap chose when it opened the file (nothing if it could not)
    kind = subprocess.run(["captype", str(path)], capture_output=True, text=True,
                          timeout=REPORT_TIMEOUT).stdout.rpartition(":")[2].strip()
    return View(len(lines), run.returncode != 0, dict(messages), kind in PLAIN_PCAP or not kind)


def capfile_view(path: Path) -> View:
    """What dissectors.capfile reads (NotACapture counts as damaged, with no frame)."""
    from dissectors import capfile
    drops = capfile.DropCounter()
    try:
        with capfile.open_capture(str(path)) as f:
            frames = sum(1 for _ in capfile.records(f, drops, keep_data=False))
    except capfile.NotACapture:
        return View(0, True, {})
    return View(frames, drops.damage is not None, {})


@dataclass(frozen=True)
class ReportRun:
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict | None:
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError:
            return None


def run_report(path: Path, *args: str) -> ReportRun:
    """`mip6mon report PATH --format json`, as a user runs it (a hang fails the test)."""
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "report", str(path),
                          "--format", "json", *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=REPORT_TIMEOUT)
    return ReportRun(run.returncode, run.stdout, run.stderr)


def check_report(path: Path, reference: View | None = None) -> ReportRun:
    """The invariants of `mip6mon report` on one file, against tshark's reading of it."""
    ref = reference or tshark_view(path)
    run = run_report(path)
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) <= 1, run.stderr       # one line at most
    assert run.code in (0, 2, 3), (run.code, run.stderr)
    if run.code == 2:          # not a capture at all: tshark reads nothing either
        assert run.stderr.startswith("mip6mon: error:") and ref.frames == 0 and ref.damaged
        return run
    report = run.report
    assert report is not None, run.stdout[:200]
    capture = report["capture"]
    # no silent success: exit 3 exactly when the report says it is not complete
    assert (run.code == 3) == (capture["complete"] is False)
    if run.code == 3:
        assert capture["incomplete_reason"] and run.stderr.startswith("mip6mon: incomplete:")
    else:
        assert capture["incomplete_reason"] is None and not run.stderr.strip()
    if ref.plain:
        assert capture["complete"] == (not ref.damaged), (capture, ref)
        assert capture["packets"] == ref.frames, (capture, ref)
        counts = {k: v for k, v in report["messages"].items() if v}
        assert counts == ref.messages, (counts, ref.messages)
    return run
