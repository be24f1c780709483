"""Every shipped scenario: tshark reads it cleanly, decrypts all ESP with the written keyring,
every checksum verifies, and capture, keyring and truth agree with each other."""
from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keys.keyring import load_keyring
from lab.run import build, run_scenario
from lab.scenario import load_scenario
from tests.lab import wire
from tests.lab.conftest import SCENARIOS, read_pcapng, tshark

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"baseline", "rr-privacy", "reverse-tunnelled-bu", "home-transport-ctr",
            "home-transport-ecb", "home-tunnel", "mn-initiated-rr", "cn-initiated-rr",
            "reverse-tunnelling", "prefix-discovery", "demo", "eui64-leak"}


def test_every_scenario_is_shipped():
    assert set(SCENARIOS) == EXPECTED


@pytest.mark.parametrize("name", SCENARIOS)
def test_tshark_no_expert_errors_or_warnings(dissected, name):
    # epan/proto.h: PI_WARN 0x00600000, PI_ERROR 0x00800000 (malformed packets are errors)
    worst = [(r["frame.number"], s) for r in dissected[name]
             for s in r["_ws.expert.severity"].split("|") if s and int(s, 0) >= 0x00600000]
    assert worst == []


def test_tshark_expert_summary_is_clean(built):
    out = tshark(built["demo"], "-q", "-z", "expert,warn")
    assert "Errors" not in out and "Warns" not in out and "Malformed" not in out, out


@pytest.mark.parametrize("name", SCENARIOS)
def test_tshark_decrypts_every_esp_packet(built, dissected, name):
    b = built[name]
    rows = [r for r in dissected[name] if r["esp.spi"]]
    expected = sum(1 for f in b.truth["frames"].values() if f["path"] == "mn-ha")
    assert len(rows) == expected > 0        # every MN-HA packet of the lab is ESP
    for row in rows:
        assert row["esp.icv_good"] == "1", row
        assert int(row["esp.protocol"], 0) in (41, 135, 58), row   # decrypted next header


@pytest.mark.parametrize("name", SCENARIOS)
def test_comments_counts_and_times_match_truth(built, dissected, name):
    b = built[name]
    records = read_pcapng(b.capture)
    frames = b.truth["frames"]
    assert len(records) == len(frames) == sum(b.truth["paths"].values())
    for n, rec in enumerate(records, 1):
        assert rec.comments == [f"path={frames[str(n)]['path']}"]
    for entry in b.truth["home_bindings"] + b.truth["correspondent_bindings"]:
        assert abs(records[entry["frame"] - 1].usec / 1e6 - entry["time"]) < 1e-6
    rows = dissected[name]
    assert all(abs(float(r["frame.time_epoch"]) - records[int(r["frame.number"]) - 1].usec / 1e6)
               < 1e-6 for r in rows)
    assert [r["frame.comment"] for r in rows] == [f"path={frames[str(n)]['path']}"
                                                  for n in range(1, len(rows) + 1)]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_checksum_and_alignment(built, name):
    """MH (tshark 4.0 does not verify them), ICMPv6, UDP and TCP checksums with the RFC 6275
    pseudo-header rules, after opening ESP with the keyring; MH length a multiple of 8."""
    b = built[name]
    sas = wire.sas_of(b.keyring)
    seen_mh = 0
    for rec in read_pcapng(b.capture):
        assert rec.data[12:14] == b"\x86\xdd"
        for lvl in wire.parse(rec.data[14:], sas):
            assert lvl.esp_padding_ok
            if lvl.next_header in (135, 58, 17, 6):
                assert wire.checksum_ok(lvl), (name, lvl)
            if lvl.next_header == 135:
                seen_mh += 1
                mh = lvl.payload
                assert mh[0] == 59 and (mh[1] + 1) * 8 == len(mh)
                for off, typ, data in wire.mobility_options(mh):
                    if typ == 3:
                        assert off % 8 == 6
                    if typ == 5:
                        assert off % 8 == 2 and len(data) == 12 and off + 14 == len(mh)
                    if typ == 4:
                        assert off % 2 == 0 and len(data) == 4
                    if typ == 18:
                        assert off % 2 == 0 and len(data) == 10 and data[:2] == b"\x01\x00"
    assert seen_mh > 0


def test_tshark_verifies_udp_icmp_tcp_checksums(dissected):
    keys = ("udp.checksum.status", "icmpv6.checksum.status", "tcp.checksum.status")
    statuses = [s for r in dissected["demo"] for k in keys for s in r[k].split("|") if s]
    assert statuses and set(statuses) == {"1"}            # 1 = good


@pytest.mark.parametrize("name", ["baseline", "demo"])
def test_keyring_is_private_and_loads(built, dissected, name):
    b = built[name]
    path = b.dir / "keyring.toml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ring = load_keyring(path)
    assert {m.name for m in ring.mobile_nodes} == set(b.truth["nodes"])
    spis_in_capture = {int(r["esp.spi"], 16) for r in dissected[name] if r["esp.spi"]}
    assert spis_in_capture == {sa.spi for sa in ring.esp_sas}


def test_deterministic_same_seed_same_bytes(built, tmp_path):
    run_scenario(load_scenario("demo"), tmp_path / "a")
    # another process, another hash seed, through the CLI
    env = dict(os.environ, PYTHONHASHSEED="123")
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "run", "demo", "-o",
                           str(tmp_path / "b")], cwd=ROOT, env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 0
    for fname in ("capture.pcapng", "keyring.toml", "truth.json"):
        reference = (built["demo"].dir / fname).read_bytes()
        assert (tmp_path / "a" / fname).read_bytes() == reference, fname
        assert (tmp_path / "b" / fname).read_bytes() == reference, fname


def test_other_seed_other_keys_same_shape():
    scenario = load_scenario("baseline")
    a, b = build(scenario), build(scenario, seed=99)
    assert len(a.frames) == len(b.frames)
    assert [f.data for f in a.frames] != [f.data for f in b.frames]
    assert b.truth["seed"] == 99 and a.truth["seed"] == scenario.seed


def test_demo_has_everything(built):
    t = built["demo"].truth
    assert all(t["paths"][p] > 0 for p in ("mn-ha", "ha-cn", "mn-cn", "other"))
    whats = {(f["procedure"], f["what"]) for f in t["frames"].values()}
    for procedure in ("4.1", "4.2", "5.3.1", "5.3.2", "5.4"):
        assert any(p == procedure for p, _ in whats), procedure
    assert ("5.5", "MPS") in whats and ("5.2.1", "Home BU (lost)") in whats
    assert {w for p, w in whats if p == "background"} == {"TCP", "UDP", "ICMPv6"}
    assert len(t["nodes"]) == 3 and len(t["correspondents"]) == 2
    assert any(b["lifetime"] == 0 for b in t["home_bindings"])      # a de-registration
    for node in t["nodes"]:                                         # every node hands over
        coas = {b["care_of_address"] for b in t["home_bindings"]
                if b["home_address"] == t["nodes"][node]["home_address"] and b["lifetime"]}
        assert len(coas) >= 2, node
    assert all(f["node"] is None for f in t["frames"].values() if f["path"] == "other")


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_node_hands_over(built, name):
    """So the attacker analysis has something to link: two or more care-of addresses each."""
    t = built[name].truth
    for node, info in t["nodes"].items():
        coas = {h["care_of_address"] for h in t["home_bindings"]
                if h["home_address"] == info["home_address"] and h["lifetime"]}
        assert len(coas) >= 2, (name, node)


@pytest.mark.parametrize("name", SCENARIOS)
def test_care_of_interface_ids(built, name):
    """Every shipped scenario's care-of addresses carry RFC 8981 random interface IIDs (never
    the home address's, a new one per address), except `eui64-leak`, whose nodes show the
    modified EUI-64 of their MAC on every network (RFC 4291 Appendix A, computed here)."""
    b = built[name]
    sas = wire.sas_of(b.keyring)
    iids: dict[str, set[int]] = {}
    prefixes: dict[str, set[str]] = {}
    addresses: dict[str, set[str]] = {}
    for n, rec in enumerate(read_pcapng(b.capture), 1):
        info = b.truth["frames"][str(n)]
        if info["what"] != "Home BU":
            continue
        src = wire.parse(rec.data[14:], sas)[0].src
        home = b.truth["nodes"][info["node"]]["home_address"]
        if src == home:
            continue                                              # de-registration from home
        iids.setdefault(info["node"], set()).add(int(ipaddress.IPv6Address(src)) & (2**64 - 1))
        addresses.setdefault(info["node"], set()).add(src)
        prefixes.setdefault(info["node"], set()).add(
            str(ipaddress.IPv6Network(src + "/64", strict=False)))
    assert iids
    scenario = load_scenario(name)
    for node, seen in iids.items():
        kind = b.truth["nodes"][node]["care_of_iid"]
        assert kind == ("eui64" if name == "eui64-leak" else "privacy")
        home = int(ipaddress.IPv6Address(b.truth["nodes"][node]["home_address"])) & (2**64 - 1)
        if kind == "privacy":
            assert home not in seen and len(seen) == len(addresses[node]) >= 2
        else:
            mac = scenario.node(node).mac
            assert b.truth["nodes"][node]["mac"] == ":".join(f"{o:02x}" for o in mac)
            assert seen == {int.from_bytes(bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe"
                                           + mac[3:], "big")}
            assert len(prefixes[node]) >= 3
    every = [i for seen in iids.values() for i in seen]
    assert len(set(every)) == len(every)
