"""The dashboard's display filters know the profile's extensions: the tshark behind /api/filter
loads mip6mon's Lua plugin (dissectors.luaplugin), so `mip6lp.*` filters select the frames
the monitor's own dissector names, ESP-tunnelled copies included, whatever copy of the plugin
the user has installed in their personal folder."""
from __future__ import annotations

import pytest

from dissectors import luaplugin
from keys.keyring import load_keyring
from monitor.sources import PcapSource
from web.app import create_app
from web.capture_tools import CaptureTools
from web.session import MonitorSession

from .conftest import build_lab

TOKEN = "test-token-plugin-0123456789"


@pytest.fixture(scope="module")
def rr_app(tmp_path_factory):
    """rr-privacy (draft 4.1: HoTI P flag, option 18 in the HoT, 0xFE in the BU) replayed to
    the end, with its keyring (the mn-ha copies are inside ESP)."""
    lab = build_lab("rr-privacy", tmp_path_factory.mktemp("rr-privacy"))
    keyring = load_keyring(str(lab.keyring))
    session = MonitorSession(PcapSource(str(lab.capture), keyring=keyring), keyring=keyring,
                             speed=None, capture_path=str(lab.capture))
    session.run()
    assert session.state == "done", session.error
    yield create_app(session, TOKEN, CaptureTools(str(lab.capture), keyring=keyring)), session
    session.close()


def _frames(session, keep) -> list[int]:
    """The frames whose event (mip6mon's own dissector, as the dashboard shows it) passes."""
    rows = session.view.backlog()
    events = [session.view.event(row["n"]) for row in rows]
    return sorted(e.frame for e in events if e is not None and keep(e))


def test_mip6lp_filters_through_the_api_equal_the_monitors_dissector(rr_app, tmp_path,
                                                                     monkeypatch):
    app, session = rr_app
    # an outdated copy in the user's personal folder: its P flag is another bit, so a tshark
    # that loaded it would select no HoTI
    plugins = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True)
    shipped = luaplugin.PLUGIN.read_text()
    older = shipped.replace("local HOTI_P_FLAG = 0x8000", "local HOTI_P_FLAG = 0x4000")
    assert older != shipped
    (plugins / luaplugin.PLUGIN.name).write_text(older)
    monkeypatch.setenv("HOME", str(tmp_path))

    def mobility(e):
        return e.mobility

    want = {
        "mip6lp.hoti.p == 1": _frames(session, lambda e: mobility(e) is not None
                                      and mobility(e).mh_type == 1 and "P" in mobility(e).flags),
        "mip6lp.pkt.token": _frames(session, lambda e: mobility(e) is not None
                                    and mobility(e).privacy_keygen_token is not None),
        "mip6lp.phoa": _frames(session, lambda e: any(layer.pseudo_home_address
                                                      for layer in e.layers)),
    }
    # not vacuous: P flags and tokens on both paths, ESP-tunnelled ones among them
    tunnelled = _frames(session, lambda e: any(layer.esp is not None for layer in e.layers))
    assert all(want.values())
    assert set(want["mip6lp.hoti.p == 1"]) & set(tunnelled)
    assert set(want["mip6lp.pkt.token"]) & set(tunnelled)

    client = app.test_client()
    for display_filter, frames in want.items():
        resp = client.get("/api/filter", query_string={"token": TOKEN, "filter": display_filter})
        assert resp.status_code == 200, (display_filter, resp.get_json())
        assert resp.get_json()["frames"] == frames, display_filter
    # and one pseudo home address, as a researcher would look it up
    phoa = session.view.event(want["mip6lp.phoa"][0]).layers[-1].pseudo_home_address
    resp = client.get("/api/filter", query_string={"token": TOKEN,
                                                   "filter": f"mip6lp.phoa == {phoa}"})
    assert resp.get_json()["frames"] == _frames(
        session, lambda e: any(layer.pseudo_home_address == phoa for layer in e.layers))


def test_a_misspelt_mip6lp_field_is_tshark_s_one_line_error(rr_app):
    app, _session = rr_app
    resp = app.test_client().get("/api/filter", query_string={"token": TOKEN,
                                                               "filter": "mip6lp.hoti.q == 1"})
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert "mip6lp.hoti.q" in error and "\n" not in error and "Lua" not in error
