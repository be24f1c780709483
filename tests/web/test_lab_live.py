"""`mip6mon lab live demo` in a real browser (issue 14, root): the URL it prints opens the
dashboard, whose keyed tables fill from five live sensors, with an attacker pane for each
path's eavesdropper and for the colluders; `mip6mon lab down` leaves no process behind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.conftest import ROOT, _env
from tests.web.test_browser import WAIT_SECONDS, until

pytestmark = [pytest.mark.root, pytest.mark.redis, pytest.mark.browser]


def lab(*argv: str, run_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = _env()
    env["MIP6MON_LAB_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, "-m", "monitor.cli", "lab", *argv], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def ours(run_dir: Path) -> list[str]:
    """Command lines of the processes a live lab in run_dir runs (none after lab down)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(cmdline)
    return found


def test_lab_live_demo_in_the_browser(browser, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("lab live needs root")
    run_dir = tmp_path / "lab"
    try:
        live = lab("live", "demo", "--speed", "5", run_dir=run_dir)
        assert live.returncode == 0, live.stderr
        match = re.search(r"dashboard at (http://\S+/\?token=\S+)", live.stdout)
        assert match, live.stdout
        running = ours(run_dir)
        assert sum("redis-server" in c for c in running) == 1
        assert sum(" sensor " in c for c in running) == 5
        assert any(" serve " in c for c in running)   # and its attacker worker (a fork)
        truth = json.loads((run_dir / "scenario" / "truth.json").read_text())
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(match.group(1))
        # the keyed tables: every binding of the scenario, rebuilt from the live links
        expect(page.locator("#home-table tbody tr")).to_have_count(
            len(truth["home_bindings"]), timeout=WAIT_SECONDS * 1000)
        expect(page.locator("#cn-table tbody tr")).to_have_count(
            len(truth["correspondent_bindings"]), timeout=WAIT_SECONDS * 1000)
        # the status bar names every sensor with its vantage point
        sensors = page.text_content("#st-sensors")
        for name, vantage in (("mn-ha", "mn-ha"), ("ha-cn1", "ha-cn"), ("ha-cn2", "ha-cn"),
                              ("mn-cn1", "mn-cn"), ("mn-cn2", "mn-cn")):
            assert f"{name} ({vantage})" in sensors, sensors
        # an attacker pane per eavesdropper, and the colluders'
        for vantage in ("mn-ha", "ha-cn", "mn-cn", "all"):
            page.select_option("#vantage", vantage)
            page.wait_for_selector(f'#attacker[data-vantage="{vantage}"]',
                                   timeout=WAIT_SECONDS * 1000)
            until(page, "document.querySelectorAll('#profile-table tbody tr').length > 0",
                  True)
            assert page.text_content("#profile-table tbody tr td").startswith("P")
            assert page.locator("#privacy-kpis .kpi").count() > 0
        assert errors == []
        page.close()
    finally:
        down = lab("down", run_dir=run_dir)
    assert down.returncode == 0, down.stderr
    assert ours(run_dir) == [] and not run_dir.exists()
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                            text=True).stdout.split() if "mip6mon-" in ns]
