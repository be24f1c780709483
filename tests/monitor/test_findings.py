"""Every finding kind of monitor.findings.FINDINGS: a must-fire / must-not-fire pair for each
place that reports it, on hand-built events with the PROFILE.md test-vector keyring; and the
findings table of docs/DESIGN.md, generated from the registry.

A kind without a pair fails `test_every_finding_has_a_pair`. The must-fire case lists every
finding the analyzer must make (kind and frame, in report order); the must-not-fire case is the
nearest clean exchange, and must make none at all. If docs/DESIGN.md is out of step:

    .venv/bin/python -m tests.monitor.test_findings --regenerate
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dissectors.events import Esp, IPv6Layer, MobilityMessage, PacketEvent
from dissectors.protocol import BA_REJECTED, MHType
from keys import formulas as f
from monitor.findings import (
    AUTHENTICATOR_INVALID,
    BA_ERROR_STATUS,
    BINDING_ERROR,
    ESP_AMBIGUOUS,
    FINDINGS,
    HOME_ADDRESS_IN_CLEAR,
    HOME_BU_RETRANSMITTED,
    HOME_BU_UNVERIFIED,
    KEYGEN_TOKEN_INVALID,
    MH_CHECKSUM_INVALID,
    MH_HEADER_LEN_SHORT,
    PSEUDO_HOME_ADDRESS_MISMATCH,
    PSEUDO_HOME_ADDRESS_NOT_ROUTABLE,
    PSEUDO_HOME_ADDRESS_REUSED,
    SEQUENCE_STEP,
    SPI_STEP,
    Finding,
    FindingLog,
    findings_markdown,
)
from monitor.keyed import KeyedAnalyzer
from tests.generated import GeneratedBlock
from tests.monitor.conftest import (
    CARE_OF_TOKEN,
    CN,
    COA,
    HA,
    HOA,
    HOME_TOKEN,
    KS,
    PHOA_41,
    PHOA_42,
    PHOA_CTR_7,
    PRIVACY_TOKEN,
    SECRETS,
    correspondent_bu,
    cot,
    data,
    event,
    feed,
    home_ba_transport,
    home_bu_transport,
    hot,
    hoti,
    make_keyring,
)

DESIGN_TABLE = GeneratedBlock(Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md",
                              "<!-- findings table: generated from monitor.findings.FINDINGS -->",
                              "<!-- end of findings table -->")

KPH = f.kph_from_ks(KS)
CN2 = "2001:db8:3::6"
FIRST_SPI = 0x1001


def phoa(i: int) -> str:
    """mn1's 5.2.1 pseudo home address under K_i (aes-ctr, the home agent's second prefix)."""
    return f.routable_pseudo_home_address(f.dynamic_key(KPH, i), HOA, "2001:db8:100::/64",
                                          "aes-ctr")


def home_exchanges(spis: list[int], first_seq: int = 1,
                   esp_node: str | None = "mn1") -> list[PacketEvent]:
    """Home BU + BA of mn1 per SPI, each with a fresh pseudo home address (i = ESP seq);
    `esp_node`: the node the keyed stage is certain owns the BUs' SA (None: not certain)."""
    evs = []
    for n, spi in enumerate(spis, start=1):
        evs += [home_bu_transport(2 * n - 1, phoa(n), seq=first_seq + n, esp_seq=n, spi=spi,
                                  esp_node=esp_node),
                home_ba_transport(2 * n, phoa(n), seq=first_seq + n)]
    return evs


def mobility(frame: int, mh_type: int, **fields: Any) -> PacketEvent:
    return event(frame, [IPv6Layer(HA, COA)], MobilityMessage(mh_type, True, **fields))


@dataclass(frozen=True)
class Case:
    events: list[PacketEvent]
    expect: list[tuple[Finding, int]]          # every finding, in report order
    keyring: dict[str, Any] = field(default_factory=dict)   # make_keyring(**keyring)
    says: str = ""                             # in the first expected finding's message


@dataclass(frozen=True)
class Pair:
    finding: Finding
    where: str                                 # which check reports it
    fires: Callable[[], Case]
    quiet: Callable[[], Case]

    @property
    def id(self) -> str:
        return f"{self.finding.kind}: {self.where}"


PAIRS: tuple[Pair, ...] = (
    Pair(AUTHENTICATOR_INVALID, "correspondent BU",
         lambda: Case([correspondent_bu(1, hao=HOA, authenticator=bytes(12))],
                      [(AUTHENTICATOR_INVALID, 1)], says="does not verify"),
         lambda: Case([correspondent_bu(1, hao=HOA)], [])),
    Pair(KEYGEN_TOKEN_INVALID, "HoT home keygen token",
         lambda: Case([hot(1, HOA, bytes(8))], [(KEYGEN_TOKEN_INVALID, 1)],
                      says="home keygen token"),
         lambda: Case([hot(1, HOA, HOME_TOKEN)], [])),
    Pair(KEYGEN_TOKEN_INVALID, "HoT privacy keygen token (draft 4.1)",
         lambda: Case([hot(1, HOA, HOME_TOKEN, privacy_token=bytes(8))],
                      [(KEYGEN_TOKEN_INVALID, 1)], says="privacy keygen token"),
         lambda: Case([hot(1, HOA, HOME_TOKEN, privacy_token=PRIVACY_TOKEN)], [])),
    Pair(KEYGEN_TOKEN_INVALID, "CoT care-of keygen token",
         lambda: Case([cot(1, bytes(8))], [(KEYGEN_TOKEN_INVALID, 1)],
                      says="care-of keygen token"),
         lambda: Case([cot(1, CARE_OF_TOKEN)], [])),
    Pair(HOME_BU_UNVERIFIED, "HAO not derived with the BU's i",
         lambda: Case([home_bu_transport(1, PHOA_CTR_7, esp_seq=8),
                       home_ba_transport(2, PHOA_CTR_7)], [(HOME_BU_UNVERIFIED, 1)]),
         lambda: Case([home_bu_transport(1, PHOA_CTR_7, esp_seq=7),
                       home_ba_transport(2, PHOA_CTR_7)], [])),
    Pair(PSEUDO_HOME_ADDRESS_MISMATCH, "option 0xFE under Kbm (4.2)",
         lambda: Case([correspondent_bu(1, src=HOA, option=PHOA_41, alt_coa=COA)],
                      [(PSEUDO_HOME_ADDRESS_MISMATCH, 1)]),
         lambda: Case([correspondent_bu(1, src=HOA, option=PHOA_42, alt_coa=COA)], [])),
    Pair(SEQUENCE_STEP, "correspondent BU sequence (draft 6.3)",
         lambda: Case([correspondent_bu(1, option=PHOA_41, seq=1000),
                       correspondent_bu(2, option=PHOA_41, seq=1001)], [(SEQUENCE_STEP, 2)],
                      says="expects 1075"),
         lambda: Case([correspondent_bu(1, option=PHOA_41, seq=1000),
                       correspondent_bu(2, option=PHOA_41, seq=1075)], [])),
    Pair(SPI_STEP, "Home BU SPI (draft 6.4)",
         lambda: Case(home_exchanges(f.spi_chain(KPH, FIRST_SPI, 2) + [0x1076]),
                      [(SPI_STEP, 5)], says="SPI 0x00001076 of mn1 after 0x00001075"),
         lambda: Case(home_exchanges(f.spi_chain(KPH, FIRST_SPI, 3)), [])),
    # the same SPIs off the chain, on an SA whose node the keyed stage is not certain of (in a
    # crowd the chains cross): no guess, no finding
    Pair(SPI_STEP, "only when the SA is certain",
         lambda: Case(home_exchanges([FIRST_SPI, 0x1075, 0x1076]), [(SPI_STEP, 5)],
                      says="after 0x00001075"),
         lambda: Case(home_exchanges([FIRST_SPI, 0x1075, 0x1076], esp_node=None), [])),
    Pair(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, "HoTI source (5.3.1)",
         lambda: Case([hoti(1, PHOA_42, tunnel_from=COA), hoti(2, PHOA_42)],
                      [(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, 1)], says="HoTI source"),
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       hoti(3, PHOA_CTR_7, tunnel_from=COA), hoti(4, PHOA_CTR_7)], [])),
    Pair(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, "Home BU HAO (5.2.1)",
         lambda: Case([home_bu_transport(1, PHOA_42), home_ba_transport(2, PHOA_42)],
                      [(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, 1), (HOME_BU_UNVERIFIED, 1)],
                      says="Home BU HAO"),
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7)], [])),
    Pair(PSEUDO_HOME_ADDRESS_REUSED, "in a later Home BU (draft 5.1.4)",
         # the same i twice (e.g. an SA reset): the same pseudo home address
         lambda: Case([home_bu_transport(1, phoa(1), seq=1, esp_seq=1),
                       home_ba_transport(2, phoa(1), seq=1),
                       home_bu_transport(3, phoa(1), seq=2, esp_seq=1, spi=0x1075),
                       home_ba_transport(4, phoa(1), seq=2)], [(PSEUDO_HOME_ADDRESS_REUSED, 3)]),
         lambda: Case(home_exchanges(f.spi_chain(KPH, FIRST_SPI, 2), first_seq=0), [])),
    Pair(PSEUDO_HOME_ADDRESS_REUSED, "with a second correspondent (draft 5.3.1)",
         lambda: Case([correspondent_bu(1, option=PHOA_41),
                       correspondent_bu(2, option=PHOA_41, dst=CN2)],
                      [(PSEUDO_HOME_ADDRESS_REUSED, 2)], says="already used with correspondent"),
         lambda: Case([correspondent_bu(1, option=PHOA_41),
                       correspondent_bu(2, option=PHOA_42, dst=CN2)], [])),
    Pair(HOME_ADDRESS_IN_CLEAR, "HoTI source toward a correspondent",
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       hoti(3, PHOA_CTR_7), hoti(4, HOA)], [(HOME_ADDRESS_IN_CLEAR, 4)],
                      says="HoTI source toward correspondent"),
         # a 4.1 HoTI (P flag) comes from the real home address by design
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       hoti(3, PHOA_CTR_7), hoti(4, HOA, privacy=True)], [])),
    Pair(HOME_ADDRESS_IN_CLEAR, "HAO toward a correspondent, before the pseudo use",
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       data(3, COA, CN, hao=HOA), data(4, COA, CN, hao=PHOA_CTR_7)],
                      [(HOME_ADDRESS_IN_CLEAR, 3)], says="HAO toward correspondent"),
         # the real address toward one correspondent, pseudo ones toward another: two scopes
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       data(3, COA, CN, hao=HOA), data(4, COA, CN2, hao=PHOA_CTR_7)], [])),
    Pair(HOME_ADDRESS_IN_CLEAR, "HAO toward the home agent",
         lambda: Case([home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
                       home_bu_transport(3, HOA, seq=11, esp_seq=8),
                       home_ba_transport(4, HOA, seq=11)], [(HOME_ADDRESS_IN_CLEAR, 3)],
                      says="HAO toward the home agent"),
         # a plain RFC 6275 node: its real home address every time
         lambda: Case([home_bu_transport(1, HOA), home_ba_transport(2, HOA),
                       home_bu_transport(3, HOA, seq=11, esp_seq=8),
                       home_ba_transport(4, HOA, seq=11)], [])),
    Pair(HOME_BU_RETRANSMITTED, "Home BU before the BA",
         lambda: Case([home_bu_transport(1, phoa(1), seq=1, esp_seq=1),
                       home_bu_transport(2, phoa(2), seq=2, esp_seq=2),
                       home_ba_transport(3, phoa(2), seq=2)], [(HOME_BU_RETRANSMITTED, 2)],
                      says="got no BA"),
         lambda: Case(home_exchanges(f.spi_chain(KPH, FIRST_SPI, 2), first_seq=0), [])),
    Pair(BA_ERROR_STATUS, "BA status >= 128",
         lambda: Case([home_bu_transport(1, PHOA_CTR_7),
                       home_ba_transport(2, PHOA_CTR_7, status=BA_REJECTED)],
                      [(BA_ERROR_STATUS, 2)], says=f"status {BA_REJECTED}"),
         lambda: Case([home_bu_transport(1, PHOA_CTR_7),
                       home_ba_transport(2, PHOA_CTR_7, status=BA_REJECTED - 1)], [])),
    Pair(BINDING_ERROR, "Binding Error message",
         lambda: Case([mobility(1, MHType.BE, status=2, error_home_address=HOA)],
                      [(BINDING_ERROR, 1)], says=f"status 2 for home address {HOA}"),
         lambda: Case([mobility(1, MHType.BRR)], [])),
    Pair(ESP_AMBIGUOUS, "null-authentication ESP two SAs open",
         lambda: Case([event(1, [IPv6Layer(COA, HA, esp=Esp(0x1001, 3, undecrypted="ambiguous",
                                                             payload=b"x" * 32))])],
                      [(ESP_AMBIGUOUS, 1)], says="SPI 0x00001001"),
         # one SA fits (decrypted), or none does: nothing to choose between
         lambda: Case([event(1, [IPv6Layer(COA, HA, esp=Esp(0x1001, 3, True))]),
                       event(2, [IPv6Layer(COA, HA, esp=Esp(0x1001, 4, undecrypted="unparsable",
                                                             payload=b"x" * 32))])], [])),
    Pair(MH_CHECKSUM_INVALID, "Mobility Header checksum",
         lambda: Case([event(1, [IPv6Layer(HA, COA)], MobilityMessage(MHType.BRR, False))],
                      [(MH_CHECKSUM_INVALID, 1)], says="checksum does not verify"),
         # a malformed message is counted as malformed, not read
         lambda: Case([event(1, [IPv6Layer(HA, COA)], MobilityMessage(MHType.BRR, True)),
                       event(2, [IPv6Layer(HA, COA)], MobilityMessage(MHType.BRR, False),
                             malformed="truncated")], [])),
    Pair(MH_HEADER_LEN_SHORT, "Header Len below the type's minimum",
         lambda: Case([short_header_len(home_bu_transport(1, PHOA_CTR_7))],
                      [(MH_HEADER_LEN_SHORT, 1)], says="Header Len below the BU's minimum"),
         lambda: Case([home_bu_transport(1, PHOA_CTR_7),
                       home_ba_transport(2, PHOA_CTR_7)], [])),
)


def short_header_len(ev: PacketEvent) -> PacketEvent:
    """The same message, as the walk reads it when its Header Len is below the minimum."""
    assert ev.mobility is not None
    return dataclasses.replace(ev, mobility=dataclasses.replace(ev.mobility,
                                                                header_len_short=True))


def test_a_header_len_below_the_minimum_discards_the_message():
    """RFC 6275 9.2: the H-flagged BU binds nothing."""
    clean = feed(KeyedAnalyzer(make_keyring()), [home_bu_transport(1, PHOA_CTR_7),
                                                 home_ba_transport(2, PHOA_CTR_7)])
    assert len(clean.report()["home_bindings"]) == 1
    short = feed(KeyedAnalyzer(make_keyring()),
                 [short_header_len(home_bu_transport(1, PHOA_CTR_7)),
                  home_ba_transport(2, PHOA_CTR_7)])
    assert short.report()["home_bindings"] == []


def _found(case: Case) -> list[dict[str, Any]]:
    analyzer = feed(KeyedAnalyzer(make_keyring(**case.keyring)), case.events)
    return analyzer.report()["findings"]


@pytest.mark.parametrize("finding", FINDINGS, ids=lambda x: x.kind)
def test_every_finding_has_a_pair(finding):
    assert any(p.finding is finding for p in PAIRS), \
        f"{finding.kind}: add a must-fire / must-not-fire Pair to PAIRS"


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.id)
def test_finding_fires(pair):
    case = pair.fires()
    assert pair.finding in {finding for finding, _ in case.expect}
    found = _found(case)
    assert [(x["kind"], x["frame"]) for x in found] == \
        [(finding.kind, frame) for finding, frame in case.expect]
    assert case.says in found[[x["kind"] for x in found].index(pair.finding.kind)]["message"]
    for secret in SECRETS:
        assert all(secret not in x["message"] for x in found)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.id)
def test_finding_does_not_fire(pair):
    case = pair.quiet()
    assert case.expect == [], "a must-not-fire case is clean traffic"
    assert _found(case) == []


def test_registry_is_one_row_per_kind():
    kinds = [x.kind for x in FINDINGS]
    assert len(kinds) == len(set(kinds))
    assert all(x.category in ("integrity", "privacy", "signalling") for x in FINDINGS)
    assert all(x.section.startswith(("RFC ", "draft ")) and x.meaning for x in FINDINGS)


# --- the arithmetic checks, over SPIs, sequence numbers and exchange counts of any size ------

@given(first=st.integers(256, 2**32 - 1), exchanges=st.integers(2, 6),
       off=st.integers(1, 2**32 - 1), at=st.integers(1, 5))
def test_spi_step_fires_only_off_the_chain(first, exchanges, off, at):
    """draft 6.4 from any SPI (the chain wraps at 2^32): the chain is clean; the first SPI off
    it is a finding at that Home BU (and the SPIs after it are off the chain too)."""
    at = min(at, exchanges - 1)
    chain = f.spi_chain(KPH, first, exchanges)
    assert _found(Case(home_exchanges(chain), [])) == []
    wrong = list(chain)
    wrong[at] = (chain[at] + off) % 2**32
    found = [(x["kind"], x["frame"]) for x in _found(Case(home_exchanges(wrong), []))]
    assert found[0] == ("spi-step", 2 * at + 1)
    assert {kind for kind, _ in found} == {"spi-step"}


@given(first=st.integers(0, 2**16 - 1), steps=st.integers(1, 5), off=st.integers(1, 255))
def test_sequence_step_fires_only_off_the_keyed_increment(first, steps, off):
    """draft 6.3 from any sequence number (mod 2^16): previous + First(8, HMAC) is clean;
    any other increment is a finding at that BU."""
    seqs = [first]
    for _ in range(steps):
        seqs.append(f.next_bu_sequence(seqs[-1], f.binding_management_key(HOME_TOKEN,
                                                                          CARE_OF_TOKEN), 1, 2))
    bus = [correspondent_bu(n + 1, option=PHOA_41, seq=s) for n, s in enumerate(seqs)]
    assert _found(Case(bus, [])) == []
    bus[-1] = correspondent_bu(len(seqs), option=PHOA_41, seq=(seqs[-1] + off) % 2**16)
    assert [(x["kind"], x["frame"]) for x in _found(Case(bus, []))] == \
        [("sequence-step", len(seqs))]


# --- docs/DESIGN.md's findings table is the registry's ----------------------------------------

def test_design_findings_table_is_generated_from_the_registry():
    assert DESIGN_TABLE.current() == findings_markdown(), \
        "docs/DESIGN.md's findings table is stale: run " \
        "`.venv/bin/python -m tests.monitor.test_findings --regenerate`"


def regenerate() -> None:
    DESIGN_TABLE.rewrite(findings_markdown())


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()


def test_a_message_made_from_a_template_reads_as_the_text_and_dedupes_alike():
    """A finding's message given as a template and its values is made when read, the same
    text as written out; entries count, index and slice as the dicts they stand for, bounded
    (a live view's History) or not."""
    for log in (FindingLog(), FindingLog(keep=2)):
        log.add(SPI_STEP, 7, "Home BU SPI {:#010x} after {} exchange(s)", 0x1001, 2)
        log.add(HOME_BU_RETRANSMITTED, 3, "no {} in a text given whole", dedupe="k")
        log.add(HOME_BU_RETRANSMITTED, 9, "seen again", dedupe="k")
        log.add(BA_ERROR_STATUS, 5, "status {} (seq {})", 129, None)
        first = {"kind": "spi-step", "frame": 7,
                 "message": "Home BU SPI 0x00001001 after 2 exchange(s)"}
        whole = {"kind": "home-bu-retransmitted", "frame": 3,
                 "message": "no {} in a text given whole"}
        last = {"kind": "ba-error-status", "frame": 5, "message": "status 129 (seq None)"}
        assert len(log.entries) == 3 and log.entries[-1] == last
        assert log.entries[1:] == [whole, last]
        if log.keep is None:
            assert list(log.entries) == [first, whole, last] and log.entries[0] == first
            assert log.by_frame() == [whole, last, first]
