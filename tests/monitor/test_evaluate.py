"""`mip6mon evaluate` on lab crowds of 6 and 20 nodes (100 and 500: benchmarks/): the
attacker's precision bar, the leaks the draft admits, calibrated confidences, and the files a
researcher gets (tables, chart, JSON that redraws them), and README's section drawn from
docs/evaluation.json. Rewrite that section and the chart's picture with

    .venv/bin/python -m tests.monitor.test_evaluate --regenerate
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab.crowd import run_crowd
from monitor.evaluate import (
    Grid,
    check,
    reliability,
    render_markdown,
    render_readme,
    run,
    summarise,
)
from tests.generated import GeneratedBlock
from tests.monitor.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def leaks():
    """The draft's home registration (5.2.1, 5.2.2) and the baseline, 20 nodes, random SPIs,
    five seeds: what the draft admits stays found."""
    return run(Grid(procedures=("baseline", "5.2.1", "5.2.2"), nodes=(20,), iids=("privacy",),
                    spis=("random",), seeds=5), run_crowd)


@pytest.fixture(scope="module")
def look_alikes():
    """Crowds full of look-alikes: SPIs 16 apart, stable and EUI-64 care-of IIDs, counters side
    by side, nodes moving in bursts (handover storms), six and twenty nodes, every kind of
    home and correspondent registration."""
    return run(Grid(procedures=("4.1", "5.2.2", "5.3.1", "5.4"), nodes=(6, 20),
                    iids=("stable", "eui64"), spis=("sequential",), seeds=2,
                    crowd={"moves": "burst"}), run_crowd)


def _row(rows, **where):
    [row] = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return row


def test_the_leaks_the_draft_admits_stay_found(leaks):
    rows = summarise(leaks)
    assert check(rows) == []                     # precision >= 0.99, no seed below 0.95
    assert _row(rows, procedure="baseline", vantage="all")["link_recall"] == 1.0
    for procedure in ("5.2.1", "5.2.2"):
        # draft 6.4: the renewed SPI is 1..255 above the last; random SPIs make that unique
        assert _row(rows, procedure=procedure, vantage="mn-ha")["link_recall"] >= 0.9
    # every seed ran, at every vantage point
    assert {r["seeds"] for r in rows} == {5} and len(rows) == 3 * 4


def test_look_alikes_are_not_linked(look_alikes):
    rows = summarise(look_alikes)
    assert check(rows) == [], check(rows)
    # what the attacker could not tell apart shows as an anonymity set, not as a merge
    sets = [r["anonymity_set_mean"] for r in rows if r["anonymity_set_mean"] is not None]
    assert max(sets) > 1.5


def test_confidence_means_what_it_says(leaks, look_alikes):
    merged = {"records": leaks["records"] + look_alikes["records"], "bins": leaks["bins"]}
    table = reliability(merged)
    links = [r for r in table if r["low"] >= 0.99]
    assert sum(r["decisions"] for r in links) > 100
    assert all(r["holds"] for r in links), links
    below = [r for r in table if r["low"] < 0.99]
    assert below and all(0 <= r["right"] <= 1 for r in below)


def test_tables_name_every_cell(leaks):
    md = render_markdown(leaks)
    assert "holds in every cell" in md and "## Reliability" in md
    assert "| 5.2.1 | R " in md.split("## Overview")[1]
    assert "| 5.2.1 | P 1 · R " in md and "**5.2.2**" in md


def test_adjacent_spis_staggered_counters_and_noise_are_not_linked():
    """SPIs 1 apart (each node's renewal lands on other nodes' SPIs), SAs set up at different
    times, Poisson moves, a third of the packets background traffic and lost Home BUs: what the
    attacker links is still right, and its confidences still mean what they say."""
    results = run(Grid(procedures=("5.2.1", "5.3.1"), nodes=(20,), iids=("privacy",),
                       spis=("sequential",), seeds=2,
                       crowd={"spi_step": 1, "moves": "poisson", "sa_setup": "staggered",
                              "background": 0.3, "lost_bu": 0.2}), run_crowd)
    rows = summarise(results)
    assert check(rows) == [], check(rows)
    assert any(r["link_recall"] for r in rows)           # it still links something
    assert all(r["holds"] for r in reliability(results))


def test_command_writes_tables_chart_and_json(tmp_path):
    out = tmp_path / "docs"
    r = run_cli("evaluate", "--nodes", "6", "--procedures", "5.2.1", "--iid", "privacy",
                "--spi", "random", "--seeds", "1", "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.html", "evaluation.json",
                                                      "evaluation.md"]
    doc = json.loads((out / "evaluation.json").read_text())
    assert {rec["vantage"] for rec in doc["records"]} == {"all", "mn-ha", "ha-cn", "mn-cn"}
    assert "plotly" in (out / "evaluation.html").read_text()
    # redrawn from the JSON alone: the same tables
    again = tmp_path / "again"
    r = run_cli("evaluate", "--render", str(out / "evaluation.json"), "-o", str(again))
    assert r.returncode == 0, r.stderr
    assert (again / "evaluation.md").read_text() == (out / "evaluation.md").read_text()


def test_command_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("not json")
    for argv in (("evaluate", "--render", str(bad)), ("evaluate", "--nodes", "1")):
        r = run_cli(*argv, "-o", str(tmp_path / "o"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_render_merges_evaluations(tmp_path):
    """Two sweeps (here N=2 and N=3) redrawn as one: every cell of each, the grid names both."""
    for n in ("2", "3"):
        r = run_cli("evaluate", "--nodes", n, "--procedures", "5.2.1", "--iid", "privacy",
                    "--spi", "random", "--vantage", "mn-ha", "--seeds", "1", "--quiet",
                    "-o", str(tmp_path / n))
        assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", "--render", str(tmp_path / "2" / "evaluation.json"),
                str(tmp_path / "3" / "evaluation.json"), "-o", str(tmp_path / "both"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "both" / "evaluation.json").read_text())
    assert doc["grid"]["nodes"] == [2, 3]
    assert sorted(rec["nodes"] for rec in doc["records"]) == [2, 3]
    assert "| 5.2.1 | P 1 · R 1 · A 1 · F 1 | P 1 · R 1 · A 1 · F 1 |" in \
        (tmp_path / "both" / "evaluation.md").read_text()


README_EVALUATION = GeneratedBlock(
    ROOT / "README.md",
    "<!-- evaluation: generated from docs/evaluation.json by monitor.evaluate.render_readme -->",
    "<!-- end of evaluation -->")


def test_readme_holds_the_evaluation():
    """README's evaluation section is what docs/evaluation.json says (its bar, overview,
    reliability table and findings), and the evaluation holds the issue's bar."""
    results = json.loads((ROOT / "docs" / "evaluation.json").read_text())
    assert README_EVALUATION.current() == render_readme(results)
    assert check(summarise(results)) == []
    assert all(r["holds"] for r in reliability(results))
    assert {20, 100} <= set(results["grid"]["nodes"])


def regenerate() -> None:
    """README's section from docs/evaluation.json, and docs/evaluation.png: the chart as
    Chromium draws it (plotly.js embedded, no network), at MN-HA with sequential SPIs."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from monitor.evaluate import render_chart
    from tests.web.conftest import CHROMIUM_ARGS

    results = json.loads((ROOT / "docs" / "evaluation.json").read_text())
    README_EVALUATION.rewrite(render_readme(results))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        html = Path(tmp) / "chart.html"
        html.write_text(render_chart(results, self_contained=True))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(html.as_uri())
        page.wait_for_selector(".main-svg")
        # the view where the crowd matters: MN-HA with SPIs allocated close together
        page.evaluate("""() => {
            const gd = document.querySelector('.js-plotly-plot');
            const buttons = gd.layout.updatemenus[0].buttons;
            const i = buttons.findIndex(
                (x) => x.label === 'mn-ha · SPIs sequential · IIDs privacy');
            return Plotly.update(gd, buttons[i].args[0], {'updatemenus[0].active': i});
        }""")
        page.screenshot(path=str(ROOT / "docs" / "evaluation.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()
