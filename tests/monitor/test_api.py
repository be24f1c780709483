"""monitor.api: the README's five-line pyshark example, run verbatim on a lab capture, prints
the report `mip6mon report` gives; the API counts what it is fed and refuses what it cannot
read."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dissectors.pyshark_engine import event_loop
from tests.conftest import SHARED_CAPTURES

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Engines, progress bars, and mip6mon from a pyshark script"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _lab(tmp_path: Path, scenario: str = "home-transport-ctr"):
    from keys.keyring import load_keyring
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    run_scenario(load_scenario(scenario), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_keyring(tmp_path / "keyring.toml")


def test_readme_example_is_five_lines_and_prints_the_report(tmp_path: Path):
    from monitor.report import analyse, build_report
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    keyring = _lab(tmp_path)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                      "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    expected = build_report(analyse(str(tmp_path / "capture.pcapng"), keyring))
    assert expected["home_bindings"]
    printed = run.stdout.strip()
    assert printed == f"{expected['home_bindings']} {expected['privacy']}"


def test_feed_gives_the_cli_report_and_counts_every_packet(tmp_path: Path):
    """Fed every packet (no display filter), the API judges relevance itself: its report,
    accounting included, is `mip6mon report`'s."""
    import pyshark

    from lab.crowd import PARAMETERS, run_crowd
    from monitor.api import PYSHARK_OPTIONS, Monitor
    from monitor.report import analyse, build_report
    run_crowd(tmp_path, **{**{p.name: p.default for p in PARAMETERS}, "nodes": 4,
                           "background": 0.4, "seed": 3})
    capture = str(tmp_path / "capture.pcapng")
    keys = tmp_path / "keyring.toml"
    monitor = Monitor(keys=keys, allow_insecure_keyring=True)
    cap = pyshark.FileCapture(capture, keep_packets=False, eventloop=event_loop(),
                              **PYSHARK_OPTIONS)
    try:
        events = list(monitor.events(cap))
    finally:
        cap.close()
        cap.eventloop.close()
    report = monitor.report()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from keys.keyring import load_keyring
        expected = build_report(analyse(capture, load_keyring(str(keys))))
    assert report["capture"]["filtered"] > 0
    assert report == expected
    assert len(events) == expected["capture"]["mobility_packets"]
    assert monitor.report() == report                  # finished once, asked twice
    with pytest.raises(RuntimeError):
        monitor.feed([])


def test_a_capture_opened_without_raw_values_is_refused():
    import pyshark

    from monitor.api import Monitor
    cap = pyshark.FileCapture(str(SHARED_CAPTURES / "zeek" / "mobile-ipv6__mip6_bu.pcap"),
                              keep_packets=False, eventloop=event_loop())   # PDML: the default
    try:
        with pytest.raises(ValueError, match="use_json=True"):
            Monitor().feed(cap)
    finally:
        cap.close()
        cap.eventloop.close()


def test_the_example_is_valid_python():
    ast.parse(readme_example())
