"""`--engine pyshark` gives the default engine's report on every lab scenario, every shared
capture and crowds the shipped scenarios never show (issue 15): real tshark under real pyshark.

The reports are compared whole (JSON and text), with each capture's keyring; on traffic the
lab made, the events are compared too, field by field.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dissectors.accounting import Accounting
from dissectors.dissect import CaptureFile
from dissectors.pyshark_engine import PysharkFile
from keys.errors import UserError
from tests.conftest import SHARED_CAPTURES

ROOT = Path(__file__).resolve().parents[2]


def _shared() -> list[Path]:
    return sorted(p for p in SHARED_CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def _reports(capture: Path, keyring) -> tuple[dict, dict]:
    from monitor.report import analyse, build_report
    return (build_report(analyse(str(capture), keyring)),
            build_report(analyse(str(capture), keyring, engine="pyshark")))


def _assert_same(capture: Path, keyring) -> None:
    from monitor.report import render_text
    walk, shark = _reports(capture, keyring)
    assert walk["capture"]["packets"] > 0
    for section in walk:
        assert shark[section] == walk[section], (capture, section)
    assert render_text(shark) == render_text(walk)


def _lab(tmp_path: Path, scenario: str):
    from keys.keyring import load_keyring
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    run_scenario(load_scenario(scenario), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tmp_path / "capture.pcapng", load_keyring(tmp_path / "keyring.toml")


def _scenarios() -> list[str]:
    from lab.scenario import shipped_scenarios
    return list(shipped_scenarios())


@pytest.mark.parametrize("capture", _shared(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_report_equal_on_shared_capture(capture: Path):
    _assert_same(capture, None)


def test_every_shared_capture_is_held():
    assert len(_shared()) >= 30, SHARED_CAPTURES


@pytest.mark.parametrize("scenario", _scenarios())
def test_report_and_events_equal_on_lab_scenario(tmp_path: Path, scenario: str):
    capture, keyring = _lab(tmp_path, scenario)
    _assert_same(capture, keyring)
    walk = list(CaptureFile(str(capture), Accounting()).events())
    shark = list(PysharkFile(str(capture), Accounting()).events())
    assert shark == walk


CROWDS = [
    # node counts, SPI allocation, counters, timing and addresses no shipped scenario has
    {"nodes": 7, "spi": "sequential", "spi_base": 0x2345, "spi_step": 3, "moves": "poisson",
     "move_rate": 2.0, "iid": "mixed", "sa_setup": "staggered", "background": 0.3,
     "lost_bu": 0.2, "seed": 11},
    {"nodes": 13, "home_agents": 3, "correspondents": 4, "networks": 3, "moves": "burst",
     "burst_size": 4, "keyring": "every", "data": 0, "seed": 5},
]


@pytest.mark.parametrize("params", CROWDS, ids=lambda p: f"crowd-{p['nodes']}")
def test_report_and_events_equal_on_a_crowd(tmp_path: Path, params: dict):
    from keys.keyring import load_keyring
    from lab.crowd import PARAMETERS, run_crowd
    run_crowd(tmp_path, **{p.name: params.get(p.name, p.default) for p in PARAMETERS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keyring = load_keyring(tmp_path / "keyring.toml")
    capture = tmp_path / "capture.pcapng"
    _assert_same(capture, keyring)
    walk = list(CaptureFile(str(capture), Accounting()).events())
    shark = list(PysharkFile(str(capture), Accounting()).events())
    assert len(walk) > 50 and shark == walk


def test_accounting_counts_filtered_frames(tmp_path: Path):
    """tshark hands over only the selected frames: the others are counted as filtered."""
    from lab.crowd import PARAMETERS, run_crowd
    run_crowd(tmp_path, **{**{p.name: p.default for p in PARAMETERS}, "nodes": 3,
                           "background": 0.5})
    walk, shark = Accounting(), Accounting()
    list(CaptureFile(str(tmp_path / "capture.pcapng"), walk).events())
    list(PysharkFile(str(tmp_path / "capture.pcapng"), shark).events())
    assert walk.filtered > 0
    assert (shark.read, shark.filtered, shark.malformed) == \
        (walk.read, walk.filtered, walk.malformed)


def test_packets_opened_without_raw_values_are_refused():
    """monitor.api is handed the user's own captures: one opened without include_raw gets a
    one-line error naming the options, not a wrong report."""
    import pyshark

    from dissectors.pyshark_engine import event_loop, packet_events
    capture = SHARED_CAPTURES / "zeek" / "mobile-ipv6__mip6_bu.pcap"
    cap = pyshark.FileCapture(str(capture), use_json=True, keep_packets=False,
                              eventloop=event_loop())
    try:
        with pytest.raises(Exception, match="include_raw=True"):
            list(packet_events(cap, Accounting()))
    finally:
        cap.close()
        cap.eventloop.close()


def test_cli_engine_pyshark_equals_default(tmp_path: Path):
    capture = SHARED_CAPTURES / "zeek" / "ip6_esp.pcap"
    outs = []
    for engine in ("walk", "pyshark"):
        run = subprocess.run([sys.executable, "-m", "monitor.cli", "report", str(capture),
                              "--format", "json", "--engine", engine],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""                  # no terminal: no progress bar
        outs.append(json.loads(run.stdout))
    assert outs[0] == outs[1] and outs[0]["capture"]["mobility_packets"] == 120


def test_not_a_capture_is_one_line(tmp_path: Path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    with pytest.raises(UserError, match="not a capture file"):
        PysharkFile(str(bad), Accounting())


def test_damaged_capture_is_incomplete_alike(tmp_path: Path):
    """A record header that no capture can have (issue 13): both engines stop after the same
    whole frames, say why, and `report` exits 3 with the same JSON."""
    import struct
    data = bytearray((SHARED_CAPTURES / "zeek" / "ip6_esp.pcap").read_bytes())
    at = 24
    for _ in range(50):                              # pcap: 24-octet header, 16 per record
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    struct.pack_into("<II", data, at + 8, 0x7FFFFFFF, 0x7FFFFFFF)
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(bytes(data))
    outs = []
    for engine in ("walk", "pyshark"):
        run = subprocess.run([sys.executable, "-m", "monitor.cli", "report", str(damaged),
                              "--format", "json", "--engine", engine],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert run.returncode == 3, run.stderr[-500:]
        assert run.stderr.count("\n") == 1 and "record 51" in run.stderr
        outs.append(json.loads(run.stdout))
    assert outs[0] == outs[1]
    assert outs[1]["capture"]["packets"] == 50 and not outs[1]["capture"]["complete"]
