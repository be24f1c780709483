"""The procedure registry, `dissectors.procedures.PROCEDURES`, and everything that reads it.

Every row, end to end, on crowds it was not written for (node counts, seeds, SPI allocation,
what the keyring lists, ESP counters, home agents, lost BUs and returns home all vary): the lab
plays it (frames carry its id), and the keyed view recognises every Binding Update the row
sends as the row's form (must fire) and no Binding Update of another procedure as it (must not
fire: every BU of the crowd is checked against its own procedure); every frame of the row that
the monitor analyses is tied to the node that sent it. The docs' tables are generated from the
registry:

    .venv/bin/python -m tests.test_procedures --regenerate
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dissectors.procedures import BY_ID, PROCEDURES, Kind, of_kind
from keys.keyring import load_keyring
from lab.actors import HOME_PLAYS, SESSION_PLAYS
from lab.crowd import RO_FOR_HOME_BU, run_crowd
from lab.scenario import HOME_BU_MODES, SESSION_PROCEDURES
from monitor.keyed import KeyedAnalyzer
from monitor.sources import PcapSource
from monitor.stream import EventStream
from monitor.tables import markdown_table
from tests.generated import GeneratedBlock

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- procedures table: generated from dissectors.procedures.PROCEDURES -->"
END = "<!-- end of procedures table -->"
FORMS = KeyedAnalyzer.HOME_BU_FORMS + KeyedAnalyzer.CORRESPONDENT_BU_FORMS
BU = ("Home BU", "Home BU (lost)", "BU")


# --- the table and who reads it -----------------------------------------------------------------

def test_one_row_per_id_and_flags_only_where_they_mean_something():
    assert len(BY_ID) == len(PROCEDURES)
    for p in PROCEDURES:
        assert p.id and p.section and p.name and p.emits and p.recovers, p
        assert not p.routable_pseudo or p.kind is Kind.HOME, p
        assert not (p.needs_privacy_node or p.needs_routable_pseudo) \
            or p.kind is Kind.CORRESPONDENT, p
    assert all(p.binds for p in of_kind(Kind.HOME))


def test_the_scenario_offers_exactly_the_rows_of_each_kind():
    assert HOME_BU_MODES == tuple(p.id for p in of_kind(Kind.HOME))
    assert SESSION_PROCEDURES == tuple(p.id for p in of_kind(Kind.CORRESPONDENT))


def test_the_lab_plays_every_row():
    assert set(HOME_PLAYS) == set(HOME_BU_MODES)
    assert set(SESSION_PLAYS) == set(SESSION_PROCEDURES)
    for key, play in {**HOME_PLAYS, **SESSION_PLAYS}.items():
        assert play.procedure is BY_ID[key]
    for play in SESSION_PLAYS.values():
        assert (play.bu is None) == (not play.procedure.binds), play.procedure.id


def test_a_crowd_node_may_use_each_correspondent_row_with_some_home_row():
    offered = {ro for ros in RO_FOR_HOME_BU.values() for ro in ros}
    assert offered == set(SESSION_PROCEDURES)
    for home, ros in RO_FOR_HOME_BU.items():
        for ro in map(BY_ID.get, ros):
            assert ro.draft == BY_ID[home].draft
            assert BY_ID[home].routable_pseudo or not ro.needs_routable_pseudo


def test_the_keyed_view_has_one_form_per_binding_row():
    """Every row that ends in a binding names exactly one Binding Update form of its kind; a
    form names rows of one kind only."""
    named = [p for form in FORMS for p in form.procedures]
    assert sorted(p.id for p in named) == sorted(p.id for p in PROCEDURES if p.binds)
    for forms, kind in ((KeyedAnalyzer.HOME_BU_FORMS, Kind.HOME),
                        (KeyedAnalyzer.CORRESPONDENT_BU_FORMS, Kind.CORRESPONDENT)):
        assert all(p.kind is kind for form in forms for p in form.procedures)


# --- every row, end to end -------------------------------------------------------------------

def label(procedure: str) -> str:
    return next(form.label for form in FORMS if BY_ID[procedure] in form.procedures)


@dataclass
class Seen:
    """Addon: the frames the monitor analysed."""
    frames: set[int]

    def packet(self, event) -> None:
        self.frames.add(event.frame)


def crowd_plan(procedure: str) -> dict:
    p = BY_ID[procedure]
    if p.kind is Kind.HOME:
        return {"procedures": p.id}
    if p.kind is Kind.CORRESPONDENT:
        home = next(h for h, ros in RO_FOR_HOME_BU.items() if p.id in ros)
        return {"procedures": f"{home}+{p.id}"}
    return {"procedures": "mixed", "prefix_discovery": 1.0}


# two crowds per row, unlike each other and unlike the shipped scenarios
CROWDS = {
    "3 nodes, random SPIs": dict(nodes=3, seed=11, home_agents=2, spi="random",
                                 keyring="initial", lost_bu=0.3, return_home=0.5,
                                 moves_per_node=3),
    "4 nodes, sequential SPIs": dict(nodes=4, seed=29, spi="sequential", spi_step=4,
                                     keyring="every", sa_setup="staggered", iid="mixed",
                                     moves="burst", burst_size=2, moves_per_node=3),
}


def run(tmp_path: Path, **params):
    run_crowd(tmp_path, **params)
    truth = json.loads((tmp_path / "truth.json").read_text())
    keyring = load_keyring(tmp_path / "keyring.toml")
    keyed, seen = KeyedAnalyzer(keyring), Seen(set())
    EventStream(PcapSource(str(tmp_path / "capture.pcapng"), keyring=keyring),
                [keyed, seen]).run()
    return truth, keyed, seen.frames


def recognised(keyed: KeyedAnalyzer, frame: int) -> set[str]:
    """The forms the keyed view's notes name for a frame: "(4.2/5.3.2)" and the like."""
    labels = {form.label for form in FORMS}
    return set(re.findall(r"\(([^()]+)\)", " ".join(keyed.annotations(frame)))) & labels


def check_crowd(truth: dict, keyed: KeyedAnalyzer, seen: set[int], procedure: str | None):
    homes = {name: node["home_address"] for name, node in truth["nodes"].items()}
    nodes = keyed.frame_nodes()
    played = 0
    for number, frame in truth["frames"].items():
        n = int(number)
        if frame["what"] in BU:
            # every BU, whatever its procedure, as the form of its own procedure only
            assert recognised(keyed, n) == {label(frame["procedure"])}, (n, frame)
        if procedure is not None and frame["procedure"] == procedure:
            played += 1
            if n in seen:
                assert nodes.get(n) == homes[frame["node"]], (n, frame)
    return played


@pytest.mark.parametrize("crowd", CROWDS)
@pytest.mark.parametrize("procedure", [p.id for p in PROCEDURES])
def test_every_row_is_played_by_the_lab_and_recognised_by_the_keyed_view(tmp_path, procedure,
                                                                        crowd):
    truth, keyed, seen = run(tmp_path, **CROWDS[crowd], **crowd_plan(procedure))
    played = check_crowd(truth, keyed, seen, procedure)
    assert played, f"the lab played no frame of {procedure}"
    if BY_ID[procedure].binds:
        assert any(f["procedure"] == procedure and f["what"] in BU
                   for f in truth["frames"].values())


def test_mixed_procedures_in_one_crowd_are_told_apart(tmp_path):
    truth, keyed, seen = run(tmp_path, nodes=4, seed=5, procedures="mixed", spi="random",
                             prefix_discovery=0.5, moves_per_node=3)
    assert len({f["procedure"] for f in truth["frames"].values()}) >= 4
    check_crowd(truth, keyed, seen, None)


# --- the docs' tables -----------------------------------------------------------------------

def design_table() -> str:
    return markdown_table(
        ["id", "kind", "section", "what", "the lab emits", "the keyed view recovers the home "
         "address from"],
        [[f"`{p.id}`", p.kind.value, p.section, p.name, p.emits, p.recovers]
         for p in PROCEDURES])


def readme_table() -> str:
    fields = {Kind.HOME: "`home_bu`", Kind.CORRESPONDENT: "session `procedure`",
              Kind.OTHER: '`do = "prefix-discovery"`'}
    return markdown_table(["procedure", "scenario field", "section", "what"],
                          [[f"`{p.id}`", fields[p.kind], p.section, p.name]
                           for p in PROCEDURES])


DOCS = {GeneratedBlock(ROOT / "docs" / "DESIGN.md", BEGIN, END): design_table,
        GeneratedBlock(ROOT / "README.md", BEGIN, END): readme_table}


@pytest.mark.parametrize("block", DOCS, ids=lambda b: b.path.name)
def test_the_docs_procedure_tables_are_generated_from_the_registry(block):
    assert block.current() == DOCS[block](), \
        f"{block.path.name}'s procedures table is stale: run " \
        "`.venv/bin/python -m tests.test_procedures --regenerate`"


def regenerate() -> None:
    for block, table in DOCS.items():
        block.rewrite(table())


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()
