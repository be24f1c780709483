"""`mip6mon compare`: two real lab captures through real tshark, side by side."""
from __future__ import annotations

import json

import pytest

from lab.run import run_scenario
from lab.scenario import load_scenario
from monitor.compare import measure, render_markdown
from tests.monitor.conftest import run_cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name in ("baseline", "home-transport-ctr", "mn-initiated-rr"):
        run_scenario(load_scenario(name), root / name)
    return root


def test_compare_text_table(runs):
    # draft 7.3: with 5.3.1 the MN-CN eavesdropper no longer sees the home address
    a, b = runs / "baseline", runs / "mn-initiated-rr"
    r = run_cli("compare", str(a / "capture.pcapng"), str(b / "capture.pcapng"),
                "--keys", str(a / "keyring.toml"), "--keys-b", str(b / "keyring.toml"),
                "--vantage", "mn-cn")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "attacker at mn-cn"
    assert lines[1].split() == ["metric", "baseline", "mn-initiated-rr"]
    tied = next(ln for ln in lines if ln.startswith("care-of addresses tied"))
    base, rr = tied.split()[-2:]
    assert base == "2/2" and rr == "0/2"
    exposed = next(ln for ln in lines if ln.startswith("home address exposed")).split()[-2:]
    assert exposed == ["1", "0"]
    assert next(ln for ln in lines if ln.startswith("link precision")).split()[-2:] == ["1", "1"]
    assert any(ln.startswith("rules that linked in baseline:") and "bu-sequence-continues" in ln
               for ln in lines)


def test_compare_json_and_vantage(runs):
    a, b = runs / "baseline", runs / "home-transport-ctr"
    r = run_cli("compare", str(a / "capture.pcapng"), str(b / "capture.pcapng"),
                "--keys", str(a / "keyring.toml"), "--keys-b", str(b / "keyring.toml"),
                "--vantage", "ha-cn", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["vantage"] == "ha-cn" and doc["a"]["label"] == "baseline"
    # 5.2.1 signalling never crosses HA-CN: the attacker there sees nothing of that scenario
    assert doc["b"]["summary"]["packets_seen"] == 0
    assert doc["a"]["summary"]["packets_seen"] > 0
    assert doc["a"]["privacy"]["vantage"] == "ha-cn"
    assert "kph" not in r.stdout.lower() and "ks =" not in r.stdout


def test_compare_bad_input_is_one_line_exit_2(runs, tmp_path):
    a = runs / "baseline"
    r = run_cli("compare", str(tmp_path / "missing.pcapng"), str(a / "capture.pcapng"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_markdown_rows_have_a_sentence(runs):
    ms = [measure(str(runs / n / "capture.pcapng"), str(runs / n / "keyring.toml"), "mn-cn")
          for n in ("baseline", "mn-initiated-rr")]
    md = render_markdown(ms, "mn-cn")
    rows = [ln for ln in md.splitlines() if ln.startswith("| baseline") or ln.startswith("| mn-")]
    assert len(rows) == 2 and rows[0].split("|")[4].strip() == "2/2"
    assert "`baseline`: the attacker links every packet of each node into one profile" in md
    assert "ties every care-of address to the real home address" in md
    assert "`mn-initiated-rr`:" in md and "ties 0 of 2 care-of addresses" in md


def test_a_damaged_capture_is_compared_but_said_incomplete(runs, tmp_path):
    # issue 13: a metric of part of a capture must not pass for the whole one's
    from keys.errors import EXIT_INCOMPLETE
    from tests.fuzz.captures import Capture
    from tests.fuzz.conftest import base_capture
    base = base_capture()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(Capture(base.kind, base.endian, base.units,
                            cut=len(base.to_bytes()) - 30).to_bytes())
    whole = runs / "baseline" / "capture.pcapng"
    for fmt in ("text", "json"):
        r = run_cli("compare", str(whole), str(cut), "--format", fmt)
        assert r.returncode == EXIT_INCOMPLETE == 3
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(f"mip6mon: incomplete: {cut}: damaged capture: ")
    assert r.stdout.strip()                         # the table is there all the same
    doc = json.loads(r.stdout)
    assert doc["a"]["complete"] is True and doc["a"]["incomplete_reason"] is None
    assert doc["b"]["complete"] is False and "cut short" in doc["b"]["incomplete_reason"]
