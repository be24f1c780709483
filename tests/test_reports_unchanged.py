"""Every report on the shipped lab scenarios and on the shared captures, held byte for byte.

A refactor must not change what mip6mon reports (issue 11). The expectations under
`tests/expected/reports/` were produced by the code as it was when they were last written;
when a change alters reports ON PURPOSE (a new lab default, a new report field), regenerate
them and say why in the commit message:

    .venv/bin/python -m tests.test_reports_unchanged --regenerate

Each lab scenario is analysed once with its keyring, with one attacker per vantage point on the
same event stream; each shared capture once, without keys. Both the JSON report and the text
rendering (`mip6mon report --format text`) are held.
"""
from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from tests.conftest import SHARED_CAPTURES

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "expected" / "reports"


def _captures() -> list[Path]:
    assert SHARED_CAPTURES.is_dir(), f"{SHARED_CAPTURES}: no shared captures (MIP6MON_CAPTURES)"
    return sorted(p for p in SHARED_CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def _cases() -> list[str]:
    from lab.scenario import shipped_scenarios
    return [f"lab-{name}" for name in shipped_scenarios()] + \
        [f"capture-{p.parent.name}-{p.stem}" for p in _captures()]


def _reports(capture: Path, keyring) -> dict[str, dict]:
    """vantage -> the report `mip6mon report --vantage V` gives, from one pass."""
    from monitor.attacker import AttackerAnalyzer
    from monitor.keyed import KeyedAnalyzer
    from monitor.placement import VANTAGES
    from monitor.report import Analysis, MessageCounter, build_report
    from monitor.sources import PcapSource
    from monitor.stream import EventStream

    messages, keyed = MessageCounter(), KeyedAnalyzer(keyring)
    attackers = {v: AttackerAnalyzer(v) for v in VANTAGES}
    accounting = EventStream(PcapSource(str(capture), keyring=keyring),
                             [messages, keyed, *attackers.values()]).run()
    return {v: build_report(Analysis(accounting, messages, keyed, a))
            for v, a in attackers.items()}


def _render(case: str) -> dict[str, str]:
    """file name -> content, for one case."""
    from keys.keyring import load_keyring
    from monitor.report import render_text
    if case.startswith("lab-"):
        from lab.run import run_scenario
        from lab.scenario import load_scenario
        with tempfile.TemporaryDirectory() as tmp:
            run_scenario(load_scenario(case[4:]), Path(tmp))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keyring = load_keyring(Path(tmp) / "keyring.toml")
            reports = _reports(Path(tmp) / "capture.pcapng", keyring)
    else:
        capture = next(p for p in _captures()
                       if f"capture-{p.parent.name}-{p.stem}" == case)
        reports = _reports(capture, None)
    out = {f"{case}.{v}.json": json.dumps(r, indent=1, sort_keys=True) + "\n"
           for v, r in reports.items()}
    out[f"{case}.all.txt"] = render_text(reports["all"]) + "\n"
    return out


@pytest.mark.parametrize("case", _cases())
def test_report_unchanged(case):
    for name, text in _render(case).items():
        expected = EXPECTED / name
        assert expected.exists(), f"no expectation {name}: regenerate (see module docstring)"
        assert text == expected.read_text(), f"{name} changed (see module docstring)"


def regenerate() -> None:
    EXPECTED.mkdir(parents=True, exist_ok=True)
    for old in EXPECTED.iterdir():
        old.unlink()
    for case in _cases():
        for name, text in _render(case).items():
            (EXPECTED / name).write_text(text)
        print(case)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()
