"""The pane registry (web/panes.py) against what reads it: the page's builders and writers, the
snapshot sections that feed each pane, and, in real Chromium, a page built from a registry
with a column added (what the attacker work will do to the profile pane)."""
from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.test_app import TOKEN, demo_app  # noqa: F401  (the finished demo session)
from web.panes import FORMATS, KINDS, LIST_FORMATS, PANELS, PANES, PROFILES, Column, layout
from web.session import PaneCursor

WEB = Path(__file__).resolve().parents[2] / "web"
WAIT_MS = 30_000
TEXTS = "xs => xs.map(x => x.textContent)"


def _js_keys(name: str) -> set[str]:
    """The keys of one object literal `const NAME = { key: ..., }` of app.js."""
    source = (WEB / "static" / "app.js").read_text()
    body = source.split(f"const {name} = {{", 1)[1]
    depth = 1
    for end, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return set(re.findall(r"^ {4}(\w+):", body[:end], re.M))
    raise AssertionError(f"app.js: {name} does not end")


def test_every_kind_format_and_panel_is_one_the_page_has():
    assert _js_keys("PANE_KINDS") | {"packets"} == set(KINDS)
    assert _js_keys("FORMATS") == set(FORMATS)
    assert _js_keys("LIST_FORMATS") == set(LIST_FORMATS)
    page = (WEB / "templates" / "index.html").read_text()
    assert all(f'<section id="{panel}"' in page for panel in PANELS)
    assert len({p.id for p in PANES}) == len(PANES)
    for pane in PANES:
        assert pane.kind in KINDS and pane.panel in PANELS, pane.id
        formats = LIST_FORMATS if pane.kind == "packets" else FORMATS
        assert {c.format for c in pane.columns} <= set(formats), pane.id
        assert pane.whole or pane.rows > 0, f"{pane.id}: a news pane keeps its newest rows"


def _at(snapshot: dict, path) -> object:
    for key in path:
        snapshot = snapshot[key]
    return snapshot


def test_each_pane_is_fed_by_a_section_the_first_snapshot_carries(demo_app):  # noqa: F811
    _app, session, _keyring = demo_app
    session.refresh_attacker("all")
    first = session.pane_update(PaneCursor(), "all")
    assert first["panes"] == layout()
    for pane in PANES:
        if pane.kind == "packets":
            continue
        entries = _at(first, pane.feed)
        assert isinstance(entries, (list, dict)), pane.id
        if pane.total:
            assert isinstance(_at(first, pane.total), int), pane.id
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            # every column the pane shows is a field of its entries
            assert {c.key for c in pane.columns} <= set(entries[0]), pane.id
    later = session.pane_update(PaneCursor(first=False), "all")
    assert "panes" not in later and "packet_classes" not in later


@pytest.fixture
def extended_registry(monkeypatch):
    """The profile pane with one more column and another heading: the page must show both."""
    profile = dataclasses.replace(PROFILES, columns=(
        *(dataclasses.replace(c, heading="Profile id") if c.key == "id" else c
          for c in PROFILES.columns),
        Column("trail", "Stops", "count")))
    panes = [profile.as_dict() if p.id == PROFILES.id else p.as_dict() for p in PANES]
    monkeypatch.setattr("web.session.layout", lambda: panes)
    return profile


@pytest.mark.browser
def test_the_page_builds_its_panes_from_the_registry(demo_app, browser,  # noqa: F811
                                                     extended_registry):
    from werkzeug.serving import make_server

    app, session, _keyring = demo_app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/?token={TOKEN}")
        page.wait_for_selector('#attacker[data-vantage="all"]', timeout=WAIT_MS)
        for pane in PANES:
            if pane.kind == "packets":
                continue
            # each pane in its panel, in the registry's order, with its heading
            assert page.locator(f"#{pane.panel} > #{pane.id}-pane").count() == 1, pane.id
            if pane.title:
                assert page.text_content(f"#{pane.id}-pane h3").startswith(pane.title)
        ids = page.eval_on_selector_all("#keyed > [id$='-pane'], #attacker > [id$='-pane']",
                                        "xs => xs.map(x => x.id)")
        assert ids == [f"{p.id}-pane" for p in PANES if p.kind != "packets"]
        for pane in (p for p in PANES if p.kind == "table" and p.id != PROFILES.id):
            heads = page.eval_on_selector_all(f"#{pane.id}-table th", TEXTS)
            assert heads == [c.heading for c in pane.columns]
        heads = page.eval_on_selector_all("#profile-table th", TEXTS)
        assert heads == [c.heading for c in extended_registry.columns]
        assert heads[0] == "Profile id" and heads[-1] == "Stops"
        profiles = session.snapshot("all")["attacker"]["profiles"]
        expect(page.locator("#profile-table tbody tr")).to_have_count(len(profiles))
        stops = page.eval_on_selector_all("#profile-table tbody tr td:last-child", TEXTS)
        assert stops == [str(len(p["trail"])) for p in profiles]
        # the packet list's head from the packets pane's columns
        head = page.text_content("#list-head")
        assert all(c.heading in head for c in PANES[0].columns)
        # the findings list: the newest of the keyed view's findings, newest first
        findings = session.keyed_report()["findings"]
        expect(page.locator("#findings-list li")).to_have_count(max(1, min(len(findings), 50)))
        assert page.text_content("#findings-count") == f"({len(findings)})"
        newest = session.keyed.findings.entries[-1]
        assert page.text_content("#findings-list li").startswith(f"{newest['kind']}: ")
        assert errors == []
    finally:
        context.close()
        server.shutdown()
