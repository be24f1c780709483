"""The dashboard in real headless Chromium against a running `mip6mon replay` of lab captures.

Every wait here is for the very state the test then asserts (the exact rows, the detail pane
showing that frame's tree, the attacker pane drawn for that vantage), never for a sign that
usually comes first: on a loaded 2-core machine the order of signs is not guaranteed.
"""
from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time

import pytest
from playwright.sync_api import expect

from tests.web.conftest import ARTIFACTS, XSS_PAYLOADS, ChildWatch, start_server, wait_done

pytestmark = pytest.mark.browser
WAIT_SECONDS = 30          # an upper bound for a loaded machine, never a pace


@pytest.fixture(scope="module")
def demo_server(demo_lab):
    server = start_server("replay", str(demo_lab.capture), "--keys", str(demo_lab.keyring),
                          "--speed", "max")
    wait_done(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_rows(demo_server) -> list[dict]:
    """Every row the finished replay holds, as the server sends them to a browser."""
    return demo_server.get("/api/rows")


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


def until(page, expression: str, expected=True, timeout: float = WAIT_SECONDS):
    """Poll a page expression from Python until it equals `expected` (Playwright's
    wait_for_function evaluates its predicate with eval(), which the dashboard's CSP, with no
    'unsafe-eval', rightly refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value == expected:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {expression} is {value!r}, not {expected!r}")
        time.sleep(0.02)


def rows(page) -> list[int]:
    """Frames in the packet list (virtual: the table holds only the scrolled window)."""
    return page.evaluate("window.mip6mon.displayed()")


def wait_rows(page, expected: list[int]) -> list[int]:
    """Until the packet list holds exactly these frames, in this order."""
    return until(page, "window.mip6mon.displayed()", list(expected))


def column(page, index: int) -> list[str]:
    """One column of the rows the packet list shows (it is monospace text in fixed columns:
    No., Time, Source, Destination, Procedure, Msg, Path, Len, Info)."""
    return [row[index] for row in page.evaluate("window.mip6mon.shown()")]


def wait_connected(page) -> None:
    expect(page.locator("#st-conn")).to_have_text("connected", timeout=WAIT_SECONDS * 1000)


def click_frame(page, frame: int) -> None:
    assert page.evaluate(f"window.mip6mon.reveal({frame})")
    page.click(f"#packet-rows .row[data-frame='{frame}']")


def wait_detail(page, frame: int) -> None:
    """Until the detail pane shows this frame's tree (header and tree change together)."""
    page.wait_for_selector(f'#detail[data-frame="{frame}"][data-state="shown"]',
                           timeout=WAIT_SECONDS * 1000)
    assert page.text_content("#detail-frame") == f"frame {frame}"
    assert page.text_content("#detail-tree summary").startswith(f"Frame {frame}: ")


def test_both_panes_fill_and_screenshot(demo_server, demo_lab, demo_rows, page):
    truth = demo_lab.truth
    page.goto(demo_server.url)
    expect(page.locator("#st-state")).to_have_text("done (max speed)",
                                                   timeout=WAIT_SECONDS * 1000)
    analysed = int(page.text_content("#st-analysed")) + int(page.text_content("#st-malformed"))
    shown = wait_rows(page, [r["n"] for r in demo_rows])
    assert analysed > 100 and len(shown) == analysed
    # background traffic never reaches the list; every mobility frame does
    assert all(truth["frames"][str(f)]["path"] != "other" for f in shown)
    # keyed pane: a home binding row shows the real home address behind its pseudo address
    expect(page.locator("#home-table tbody tr")).to_have_count(len(truth["home_bindings"]))
    expect(page.locator("#cn-table tbody tr")).to_have_count(len(truth["correspondent_bindings"]))
    first = truth["home_bindings"][0]
    row_texts = page.eval_on_selector_all(
        "#home-table tbody tr", "trs => trs.map(t => Array.from(t.cells).map(c => c.textContent))")
    assert [first["home_agent"], f"{first['home_address']} (mn1)", first["pseudo_home_address"],
            first["care_of_address"]] in [r[:4] for r in row_texts]
    # the plotly timeline drew one trace per node
    until(page, "document.querySelectorAll('#coa-plot .scatterlayer .trace').length", 3)
    # attacker pane: profiles, their trail, the linkage graph, the privacy score
    page.wait_for_selector('#attacker[data-vantage="all"]', timeout=WAIT_SECONDS * 1000)
    assert page.text_content("#profile-table tbody tr td").startswith("P")
    # each profile's evidence per rule with the confidence of its weakest link, and what the
    # attacker could not tell it apart from
    cells = page.eval_on_selector_all(
        "#profile-table tbody tr",
        "trs => trs.map(t => Array.from(t.cells).map(c => c.textContent))")
    assert all(len(c) == 7 for c in cells) and any("≥" in c[5] for c in cells)
    assert page.text_content("#profile-table thead").endswith("Could be")
    assert page.eval_on_selector_all("#trail-list li", "x => x.length") >= 1
    # ties, care-of addresses, home / pseudo home addresses, profiles
    until(page, "document.querySelectorAll('#link-plot .scatterlayer .trace').length", 4)
    precision = page.text_content("#privacy-kpis .kpi b")
    assert 0 <= float(precision) <= 1
    # Wireshark's time column: seconds since the first packet
    times = [float(t) for t in column(page, 1)]
    assert times and min(times) >= 0 and times == sorted(times)
    # selection: the detail tree with the decrypted annotation
    click_frame(page, first["frame"])
    wait_detail(page, first["frame"])
    assert f"HoA {first['home_address']}" in page.text_content("#detail-tree .annot")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert page.errors == []


def test_the_detail_pane_never_shows_one_frame_under_anothers_number(demo_server, demo_rows,
                                                                      page):
    """Issue 12: the header said "frame N" while the tree still showed the previous frame.
    A recorder sees the pane after every change while the selection runs down the list faster
    than the answers come back: at no moment do the header and the tree name different
    frames, and the last selection's tree is the one that stays."""
    frames = [r["n"] for r in demo_rows]
    page.goto(demo_server.url)
    wait_rows(page, frames)
    page.evaluate("""() => {
        window.__detail = [];
        const pane = document.querySelector('#detail');
        new MutationObserver(() => {
            const summary = pane.querySelector('#detail-tree summary');
            window.__detail.push([pane.dataset.frame || null, pane.dataset.state || null,
                                  document.querySelector('#detail-frame').textContent,
                                  summary ? summary.textContent : null]);
        }).observe(pane, {subtree: true, childList: true, characterData: true,
                          attributes: true});
    }""")
    click_frame(page, frames[0])
    wait_detail(page, frames[0])
    for _ in range(12):
        page.keyboard.press("ArrowDown")           # each press selects the next frame at once
    last = frames[12]
    wait_detail(page, last)
    seen = page.evaluate("window.__detail")
    assert len(seen) >= 13
    states = set()
    for frame, phase, header, summary in seen:
        states.add(phase)
        assert header.startswith(f"frame {frame}"), (frame, header)
        if phase == "loading":
            assert header == f"frame {frame} (loading…)" and summary is None
        if summary is not None:
            assert phase == "shown" and summary.startswith(f"Frame {frame}: "), (frame, summary)
    assert states <= {"loading", "shown"} and "loading" in states
    assert page.errors == []


def test_vantage_selector_changes_the_attacker(demo_server, page):
    page.goto(demo_server.url)
    page.wait_for_selector('#attacker[data-vantage="all"]', timeout=WAIT_SECONDS * 1000)
    expected = demo_server.get("/api/snapshot?vantage=mn-ha")["attacker"]["profiles_total"]
    page.select_option("#vantage", "mn-ha")
    page.wait_for_selector('#attacker[data-vantage="mn-ha"]', timeout=WAIT_SECONDS * 1000)
    assert page.text_content("#profile-count") == f"({expected})"
    assert page.locator("#privacy-kpis .kpi").count() > 0
    assert page.errors == []


def test_filters_narrow_the_list(demo_server, demo_lab, demo_rows, page):
    truth = demo_lab.truth
    everything = [r["n"] for r in demo_rows]
    page.goto(demo_server.url)
    wait_rows(page, everything)
    hoti = sorted(int(f) for f, v in truth["frames"].items() if v["what"] == "HoTI")
    page.fill("#display-filter", "mip6.mhtype == 1")
    page.click("#filter-apply")
    wait_rows(page, hoti)
    assert page.text_content("#st-displayed") == str(len(hoti))
    # a bad filter: a clear message, the list untouched
    page.fill("#display-filter", "mip6.mhtype ==")
    page.press("#display-filter", "Enter")
    page.wait_for_selector("#message.error")
    assert "invalid display filter" in page.text_content("#message")
    assert rows(page) == hoti
    page.click("#filter-clear")
    wait_rows(page, everything)
    # quick filters: path and message type (client side)
    page.select_option("#q-path", "ha-cn")
    wait_rows(page, [f for f in everything if truth["frames"][str(f)]["path"] == "ha-cn"])
    page.select_option("#q-path", "")
    page.select_option("#q-msg", "BA")
    wait_rows(page, [r["n"] for r in demo_rows if r["msg"] == "BA"])
    ba = column(page, 5)
    assert ba and set(ba) == {"BA"}
    page.select_option("#q-msg", "")
    wait_rows(page, everything)
    # node quick filter: the keyed truth of which node a frame belongs to
    page.select_option("#q-node", "2001:db8:1::200")
    until(page, "window.mip6mon.filters().node", "2001:db8:1::200")
    mn2 = rows(page)
    assert mn2 and len(mn2) < len(everything)
    assert all(truth["frames"][str(f)]["node"] in ("mn2", None) for f in mn2)
    assert sum(truth["frames"][str(f)]["node"] == "mn2" for f in mn2) >= 0.9 * len(mn2)
    assert page.errors == []


def test_export_downloads_a_pcapng_tshark_reads(demo_server, demo_lab, page, tmp_path):
    page.goto(demo_server.url)
    page.fill("#display-filter", "mip6.mhtype == 5")
    page.click("#filter-apply")
    bu = sorted(int(f) for f, v in demo_lab.truth["frames"].items()
                if v["what"] in ("BU", "Home BU", "Home BU (lost)"))
    wait_rows(page, bu)
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
    assert page.errors == []


def test_binding_cache_and_report_downloads(demo_server, demo_lab, page, tmp_path):
    """The JSON/CSV exports are fetched with the token in a header and saved from a blob
    (no cookie, no token in a link)."""
    page.goto(demo_server.url)
    wait_connected(page)
    page.click("details.export summary")
    with page.expect_download() as info:
        page.click("button[data-export='/api/bindings.json']")
    assert info.value.suggested_filename == "mip6mon-bindings.json"
    info.value.save_as(str(tmp_path / "b.json"))
    body = json.loads((tmp_path / "b.json").read_text())
    assert body["home_bindings"] == demo_lab.truth["home_bindings"]
    page.select_option("#vantage", "mn-cn")
    page.click("details.export summary")
    with page.expect_download() as info:
        page.click("button[data-export='/api/report.json']")
    info.value.save_as(str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["attacker"]["vantage"] == "mn-cn"
    assert page.errors == []


def test_pause_holds_rows_and_resume_delivers_all(ctr_lab, page):
    expected = sorted(int(f) for f in ctr_lab.truth["frames"])       # every frame is mobility
    server = start_server("replay", str(ctr_lab.capture), "--keys", str(ctr_lab.keyring),
                          "--speed", "1")
    try:
        page.goto(server.url)
        until(page, "window.mip6mon.displayed().length >= 1")
        page.click("#pause")
        held = rows(page)           # rows received but not drawn yet are held as well
        assert len(held) < len(expected)
        status = wait_done(server)
        assert status["analysed"] == len(expected)
        expect(page.locator("#queued")).to_have_text(f"{len(expected) - len(held)} queued",
                                                     timeout=WAIT_SECONDS * 1000)
        assert rows(page) == held                        # nothing leaked past the pause
        assert page.is_visible("#queued")
        page.click("#pause")                               # resume
        wait_rows(page, expected)
        assert page.is_hidden("#queued")
        # the keyed tables were built from the snapshots' news, one piece a second: each
        # binding once, newest first
        homes = [b["frame"] for b in ctr_lab.truth["home_bindings"]]
        expect(page.locator("#home-table tbody tr")).to_have_count(len(homes))
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
        wait_rows(page, [1, 2, 3])
        info = column(page, 8)
        for payload, text in zip(XSS_PAYLOADS, info, strict=False):
            assert payload in text
        for frame, payload in ((1, XSS_PAYLOADS[0]), (2, XSS_PAYLOADS[1])):
            click_frame(page, frame)
            wait_detail(page, frame)
            assert f"Payload: {payload}" in page.text_content("#detail-tree")
        # both payloads are on screen as text: had either been parsed, its element would be
        # in the page now (an inline handler could run only from an element)
        assert page.eval_on_selector_all("#layout img, #layout script", "x => x.length") == 0
        assert page.evaluate("typeof window.__p") == "undefined"
    finally:
        server.stop()
    assert page.errors == []


def test_the_page_needs_the_token(demo_server, browser):
    context = browser.new_context()
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


# --- another local server's page ------------------------------------------------------------

ATTACK_PAGE = """<!doctype html><title>attack</title>
<img id="img-filter" src="{base}/api/filter?filter=frame.number%20%3E%3D%201">
<img id="img-export" src="{base}/api/export.pcapng">
<iframe name="sink" id="sink"></iframe>
<form id="form" method="post" action="{base}/api/export.pcapng" target="sink">
<input name="filter" value="ipv6"><input name="frames" value="1"></form>
<script>
const base = "{base}";
const results = {{}};
// each attempt ends (a download, for one, fires no load event): after 20 s it is "timeout"
const settle = (name, promise) => Promise.race([
    promise, new Promise((done) => setTimeout(() => done("timeout"), 20000))]).then(
    (v) => {{ results[name] = v; }}, (e) => {{ results[name] = "failed"; }});
const image = (id) => new Promise((done) => {{
  const img = document.getElementById(id);
  img.onload = () => done("loaded"); img.onerror = () => done("error");
  if (img.complete) done(img.naturalWidth ? "loaded" : "error");
}});
const cors = {{credentials: "include"}};
const blind = {{credentials: "include", mode: "no-cors"}};
Promise.all([
  settle("img-filter", image("img-filter")),
  settle("img-export", image("img-export")),
  settle("fetch-filter", fetch(base + "/api/filter?filter=ipv6", blind).then((r) => r.type)),
  settle("read-status", fetch(base + "/api/status", cors).then((r) => r.text())),
  settle("post-export", fetch(base + "/api/export.pcapng", Object.assign(
      {{method: "POST", body: new URLSearchParams({{filter: "ipv6"}})}}, blind))
      .then((r) => r.type)),
  settle("form-export", new Promise((done) => {{
      document.getElementById("sink").onload = () => done("loaded");
      document.getElementById("form").submit(); }})),
  settle("socket", new Promise((done) => {{
      const ws = new WebSocket(base.replace("http", "ws")
                               + "/socket.io/?EIO=4&transport=websocket");
      ws.onmessage = (m) => done("message: " + m.data);
      ws.onerror = () => done("error"); ws.onclose = () => done("closed"); }})),
]).then(() => {{ window.results = results; document.title = "done"; }});
</script>"""


class _AttackServer(http.server.ThreadingHTTPServer):
    """A local web server on another port: serves ATTACK_PAGE, records what reaches it."""
    daemon_threads = True

    def __init__(self, page: str):
        self.page = page.encode()
        self.requests: list[tuple[str, str | None]] = []        # (path, Cookie header)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.server.requests.append((self.path, self.headers.get("Cookie")))
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(self.server.page)))
                self.end_headers()
                self.wfile.write(self.server.page)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_another_local_server_gets_no_token_and_makes_the_dashboard_do_nothing(ctr_lab,
                                                                                  browser):
    """Issue 13: with the dashboard open, a page served by any other local process (another
    port of 127.0.0.1, "same-site" to the browser) got the token's cookie and made the
    dashboard run tshark through an <img>. Now the browser holds no cookie, the other server
    receives none, and every request its page makes is refused before it runs anything."""
    server = start_server("replay", str(ctr_lab.capture), "--speed", "max")
    context = browser.new_context()
    attack = _AttackServer(ATTACK_PAGE.format(base=server.base))
    threading.Thread(target=attack.serve_forever, daemon=True).start()
    try:
        wait_done(server)
        dashboard = context.new_page()
        dashboard.goto(server.url)
        wait_connected(dashboard)
        assert context.cookies() == []
        evil = context.new_page()
        with ChildWatch(server.process.pid, "tshark") as tshark:
            evil.goto(f"http://127.0.0.1:{attack.server_address[1]}/")
            expect(evil).to_have_title("done", timeout=2 * WAIT_SECONDS * 1000)
        results = evil.evaluate("window.results")
        assert tshark.seen == set()
        assert results["read-status"] == "failed"         # CORS: nothing readable
        assert results["socket"] in ("error", "closed")   # no engine.io handshake
        assert results["img-filter"] == results["img-export"] == "error"
        assert attack.requests and all(cookie is None for _path, cookie in attack.requests)
        # the same filter from the dashboard's own page runs (the log below tells them apart)
        own = dashboard.evaluate("""(token) => fetch('/api/filter?filter=frame.number%20%3E%3D%201',
            {headers: {'X-Mip6mon-Token': token}}).then((r) => r.status)""", server.token)
        assert own == 200
    finally:
        attack.shutdown()
        attack.server_close()
        context.close()
        server.stop()
    log = server.process.stderr.read().splitlines()
    costly = [line for line in log if '"GET /api/filter' in line or '/api/export' in line]
    # two images, a blind fetch, a blind POST and a form POST: all refused before any handler
    # ran; the one served is the dashboard page's own filter
    assert [line[-3:] for line in costly].count("403") == 5, log
    assert [line for line in costly if not line.endswith('" 403')] == [
        line for line in log if line.endswith('"GET /api/filter" 200')], log
    assert len([line for line in costly if line.endswith(" 200")]) == 1, log
    assert sum(line.endswith('"GET /api/status" 403') for line in log) == 1, log   # the CORS read
    assert server.token not in "\n".join(log)
