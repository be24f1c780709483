"""The Wireshark/tshark Lua post-dissector (dissectors/wireshark/mip6mon_privacy.lua), run in
the real tshark on lab captures and on hand-made packets.

What it must name (PROFILE.md "Code points"): the Pseudo Home Address option (destination
option 0xFE) as `mip6lp.phoa`, the HoTI 'P' flag as `mip6lp.hoti.p`, the Privacy Keygen Token
option (mobility option 18) as `mip6lp.pkt.*`. Expectations come from three independent
places: the lab's truth.json, the project's Python dissector (monitor.sources.PcapSource, which
reads the same octets its own way) and the draft 4.1 formula recomputed from the keyring.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dissectors import capfile, luaplugin
from dissectors.espsa import TsharkConfig
from dissectors.events import PacketEvent
from keys import formulas
from keys.keyring import Keyring, load_keyring
from lab import packets as pk
from lab.pcapng import write_pcapng
from lab.run import run_scenario
from lab.scenario import load_scenario, shipped_scenarios
from monitor.sources import PcapSource

LUA = luaplugin.PLUGIN

# Every shipped scenario: among them 4.1 (P flag, option 18, 0xFE), 4.2 and 5.3.2 (0xFE in the
# inner, reverse-tunnelled BU), ESP in every cipher of the profile, and plain RFC 6275 with
# none of the extensions.
SCENARIOS = tuple(shipped_scenarios())
PHOA_PROCEDURES = {"4.1", "4.2", "5.3.2"}     # PROFILE.md "Where the pseudo home address travels"

FIELDS = ("frame.number", "mip6.mhtype", "ipv6.src", "mip6.hot.nindex",
          "mip6lp.phoa", "mip6lp.phoa.length", "mip6lp.hoti.p", "mip6lp.hoti.reserved",
          "mip6lp.pkt.length", "mip6lp.pkt.subtype", "mip6lp.pkt.reserved", "mip6lp.pkt.token",
          "_ws.expert.message", "_ws.lua.error")
AGGREGATOR = "\x1e"        # between occurrences (expert messages may contain commas)

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
CN, HOA, COA, HA = "2001:db8:3::5", "2001:db8:1::100", "2001:db8:2::100", "2001:db8:1::1"


# --- running tshark with the plugin ------------------------------------------------------------

def run_tshark(capture: Path, *args: str, keyring: Keyring | None = None,
               script: Path = LUA) -> subprocess.CompletedProcess:
    """tshark with the plugin and ESP SAs from the keyring, as the dashboard runs it: options
    from dissectors.luaplugin, environment from TsharkConfig (no personal plugin is loaded)."""
    with TsharkConfig(keyring) as config:
        return subprocess.run(["tshark", "-n", *luaplugin.tshark_options(script),
                               "-r", str(capture), *args],
                              capture_output=True, text=True, env=config.env(), timeout=60)


def assert_no_lua_error(result: subprocess.CompletedProcess) -> None:
    # a load error goes to stderr ("tshark: Lua: ..."); an error raised while dissecting
    # becomes a "Lua Error:" expert item in the frame (_ws.lua.error), not stderr
    assert result.returncode == 0, result.stderr
    assert "lua" not in result.stderr.lower(), result.stderr
    assert "Lua Error" not in result.stdout


def field_rows(capture: Path, *extra: str, keyring: Keyring | None = None,
               fields: tuple[str, ...] = FIELDS) -> dict[int, dict[str, list[str]]]:
    """frame number -> field -> every occurrence, in packet order."""
    argv = ["-T", "fields", "-E", "separator=\t", "-E", f"aggregator={AGGREGATOR}",
            "-E", "occurrence=a", *extra]
    for f in fields:
        argv += ["-e", f]
    result = run_tshark(capture, *argv, keyring=keyring)
    assert_no_lua_error(result)
    rows = {}
    for line in result.stdout.split("\n"):      # not splitlines(): 0x1e is a line break there
        if not line:
            continue
        cols = line.split("\t")
        row = {f: (c.split(AGGREGATOR) if c else []) for f, c in zip(fields, cols, strict=False)}
        if "_ws.lua.error" in row:
            assert row["_ws.lua.error"] == [], line
        rows[int(cols[0])] = row
    return rows


def matching(capture: Path, display_filter: str, keyring: Keyring | None = None) -> set[int]:
    return set(field_rows(capture, "-Y", display_filter, keyring=keyring,
                          fields=("frame.number", "_ws.lua.error")))


def addresses(values: list[str]) -> list[str]:
    return [str(ipaddress.IPv6Address(v)) for v in values]


# --- the lab captures, each built and read once --------------------------------------------------

@dataclass
class Lab:
    name: str
    dir: Path
    truth: dict
    keyring: Keyring
    rows: dict[int, dict[str, list[str]]]     # the plugin's fields, every frame
    events: dict[int, PacketEvent]            # the Python dissector's events

    @property
    def capture(self) -> Path:
        return self.dir / "capture.pcapng"

    def frames(self, what: str, procedures: set[str] | None = None,
               path: str | None = None) -> list[int]:
        return sorted(int(n) for n, f in self.truth["frames"].items()
                      if f["what"] == what and (procedures is None or f["procedure"] in procedures)
                      and (path is None or f["path"] == path))

    def frame_bytes(self, number: int) -> bytes:
        with capfile.open_capture(str(self.capture)) as f:
            for record in capfile.records(f):
                if record.number == number:
                    return record.data
        raise KeyError(number)


def _build(name: str, root: Path) -> Lab:
    d = root / name
    run_scenario(load_scenario(name), str(d))
    keyring = load_keyring(d / "keyring.toml")
    capture = d / "capture.pcapng"
    rows = field_rows(capture, keyring=keyring)
    source = PcapSource(str(capture), keyring=keyring)
    try:
        events = {e.frame: e for e in source.events()}
    finally:
        source.close()
    return Lab(name, d, json.loads((d / "truth.json").read_text()), keyring, rows, events)


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> dict[str, Lab]:
    root = tmp_path_factory.mktemp("lua-plugin")
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(SCENARIOS, pool.map(lambda n: _build(n, root), SCENARIOS), strict=True))


# --- registration --------------------------------------------------------------------------------

def test_plugin_installed_as_personal_plugin_registers_named_fields(tmp_path):
    """Dropped into the personal Lua plugins folder (how a Wireshark user installs it), the
    protocol and its fields are registered with the types the profile calls for."""
    plugins = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / LUA.name).write_bytes(LUA.read_bytes())
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    out = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert "lua" not in out.stderr.lower(), out.stderr
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    protocol = [cols for cols in lines if cols[0] == "P" and cols[2] == "mip6lp"]
    assert protocol == [["P", "MIPv6 location privacy (draft-irtf-mobopts-location-privacy-"
                              "solutions-02, mip6mon profile)", "mip6lp"]]
    types = {cols[2]: cols[3] for cols in lines if cols[0] == "F" and cols[4] == "mip6lp"}
    assert {k: types.get(k) for k in ("mip6lp.phoa", "mip6lp.hoti.p", "mip6lp.pkt.subtype",
                                      "mip6lp.pkt.token")} == {
        "mip6lp.phoa": "FT_IPv6", "mip6lp.hoti.p": "FT_BOOLEAN",
        "mip6lp.pkt.subtype": "FT_UINT8", "mip6lp.pkt.token": "FT_BYTES"}
    p_flag = next(cols for cols in lines if cols[0] == "F" and cols[2] == "mip6lp.hoti.p")
    assert p_flag[5:7] == ["16", "0x8000"]          # PROFILE.md: MSB of the 16-bit Reserved


def _tshark_with_personal_copy(home: Path, copy: str, *args: str,
                               first: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`tshark -X lua_script:<the shipped plugin>` by hand, with `copy` already installed in
    the personal Lua plugins folder under `home` (loaded first by tshark)."""
    plugins = home / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / LUA.name).write_text(copy)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    return subprocess.run(["tshark", *first, *luaplugin.tshark_options(), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_a_personal_copy_and_the_command_line_register_the_protocol_once(labs, tmp_path):
    """tshark 4.0 fails a second Proto() with the same name with a Lua error: the plugin loaded
    twice (installed, and given with -X) registers once, silently, and its filters work."""
    lab = labs["rr-privacy"]
    result = _tshark_with_personal_copy(tmp_path, LUA.read_text(), "-r", str(lab.capture),
                                        "-Y", "mip6lp.hoti.p == 1", "-T", "fields",
                                        "-e", "frame.number")
    assert_no_lua_error(result)
    assert "mip6lp" not in result.stderr
    # no keyring here: the HoTIs in clear (on ha-cn), not their ESP-tunnelled copies
    assert [int(n) for n in result.stdout.split()] == lab.frames("HoTI", path="ha-cn")
    fields = _tshark_with_personal_copy(tmp_path, LUA.read_text(), first=("-G", "fields"))
    assert "lua" not in fields.stderr.lower(), fields.stderr
    rows = [line.split("\t") for line in fields.stdout.splitlines()]
    assert sum(1 for cols in rows if cols[0] == "P" and cols[2] == "mip6lp") == 1
    assert sum(1 for cols in rows if cols[0] == "F" and cols[2] == "mip6lp.phoa") == 1


def test_a_different_personal_copy_is_used_and_named(labs, tmp_path):
    """An older copy installed earlier wins (tshark loads personal plugins first and a Lua
    protocol cannot be replaced): the shipped one stands down and says so on stderr."""
    lab = labs["rr-privacy"]
    older = LUA.read_text().replace("local HOTI_P_FLAG = 0x8000", "local HOTI_P_FLAG = 0x4000")
    assert older != LUA.read_text()
    result = _tshark_with_personal_copy(tmp_path, older, "-r", str(lab.capture),
                                        "-Y", "mip6lp.hoti.p == 1", "-T", "fields",
                                        "-e", "frame.number")
    assert result.returncode == 0 and result.stdout.split() == []    # the older definition
    personal = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / LUA.name
    assert f"mip6lp: not loading {LUA}: a different copy is already loaded from {personal}" \
        in result.stderr.splitlines()
    assert "Error" not in result.stderr


# --- the lab captures ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_fields_equal_the_python_dissector_frame_by_frame(labs, name):
    """Every frame of the capture (ESP decrypted with the keyring, as the monitor does): the
    plugin's 0xFE addresses, 'P' flag and option 18 token equal what dissectors/ read."""
    lab = labs[name]
    assert set(lab.rows) == set(range(1, len(lab.truth["frames"]) + 1))
    for number, row in lab.rows.items():
        event = lab.events.get(number)
        mh = event.mobility if event else None
        phoas = [layer.pseudo_home_address for layer in (event.layers if event else ())
                 if layer.pseudo_home_address]
        hoti = mh is not None and mh.mh_type == 1
        token = mh.privacy_keygen_token if mh is not None else None
        got = {"phoa": addresses(row["mip6lp.phoa"]), "p": row["mip6lp.hoti.p"],
               "token": row["mip6lp.pkt.token"], "subtype": row["mip6lp.pkt.subtype"],
               "reserved": row["mip6lp.pkt.reserved"]}
        want = {"phoa": addresses(phoas),
                "p": (["1"] if "P" in mh.flags else ["0"]) if hoti else [],
                "token": [token.hex()] if token else [],
                "subtype": ["0x01"] if token else [], "reserved": ["0x00"] if token else []}
        assert got == want, (name, number, lab.truth["frames"][str(number)])


@pytest.mark.parametrize("name", SCENARIOS)
def test_fields_where_the_lab_truth_puts_the_extensions(labs, name):
    lab = labs[name]
    with_field = lambda field: sorted(n for n, r in lab.rows.items() if r[field])  # noqa: E731

    # the 'P' flag is on every HoTI (ESP-tunnelled on mn-ha, in clear on ha-cn), set in 4.1 only
    hotis = lab.frames("HoTI")
    assert with_field("mip6lp.hoti.p") == hotis
    for n in hotis:
        procedure = lab.truth["frames"][str(n)]["procedure"]
        assert lab.rows[n]["mip6lp.hoti.p"] == (["1"] if procedure == "4.1" else ["0"]), n

    # option 18: in every HoT of 4.1 (both copies: ha-cn, and mn-ha inside ESP), nowhere else
    assert with_field("mip6lp.pkt.token") == lab.frames("HoT", {"4.1"})
    assert all(lab.rows[n]["mip6lp.pkt.length"] == ["10"] for n in lab.frames("HoT", {"4.1"}))

    # 0xFE: one per correspondent BU of 4.1 / 4.2 / 5.3.2 (4.2 / 5.3.2: the inner BU, also in
    # the ESP tunnel on mn-ha), and its address is the binding's pseudo home address
    assert with_field("mip6lp.phoa") == lab.frames("BU", PHOA_PROCEDURES)
    for n in lab.frames("BU", PHOA_PROCEDURES):
        assert lab.rows[n]["mip6lp.phoa.length"] == ["16"], n
    bindings = [b for b in lab.truth["correspondent_bindings"] if b["pseudo_home_address"]
                and lab.truth["frames"][str(b["frame"])]["procedure"] in PHOA_PROCEDURES]
    for b in bindings:
        assert addresses(lab.rows[b["frame"]]["mip6lp.phoa"]) == [b["pseudo_home_address"]]
    assert bool(bindings) == bool(lab.frames("BU", PHOA_PROCEDURES))


def test_inner_header_option_needs_the_esp_keys(labs):
    """In 4.2 the BU with 0xFE crosses mn-ha inside the ESP tunnel (inner IPv6 header): the
    plugin names it once tshark has decrypted it, and only then."""
    lab = labs["reverse-tunnelled-bu"]
    tunnelled = lab.frames("BU", {"4.2"}, path="mn-ha")
    assert tunnelled
    for n in tunnelled:
        assert len(lab.events[n].layers) == 2 and lab.events[n].layers[0].esp is not None
        assert len(lab.rows[n]["mip6lp.phoa"]) == 1
    without_keys = field_rows(lab.capture)
    assert all(without_keys[n]["mip6lp.phoa"] == [] for n in tunnelled)
    in_clear = lab.frames("BU", {"4.2"}, path="ha-cn")
    assert in_clear and all(without_keys[n]["mip6lp.phoa"] == lab.rows[n]["mip6lp.phoa"]
                            for n in in_clear)


def test_privacy_token_is_the_draft_formula(labs):
    """draft 4.1: token = First(64, HMAC_SHA1(Kcn, :: | home nonce | 0x02)), with Kcn and the
    nonce (the HoT's Home Nonce Index) from the keyring: the plugin reads all 8 octets."""
    lab = labs["rr-privacy"]
    hots = lab.frames("HoT", {"4.1"})
    assert len(hots) >= 4
    for n in hots:
        row = lab.rows[n]
        correspondent = lab.keyring.correspondent(addresses(row["ipv6.src"])[-1])
        nonce = correspondent.nonces[int(row["mip6.hot.nindex"][-1])].value
        want = formulas.privacy_keygen_token(correspondent.kcn.value, nonce)
        assert row["mip6lp.pkt.token"] == [want.hex()], n


def test_display_filters_select_exactly_the_frames(labs):
    rr, rt, base = labs["rr-privacy"], labs["reverse-tunnelled-bu"], labs["baseline"]
    hot_frames = set(rr.frames("HoT", {"4.1"}))
    # one token: the correspondent's HoT and its copy through the tunnel to the mobile node
    token = rr.rows[min(hot_frames)]["mip6lp.pkt.token"][0]
    same_token = {n for n in hot_frames if rr.rows[n]["mip6lp.pkt.token"] == [token]}
    assert len(same_token) == 2
    binding = rr.truth["correspondent_bindings"][0]
    expected = [   # (lab, display filter, frames)
        (rr, "mip6lp.hoti.p == 1", set(rr.frames("HoTI"))),
        (rr, "mip6lp.hoti.p == 0", set()),
        (rt, "mip6lp.hoti.p == 1", set()),
        (rt, "mip6lp.hoti.p == 0", set(rt.frames("HoTI"))),
        (rr, "mip6lp.pkt.subtype == 0x01", hot_frames),
        (rr, f"mip6lp.pkt.token == {token}", same_token),
        (rr, f"mip6lp.phoa == {binding['pseudo_home_address']}", {binding["frame"]}),
        (rt, "mip6lp.phoa", set(rt.frames("BU", {"4.2"}))),
        # the baseline has HoTIs (P clear) but no 0xFE option and no option 18
        (base, "mip6lp.phoa || mip6lp.phoa.option || mip6lp.pkt || ipv6.opt.type == 0xfe",
         set()),
        (base, "mip6lp.hoti.p == 0", set(base.frames("HoTI"))),
    ]
    assert rr.frames("HoTI") and rt.frames("HoTI") and base.frames("HoTI")   # not vacuous
    assert hot_frames and rt.frames("BU", {"4.2"})
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda e: matching(e[0].capture, e[1], e[0].keyring), expected))
    for (lab, display_filter, frames), selected in zip(expected, got, strict=False):
        assert selected == frames, (lab.name, display_filter)


def test_tree_is_readable_for_a_bu_with_the_pseudo_home_address(labs):
    lab = labs["rr-privacy"]
    binding = lab.truth["correspondent_bindings"][0]
    result = run_tshark(lab.capture, "-Y", f"frame.number == {binding['frame']}", "-V",
                        keyring=lab.keyring)
    assert_no_lua_error(result)
    tree = result.stdout[result.stdout.index("MIPv6 location privacy ("):].splitlines()
    phoa = binding["pseudo_home_address"]
    assert [line.strip() for line in tree[:4]] == [
        "MIPv6 location privacy (draft-irtf-mobopts-location-privacy-solutions-02, mip6mon "
        "profile)",
        f"Pseudo Home Address option: {phoa}", "Length: 16", f"Pseudo Home Address: {phoa}"]


# --- hand-made packets: tunnels, padding, malformed ----------------------------------------------

def ethernet_ipv6(src: str, dst: str, next_header: int, payload: bytes,
                  payload_length: int | None = None) -> bytes:
    packet = pk.ipv6(src, dst, next_header, payload)
    if payload_length is not None:                       # a header that lies about its length
        packet = packet[:4] + struct.pack("!H", payload_length) + packet[6:]
    return pk.ethernet(MAC_A, MAC_B, packet)


def raw_mh(mh_type: int, body: bytes, header_length: int | None = None) -> bytes:
    """RFC 6275 6.1.1 header with any Header Len (checksum left zero: not what is tested)."""
    if header_length is None:
        header_length = (6 + len(body) + 7) // 8 - 1
    return bytes([pk.NH_NONE, header_length, mh_type, 0, 0, 0]) + body


def hot_body(options: bytes) -> bytes:
    # RFC 6275 6.1.5: Home Nonce Index, Home Init Cookie, Home Keygen Token, then options
    return struct.pack("!H", 1) + bytes(range(8)) + bytes(range(8, 16)) + options


TOKEN = bytes.fromhex("d54fcc9022435730")           # PROFILE.md test vector
PHOA_A = "9da1:3c1e:4a9b:45a8:c518:30e1:454d:5997"     # PROFILE.md vectors (4.1, 4.2)
PHOA_B = "6fb9:5a83:dbf6:f0dc:753d:dbff:4984:6a93"


def fe(address: str) -> bytes:
    return bytes([0xFE, 16]) + formulas.address_bytes(address)


def dstopts(options: bytes, next_header: int, header_length: int | None = None) -> bytes:
    """RFC 8200 4.6 header around raw options, padded with Pad1 to a multiple of 8."""
    body = options + bytes((-(2 + len(options))) % 8)
    if header_length is None:
        header_length = (2 + len(body)) // 8 - 1
    return bytes([next_header, header_length]) + body


def test_every_option_in_outer_and_inner_ipv6_headers(labs, tmp_path):
    """IPv6-in-IPv6 (RFC 2473, as the home agent's reverse tunnel) around a real 4.1 BU with
    0xFE, the outer header carrying its own 0xFE; and one header with two 0xFE options among
    Pad1 / PadN. Every option is named, in packet order."""
    lab = labs["rr-privacy"]
    binding = lab.truth["correspondent_bindings"][0]
    inner = lab.frame_bytes(binding["frame"])[14:]                # the BU's IPv6 packet
    outer = dstopts(bytes([1, 2, 0, 0]) + fe(PHOA_A), pk.NH_IPV6)  # 8n+6 alignment
    two = dstopts(bytes([1, 0]) + fe(PHOA_A) + bytes([0, 1, 1, 0]) + fe(PHOA_B), 59)
    capture = tmp_path / "tunnel.pcapng"
    write_pcapng(capture, [
        (1_000_000, ethernet_ipv6(HA, CN, pk.NH_DSTOPT, outer + inner), "path=ha-cn"),
        (2_000_000, ethernet_ipv6(COA, CN, pk.NH_DSTOPT, two), "path=mn-cn"),
    ])
    rows = field_rows(capture)
    assert addresses(rows[1]["mip6lp.phoa"]) == [PHOA_A, binding["pseudo_home_address"]]
    assert addresses(rows[2]["mip6lp.phoa"]) == [PHOA_A, PHOA_B]
    assert rows[1]["mip6lp.phoa.length"] == rows[2]["mip6lp.phoa.length"] == ["16", "16"]
    # the Python dissector reads the same two layers of the tunnelled frame
    source = PcapSource(str(capture))
    try:
        tunnelled = next(e for e in source.events() if e.frame == 1)
    finally:
        source.close()
    assert [layer.pseudo_home_address for layer in tunnelled.layers] == \
        addresses(rows[1]["mip6lp.phoa"])


# (name, frame, expected fields; [] = absent, None = not checked, and a substring of an
# expert message the plugin must add, or None)
def _handmade() -> list[tuple[str, bytes, dict, str | None]]:
    mh = lambda t, body, **kw: ethernet_ipv6(CN, HOA, pk.NH_MH, raw_mh(t, body, **kw))  # noqa
    pad = lambda *opts: b"".join(opts)                                                  # noqa
    opt18 = lambda data: bytes([18, len(data)]) + data                                  # noqa
    return [
        ("hoti P set", mh(1, b"\x80\x00" + bytes(8)),
         {"mip6lp.hoti.p": ["1"], "mip6lp.hoti.reserved": ["0x8000"]}, None),
        ("hoti other reserved bits only", mh(1, b"\x7f\xff" + bytes(8)),
         {"mip6lp.hoti.p": ["0"], "mip6lp.hoti.reserved": ["0x7fff"]}, None),
        ("hoti cut inside Reserved", ethernet_ipv6(CN, HOA, pk.NH_MH, raw_mh(1, b"\x80")),
         {"mip6lp.hoti.p": []}, None),
        ("hot Pad1 Pad1 PadN then option 18",
         mh(3, hot_body(pad(b"\x00\x00", b"\x01\x00", opt18(b"\x01\x00" + TOKEN)))),
         {"mip6lp.pkt.token": [TOKEN.hex()], "mip6lp.pkt.subtype": ["0x01"],
          "mip6lp.pkt.reserved": ["0x00"], "mip6lp.pkt.length": ["10"]}, None),
        ("hot Pad1 then option 18 at an odd offset (alignment is the sender's duty)",
         mh(3, hot_body(b"\x00" + opt18(b"\x01\x00" + TOKEN) + b"\x00" * 3)),
         {"mip6lp.pkt.token": [TOKEN.hex()], "mip6lp.pkt.length": ["10"]}, None),
        ("hot PadN hides an 18 octet", mh(3, hot_body(pad(b"\x01\x02\x12\x0a", b"\x00" * 4))),
         {"mip6lp.pkt.length": [], "mip6lp.pkt.token": []}, None),
        ("option 18 in a BU too", mh(5, struct.pack("!HHH", 1, 0x8000, 1)
                                     + opt18(b"\x01\x00" + TOKEN) + b"\x01\x06" + bytes(6)),
         {"mip6lp.pkt.token": [TOKEN.hex()]}, None),
        ("option 18 too short", mh(3, hot_body(opt18(b"\x01\x00\x99") + b"\x00" * 3)),
         {"mip6lp.pkt.length": ["3"], "mip6lp.pkt.subtype": ["0x01"],
          "mip6lp.pkt.reserved": ["0x00"], "mip6lp.pkt.token": []}, "length 3 (PROFILE.md: 10)"),
        ("option 18 unknown subtype",
         mh(3, hot_body(opt18(b"\x02\x00" + TOKEN) + b"\x01\x02\x00\x00")),
         {"mip6lp.pkt.subtype": ["0x02"], "mip6lp.pkt.token": [TOKEN.hex()]},
         "Subtype 0x02 (PROFILE.md: 0x01)"),
        ("option 18 runs past the MH", mh(3, hot_body(bytes([18, 200, 1, 0]) + TOKEN[:4])),
         {"mip6lp.pkt.length": ["200"], "mip6lp.pkt.subtype": ["0x01"],
          "mip6lp.pkt.token": []}, "runs past the end"),
        ("option 18 after the MH's declared end",
         mh(3, hot_body(b"\x00" * 6 + opt18(b"\x01\x00" + TOKEN)), header_length=3),
         {"mip6lp.pkt.token": []}, None),
        ("MH Header Len larger than the packet",
         mh(3, hot_body(opt18(b"\x01\x00" + TOKEN)), header_length=255),
         {"mip6lp.pkt.token": [TOKEN.hex()]}, None),          # read as far as captured
        ("0xFE length 4", ethernet_ipv6(COA, CN, pk.NH_DSTOPT, dstopts(
            bytes([1, 0, 0xFE, 4, 1, 2, 3, 4]), 59)),
         {"mip6lp.phoa.length": ["4"], "mip6lp.phoa": []}, "length 4 (PROFILE.md: 16)"),
        ("0xFE runs past its header", ethernet_ipv6(COA, CN, pk.NH_DSTOPT, dstopts(
            bytes([0xFE, 16]) + bytes(16), 59, header_length=0)),
         {"mip6lp.phoa.length": ["16"], "mip6lp.phoa": []}, "runs past the end"),
        ("0xFE type octet last in its header", ethernet_ipv6(COA, CN, pk.NH_DSTOPT, dstopts(
            bytes([1, 3, 0, 0, 0, 0xFE]), 59)),
         {"mip6lp.phoa.length": [], "mip6lp.phoa": []}, None),
        ("0xFE in a hop-by-hop header is not the destination option",
         ethernet_ipv6(COA, CN, pk.NH_HOPOPT, dstopts(bytes([1, 2, 0, 0]) + fe(PHOA_A), 59)),
         {"mip6lp.phoa": []}, None),
        ("payload length lies", ethernet_ipv6(COA, CN, pk.NH_DSTOPT, dstopts(
            bytes([1, 2, 0, 0]) + fe(PHOA_A), 59), payload_length=4000),
         {"mip6lp.phoa": [PHOA_A]}, None),
    ]


def _garbage(count: int = 60) -> list[bytes]:
    rng = random.Random(6275)
    frames = []
    for _ in range(count):
        nh = rng.choice([pk.NH_MH, pk.NH_DSTOPT, pk.NH_IPV6, pk.NH_HOPOPT])
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        if nh == pk.NH_MH and len(body) > 2:
            body = body[:2] + bytes([rng.choice([1, 3])]) + body[3:]
        if nh == pk.NH_DSTOPT and len(body) > 8:
            body = body[:2] + bytes([0xFE]) + body[3:]
        frames.append(ethernet_ipv6(COA, CN, nh, body, payload_length=rng.choice([None, 0, 9999])))
    return frames


def test_hand_made_and_malformed_packets(tmp_path):
    cases = _handmade()
    garbage = _garbage()
    capture = tmp_path / "malformed.pcapng"
    write_pcapng(capture, [(i * 1000, frame, "path=other")
                           for i, frame in enumerate([c[1] for c in cases] + garbage)])
    rows = field_rows(capture)
    assert len(rows) == len(cases) + len(garbage)
    for number, (name, _, want, expert) in enumerate(cases, start=1):
        row = rows[number]
        for field, value in want.items():
            if value is not None:
                got = addresses(row[field]) if field == "mip6lp.phoa" else row[field]
                want_value = addresses(value) if field == "mip6lp.phoa" else value
                assert got == want_value, (name, field)
        if expert is not None:
            assert any(expert in m for m in row["_ws.expert.message"]), (name, row)


def _write_snapped_pcap(path: Path, frames: list[tuple[bytes, int]]) -> None:
    """Classic pcap (Ethernet) whose records keep only the first octets of each frame, as a
    capture with a small snap length does (captured length < original length)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, (data, original) in enumerate(frames):
            f.write(struct.pack("<IIII", n, 0, len(data), original) + data)


@pytest.mark.parametrize("how", ["short frame", "snap length"])
def test_every_prefix_of_real_frames_gives_right_or_no_values(labs, tmp_path, how):
    """Each real HoTI, HoT and BU (from rr-privacy, in clear) cut after every octet: a field is
    present exactly when its octets are, with the value of the whole frame, and no Lua error."""
    lab = labs["rr-privacy"]
    hoti = lab.frame_bytes(lab.frames("HoTI", {"4.1"}, path="ha-cn")[0])
    hot = lab.frame_bytes(lab.frames("HoT", {"4.1"}, path="ha-cn")[0])
    binding = lab.truth["correspondent_bindings"][0]
    bu = lab.frame_bytes(binding["frame"])
    assert hoti[20] == hot[20] == pk.NH_MH                         # MH right after IPv6
    hot_row = lab.rows[lab.frames("HoT", {"4.1"}, path="ha-cn")[0]]
    token = bytes.fromhex(hot_row["mip6lp.pkt.token"][0])
    phoa = formulas.address_bytes(binding["pseudo_home_address"])
    # where the octets are: Reserved of the HoTI (RFC 6275 6.1.3), option 18, option 0xFE
    p_end = 14 + 40 + 8
    token_at, phoa_at = hot.index(token), bu.index(phoa)
    assert hot[token_at - 4:token_at - 1] == b"\x12\x0a\x01" and bu[phoa_at - 2] == 0xFE
    cuts = [(frame, cut) for frame in (hoti, hot, bu) for cut in range(len(frame) + 1)]
    capture = tmp_path / "cut.pcap"
    if how == "short frame":
        capture = tmp_path / "cut.pcapng"
        write_pcapng(capture, [(n, frame[:cut], "path=ha-cn") for n, (frame, cut) in
                               enumerate(cuts)])
    else:
        _write_snapped_pcap(capture, [(frame[:cut], len(frame)) for frame, cut in cuts])
    rows = field_rows(capture)
    assert len(rows) == len(cuts)
    for number, (frame, cut) in enumerate(cuts, start=1):
        row, where = rows[number], (how, frame[:20].hex(), cut)
        if frame is hoti:
            assert row["mip6lp.hoti.p"] == (["1"] if cut >= p_end else []), where
        elif frame is hot:
            assert row["mip6lp.pkt.subtype"] == (["0x01"] if cut >= token_at - 1 else []), where
            assert row["mip6lp.pkt.token"] == ([token.hex()] if cut >= token_at + 8 else []), \
                where
        else:
            assert row["mip6lp.phoa.length"] == (["16"] if cut >= phoa_at else []), where
            assert addresses(row["mip6lp.phoa"]) == (
                [binding["pseudo_home_address"]] if cut >= phoa_at + 16 else []), where


def test_a_lua_error_would_be_caught(tmp_path):
    """The checks above would see a Lua error: a copy of the plugin that raises on every
    frame is reported in _ws.lua.error and fails assert_no_lua_error."""
    broken = tmp_path / "broken.lua"
    broken.write_text(LUA.read_text().replace(
        "function mip6lp.dissector(tvb, pinfo, tree)\n",
        "function mip6lp.dissector(tvb, pinfo, tree)\n    error(\"boom\")\n"))
    capture = tmp_path / "one.pcapng"
    write_pcapng(capture, [(0, ethernet_ipv6(CN, HOA, pk.NH_MH, raw_mh(1, bytes(10))), "x")])
    result = run_tshark(capture, "-T", "fields", "-e", "_ws.lua.error", script=broken)
    assert result.stdout.strip() == "1"
    with pytest.raises(AssertionError):
        assert_no_lua_error(run_tshark(capture, "-V", script=broken))
