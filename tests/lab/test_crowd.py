"""Crowds (lab/crowd.py and the scenario fields under them), checked on the lab's own bytes with
the tests' independent readers (wire.py, read_pcapng): care-of IIDs of each kind, SPI
allocation, ESP counters, simultaneous bursts, determinism, validation, and `lab crowd` end to
end. Parameters vary (hypothesis) instead of one configuration being tested."""
from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from keys import formulas as F
from keys.errors import UserError
from lab.crowd import crowd_document, crowd_scenario, run_crowd
from lab.run import build
from tests.lab import wire
from tests.lab.conftest import read_pcapng

ROOT = Path(__file__).resolve().parents[2]
# each example builds a crowd: a dozen per test, and no shrinking (a failure names its example)
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
               phases=[Phase.explicit, Phase.reuse, Phase.generate])
EPOCH = 1_767_225_600                 # lab.actors: captures start at 2026-01-01T00:00:00Z
BINDING_FIELDS = {
    "home_bindings": {"home_agent", "home_address", "pseudo_home_address", "care_of_address",
                      "sequence", "lifetime", "frame", "time"},
    "correspondent_bindings": {"correspondent", "home_address", "pseudo_home_address",
                               "care_of_address", "sequence", "authenticator_valid", "frame",
                               "time"},
}


# --- reading a crowd with the tests' own readers ----------------------------------------------

def sa_keys(truth: dict, keyring: dict) -> dict[int, tuple[bytes, bytes]]:
    """SPI -> keys for every SPI any SA sent with: the keys listed in the keyring (under the
    SA's first SPI, or under each SPI), carried along the SA's SPIs as truth.json lists them.
    Claims only: every packet's ICV must then verify with them (wire.parse checks)."""
    listed = wire.sas_of(keyring)
    out: dict[int, tuple[bytes, bytes]] = {}
    for node in truth["nodes"].values():
        for sa in node["esp_sas"]:
            if not sa["spis_used"]:
                continue
            keys = listed.get(sa["first_spi"]) or listed[sa["spis_used"][0]]
            for spi in sa["spis_used"]:
                assert spi not in out, f"SPI 0x{spi:08x} used by two SAs"
                out[spi] = keys
    return out


@dataclass
class Crowd:
    truth: dict
    keyring: dict
    records: list[tuple[int, bytes, str]]      # (usec, Ethernet frame, path comment)
    levels: list[list[wire.Level]]

    @classmethod
    def from_build(cls, scenario) -> Crowd:
        out = build(scenario)
        return cls.make(out.truth, tomllib.loads(out.keyring_text),
                        [(EPOCH * 10**6 + f.usec, f.data, f"path={f.path}") for f in out.frames])

    @classmethod
    def from_dir(cls, d: Path) -> Crowd:
        return cls.make(json.loads((d / "truth.json").read_text()),
                        tomllib.loads((d / "keyring.toml").read_text()),
                        [(r.usec, r.data, r.comments[0]) for r in read_pcapng(
                            d / "capture.pcapng")])

    @classmethod
    def make(cls, truth, keyring, records) -> Crowd:
        sas = sa_keys(truth, keyring)
        levels = []
        for _, data, _ in records:
            assert data[12:14] == b"\x86\xdd"
            levels.append(wire.parse(data[14:], sas))
        return cls(truth, keyring, records, levels)

    def info(self, frame: int) -> dict:
        return self.truth["frames"][str(frame)]

    def frames(self, what: str) -> list[int]:
        return [int(n) for n, f in self.truth["frames"].items() if f["what"] == what]

    def node_index(self, name: str) -> int:
        return int(name.removeprefix("mn")) - 1

    def care_of_moves(self) -> dict[str, list[str]]:
        """Per node, the care-of address of each Home BU sent from away, read from the packet
        (outer source; equal to its Alternate CoA option), in capture order."""
        moves = defaultdict(list)
        for n in self.frames("Home BU") + self.frames("Home BU (lost)"):
            outer, inner = self.levels[n - 1][0], self.levels[n - 1][-1]
            node = self.info(n)["node"]
            if outer.src == self.truth["nodes"][node]["home_address"]:
                continue                                   # de-registration from home
            options = {t: d for _, t, d in wire.mobility_options(inner.payload)}
            assert wire.text(options[3]) == outer.src      # Alternate CoA (RFC 6275 6.2.5)
            moves[node].append((n, outer.src))
        return {node: [a for _, a in sorted(m)] for node, m in moves.items()}


def iid(address: str) -> int:
    return int(ipaddress.IPv6Address(address)) & ((1 << 64) - 1)


def prefix(address: str) -> str:
    return str(ipaddress.IPv6Network(address + "/64", strict=False))


def eui64(mac_text: str) -> int:
    """RFC 4291 Appendix A, written again here: FFFE inserted, universal/local bit inverted."""
    mac = bytes.fromhex(mac_text.replace(":", ""))
    return int.from_bytes(bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:], "big")


def check_common(c: Crowd, doc: dict) -> None:
    """What every crowd must be: frames in time order with their path; truth.json's schema
    and bindings that point at the right packets; no SPI for two SAs; checksums."""
    usecs = [u for u, _, _ in c.records]
    assert usecs == sorted(usecs)
    assert len(c.records) == len(c.truth["frames"]) == sum(c.truth["paths"].values())
    for n, (_, _, comment) in enumerate(c.records, 1):
        assert comment == f"path={c.info(n)['path']}"
    for kind, fields in BINDING_FIELDS.items():
        for b in c.truth[kind]:
            assert set(b) == fields
            assert abs(usecs[b["frame"] - 1] / 1e6 - b["time"]) < 1e-6
            assert c.info(b["frame"])["what"] == ("Home BU" if kind == "home_bindings" else "BU")
    assert len(c.truth["nodes"]) == len(doc["mobile_node"])
    for levels in c.levels:
        for lvl in levels:
            assert lvl.esp_padding_ok
            if lvl.next_header in (135, 58, 17, 6):
                assert wire.checksum_ok(lvl)
    seen = {lvl.esp[0] for levels in c.levels for lvl in levels if lvl.esp}
    used = {s for n in c.truth["nodes"].values() for sa in n["esp_sas"] for s in sa["spis_used"]}
    assert seen == used


# --- care-of interface IDs ----------------------------------------------------------------------

@FEW
@given(nodes=st.integers(3, 10), seed=st.integers(0, 10**6), networks=st.integers(2, 4),
       procedures=st.sampled_from(["mixed", "5.2.1+4.1", "5.2.2", "rfc3776+rfc6275"]))
def test_privacy_iids_are_new_for_every_address(nodes, seed, networks, procedures):
    doc = crowd_document(nodes=nodes, seed=seed, networks=networks, moves_per_node=4,
                         procedures=procedures, iid="privacy")
    c = Crowd.from_build(crowd_scenario(nodes=nodes, seed=seed, networks=networks,
                                        moves_per_node=4, procedures=procedures))
    check_common(c, doc)
    moves = c.care_of_moves()
    every = [a for coas in moves.values() for a in set(coas)]
    assert len(set(map(iid, every))) == len(every) == 4 * nodes    # a new IID every move
    for node, coas in moves.items():
        home = iid(c.truth["nodes"][node]["home_address"])
        assert home not in map(iid, coas)
        assert all(iid(a) != eui64(c.truth["nodes"][node]["mac"]) for a in coas)
        assert c.truth["nodes"][node]["care_of_iid"] == "privacy"


@FEW
@given(nodes=st.integers(2, 8), seed=st.integers(0, 10**6), networks=st.integers(2, 3))
def test_stable_iids_are_one_per_prefix(nodes, seed, networks):
    params = dict(nodes=nodes, seed=seed, networks=networks, moves_per_node=5, iid="stable")
    c = Crowd.from_build(crowd_scenario(**params))
    check_common(c, crowd_document(**params))
    per_prefix = defaultdict(set)
    for node, coas in c.care_of_moves().items():
        mine = {prefix(a): iid(a) for a in coas}
        for a in coas:
            per_prefix[node, prefix(a)].add(iid(a))
        assert len(set(mine.values())) == len(mine)       # different across prefixes
    assert all(len(v) == 1 for v in per_prefix.values())  # the same on a prefix, every visit
    # with 5 moves on 2-3 networks, nodes come back to a network they visited
    assert any(len(coas) > len(set(coas)) for coas in c.care_of_moves().values())


@FEW
@given(nodes=st.integers(2, 8), seed=st.integers(0, 10**6))
def test_eui64_iids_leak_the_same_id_on_every_prefix(nodes, seed):
    params = dict(nodes=nodes, seed=seed, moves_per_node=4, iid="eui64")
    c = Crowd.from_build(crowd_scenario(**params))
    check_common(c, crowd_document(**params))
    ids = {}
    for node, coas in c.care_of_moves().items():
        assert len({prefix(a) for a in coas}) >= 2
        assert {iid(a) for a in coas} == {eui64(c.truth["nodes"][node]["mac"])}
        ids[node] = iid(coas[0])
        assert (ids[node] >> 24) & 0xFFFF == 0xFFFE and ids[node] >> 57 & 1   # u bit: universal
    assert len(set(ids.values())) == nodes


def test_iid_kinds_mixed_and_explicit_address(tmp_path):
    doc = crowd_document(nodes=12, seed=4, iid="mixed")
    kinds = Counter(m.get("care_of_iid", "privacy") for m in doc["mobile_node"])
    assert set(kinds) == {"privacy", "stable", "eui64"}
    # an explicit care_of_address is taken as written, whatever the node's kind
    doc["event"][0] = {**doc["event"][0], "care_of_address": "2001:db8:77::abcd"}
    del doc["event"][0]["care_of_prefix"]
    from lab.scenario import parse_scenario
    out = build(parse_scenario(doc, "<test>"))
    first = out.truth["home_bindings"][0]
    assert first["care_of_address"] == "2001:db8:77::abcd"


def test_two_nodes_cannot_hold_one_care_of_address(tmp_path):
    from lab.scenario import parse_scenario
    doc = crowd_document(nodes=2, seed=1, procedures="5.2.1")
    for ev in doc["event"][:2]:
        ev.pop("care_of_prefix")
        ev["care_of_address"] = "2001:db8:77::1"
    with pytest.raises(UserError, match="held by mn1"):
        build(parse_scenario(doc, "<test>"))


# --- SPI allocation -------------------------------------------------------------------------

def firsts(c: Crowd) -> dict[int, list[int]]:
    return {c.node_index(n): [sa["first_spi"] for sa in v["esp_sas"]]
            for n, v in c.truth["nodes"].items()}


def check_chains(c: Crowd) -> None:
    """Each SA's SPIs follow draft 6.4 with its node's Kph (from the keyring's Ks)."""
    kph = {m["name"]: F.kph_from_ks(bytes.fromhex(m["ks"])) for m in c.keyring["mobile_node"]}
    for name, node in c.truth["nodes"].items():
        for sa in node["esp_sas"]:
            spis = [sa["first_spi"], *sa["spis_used"]]
            for a, b in zip(spis, spis[1:], strict=False):
                if node["privacy"]:
                    assert a == b or b in F.spi_chain(kph[name], a, 64)[1:], (name, sa["sa"])
                else:
                    assert a == b


@FEW
@given(nodes=st.integers(2, 30), step=st.integers(1, 300), seed=st.integers(0, 10**6),
       base=st.integers(256, 1 << 31), procedures=st.sampled_from(["mixed", "5.2.1+5.3.1"]))
def test_sequential_spis(nodes, step, seed, base, procedures):
    params = dict(nodes=nodes, seed=seed, spi="sequential", spi_step=step, spi_base=base,
                  procedures=procedures, moves_per_node=3)
    c = Crowd.from_build(crowd_scenario(**params))
    check_common(c, crowd_document(**params))     # no SPI in two SAs, every ICV verifies
    check_chains(c)
    starts = firsts(c)
    assert starts[0][0] == base                    # node 0 starts at the base
    for k, spis in starts.items():
        for j, spi in enumerate(spis):
            assert spi >= base + k * step + j      # at the node's place or above (taken ones)
    every = sorted(set(s for v in starts.values() for s in v))
    assert len(every) == 4 * nodes
    # the look-alike: every node has an SPI within 256 of another node's
    used = {c.node_index(n): {s for sa in v["esp_sas"] for s in [sa["first_spi"],
                                                                   *sa["spis_used"]]}
            for n, v in c.truth["nodes"].items()}
    if step <= 64:
        for k, mine in used.items():
            others = set().union(*(v for j, v in used.items() if j != k))
            assert any(abs(a - b) < 256 for a in mine for b in others), k


def test_sequential_stays_at_its_place_when_no_chain_reaches_the_next_node():
    """With steps wider than any 6.4 chain (each renewal moves < 256), node k's SAs sit at
    base + k * step + 0..3, or a few SPIs above when the node's own chains cross them."""
    c = Crowd.from_build(crowd_scenario(nodes=20, seed=2, spi="sequential", spi_step=1 << 16,
                                        moves_per_node=5))
    exact = 0
    for k, spis in firsts(c).items():
        for j, spi in enumerate(spis):
            assert 0 <= spi - (0x1000 + (k << 16) + j) < 64
            exact += spi == 0x1000 + (k << 16) + j
    assert exact >= 70                              # of 80


def test_random_spis_are_spread_and_per_node_override():
    c = Crowd.from_build(crowd_scenario(nodes=10, seed=3, spi="random"))
    every = [s for v in firsts(c).values() for s in v]
    assert max(every) - min(every) > 1 << 28
    check_chains(c)
    from lab.scenario import parse_scenario
    doc = crowd_document(nodes=3, seed=3, spi="random")
    doc["mobile_node"][1]["spi_allocation"] = "sequential"
    doc["mobile_node"][2]["first_spi"] = 0x7000_0000
    out = build(parse_scenario(doc, "<test>"))
    spis = [[sa["first_spi"] for sa in n["esp_sas"]] for n in out.truth["nodes"].values()]
    assert spis[1] == [0x1000 + 16 + j for j in range(4)]
    assert spis[2] == [0x7000_0000 + j for j in range(4)]


# --- ESP counters ---------------------------------------------------------------------------

def esp_sequences(c: Crowd) -> dict[tuple[str, str], list[int]]:
    """(node, SA) -> ESP sequence numbers in capture order, SA told by its SPI (truth)."""
    owner = {s: (name, sa["sa"]) for name, n in c.truth["nodes"].items()
             for sa in n["esp_sas"] for s in sa["spis_used"]}
    out = defaultdict(list)
    for levels in c.levels:
        spi, seq = levels[0].esp or (None, None)
        if spi is not None:
            out[owner[spi]].append(seq)
    return out


@FEW
@given(nodes=st.integers(2, 12), seed=st.integers(0, 10**6),
       moves=st.sampled_from(["in-turn", "burst", "poisson"]))
def test_counters_side_by_side_when_together(nodes, seed, moves):
    c = Crowd.from_build(crowd_scenario(nodes=nodes, seed=seed, moves=moves, sa_setup="together",
                                        procedures="5.2.1", moves_per_node=4))
    seqs = esp_sequences(c)
    for counter in seqs.values():
        assert counter == list(range(1, len(counter) + 1))   # from 1, one by one
    # the r-th Home BU of every node carries ESP sequence r: the counters run side by side
    per_node = defaultdict(list)
    for n in c.frames("Home BU"):
        per_node[c.info(n)["node"]].append(c.levels[n - 1][0].esp[1])
    assert {tuple(v) for v in per_node.values()} == {(1, 2, 3, 4)}


@FEW
@given(nodes=st.integers(3, 12), seed=st.integers(0, 10**6))
def test_counters_apart_when_staggered(nodes, seed):
    c = Crowd.from_build(crowd_scenario(nodes=nodes, seed=seed, sa_setup="staggered"))
    seqs = esp_sequences(c)
    starts = {}
    for (node, sa), counter in seqs.items():
        assert counter == list(range(counter[0], counter[0] + len(counter)))
        truth_sa = next(s for s in c.truth["nodes"][node]["esp_sas"] if s["sa"] == sa)
        assert counter[0] == truth_sa["first_sequence"]
        starts[node, sa] = counter[0]
    assert len(set(starts.values())) > len(starts) // 2


# --- moves --------------------------------------------------------------------------------

@FEW
@given(nodes=st.integers(4, 30), size=st.integers(2, 8), seed=st.integers(0, 10**6),
       spread=st.sampled_from([0.0005, 0.002, 0.02]))
def test_bursts_are_simultaneous(nodes, size, seed, spread):
    """Handover storms: each burst's Home BUs go out within the spread of each other; when the
    spread is below one hop (4 ms) every Home BU of the burst precedes its first Home BA."""
    params = dict(nodes=nodes, seed=seed, moves="burst", burst_size=size, burst_spread=spread,
                  moves_per_node=3, procedures="5.2.1+4.1")   # one Home BU per move
    c = Crowd.from_build(crowd_scenario(**params))
    bus = sorted((c.records[n - 1][0] / 1e6, c.info(n)["node"], n)
                 for n in c.frames("Home BU"))
    bas = sorted(c.records[n - 1][0] / 1e6 for n in c.frames("Home BA"))
    bursts, current = [], [bus[0]]
    for b in bus[1:]:                              # bursts are move_interval (0.5 s) apart
        if b[0] - current[0][0] < 0.25:
            current.append(b)
        else:
            bursts.append(current)
            current = [b]
    bursts.append(current)
    assert len(bursts) == 3 * -(-nodes // size)
    for burst in bursts:
        times = [t for t, _, _ in burst]
        assert len({node for _, node, _ in burst}) == len(burst) <= size
        assert max(times) - min(times) <= spread + 1e-6
        if spread < 0.004 and len(burst) > 1:
            first_ba = min(t for t in bas if t >= min(times))
            assert max(times) < first_ba
    assert all(t > EPOCH for t, _, _ in bus)


def test_in_turn_and_poisson_timelines():
    doc = crowd_document(nodes=5, moves="in-turn", move_interval=0.25, moves_per_node=2)
    moves = [(e["at"], e["node"]) for e in doc["event"] if e["do"] == "move"]
    assert moves == [(1.0 + 0.25 * i, f"mn{i % 5 + 1}") for i in range(10)]
    doc = crowd_document(nodes=40, moves="poisson", move_rate=0.5, moves_per_node=20, seed=9)
    gaps = []
    for k in range(40):
        times = [e["at"] for e in doc["event"] if e["do"] == "move" and e["node"] == f"mn{k+1}"]
        gaps += [b - a for a, b in zip([1.0, *times], times, strict=False)]
    mean = sum(gaps) / len(gaps)
    assert 1.6 < mean < 2.4                          # exponential gaps of mean 1 / rate


# --- the rest of the parameters ----------------------------------------------------------------

def test_home_agents_procedures_background_and_truth_schema():
    params = dict(nodes=12, home_agents=3, correspondents=3, seed=11, procedures="mixed",
                  background=0.3, lost_bu=0.3, return_home=0.5, prefix_discovery=0.5)
    doc = crowd_document(**params)
    c = Crowd.from_build(crowd_scenario(**params))
    check_common(c, doc)
    t = c.truth
    assert set(t) >= {"scenario", "seed", "nodes", "correspondents", "home_bindings",
                      "correspondent_bindings", "paths", "frames"}
    has = {f"ha{h + 1}": str(ipaddress.IPv6Address(f"2001:db8:1:{h}::1")) for h in range(3)}
    assert t["home_agents"] == has
    for name, node in t["nodes"].items():
        assert node["home_agent"] == has[f"ha{c.node_index(name) % 3 + 1}"]
    for n in c.frames("Home BU"):                   # every Home BU goes to its node's agent
        assert c.levels[n - 1][0].dst == t["nodes"][c.info(n)["node"]]["home_agent"]
    procedures = {f["procedure"] for f in t["frames"].values()}
    planned = {m["home_bu"] for m in doc["mobile_node"]} | {
        e["procedure"] for e in doc["event"] if e["do"] == "session"}
    assert len(planned) >= 5 and procedures >= planned | {"background", "5.5"}
    assert {"Home BU (lost)", "MPS"} <= {f["what"] for f in t["frames"].values()}
    assert any(b["lifetime"] == 0 for b in t["home_bindings"])       # someone went home
    share = t["paths"]["other"] / len(t["frames"])
    assert abs(share - 0.3) < 0.03
    assert {b["correspondent"] for b in t["correspondent_bindings"]} <= set(
        t["correspondents"].values())


@pytest.mark.parametrize("procedures,home,ro", [
    ("5.2.2+5.3.1", {"5.2.2"}, {"5.3.1"}),
    ("5.2.1+mixed", {"5.2.1"}, {"4.1", "4.2", "5.3.1", "5.3.2", "5.4"}),
    ("rfc3776+rfc6275", {"rfc3776"}, {"rfc6275"}),
    ("5.2.1", {"5.2.1"}, set()),
])
def test_procedures_for_every_node(procedures, home, ro):
    doc = crowd_document(nodes=30, procedures=procedures, seed=2)
    assert {m["home_bu"] for m in doc["mobile_node"]} == home
    assert {e["procedure"] for e in doc["event"] if e["do"] == "session"} == ro


# --- determinism --------------------------------------------------------------------------------

ARGS = ["-n", "9", "--home-agents", "2", "--iid", "stable", "--spi", "sequential",
        "--spi-step", "16", "--sa-setup", "staggered", "--moves", "burst", "--procedures",
        "mixed", "--background", "0.2", "--lost-bu", "0.2", "--seed", "3"]
FILES = ("scenario.toml", "capture.pcapng", "keyring.toml", "truth.json")


def lab_crowd(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "crowd", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_same_parameters_same_bytes_across_processes(tmp_path):
    for hash_seed in ("1", "77"):
        done = lab_crowd(*ARGS, "-o", str(tmp_path / hash_seed),
                         env=dict(os.environ, PYTHONHASHSEED=hash_seed))
        assert done.returncode == 0, done.stderr
    run_crowd(tmp_path / "api", nodes=9, home_agents=2, iid="stable", spi="sequential",
              spi_step=16, sa_setup="staggered", moves="burst", procedures="mixed",
              background=0.2, lost_bu=0.2, seed=3)
    for f in FILES:
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "77" / f).read_bytes(), f
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "api" / f).read_bytes(), f
    # the scenario written beside the capture gives the same capture again
    again = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "run",
                            str(tmp_path / "1" / "scenario.toml"), "-o", str(tmp_path / "re")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    for f in FILES[1:]:
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "re" / f).read_bytes(), f
    other = build(crowd_scenario(nodes=9, home_agents=2, seed=4))
    assert [f.data for f in other.frames] != [f.data for f in build(
        crowd_scenario(nodes=9, home_agents=2, seed=3)).frames]


def test_a_parameter_changes_only_what_it_is_about():
    a = crowd_document(nodes=10, seed=5, moves="in-turn")
    b = crowd_document(nodes=10, seed=5, moves="burst", spi="sequential")
    assert a["mobile_node"] == b["mobile_node"]


# --- `lab crowd` end to end -------------------------------------------------------------------

@pytest.mark.parametrize("n,seed,extra", [
    (2, 1, []),
    (5, 2, ["--iid", "eui64", "--moves", "poisson", "--correspondents", "1"]),
    (13, 3, ["--spi", "sequential", "--spi-step", "4", "--procedures", "5.2.2+mixed",
             "--prefix-discovery", "0.5", "--return-home", "1"]),
    (50, 4, ["--home-agents", "3", "--moves", "burst", "--burst-size", "7", "--background",
             "0.1", "--keyring", "every", "--sa-setup", "staggered"]),
])
def test_lab_crowd_cli_end_to_end(tmp_path, n, seed, extra):
    out = tmp_path / "crowd"
    done = lab_crowd("-n", str(n), "--seed", str(seed), "--moves-per-node", "3", *extra,
                     "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"crowd-{n}: {n} nodes" in done.stderr
    assert stat.S_IMODE(os.stat(out / "keyring.toml").st_mode) == 0o600
    doc = tomllib.loads((out / "scenario.toml").read_text())
    c = Crowd.from_dir(out)
    check_common(c, doc)
    assert c.truth["scenario"] == f"crowd-{n}" and c.truth["seed"] == seed
    moves = c.care_of_moves()
    assert set(moves) == set(c.truth["nodes"]) and all(len(set(m)) >= 1 for m in moves.values())
    listed = set(wire.sas_of(c.keyring))
    first = {sa["first_spi"] for v in c.truth["nodes"].values() for sa in v["esp_sas"]}
    used = {s for v in c.truth["nodes"].values() for sa in v["esp_sas"] for s in sa["spis_used"]}
    assert listed == (used if "every" in extra else first)


def test_tshark_reads_a_crowd_cleanly(tmp_path):
    """tshark 4.0, decrypting with the keyring's SAs: no malformed packet, no warning, every
    ICV good."""
    from tests.lab.conftest import Built, tshark_fields
    run_crowd(tmp_path, nodes=30, seed=6, keyring="every", procedures="mixed", background=0.1,
              moves="burst")
    b = Built("crowd", tmp_path, json.loads((tmp_path / "truth.json").read_text()),
              tomllib.loads((tmp_path / "keyring.toml").read_text()))
    rows = tshark_fields(b, ["_ws.expert.severity", "esp.spi", "esp.icv_good"])
    assert len(rows) == len(b.truth["frames"])
    assert [r for r in rows for s in r["_ws.expert.severity"].split("|")
            if s and int(s, 0) >= 0x00600000] == []
    esp = [r for r in rows if r["esp.spi"]]
    assert esp and all(r["esp.icv_good"] == "1" for r in esp)


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("params,message", [
    ({"nodes": 1}, "lab crowd --nodes: must be 2..500"),
    ({"nodes": 501}, "lab crowd --nodes: must be 2..500"),
    ({"iid": "mac"}, "lab crowd --iid: unknown value 'mac'"),
    ({"spi_step": 0}, "lab crowd --spi-step: must be 1.."),
    ({"spi": "sequential", "spi_base": 12}, "lab crowd --spi-base: must be 256.."),
    ({"background": 1.0}, "lab crowd --background: must be 0.0..0.95"),
    ({"procedures": "5.2.9"}, "lab crowd --procedures: unknown Home BU mode '5.2.9'"),
    ({"procedures": "rfc3776+5.3.1"}, "lab crowd --procedures: rfc3776 nodes cannot"),
    ({"moves": "teleport"}, "lab crowd --moves: unknown value"),
    ({"nodes": "20"}, "lab crowd --nodes: must be int"),
    ({"colour": 1}, "lab crowd: unknown parameter 'colour'"),
])
def test_crowd_parameter_errors_name_the_option(params, message):
    with pytest.raises(UserError) as err:
        crowd_scenario(**params)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_cli_bad_parameter_is_one_line_exit_2(tmp_path):
    bad = lab_crowd("-n", "1", "-o", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("mip6mon: error: lab crowd --nodes")
    bad = lab_crowd("-n", "4", "--procedures", "rfc3776+4.1", "-o", str(tmp_path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
