"""The attacker's view: what it can read (nothing after ESP), where it places packets (no
keyring, no pcapng comment), and the profiles it builds, on constructed events and on real lab
captures dissected by real tshark."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dissectors.events import Esp, IPv6Layer, MobilePrefix, MobilityMessage, PacketEvent
from keys.keyring import load_keyring
from lab.run import run_scenario
from lab.scenario import load_scenario
from monitor.attacker import AttackerAnalyzer, attacker_text
from monitor.placement import eavesdropped, learn_roles, place, visible
from monitor.privacy import LabTruth, privacy_score
from monitor.sources import PcapSource
from monitor.stream import EventStream
from tests.monitor.attacker_builders import (
    CN,
    COA1,
    COB1,
    HA,
    HOA1,
    PHOA,
    analyse,
    bu,
    cot,
    coti,
    event,
    home_ba_esp,
    home_bu_esp,
    hot,
    hoti,
    layer,
    tunnel_up,
)

SHIPPED = Path(__file__).resolve().parents[2] / "lab" / "scenarios"
OURS = Path(__file__).resolve().parent / "attacker_scenarios"
# every shipped scenario, plus four nodes doing the draft's procedures at the same moments
# (crowd) and four plain RFC 6275 nodes whose counters run side by side (baseline-crowd)
SCENARIOS = sorted(p.stem for p in SHIPPED.glob("*.toml")) + sorted(p.stem for p in
                                                                    OURS.glob("*.toml"))


# ---- what an eavesdropper can read -------------------------------------------------------------

def test_nothing_after_esp_is_visible_even_when_tshark_decrypted_it():
    decrypted = tunnel_up(1, 1.0, COA1, 0x1001, 3, inner=(HOA1, CN), mh=hoti())
    opaque = tunnel_up(1, 1.0, COA1, 0x1001, 3)
    v1, v2 = visible(decrypted), visible(opaque)
    assert v1.mh_type is None and v1.layers == 1 and v1.tunnel == () and v1.encrypted
    assert v1 == v2 and v1.src == COA1 and v1.spi == 0x1001 and v1.outer_esp
    a1, a2 = analyse([home_bu_esp(0, 0.5, COA1, PHOA, 0x1001, 2), decrypted]), \
        analyse([home_bu_esp(0, 0.5, COA1, PHOA, 0x1001, 2), opaque])
    assert a1.seen()[1].homes == ()
    assert [p.as_dict() for p in a1.profiles()] == [p.as_dict() for p in a2.profiles()]
    assert HOA1 not in json.dumps(a1.report())


def test_options_before_esp_stay_visible():
    # RFC 3776: the HAO is a destination option in front of the ESP header
    v = visible(home_bu_esp(1, 1.0, COA1, PHOA, 0x1001, 1))
    assert v.home_address == PHOA and v.esp_sequence == 1


@pytest.mark.parametrize("shape", ["plain", "message", "prefix", "esp", "tunnel",
                                   "tunnel-esp", "tunnel-in-tunnel-esp"])
def test_every_view_holds_each_field_where_it_belongs(shape):
    """Each branch of visible() makes a whole View (a tuple of the right length, built without
    View's own constructor), and cuts at the first ESP header wherever it is."""
    from dissectors.events import MobilePrefix
    from monitor.placement import View

    inner, deeper = layer(HOA1, CN, hao=PHOA), layer("2001:db8:7::1", CN, rh2=HOA1)
    mh = bu(7, home=True, hni=3, cni=4, acoa=COB1)
    pd = MobilePrefix(147, 9, ("2001:db8:1::/64",))
    e = {"plain": event(1, 1.5, layer(COA1, CN)),
         "message": event(1, 1.5, layer(COA1, HA, hao=PHOA), mh=mh),
         "prefix": PacketEvent(1, 1.5, 100, (layer(HA, COA1, rh2=HOA1),), prefix_discovery=pd),
         "esp": event(1, 1.5, layer(COA1, HA, hao=PHOA, esp=(0x1001, 9), decrypted=True),
                      inner, mh=mh),
         "tunnel": event(1, 1.5, layer(COA1, HA), inner, mh=mh),
         "tunnel-esp": event(1, 1.5, layer(COA1, HA), layer(HOA1, CN, esp=(0x1001, 9),
                                                             decrypted=True), deeper, mh=mh),
         "tunnel-in-tunnel-esp": event(1, 1.5, layer(COA1, HA), inner,
                                       layer(HOA1, CN, esp=(0x2002, 5)), deeper, mh=mh),
         }[shape]
    v = visible(e)
    assert View._make(v) == v and type(v) is View
    outer = e.layers[0]
    assert (v.frame, v.time, v.length, v.src, v.dst) == (1, 1.5, 100, outer.src, outer.dst)
    cut = next((n for n, x in enumerate(e.layers) if x.esp is not None), None)
    assert v.layers == (len(e.layers) if cut is None else cut + 1)
    assert [(x.src, x.dst, x.home_address) for x in v.tunnel] == \
        [(x.src, x.dst, x.home_address) for x in e.layers[1:v.layers]]
    assert all(x.esp is None for x in v.tunnel)          # the View's own spi/esp_sequence
    if cut is None:
        assert not v.encrypted and (v.spi, v.esp_sequence, v.outer_esp) == (None, None, False)
        assert v.mh_type == (mh.mh_type if e.mobility else None)
        assert v.prefix_discovery is e.prefix_discovery
        if e.mobility:
            assert (v.home_flag, v.mh_sequence, v.home_nonce_index, v.care_of_nonce_index,
                    v.alternate_care_of_address) == (True, 7, 3, 4, COB1)
    else:
        esp = e.layers[cut].esp
        assert v.encrypted and (v.spi, v.esp_sequence, v.outer_esp) == (esp.spi, esp.sequence,
                                                                        cut == 0)
        assert (v.mh_type, v.home_flag, v.mh_sequence, v.cookie, v.nonce_index,
                v.home_nonce_index, v.care_of_nonce_index, v.alternate_care_of_address,
                v.error_home_address, v.prefix_discovery) == (None, False) + (None,) * 8


# ---- placement from wire facts -----------------------------------------------------------------

def test_placement_from_wire_facts():
    evs = [home_bu_esp(1, 1, COA1, PHOA, 0x1001, 1),                      # mn-ha
           home_ba_esp(2, 1.1, COA1, PHOA, 0x2001, 1),                     # mn-ha
           event(3, 2, layer(HOA1, CN), mh=hoti()),                        # ha-cn
           event(4, 2, layer(COA1, CN), mh=coti()),                        # mn-cn
           event(5, 3, layer(COA1, CN, hao=HOA1), mh=bu(4)),               # mn-cn
           event(6, 4, layer(HOA1, CN)),                                   # ha-cn (data)
           event(7, 5, layer("2001:db8:9::1", "2001:db8:9::2"))]           # other
    views = [visible(e) for e in evs]
    roles = learn_roles(views)
    assert roles.home_agents == {HA} and COA1 in roles.care_of_addresses
    assert [place(v, roles) for v in views] == \
        ["mn-ha", "mn-ha", "ha-cn", "mn-cn", "mn-cn", "ha-cn", "other"]


def test_vantage_sees_only_its_path():
    evs = [home_bu_esp(1, 1, COA1, PHOA, 0x1001, 1),
           event(2, 2, layer(HOA1, CN), mh=hoti()),
           event(3, 2, layer(COA1, CN), mh=coti())]
    assert [o.frame for o in analyse(evs, "mn-ha").seen()] == [1]
    assert [o.frame for o in analyse(evs, "ha-cn").seen()] == [2]
    assert [o.frame for o in analyse(evs, "mn-cn").seen()] == [3]
    assert [o.frame for o in analyse(evs, "all").seen()] == [1, 2, 3]
    with pytest.raises(ValueError):
        AttackerAnalyzer("nowhere")


def test_report_shape_and_text():
    a = analyse([home_bu_esp(1, 1, COA1, HOA1, 0x1001, 1),
                 home_ba_esp(2, 1.1, COA1, HOA1, 0x2001, 1)])
    r = a.report()
    assert r["vantage"] == "all"
    [p] = r["profiles"]
    assert set(p) >= {"id", "care_of_addresses", "addresses", "correspondents", "frames",
                      "evidence"}
    assert p["care_of_addresses"] == [COA1] and p["addresses"] == [HOA1] and p["frames"] == [1, 2]
    assert {e["rule"] for e in p["evidence"]} == {"same-care-of-address", "same-home-address"}
    text = attacker_text({"attacker": r})
    assert "P1: 2 frames" in text and COA1 in text and "same-home-address" in text


# ---- real lab captures through real tshark -----------------------------------------------------

@pytest.fixture(scope="module")
def lab_runs(tmp_path_factory):
    """Every shipped scenario, generated once and dissected once (with and without keys)."""
    out = {}
    root = tmp_path_factory.mktemp("lab")
    for name in SCENARIOS:
        d = root / name
        ours = OURS / f"{name}.toml"
        run_scenario(load_scenario(str(ours) if ours.exists() else name), d)
        truth = json.loads((d / "truth.json").read_text())
        events = {}
        for keyed in (False, True):
            keyring = load_keyring(str(d / "keyring.toml")) if keyed else None
            grab = _Grab()
            EventStream(PcapSource(str(d / "capture.pcapng"), keyring=keyring), [grab]).run()
            events[keyed] = grab.events
        out[name] = (d, truth, events)
    return out


class _Grab:
    def __init__(self):
        self.events: list[PacketEvent] = []

    def packet(self, event):
        self.events.append(event)


def _attack(events, vantage="all"):
    a = AttackerAnalyzer(vantage)
    for e in events:
        a.packet(e)
    a.done()
    return a


@pytest.mark.parametrize("name", SCENARIOS)
def test_placement_matches_the_lab_paths(lab_runs, name):
    _, truth, events = lab_runs[name]
    evs = events[False]
    views = [visible(e) for e in evs]
    roles = learn_roles(views)
    wrong = [(e.frame, e.path, place(v, roles)) for e, v in zip(evs, views, strict=False)
             if place(v, roles) != truth["frames"][str(e.frame)]["path"]]
    assert wrong == []


@pytest.mark.parametrize("name", SCENARIOS)
def test_keys_do_not_change_what_the_attacker_learns(lab_runs, name):
    _, _, events = lab_runs[name]
    assert _attack(events[False]).report() == _attack(events[True]).report()


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_linking_rule_is_traced_to_frames_in_its_profile(lab_runs, name):
    d, truth, events = lab_runs[name]
    a = _attack(events[False])
    frames = {e.frame for e in events[False]}
    for p in a.report()["profiles"]:
        for ev in p["evidence"]:
            assert ev["frames"] and set(ev["frames"]) <= frames
            if ev["links"]:
                assert set(ev["frames"]) <= set(p["frames"])
    score = privacy_score(a, LabTruth.from_file(d / "truth.json"))
    assert score["link_precision"] in (None, 1.0), score


def test_baseline_attacker_at_all_links_everything(lab_runs):
    d, truth, events = lab_runs["baseline"]
    a = _attack(events[False])
    score = privacy_score(a, LabTruth.from_file(d / "truth.json"))
    assert score["link_precision"] == 1.0 and score["link_recall"] == 1.0
    assert score["care_of_tied"] == score["care_of_addresses"] > 0
    node_frames = {int(f) for f, x in truth["frames"].items() if x["node"]}
    profiles = [p for p in a.profiles() if set(p.frames) & node_frames]
    assert len(profiles) == len(truth["nodes"])
    home = {n["home_address"] for n in truth["nodes"].values()}
    assert all(set(p.addresses) & home for p in profiles)


@pytest.mark.parametrize("name", ["crowd", "baseline-crowd", "sequential-crowd", "demo"])
@pytest.mark.parametrize("vantage", ["mn-ha", "ha-cn", "mn-cn", "all"])
def test_several_nodes_are_never_merged(lab_runs, name, vantage):
    d, truth, events = lab_runs[name]
    a = _attack(events[False], vantage)
    score = privacy_score(a, LabTruth.from_file(d / "truth.json"))
    assert score["nodes_total"] >= 3
    assert score["link_precision"] == 1.0 or (score["link_precision"] is None
                                               and a.report()["packets_seen"] == 0)
    # pure profiles; what the attacker could not tell apart shows as an anonymity set
    assert all(n["anonymity_set_size"] is None or 1 <= n["anonymity_set_size"] <= 4
               for n in score["nodes"].values())


def test_ambiguous_profiles_show_their_anonymity_set(lab_runs):
    """sequential-crowd at mn-ha: four nodes' SPIs 16 apart and their ESP counters side by
    side, so no move can be followed: each profile could be any of the nodes' others, an
    anonymity set, not a merge."""
    d, truth, events = lab_runs["sequential-crowd"]
    a = _attack(events[False], "mn-ha")
    report = a.report()
    ids = {p["id"] for p in report["profiles"]}
    ambiguous = [p for p in report["profiles"] if p["anonymity_set"]["size"] > 1]
    assert ambiguous
    for p in ambiguous:
        anon = p["anonymity_set"]
        assert anon["entropy_bits"] > 0 and anon["size"] >= 1 + len(anon["could_be"]) > 1
        assert {c["profile"] for c in anon["could_be"]} <= ids - {p["id"]}
    score = privacy_score(a, LabTruth.from_file(d / "truth.json"))
    assert score["link_precision"] == 1.0 and score["anonymity_set_mean"] > 2
    text = attacker_text({"attacker": report})
    assert "could be P" in text and "anonymity set" in text


def test_crowd_at_all_is_followed_through_every_move(lab_runs):
    d, truth, events = lab_runs["crowd"]
    score = privacy_score(_attack(events[False]), LabTruth.from_file(d / "truth.json"))
    assert score["link_recall"] == 1.0 and score["followed_fraction"] == 1.0
    # concurrent HoTIs of two nodes: some timing evidence is ambiguous and must not link
    rules = {r["name"]: r for r in _attack(events[False]).report()["rules"]}
    assert rules["hoti-timing"]["fired"] > rules["hoti-timing"]["linking"]


# rule -> (a real capture where it must link, one where it must not link)
RULE_CAPTURES = {
    "same-care-of-address": ("baseline", "crowd@ha-cn"),
    "same-home-address": ("baseline", "home-tunnel@mn-cn"),
    "same-spi": ("baseline", "mn-initiated-rr"),
    "same-init-cookie": ("baseline", "home-tunnel"),
    "same-nonce-indices": ("baseline", "home-tunnel"),
    "same-interface-id": ("eui64-leak", "crowd"),          # crowd's care-of IIDs all differ
    "esp-sequence-continues": ("baseline", "crowd"),      # four nodes at once: ambiguous
    "bu-sequence-continues": ("baseline", "baseline-crowd"),   # four +1 sequences side by side
    "spi-increment": ("home-transport-ctr", "baseline"),   # draft 6.4 vs fixed SPIs
    "hoti-timing": ("baseline", "home-transport-ctr"),
    "forwarding-timing": ("demo", "baseline"),
}


@pytest.mark.parametrize("rule", sorted(RULE_CAPTURES))
def test_each_rule_on_real_captures(lab_runs, rule):
    fires, silent = RULE_CAPTURES[rule]
    for where, must in ((fires, True), (silent, False)):
        name, _, vantage = where.partition("@")
        d, truth, events = lab_runs[name]
        a = _attack(events[False], vantage or "all")
        linking = [e for e in a.evidence() if e.rule == rule and e.confidence >= a.threshold]
        assert bool(linking) == must, (where, linking[:3])
        for ev in linking:     # each linking piece of evidence points at one real node
            nodes = {truth["frames"][str(f)]["node"] for f in ev.frames}
            assert len(nodes) == 1 and None not in nodes, (ev, nodes)


# ---- robustness: any events, never an exception, always JSON ------------------------------------

_addr = st.sampled_from([HA, HOA1, CN, COA1, PHOA, "2001:db8:2::a1", "2001:db8:4::a1",
                         "fe80::1", "::", "not-an-address"])
_layer = st.builds(IPv6Layer, _addr, _addr,
                   home_address=st.none() | _addr, routing_home_address=st.none() | _addr,
                   pseudo_home_address=st.none() | _addr,
                   esp=st.none() | st.builds(Esp, st.integers(0, 2**32 - 1),
                                             st.integers(0, 2**32 - 1), st.booleans()))
_mh = st.none() | st.builds(MobilityMessage, st.integers(0, 9),
                            sequence=st.none() | st.integers(0, 65535),
                            flags=st.frozensets(st.sampled_from("AHLKP")),
                            cookie=st.none() | st.binary(min_size=8, max_size=8),
                            nonce_index=st.none() | st.integers(0, 65535),
                            home_nonce_index=st.none() | st.integers(0, 3),
                            care_of_nonce_index=st.none() | st.integers(0, 3),
                            alternate_care_of_address=st.none() | _addr)
_vantage = st.sampled_from(["all", "mn-ha", "ha-cn", "mn-cn"])


def _packets(min_layers: int = 0, max_size: int = 25, seconds: float = 100):
    """Any events: (layers, mobility message, time, length) each, numbered by _events."""
    return st.lists(st.tuples(st.lists(_layer, min_size=min_layers, max_size=3), _mh,
                              st.floats(0, seconds), st.integers(0, 2000)), max_size=max_size)


def _events(items) -> list[PacketEvent]:
    return [PacketEvent(frame=i + 1, time=t, length=n, layers=tuple(layers), mobility=mh)
            for i, (layers, mh, t, n) in enumerate(items)]


@settings(max_examples=60, deadline=None)
@given(_packets(), _vantage)
def test_any_events_give_a_report(items, vantage):
    events = _events(items)
    a = _attack(events, vantage)
    report = a.report()
    json.dumps(report)
    seen = {f for p in report["profiles"] for f in p["frames"]}
    assert seen == {o.frame for o in a.seen()}
    attacker_text(report)


@pytest.mark.parametrize("name", ["demo", "crowd"])
def test_asking_while_feeding_gives_the_batch_result(lab_runs, name):
    """Reports asked while feeding (every 17 packets, as a dashboard does) never change what the
    analyzer decides: at the end it equals one batch over the same packets, and every link a
    report showed on the way is still there (past its wait, a decision is final)."""
    _, _, events = lab_runs[name]
    live = AttackerAnalyzer("all")
    shown = set()
    for i, e in enumerate(events[False]):
        live.packet(e)
        if i % 17 == 0:
            shown |= _links(live.report())
    live.done()
    final = live.report()
    assert final == _attack(events[False]).report()
    assert shown <= _links(final)
    assert shown or name == "crowd"          # crowd lasts less than the placement wait


def _links(report: dict) -> set[tuple]:
    return {(e["rule"], tuple(e["frames"][:2])) for p in report["profiles"]
            for e in p["evidence"] if e["links"]}


def test_a_live_attacker_keeps_only_its_window(scenario_runs):
    """monitor.attacker max_packets (live capture): profiles hold the newest packets only,
    say so, and forget the rest."""
    from monitor.sources import PcapSource
    _, _, analysis, out = scenario_runs("demo")
    events = list(PcapSource(str(out / "capture.pcapng")).events())
    whole = AttackerAnalyzer("all")
    window = AttackerAnalyzer("all", max_packets=60)
    for e in events:
        whole.packet(e)
        window.packet(e)
    window.done()
    whole.done()
    report = window.report()
    assert report["window"] == 60 and report["forgotten"] > 0
    assert 60 <= report["packets_seen"] <= 66 < whole.report()["packets_seen"]
    newest = {e.frame for e in events[-report["packets_seen"] - 5:]}
    assert {f for p in report["profiles"] for f in p["frames"]} <= newest
    assert all(set(e["frames"]) & newest for p in report["profiles"] for e in p["evidence"])
    assert "window" not in whole.report()


def test_a_live_clock_places_and_decides_what_a_pause_left_waiting(tmp_path):
    """Live capture times are the wall clock: when the traffic pauses, `advance` to a time past
    the waits places every packet and makes every decision, as the end of a file would (what
    `live` and `serve` show when no packet comes)."""
    from lab.crowd import run_crowd
    from monitor.linking import PLACE_WAIT, WAIT
    run_crowd(tmp_path, nodes=6, spi="sequential", seed=3)
    events = list(PcapSource(str(tmp_path / "capture.pcapng")).events())
    live, ended = AttackerAnalyzer("mn-ha"), AttackerAnalyzer("mn-ha")
    for e in events:
        live.packet(e)
        ended.packet(e)
    ended.done()
    assert live.report()["waiting"] > 0           # the last packets wait for a next one
    live.advance(events[-1].time + 1.0)            # not yet past the waits
    assert live.report()["waiting"] > 0
    live.advance(events[-1].time + PLACE_WAIT + WAIT + 1.0)
    assert live.report()["waiting"] == 0
    assert live.report()["profiles"] == ended.report()["profiles"]


# ---- state bounded by what is distinct (issues 10, 12) ------------------------------------------

COA2 = "2001:db8:2:0:8f3e:11aa:5c2d:9b41"


def test_state_grows_with_what_is_distinct_not_with_repeats():
    """One node at two care-of addresses in turn, its Home BU / BA, correspondent BU and tunnel
    SPI repeated for two hours of capture: the identity groups keep a bounded sample and a count,
    the SPI and nonce-index indexes one entry per value and place, while the decisions stay."""
    from monitor.linking import FRAME_SAMPLE, NonceIndices, SameSpi, SameValue

    def round_(n, t, coa):
        f = 4 * n
        return [home_bu_esp(f + 1, t, coa, PHOA, 0x1001, n + 1),
                home_ba_esp(f + 2, t + 0.01, coa, PHOA, 0x2001, n + 1),
                event(f + 3, t + 0.02, layer(coa, CN, hao=HOA1), mh=bu(n + 1, cni=3, hni=5)),
                tunnel_up(f + 4, t + 0.03, coa, 0x1001, 10 * n + 1)]

    rounds = 1500
    events = [e for n in range(rounds) for e in round_(n, 5.0 * n, (COA1, COA2)[n // 10 % 2])]
    a = analyse(events)
    finders = {type(f): f for f in a._linker.finders}
    groups = [g for f in a._linker.finders if isinstance(f, SameValue) for g in f.groups.values()]
    assert groups and all(len(g.sample) <= FRAME_SAMPLE for g in groups)
    by_value = {e.detail: e for e in a.evidence() if e.rule == "same-home-address"}
    home = next(e for d, e in by_value.items() if PHOA in d)
    assert home.frame_count == 2 * rounds and len(home.frames) == FRAME_SAMPLE
    assert home.as_dict()["frame_count"] == 2 * rounds
    # the SPI and nonce-index indexes: an entry per value (place), not per packet or move
    assert len(finders[SameSpi]._order) <= 2
    assert len(finders[NonceIndices]._order) <= 4          # 2 indices x 2 places
    # and what they decide is still there: one profile, SPI 0x1001 taken up at each move
    assert len(a.profiles()) == 1
    moves = [e for e in a.evidence() if e.rule == "same-spi"]
    assert len(moves) >= rounds // 10 - 2


# ---- each observation to the finders that take its kind (issue 10) ------------------------------

def _unrouted(monkeypatch):
    """Every observation to every finder, as before the routing table."""
    from monitor.linking import Linker
    monkeypatch.setattr(Linker, "route", lambda self, kind: tuple(f.add for f in self.finders))


@pytest.mark.parametrize("vantage", ["all", "mn-ha", "ha-cn", "mn-cn"])
def test_routing_by_kind_decides_what_every_finder_would(lab_runs, vantage, monkeypatch):
    """A finder that does not take an observation's kind (Finder.takes) would have done nothing
    with it: on every shipped scenario and crowd, the report is the one of every observation
    handed to every finder."""
    routed = {name: _attack(events[False], vantage).report()
              for name, (_, _, events) in lab_runs.items()}
    _unrouted(monkeypatch)
    for name, (_, _, events) in lab_runs.items():
        assert _attack(events[False], vantage).report() == routed[name], name


@settings(max_examples=60, deadline=None)
@given(_packets(min_layers=1, max_size=30), _vantage)
def test_routing_by_kind_on_any_events(items, vantage):
    """The same on any events (any options, ESP or not, any mobility message)."""
    from monitor.linking import Linker
    events = _events(sorted(items, key=lambda x: x[2]))
    routed = _attack(events, vantage).report()
    route = Linker.route
    try:
        Linker.route = lambda self, kind: tuple(f.add for f in self.finders)
        assert _attack(events, vantage).report() == routed
    finally:
        Linker.route = route


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["union", "cached", "cached", "keep"]),
                          st.integers(0, 15), st.integers(0, 15)), max_size=120))
def test_union_find_cache_is_exact(steps):
    """UnionFind.cached answers what find() does after any unions and trims (its cache is
    emptied when a root it names is merged away), and never adds a frame."""
    from monitor.linking import UnionFind
    uf, plain = UnionFind(), {}

    def root(x):                    # a union-find without caching or compression
        while plain.get(x, x) != x:
            x = plain[x]
        return x

    for op, a, b in steps:
        if op == "union":
            uf.union(a, b)
            ra, rb = root(a), root(b)
            plain.setdefault(a, a), plain.setdefault(b, b)
            if ra != rb:
                plain[max(ra, rb)] = min(ra, rb)
        elif op == "cached":
            assert uf.cached(a) == root(a)
            assert (a in uf) == (a in plain)
        else:
            oldest = min(a, b) // 4
            uf.keep(oldest)
            groups: dict[int, list[int]] = {}
            for f in sorted(plain):
                groups.setdefault(root(f), []).append(f)
            plain = {}
            for members in groups.values():
                kept = [f for f in members if f >= oldest]
                for f in kept:
                    plain[f] = kept[0]
    assert all(uf.cached(f) == root(f) == uf.find(f) for f in plain)


def test_union_find_cache_forgets_a_merged_root():
    from monitor.linking import UnionFind
    uf = UnionFind()
    uf.union(5, 6)
    assert uf.cached(6) == 5
    uf.union(3, 5)
    assert uf.cached(6) == uf.find(6) == 3


def _profile_oracle(seen):
    """A profile's trail, addresses, correspondents and paths read packet by packet from its
    Seen list in (time, frame) order (what _build_profiles sums place by place)."""
    from collections import Counter
    stops, addresses, correspondents, paths = {}, {}, {}, Counter()
    for o in sorted(seen, key=lambda o: (o.time, o.frame)):
        paths[o.path] += 1
        if o.care_of:
            s = stops.setdefault(o.care_of, [o.time, o.time, o.frame, 0])
            s[1] = o.time
            s[3] += 1
        for a in o.homes:
            addresses.setdefault(a)
        if o.correspondent:
            correspondents.setdefault(o.correspondent)
    trail = [(a, *s) for a, s in sorted(stops.items(), key=lambda kv: (kv[1][0], kv[1][2]))]
    return trail, list(addresses), list(correspondents), dict(paths)


@settings(max_examples=80, deadline=None)
@given(_packets(min_layers=1, max_size=40, seconds=30), _vantage, st.booleans())
def test_profiles_sum_their_places_as_their_packets(items, vantage, in_order):
    """Each profile's trail, addresses, correspondents and paths, summed place by place, are
    what its packets say one by one, in (time, frame) order, whether or not the capture's
    times went back."""
    a = _attack(_events(sorted(items, key=lambda x: x[2]) if in_order else items), vantage)
    by_frame = {o.frame: o for o in a.seen()}
    for p in a.profiles():
        assert p.frames == sorted(p.frames)
        trail, addresses, correspondents, paths = _profile_oracle([by_frame[f]
                                                                   for f in p.frames])
        assert [(s.care_of_address, s.first_time, s.last_time, s.first_frame, s.frames)
                for s in p.trail] == trail
        assert (p.addresses, p.correspondents, p.paths) == (addresses, correspondents, paths)


_ITEM = st.tuples(st.floats(0, 1), st.text(max_size=8),
                  st.lists(st.integers(0, 10**6), max_size=40).map(tuple), st.booleans(),
                  st.integers(0, 100))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["same-spi", "hoti-timing"]), st.lists(_ITEM, min_size=1, max_size=6),
       st.floats(0, 1))
@example("same-spi", [(0.5, "d", tuple(range(40, 0, -1)), False, 3)], 0.5)  # the least unlisted
def test_an_evidence_summary_is_its_dicts_read(rule, items, threshold):
    """The scaled report sums one rule's items with Evidence.summary from the objects and
    summary_of from a detailed section's dicts (monitor.report.scaled): the same sums either
    way, whatever the frames (more than FRAME_SAMPLE, none, a sample of many), confidences
    and threshold."""
    from monitor.linking import Candidate, Evidence
    from monitor.report_attacker import summary_of
    evidence = [Evidence(rule, confidence, detail, frames, ambiguous, subject=frames[:1],
                         candidates=(Candidate(frames[:1], confidence, "w", True),)
                         if frames else (),
                         frame_count=len(frames) + extra if extra % 2 else 0)
                for confidence, detail, frames, ambiguous, extra in items]
    assert Evidence.summary(evidence, threshold) == summary_of(
        [e.as_dict(threshold) for e in evidence])


# ---- each head learnt from and placed once per state of the roles (issue 10) -------------------

def _alone(monkeypatch):
    """Each packet a head of its own (its frame in the key): learnt from, placed and observed on
    its own, as before heads."""
    import monitor.attacker
    monkeypatch.setattr(monitor.attacker, "HEAD", slice(0, None))


def _reports(events, vantage):
    a = _attack(events, vantage)
    return a.report(), a.seen(), a.roles()


@pytest.mark.parametrize("vantage", ["all", "mn-ha", "ha-cn", "mn-cn"])
def test_heads_place_what_every_packet_alone_would(lab_runs, vantage, monkeypatch):
    """The packets of one head (monitor.placement.HEAD) teach the roles once and are placed
    alike while the roles stay: on every shipped scenario and crowd, the same report, packets
    seen and roles (with why each home agent is one) as each packet learnt from and placed on
    its own."""
    by_head = {name: _reports(events[False], vantage)
               for name, (_, _, events) in lab_runs.items()}
    _alone(monkeypatch)
    for name, (_, _, events) in lab_runs.items():
        assert _reports(events[False], vantage) == by_head[name], name


@settings(max_examples=80, deadline=None)
@given(_packets(min_layers=1, max_size=40, seconds=30), _vantage)
def test_heads_place_what_every_packet_alone_would_on_any_events(items, vantage):
    """The same on any events (any options, tunnels, ESP or not, any mobility message, addresses
    that are home agents' and care-of addresses' at once)."""
    import monitor.attacker
    events = _events(sorted(items, key=lambda x: x[2]))
    by_head = _reports(events, vantage)
    head = monitor.attacker.HEAD
    try:
        monitor.attacker.HEAD = slice(0, None)
        assert _reports(events, vantage) == by_head
    finally:
        monitor.attacker.HEAD = head


def test_a_head_is_placed_again_once_the_roles_learn():
    """A flow placed before the roles knew its ends is placed anew after: its first packet
    with nothing known (other), its next once a Home BU showed the care-of address (mn-cn)."""
    data = [event(1, 0.0, layer(COA1, CN)), event(2, 11.0, layer(COA1, CN)),
            home_bu_esp(3, 12.0, COA1, PHOA, 0x1001, 1), event(4, 30.0, layer(HA, COA1))]
    a = _attack(data)
    assert [(o.frame, o.path) for o in a.seen()] == \
        [(1, "other"), (2, "mn-cn"), (3, "mn-ha"), (4, "mn-ha")]
    # and a flow that taught the roles nothing teaches them again once a home agent is known:
    # COA1's packets to HA, before and after HA is recognised, make COA1 a care-of address
    data = [event(1, 0.0, layer(COA1, HA)), event(2, 11.0, layer(COB1, CN)),
            home_bu_esp(3, 12.0, COB1, PHOA, 0x1001, 1), event(4, 13.0, layer(COA1, HA)),
            event(5, 14.0, layer(COA1, CN)), event(6, 40.0, layer(HA, COB1))]
    a = _attack(data)
    assert [(o.frame, o.path) for o in a.seen()] == \
        [(1, "other"), (2, "mn-cn"), (3, "mn-ha"), (4, "mn-ha"), (5, "mn-cn"), (6, "mn-ha")]


def test_roles_and_places_read_only_a_packets_head(lab_runs):
    """What the roles learn from a packet and where and between whom it is placed are read from
    its head alone (what monitor.attacker remembers per head): every View field that
    Roles.learn, learn_sides, place and observe.stem read, on every shipped scenario and crowd
    and on each shape of packet, is in HEAD."""
    from monitor.observe import stem
    from monitor.placement import HEAD, Roles, View

    read: set[str] = set()

    class Recording(View):
        __slots__ = ()

        def __getattribute__(self, name):
            if name in View._fields:
                read.add(name)
            return super().__getattribute__(name)

    pd = MobilePrefix(147, 9, ("2001:db8:1::/64",))
    shapes = [event(1, 1.0, layer(COA1, HA, hao=PHOA), mh=bu(7, home=True, hni=3, cni=4,
                                                             acoa=COB1)),
              PacketEvent(2, 1.1, 100, (layer(HA, COA1, rh2=HOA1),), prefix_discovery=pd),
              PacketEvent(3, 1.2, 100, (layer(COA1, HA),),
                          prefix_discovery=MobilePrefix(146, 9)),
              event(4, 1.3, layer(COA1, HA), layer(HOA1, CN, hao=PHOA), mh=hoti()),
              event(5, 1.4, layer(HA, COA1), layer(CN, HOA1, rh2=PHOA)),
              event(6, 1.5, layer(COA1, HA), layer(HOA1, CN, esp=(0x1001, 9))),
              event(7, 1.6, layer(HOA1, CN), mh=hoti()), event(8, 1.7, layer(CN, HOA1),
                                                               mh=hot(3)),
              event(9, 1.8, layer(COA1, CN), mh=coti()), event(10, 1.9, layer(CN, COA1),
                                                               mh=cot(4)),
              event(11, 2.0, layer(CN, COA1), mh=MobilityMessage(7, status=1,
                                                                 error_home_address=HOA1)),
              home_bu_esp(12, 2.1, COA1, PHOA, 0x1001, 1),
              home_ba_esp(13, 2.2, COA1, PHOA, 0x2001, 1)]
    runs = [events[False] for _, _, events in lab_runs.values()] + [shapes]
    for events in runs:
        views = [tuple.__new__(Recording, visible(e)) for e in events if e.layers]
        roles = Roles()
        for v in views:
            roles.learn(v)
            roles.learn_sides(v)
        for v in views:
            stem(v, place(v, roles), roles)
            for path in ("mn-ha", "mn-cn", "ha-cn"):
                stem(v, path, roles)
    # and the frame, in why a home agent is one, written when it is first recognised: never by
    # a packet whose head taught the roles before (the tests above compare Roles.reasons)
    assert read and read <= {"frame", *View._fields[HEAD]}, read - set(View._fields[HEAD])


# ---- fed a batch at a time (the report's attacker process, issue 10) ---------------------------

def _fed(events, vantage, cuts=None, window=None):
    """An analyzer fed `events` packet after packet (cuts None), or as the report's attacker
    process feeds it (packet_views, the plain tuples Forward sends, () for one it cannot
    read) cut into batches at `cuts`; its report, packets seen, roles, and every observation
    its linker was given, in order."""
    a = AttackerAnalyzer(vantage, max_packets=window)
    given_ = []
    add = a._linker.add

    def recording(obs):
        given_.append(obs)
        add(obs)

    a._linker.add = recording
    if cuts is None:
        for e in events:
            a.packet(e)
    else:
        wire = eavesdropped(events)
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            a.packet_views(wire[start:end])
    a.done()
    return a.report(), a.seen(), a.roles(), given_


@pytest.mark.parametrize("name", SCENARIOS)
def test_batches_place_and_observe_what_packet_after_packet_would(lab_runs, name):
    """Fed a batch at a time, what fell due is placed before a packet teaches the roles and
    otherwise once the batch is in: on every shipped scenario and crowd, at every vantage
    point, the same report, packets seen, roles, and observations given the linker in the
    same order, as packet after packet."""
    events = lab_runs[name][2][False]
    for vantage in ("all", "mn-ha", "ha-cn", "mn-cn"):
        one = _fed(events, vantage)
        assert one[0]["profiles"] or vantage != "all"
        for size in (512, 7):
            assert _fed(events, vantage, list(range(size, len(events), size))) == one, \
                (vantage, size)


@settings(max_examples=80, deadline=None)
@given(_packets(max_size=40, seconds=30), _vantage,
       st.lists(st.integers(0, 40), max_size=6), st.none() | st.integers(1, 12))
def test_batches_place_and_observe_what_packet_after_packet_would_on_any_events(
        items, vantage, cuts, window):
    """The same on any events cut anywhere (unreadable ones too, and a live window, which
    places and trims packet after packet)."""
    events = _events(sorted(items, key=lambda x: x[2]))
    cuts = sorted(c for c in cuts if c <= len(events))
    assert _fed(events, vantage, cuts, window) == _fed(events, vantage, None, window)
