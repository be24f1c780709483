"""`mip6mon report --format json` scales (issue 10): per-frame lists become counts plus a frame
index, `--detail` keeps them, and what the keyed view rebuilt is the same in both."""
from __future__ import annotations

import json

import pytest

from keys.keyring import load_keyring
from lab.crowd import run_crowd
from monitor.report import FINDINGS_SHOWN, analyse, build_report, scaled
from tests.monitor.conftest import run_cli

SAME = ("capture", "messages", "home_bindings", "correspondent_bindings", "privacy")


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd")
    run_crowd(out, nodes=12, seed=9, spi="sequential", spi_step=2, background=0.5)
    return out


def _frame_lists(value, path="") -> list[str]:
    """Where a list of frame numbers (ints) sits in a report."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _frame_lists(v, f"{path}/{k}")]
    if isinstance(value, list):
        if value and all(isinstance(x, int) for x in value):
            return [path]
        return [p for n, v in enumerate(value) for p in _frame_lists(v, f"{path}[{n}]")]
    return []


def test_the_default_report_has_no_per_frame_list_and_the_same_keyed_view(crowd):
    detail = build_report(analyse(str(crowd / "capture.pcapng"),
                                  load_keyring(crowd / "keyring.toml")))
    assert _frame_lists(detail)            # the detailed one has them (the test can fail)
    small = scaled(detail)
    assert _frame_lists(small) == []
    assert {k: small[k] for k in SAME} == {k: detail[k] for k in SAME}
    for full, short in zip(detail["attacker"]["profiles"], small["attacker"]["profiles"],
                           strict=True):
        assert short["frame_count"] == len(full["frames"])
        assert short["first_frame"] == min(full["frames"])
        assert short["last_frame"] == max(full["frames"])
        by_rule = {row["rule"]: row for row in short["evidence"]}
        assert sum(row["items"] for row in by_rule.values()) == len(full["evidence"])
        for rule, row in by_rule.items():
            items = [e for e in full["evidence"] if e["rule"] == rule]
            assert row["frame_count"] == sum(e["frame_count"] for e in items)
            assert row["links"] == any(e["links"] for e in items)
    assert len(json.dumps(small)) < len(json.dumps(detail)) / 2


@pytest.mark.parametrize("vantage", ["all", "mn-cn"])
def test_the_scaled_attacker_section_is_the_same_built_from_the_analyzer(crowd, vantage):
    """report's default: the attacker section scaled from its profiles and evidence objects,
    never the whole section first (2,000,000 packets: 120 MB of evidence dicts)."""
    def analysis():
        return analyse(str(crowd / "capture.pcapng"), load_keyring(crowd / "keyring.toml"),
                       vantage, notes=False)
    direct = scaled(build_report(analysis(), scaled_attacker=True), attacker_scaled=True)
    assert direct == scaled(build_report(analysis()))
    assert any(p["evidence"] for p in direct["attacker"]["profiles"])   # something compared


def test_findings_keep_the_first_of_each_kind_and_every_total():
    report = {"findings": [{"kind": "spi-step", "frame": n, "message": "m"}
                           for n in range(FINDINGS_SHOWN + 7)]
              + [{"kind": "binding-error", "frame": 1, "message": "m"}],
              "attacker": {"profiles": []}}
    small = scaled(report)
    assert small["finding_counts"] == {"binding-error": 1, "spi-step": FINDINGS_SHOWN + 7}
    assert [f["frame"] for f in small["findings"] if f["kind"] == "spi-step"] == \
        list(range(FINDINGS_SHOWN))
    assert len(report["findings"]) == FINDINGS_SHOWN + 8     # the whole report is untouched


def test_cli_prints_the_scaled_report_and_detail_keeps_every_list(crowd):
    args = ("report", str(crowd / "capture.pcapng"), "--keys", str(crowd / "keyring.toml"),
            "--format", "json")
    small, detail = run_cli(*args), run_cli(*args, "--detail")
    assert small.returncode == 0 and detail.returncode == 0, small.stderr + detail.stderr
    small_report, detail_report = json.loads(small.stdout), json.loads(detail.stdout)
    assert _frame_lists(small_report) == [] and _frame_lists(detail_report)
    assert scaled(detail_report) == small_report
