"""The dashboard in real headless Chromium against a running `mip6mon replay` of lab captures."""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.web.conftest import ARTIFACTS, XSS_PAYLOADS, start_server, wait_done

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(demo_lab):
    server = start_server("replay", str(demo_lab.capture), "--keys", str(demo_lab.keyring),
                          "--speed", "max")
    wait_done(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def context(browser):
    """One context for the module: its HTTP cache spares each test re-reading plotly.js."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: page.errors.append(f"dialog: {dialog.message}"))
    yield page
    page.close()


def until(page, expression: str, timeout: float = 15) -> None:
    """Poll a page expression from Python: Playwright's wait_for_function evaluates its
    predicate with eval(), which the dashboard's CSP (no 'unsafe-eval') rightly refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def rows(page) -> list[int]:
    """Frames in the packet list (virtual: the table holds only the scrolled window)."""
    return page.evaluate("window.mip6mon.displayed()")


def column(page, index: int) -> list[str]:
    """One column of the rows the packet list shows (it is monospace text in fixed columns:
    No., Time, Source, Destination, Procedure, Msg, Path, Len, Info)."""
    return [row[index] for row in page.evaluate("window.mip6mon.shown()")]


def wait_rows(page, count: int, timeout: float = 15) -> list[int]:
    until(page, f"window.mip6mon.displayed().length === {count}", timeout)
    return rows(page)


def click_frame(page, frame: int) -> None:
    assert page.evaluate(f"window.mip6mon.reveal({frame})")
    page.click(f"#packet-rows .row[data-frame='{frame}']")


def test_both_panes_fill_and_screenshot(demo_server, demo_lab, page):
    truth = demo_lab.truth
    page.goto(demo_server.url)
    until(page, "document.querySelector('#st-state').textContent.startsWith('done')")
    analysed = int(page.text_content("#st-analysed")) + int(page.text_content("#st-malformed"))
    shown = wait_rows(page, analysed)
    assert analysed > 100 and len(shown) == analysed
    # background traffic never reaches the list; every mobility frame does
    assert all(truth["frames"][str(f)]["path"] != "other" for f in shown)
    until(page, "document.querySelectorAll('#home-table tbody tr').length > 0")
    # keyed pane: a home binding row shows the real home address behind its pseudo address
    first = truth["home_bindings"][0]
    row_texts = page.eval_on_selector_all(
        "#home-table tbody tr", "trs => trs.map(t => Array.from(t.cells).map(c => c.textContent))")
    assert [first["home_agent"], f"{first['home_address']} (mn1)", first["pseudo_home_address"],
            first["care_of_address"]] in [r[:4] for r in row_texts]
    assert len(row_texts) == len(truth["home_bindings"])
    cn_rows = page.eval_on_selector_all("#cn-table tbody tr", "trs => trs.length")
    assert cn_rows == len(truth["correspondent_bindings"])
    # the plotly timeline drew one trace per node
    until(page, "document.querySelectorAll('#coa-plot .scatterlayer .trace').length === 3")
    # attacker pane: profiles, their trail, the linkage graph, the privacy score
    until(page, "document.querySelectorAll('#profile-table tbody tr').length > 0")
    assert page.text_content("#profile-table tbody tr td").startswith("P")
    assert page.eval_on_selector_all("#trail li", "x => x.length") >= 1
    # ties, care-of addresses, home / pseudo home addresses, profiles
    until(page, "document.querySelectorAll('#link-plot .scatterlayer .trace').length === 4")
    precision = page.text_content("#privacy .kpi b")
    assert 0 <= float(precision) <= 1
    # selection: the detail tree with the decrypted annotation
    # Wireshark's time column: seconds since the first packet
    times = [float(t) for t in column(page, 1)]
    assert times and min(times) >= 0 and times == sorted(times)
    click_frame(page, first["frame"])
    page.wait_for_selector("#detail-tree .annot")
    assert f"HoA {first['home_address']}" in page.text_content("#detail-tree .annot")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert page.errors == []


def test_vantage_selector_changes_the_attacker(demo_server, page):
    page.goto(demo_server.url)
    until(page, "document.querySelectorAll('#profile-table tbody tr').length > 0")
    page.select_option("#vantage", "mn-ha")
    until(page, "document.querySelector('#privacy .kpi') !== null")
    snap = page.evaluate(
        "fetch('/api/snapshot?vantage=mn-ha')"
        ".then(r => r.json()).then(s => s.attacker.profiles_total)")
    until(page, 
        f"document.querySelector('#profile-count').textContent === '({snap})'")
    assert page.errors == []


def test_filters_narrow_the_list(demo_server, demo_lab, page):
    truth = demo_lab.truth
    page.goto(demo_server.url)
    until(page, "window.mip6mon.displayed().length > 100")
    everything = rows(page)
    hoti = sorted(int(f) for f, v in truth["frames"].items() if v["what"] == "HoTI")
    page.fill("#display-filter", "mip6.mhtype == 1")
    page.click("#filter-apply")
    assert wait_rows(page, len(hoti)) == hoti
    assert page.text_content("#st-displayed") == str(len(hoti))
    # a bad filter: a clear message, the list untouched
    page.fill("#display-filter", "mip6.mhtype ==")
    page.press("#display-filter", "Enter")
    page.wait_for_selector("#message.error")
    assert "invalid display filter" in page.text_content("#message")
    assert rows(page) == hoti
    page.click("#filter-clear")
    assert wait_rows(page, len(everything)) == everything
    # quick filters: path and message type (client side)
    page.select_option("#q-path", "ha-cn")
    ha_cn = sorted(f for f in everything if truth["frames"][str(f)]["path"] == "ha-cn")
    assert wait_rows(page, len(ha_cn)) == ha_cn
    page.select_option("#q-path", "")
    page.select_option("#q-msg", "BA")
    ba = column(page, 5)
    assert ba and set(ba) == {"BA"}
    page.select_option("#q-msg", "")
    # node quick filter: the keyed truth of which node a frame belongs to
    page.select_option("#q-node", "2001:db8:1::200")
    until(page, f"window.mip6mon.displayed().length < {len(everything)}")
    mn2 = rows(page)
    assert mn2 and all(truth["frames"][str(f)]["node"] in ("mn2", None) for f in mn2)
    assert sum(truth["frames"][str(f)]["node"] == "mn2" for f in mn2) >= 0.9 * len(mn2)
    assert page.errors == []


def test_export_downloads_a_pcapng_tshark_reads(demo_server, demo_lab, page, tmp_path):
    page.goto(demo_server.url)
    until(page, "window.mip6mon.displayed().length > 100")
    page.fill("#display-filter", "mip6.mhtype == 5")
    page.click("#filter-apply")
    bu = sorted(int(f) for f, v in demo_lab.truth["frames"].items()
                if v["what"] in ("BU", "Home BU", "Home BU (lost)"))
    assert wait_rows(page, len(bu)) == bu
    page.click("details.export summary")
    with page.expect_download() as info:
        page.click("#export-filtered")
    out = tmp_path / "export.pcapng"
    info.value.save_as(str(out))
    assert info.value.suggested_filename == "mip6mon-export.pcapng"
    # read back without the keyring: the ESP-protected Home BUs stay opaque, the rest are BUs
    lines = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment",
                            "-e", "mip6.mhtype"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == len(bu)
    assert all(line.startswith("path=") for line in lines)
    assert {line.split("\t")[1] for line in lines} <= {"5", ""}


def test_pause_holds_rows_and_resume_delivers_all(ctr_lab, page):
    expected = sorted(int(f) for f in ctr_lab.truth["frames"])       # every frame is mobility
    server = start_server("replay", str(ctr_lab.capture), "--keys", str(ctr_lab.keyring),
                          "--speed", "1")
    try:
        page.goto(server.url)
        until(page, "window.mip6mon.displayed().length >= 1")
        page.click("#pause")
        held = rows(page)
        assert len(held) < len(expected)
        status = wait_done(server)
        assert status["analysed"] == len(expected)
        until(page, f"document.querySelector('#queued').textContent === "
                               f"'{len(expected) - len(held)} queued'", timeout=5)
        assert rows(page) == held                        # nothing leaked past the pause
        assert page.is_visible("#queued")
        page.click("#pause")                               # resume
        assert wait_rows(page, len(expected)) == expected
        assert page.is_hidden("#queued")
        # the keyed tables were built from the snapshots' news, one piece a second: each
        # binding once, newest first
        homes = [b["frame"] for b in ctr_lab.truth["home_bindings"]]
        until(page, f"document.querySelectorAll('#home-table tbody tr').length === {len(homes)}")
        shown = page.eval_on_selector_all("#home-table tbody tr",
                                          "trs => trs.map(t => Number(t.cells[6].textContent))")
        assert shown == sorted(homes, reverse=True)
    finally:
        server.stop()
    assert page.errors == []


def test_markup_in_packets_is_text(xss_capture, page):
    server = start_server("replay", str(xss_capture), "--speed", "max")
    try:
        page.goto(server.url)
        assert wait_rows(page, 3) == [1, 2, 3]
        info = column(page, 8)
        for payload, text in zip(XSS_PAYLOADS, info, strict=False):
            assert payload in text
        for frame, payload in ((1, XSS_PAYLOADS[0]), (2, XSS_PAYLOADS[1])):
            click_frame(page, frame)
            until(page, f"document.querySelector('#detail-frame').textContent === 'frame {frame}'"
                                   " && document.querySelector('#detail-tree ul') !== null")
            assert f"Payload: {payload}" in page.text_content("#detail-tree")
        time.sleep(0.3)
        assert page.evaluate("typeof window.__p") == "undefined"
        assert page.eval_on_selector_all("#layout img, #layout script", "x => x.length") == 0
    finally:
        server.stop()
    assert page.errors == []


def test_the_page_needs_the_token(demo_server, browser):
    context = browser.new_context()           # no cookie from the other tests
    page = context.new_page()
    try:
        response = page.goto(demo_server.base + "/")
        assert response.status == 401
        assert "token required" in page.content()
        response = page.goto(demo_server.base + "/?token=not-the-token")
        assert response.status == 401
        response = page.goto(demo_server.base + "/static/app.js")
        assert response.status == 401
    finally:
        context.close()
