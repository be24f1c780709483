"""The dashboard's server side, without a browser: token on every route and on the socket,
same-origin sockets, CSP, no key material in anything sent, filters and export by real tshark."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from keys.keyring import Secret, load_keyring
from monitor.sources import PcapSource
from web.app import CSP, create_app
from web.capture_tools import CaptureTools, FilterError, frame_ranges
from web.session import MonitorSession, parse_speed

WEB = Path(__file__).resolve().parents[2] / "web"
TOKEN = "test-token-0123456789"


def _finished_app(lab):
    """An app whose session has replayed the whole lab capture (in this thread, at max speed)."""
    keyring = load_keyring(str(lab.keyring))
    session = MonitorSession(PcapSource(str(lab.capture), keyring=keyring), keyring=keyring,
                             speed=None, capture_path=str(lab.capture))
    session.run()
    assert session.state == "done", session.error
    app = create_app(session, TOKEN, CaptureTools(str(lab.capture), keyring=keyring))
    return app, session, keyring


@pytest.fixture(scope="module")
def demo_app(demo_lab):
    app, session, keyring = _finished_app(demo_lab)
    yield app, session, keyring
    session.close()                     # ends the attacker worker process


def _secret_strings(keyring) -> set[str]:
    """Every key in the keyring, as the hex a leak would show (both cases) and as base64."""
    import base64
    found: set[bytes] = set()

    def walk(obj, depth=0):
        if depth > 6:
            return
        if isinstance(obj, Secret):
            if len(obj.value) >= 8:
                found.add(obj.value)
            return
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                walk(getattr(obj, name), depth + 1)

    walk(keyring)
    out = set()
    for value in found:
        out |= {value.hex(), value.hex().upper(), base64.b64encode(value).decode()}
    return out


def _url_for_rule(rule) -> str:
    url = rule.rule
    for arg in rule.arguments:
        conv = rule._converters[arg].__class__.__name__
        url = re.sub(rf"<[^>]*{arg}>", "1" if "Integer" in conv else "style.css", url)
    return url


def test_every_route_refuses_without_the_token(demo_app):
    app, _session, _keyring = demo_app
    client = app.test_client(use_cookies=False)     # no cookie from an earlier, good request
    rules = list(app.url_map.iter_rules())
    assert {r.rule for r in rules} >= {"/", "/static/<path:filename>", "/api/export.pcapng",
                                       "/api/packet/<int:frame>", "/plotly.min.js"}
    for rule in rules:
        url = _url_for_rule(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for attempt in ({}, {"query_string": {"token": "wrong"}},
                            {"headers": {"X-Mip6mon-Token": "wrong"}}):
                resp = client.open(url, method=method, **attempt)
                assert resp.status_code == 401, (method, url, attempt, resp.status_code)
                assert b"token" in resp.data
        # the same request with the token gets past the guard
        method = "GET" if "GET" in rule.methods else "POST"
        resp = client.open(url, method=method, query_string={"token": TOKEN})
        assert resp.status_code != 401, (method, url)


def test_no_cookie_carries_the_token(demo_app):
    """A cookie on 127.0.0.1 goes to every port of 127.0.0.1 (RFC 6265 8.5): the token never
    travels in one, and one that a browser sends anyway opens nothing."""
    app, _session, _keyring = demo_app
    client = app.test_client()
    resp = client.get(f"/?token={TOKEN}")
    assert resp.status_code == 200
    assert "Set-Cookie" not in resp.headers
    # the page keeps the token it was served with, and names it in its own assets' URLs
    html = resp.data.decode()
    assert f'<meta name="mip6mon-token" content="{TOKEN}">' in html
    assert f'src="/static/app.js?token={TOKEN}"' in html
    client.set_cookie("mip6mon_token", TOKEN)
    assert client.get("/api/status").status_code == 401
    assert client.post("/api/export.pcapng", data={"frames": "1"}).status_code == 401
    # the page's own requests: the token in a header
    assert client.get("/api/status", headers={"X-Mip6mon-Token": TOKEN}).status_code == 200
    exported = client.post("/api/export.pcapng", data={"frames": "1"},
                           headers={"X-Mip6mon-Token": TOKEN})
    assert exported.status_code == 200 and exported.data[:4] == b"\x0a\x0d\x0d\x0a"
    # the token in a form field (how the page posted before) is no longer taken
    assert client.post("/api/export.pcapng",
                       data={"frames": "1", "token": TOKEN}).status_code == 401


# Fetch Metadata (and Origin) a browser sends, by who made the request
FROM_ANOTHER_PORT = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors",
                     "Sec-Fetch-Dest": "image"}
FROM_ANOTHER_SITE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors",
                     "Sec-Fetch-Dest": "empty", "Origin": "http://evil.example"}
FROM_THIS_PAGE = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors",
                  "Sec-Fetch-Dest": "empty"}
TYPED_URL = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
LINK_IN_ANOTHER_PAGE = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate",
                        "Sec-Fetch-Dest": "document"}


def test_requests_from_another_sites_page_are_refused_even_with_the_token(demo_app):
    app, _session, _keyring = demo_app
    client = app.test_client()
    token = {"X-Mip6mon-Token": TOKEN}
    for foreign in (FROM_ANOTHER_PORT, FROM_ANOTHER_SITE,
                    {"Origin": "http://127.0.0.1:1"}, {"Origin": "null"},
                    {**LINK_IN_ANOTHER_PAGE, "Sec-Fetch-Dest": "iframe"}):
        for method, url in (("GET", "/api/filter?filter=ipv6"), ("GET", "/api/status"),
                            ("POST", "/api/export.pcapng"), ("GET", "/"),
                            ("GET", "/socket.io/?EIO=4&transport=polling")):
            resp = client.open(url, method=method, headers={**foreign, **token},
                               data={"frames": "1"} if method == "POST" else None)
            assert resp.status_code == 403, (foreign, url, resp.status_code)
            assert b"another site" in resp.data
    # the page itself, the URL typed or pasted, the URL clicked in another page, and tools
    # that send no Fetch Metadata (curl, scripts) are judged by the token alone
    for own in (FROM_THIS_PAGE, TYPED_URL, LINK_IN_ANOTHER_PAGE, {},
                {**FROM_THIS_PAGE, "Origin": "http://localhost"}):     # the test client's host
        assert client.get("/api/status", headers={**own, **token}).status_code == 200, own
        assert client.get("/api/status", headers=own).status_code == 401, own
    assert client.get(f"/?token={TOKEN}", headers=LINK_IN_ANOTHER_PAGE).status_code == 200


def test_display_filters_and_exports_share_two_tshark_slots(demo_lab):
    """Every slot taken and the queue full: the next filter or export is refused at once
    with 429 and a Retry-After, and nothing runs."""
    from web.capture_tools import Slots
    keyring = load_keyring(str(demo_lab.keyring))
    session = MonitorSession(PcapSource(str(demo_lab.capture), keyring=keyring),
                             keyring=keyring, speed=None)
    tools = CaptureTools(str(demo_lab.capture), slots=Slots(running=1, waiting=0))
    app = create_app(session, TOKEN, tools)
    client = app.test_client()
    token = {"X-Mip6mon-Token": TOKEN}
    try:
        with tools.slots.hold():
            busy = client.get("/api/filter", query_string={"filter": "ipv6"}, headers=token)
            assert busy.status_code == 429 and busy.headers["Retry-After"].isdigit()
            assert busy.get_json()["error"].startswith("busy: ")
            export = client.post("/api/export.pcapng", data={"frames": "1"}, headers=token)
            assert export.status_code == 429 and export.headers["Retry-After"].isdigit()
        assert tools.slots.running == tools.slots.waiting == 0
        done = client.get("/api/filter", query_string={"filter": "ipv6"}, headers=token)
        assert done.status_code == 200 and done.get_json()["frames"]
    finally:
        session.close()


def test_security_headers_and_no_inline_script(demo_app):
    app, _session, _keyring = demo_app
    resp = app.test_client().get(f"/?token={TOKEN}")
    csp = resp.headers["Content-Security-Policy"]
    assert csp == CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"                   # no inline, no eval
    assert "unsafe" not in csp
    import base64
    import hashlib
    empty = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    assert directives["style-src"] == f"'self' 'sha256-{empty}'"   # only an empty <style>
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'"
    html = resp.data.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 2                  # app.js adds plotly.js itself, from 'self'
    for attrs, body in scripts:
        assert 'src="/' in attrs and body.strip() == ""
    assert not re.search(r"\son[a-z]+\s*=", html)               # no inline event handlers
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_client_script_never_parses_html():
    js = (WEB / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setTimeout(\"", "DOMParser"):
        assert sink not in js, sink
    assert js.count("textContent") > 10


def test_socket_needs_the_token(demo_app):
    app, _session, _keyring = demo_app
    socketio = app.extensions["socketio"]
    refused = socketio.test_client(app, auth={"token": "wrong"})
    assert not refused.is_connected()
    anonymous = socketio.test_client(app)
    assert not anonymous.is_connected()
    ok = socketio.test_client(app, auth={"token": TOKEN})
    assert ok.is_connected()
    names = [m["name"] for m in ok.get_received()]
    assert names[:2] == ["backlog", "snapshot"]
    ok.disconnect()


def test_socket_refuses_a_foreign_origin(demo_app):
    app, _session, _keyring = demo_app
    client = app.test_client()
    handshake = "/socket.io/?EIO=4&transport=polling"
    foreign = client.get(handshake, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and b"sid" not in foreign.data
    same = client.get(handshake, headers={"Origin": "http://localhost"})
    assert same.status_code == 200 and b"sid" in same.data


def test_no_key_material_reaches_the_browser(demo_app, demo_lab):
    app, session, keyring = demo_app
    secrets = _secret_strings(keyring)
    assert len(secrets) >= 9                       # the demo keyring has Ks, ESP and Kcn keys
    client = app.test_client()
    bodies = [client.get(f"/?token={TOKEN}").data.decode()]
    for url in ("/api/status", "/api/snapshot", "/api/rows", "/api/bindings.json",
                "/api/bindings.csv", "/api/report.json", "/api/findings.csv",
                "/api/snapshot?vantage=mn-cn"):
        resp = client.get(url + ("&" if "?" in url else "?") + f"token={TOKEN}")
        assert resp.status_code == 200, url
        bodies.append(resp.data.decode())
    socketio = app.extensions["socketio"]
    sock = socketio.test_client(app, auth={"token": TOKEN})
    for row in session.view.backlog():
        bodies.append(json.dumps(sock.emit("detail", {"frame": row["n"]}, callback=True)))
    bodies.append(json.dumps(sock.get_received()))
    sock.disconnect()
    everything = "\n".join(bodies)
    assert "HoA 2001:db8:1::100" in everything          # the annotations did arrive
    for secret in secrets:
        assert secret not in everything


def test_detail_tree_carries_the_keyed_annotation(demo_app, demo_lab):
    app, session, _keyring = demo_app
    first_home_bu = demo_lab.truth["home_bindings"][0]
    sock = app.extensions["socketio"].test_client(app, auth={"token": TOKEN})
    reply = sock.emit("detail", {"frame": first_home_bu["frame"]}, callback=True)
    sock.disconnect()
    labels = json.dumps(reply["tree"])
    assert f"pseudo HoA {first_home_bu['pseudo_home_address']}" in labels
    assert f"HoA {first_home_bu['home_address']}" in labels
    missing = app.test_client().get("/api/packet/999999", query_string={"token": TOKEN})
    assert missing.status_code == 404


def test_snapshot_holds_both_panes(demo_app, demo_lab):
    app, _session, _keyring = demo_app
    snap = app.test_client().get("/api/snapshot", query_string={"token": TOKEN}).get_json()
    truth = demo_lab.truth
    assert snap["keyed"]["home_total"] == len(truth["home_bindings"])
    assert snap["keyed"]["correspondent_total"] == len(truth["correspondent_bindings"])
    homes = {(b["frame"], b["home_address"], b["pseudo_home_address"])
             for b in snap["keyed"]["home_bindings"]}
    assert homes == {(b["frame"], b["home_address"], b["pseudo_home_address"])
                     for b in truth["home_bindings"]}
    assert snap["attacker"]["profiles_total"] >= 1
    assert snap["attacker"]["profiles"][0]["care_of_addresses"]
    assert 0 <= snap["privacy"]["link_precision"] <= 1
    assert set(snap["trails"]) == {n["home_address"] for n in truth["nodes"].values()}
    assert snap["names"]["2001:db8:1::100"] == "mn1"
    assert snap["frame_nodes"]                                  # the node quick filter's truth
    assert snap["status"]["state"] == "done" and snap["status"]["esp_decrypted"] > 0
    bad = app.test_client().get("/api/snapshot", query_string={"token": TOKEN, "vantage": "moon"})
    assert bad.status_code == 400


def test_display_filter_by_tshark(demo_app, demo_lab):
    app, _session, _keyring = demo_app
    client = app.test_client()
    resp = client.get("/api/filter", query_string={"token": TOKEN, "filter": "mip6.mhtype == 1"})
    assert resp.status_code == 200
    hoti = sorted(int(f) for f, v in demo_lab.truth["frames"].items() if v["what"] == "HoTI")
    assert resp.get_json()["frames"] == hoti
    bad = client.get("/api/filter", query_string={"token": TOKEN, "filter": "mip6.mhtype =="})
    assert bad.status_code == 400
    assert bad.get_json()["error"].startswith("invalid display filter: ")
    assert "\n" not in bad.get_json()["error"]
    unknown = client.get("/api/filter", query_string={"token": TOKEN, "filter": "nosuchproto"})
    assert unknown.status_code == 400
    # via the socket, too
    sock = app.extensions["socketio"].test_client(app, auth={"token": TOKEN})
    assert sock.emit("filter", {"filter": "mip6.mhtype == 1"}, callback=True)["frames"] == hoti
    assert "error" in sock.emit("filter", {"filter": "))"}, callback=True)
    sock.disconnect()


def test_export_pcapng_is_read_back_by_tshark(demo_app, demo_lab, tmp_path):
    app, session, _keyring = demo_app
    client = app.test_client()
    frames = [row["n"] for row in session.view.backlog()][:7] \
        + [demo_lab.truth["home_bindings"][-1]["frame"]]
    resp = client.post("/api/export.pcapng", data={"frames": ",".join(map(str, frames))},
                       headers={"X-Mip6mon-Token": TOKEN})
    assert resp.status_code == 200
    assert "attachment" in resp.headers["Content-Disposition"]
    assert resp.data[:4] == b"\x0a\x0d\x0d\x0a"                  # pcapng section header block
    out = tmp_path / "export.pcapng"
    out.write_bytes(resp.data)
    read = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment"],
                          capture_output=True, text=True, check=True)
    lines = read.stdout.splitlines()
    assert len(lines) == len(set(frames))
    assert all(line.startswith("path=") for line in lines)         # comments survive
    by_filter = client.post("/api/export.pcapng", data={"filter": "mip6.mhtype == 1"},
                            headers={"X-Mip6mon-Token": TOKEN})
    assert by_filter.status_code == 200
    out.write_bytes(by_filter.data)
    count = subprocess.run(["tshark", "-r", str(out)], capture_output=True, text=True, check=True)
    hoti = [f for f, v in demo_lab.truth["frames"].items() if v["what"] == "HoTI"]
    assert len(count.stdout.splitlines()) == len(hoti)
    bad = client.post("/api/export.pcapng", data={"filter": "(("},
                      headers={"X-Mip6mon-Token": TOKEN})
    assert bad.status_code == 400


def test_binding_cache_downloads(demo_app, demo_lab):
    app, _session, _keyring = demo_app
    client = app.test_client()
    body = client.get("/api/bindings.json", query_string={"token": TOKEN}).get_json()
    assert body["home_bindings"] == demo_lab.truth["home_bindings"]
    assert body["correspondent_bindings"] == demo_lab.truth["correspondent_bindings"]
    text = client.get("/api/bindings.csv", query_string={"token": TOKEN}).data.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    # the columns the two binding panes show (web.panes), side by side, then the rest
    assert text.splitlines()[0].split(",")[:10] == [
        "cache", "home_agent", "correspondent", "home_address", "pseudo_home_address",
        "care_of_address", "sequence", "lifetime", "authenticator_valid", "frame"]
    assert len(rows) == len(body["home_bindings"]) + len(body["correspondent_bindings"])
    assert {r["cache"] for r in rows} == {"home", "correspondent"}
    assert rows[0]["home_address"] == body["home_bindings"][0]["home_address"]
    report = client.get("/api/report.json",
                        query_string={"token": TOKEN, "vantage": "mn-ha"}).get_json()
    assert report["attacker"]["vantage"] == "mn-ha"
    assert report["capture"]["packets"] == sum(demo_lab.truth["paths"].values())


def test_frame_ranges_and_speed():
    assert frame_ranges([9, 1, 2, 3, 7, 10, 3]) == ["1-3", "7", "9-10"]
    assert frame_ranges([]) == []
    assert parse_speed("max") is None and parse_speed("10") == 10.0
    from keys.errors import UserError
    for bad in ("fast", "0", "-1"):
        with pytest.raises(UserError):
            parse_speed(bad)


def test_filter_rejects_multiline(demo_lab):
    tools = CaptureTools(str(demo_lab.capture))
    with pytest.raises(FilterError):
        tools.filter_frames("ipv6\n-w /tmp/x")
    with pytest.raises(FilterError):
        tools.export([])


def test_resync_fills_a_gap_in_the_row_sequence(demo_app):
    app, session, _keyring = demo_app
    sock = app.extensions["socketio"].test_client(app, auth={"token": TOKEN})
    reply = sock.emit("resync", {"from": 3, "to": 7}, callback=True)
    assert [r["seq"] for r in reply["rows"]] == [3, 4, 5, 6, 7]
    assert [r["n"] for r in reply["rows"]] == [r["n"] for r in session.view.backlog()[2:7]]
    assert sock.emit("resync", {"from": "x"}, callback=True) == {"error": "bad range"}
    assert sock.emit("resync", {"from": 10**6, "to": 10**6 + 5}, callback=True) == {"rows": []}
    sock.disconnect()


def test_packet_list_is_bounded_and_counts_what_it_evicts():
    from dissectors.events import IPv6Layer, MobilityMessage, PacketEvent
    from web.view import PacketView
    view = PacketView(max_rows=5)
    for frame in range(1, 13):
        view.packet(PacketEvent(frame=frame, time=1.0 + frame, length=80,
                                layers=(IPv6Layer("2001:db8:2::1", "2001:db8:1::1",
                                                  home_address="2001:db8:1::100"),),
                                mobility=MobilityMessage(5, sequence=frame, flags=frozenset("AH"))))
    assert view.total == 12 and view.evicted == 7
    assert [r["n"] for r in view.backlog()] == [8, 9, 10, 11, 12]
    assert view.event(3) is None and view.event(12).frame == 12
    assert [r["seq"] for r in view.rows_between(1, 9)] == [8, 9]
    row = view.backlog()[0]
    assert row["proc"] == "home" and row["msg"] == "BU"
    assert row["info"] == "BU seq=8 [AH] HAO=2001:db8:1::100"
    assert row["addrs"] == ["2001:db8:2::1", "2001:db8:1::1", "2001:db8:1::100"]
    assert len(view.drain()) == 5 and view.drain() == []
