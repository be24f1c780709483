"""The procedures of RFC 6275 / RFC 3776 and the draft, declared once: `PROCEDURES`.

A procedure is one way a mobile node registers with its home agent, talks to a correspondent,
or asks for its home prefixes. Each row names it once, by the one spelling every other place
uses (a scenario's `home_bu` and session `procedure`, truth.json's per-frame "procedure", the
keyed view's notes), with its kind, the section that describes it, what the lab emits for it
and how the keyed view recovers the home address behind it. Who reads the table:

- `lab.scenario`: a node's `home_bu` is a home registration row, a session's `procedure` a
  correspondent row (the choices, and a node's default `privacy`);
- `lab.actors`: `HOME_PLAYS` and `SESSION_PLAYS` dispatch each row to the World methods that
  emit its packets; `lab.crowd`: which correspondent procedures a node may use;
- `monitor.keyed`: one recogniser per Binding Update form, named by the rows that send it;
- docs/DESIGN.md's procedure table and README's list (tests/test_procedures.py keeps them in
  step, and checks every row end to end: the lab plays it, the keyed view recognises it).

It lives here, below both the lab and the monitor, because both read it. A second wire profile
(RFC 5726) or PMIPv6 adds rows; it does not touch these.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a procedure is for; the scenario field that chooses it."""
    HOME = "home registration"        # draft 5.2: a node's Home BU (`home_bu`)
    CORRESPONDENT = "correspondent"   # draft 4, 5.3, 5.4: a session's `procedure`
    OTHER = "other"                   # draft 5.5: its own scenario action


@dataclass(frozen=True, slots=True)
class Procedure:
    id: str                   # the one spelling (scenario files, truth.json, keyed notes)
    kind: Kind
    section: str              # where RFC 6275 / RFC 3776 or the draft describes it
    name: str                 # what it is, in a few words
    emits: str                # what the lab sends for it (lab.actors plays it)
    recovers: str             # how the keyed view gets the real home address (monitor.keyed)
    draft: bool               # one of the draft's procedures (False: plain RFC 6275 / 3776)
    binds: bool = True        # it ends in a binding cache entry (5.4 and 5.5 do not)
    # home registration: each Home BU carries a routable pseudo home address (draft 5.1)
    routable_pseudo: bool = False
    # correspondent: only for a node with privacy = true (draft 6.3, 6.4 applied)
    needs_privacy_node: bool = False
    # correspondent: only for a node whose home registration gives routable pseudo addresses
    needs_routable_pseudo: bool = False


PROCEDURES: tuple[Procedure, ...] = (
    PLAIN_HOME := Procedure(
        "rfc3776", Kind.HOME, "RFC 3776 4.1, RFC 6275 11.7.1",
        "Home BU with the home address in the HAO, in ESP transport mode",
        "Home BU (HAO = home address) and BA (RH2 = home address) in ESP transport mode on "
        "MN-HA; at home, the de-registration (no HAO, Alternate CoA = home address, lifetime 0)",
        "the HAO (the source, at home) is a keyring home address: the real one",
        draft=False),
    HOME_TRANSPORT := Procedure(
        "5.2.1", Kind.HOME, "draft 5.2.1",
        "Home BU with a pseudo home address in the HAO, in ESP transport mode",
        "Home BU with HAO = prefix | E(Ki, IID), Ki = HMAC_SHA1(Kph, i), i = its ESP sequence "
        "number (or a counter), a new one per Home BU; the BA carries it in the RH2",
        "Ki from the keyring's Kph and i: aes-ctr decrypts the IID (the home prefix from the "
        "keyring), aes-ecb-trunc recomputes it from each keyring home address",
        draft=True, routable_pseudo=True),
    HOME_TUNNEL := Procedure(
        "5.2.2", Kind.HOME, "draft 5.2.2",
        "Home BU in the ESP tunnel, the pseudo home address derived by both ends",
        "Home BU and BA inside the MN-HA ESP tunnel (inner source = home address); no pseudo "
        "home address on the wire",
        "the inner source is the home address; the pseudo home address is derived as both ends "
        "do, with i = the outer ESP sequence number (or the counter)",
        draft=True, routable_pseudo=True),
    PLAIN_CORRESPONDENT := Procedure(
        "rfc6275", Kind.CORRESPONDENT, "RFC 6275 5.2.5, 6.1.7",
        "return routability and a BU with the home address in the HAO",
        "HoTI/HoT through the home agent (ESP tunnel on MN-HA, clear on HA-CN), CoTI/CoT "
        "direct, BU (HAO = home address) and BA (RH2) on MN-CN, route-optimised data",
        "the HAO (or the source) is a keyring home address; an address the keys do not "
        "explain stays a pseudo home address",
        draft=False),
    RR_PRIVACY := Procedure(
        "4.1", Kind.CORRESPONDENT, "draft 4.1",
        "return routability with the P flag; BU with option 0xFE = String XOR home address",
        "HoTI with the P flag, HoT with the privacy keygen token (option 18), BU from the "
        "care-of address with option 0xFE and no HAO (the plain RFC 6275 BU to a "
        "correspondent that ignores the P flag)",
        "Kpm from the privacy and care-of keygen tokens (HoT option 18, or Kcn and the home "
        "nonce); home address = String XOR option 0xFE",
        draft=True, needs_privacy_node=True),
    REVERSE_TUNNELLED_BU := Procedure(
        "4.2", Kind.CORRESPONDENT, "draft 4.2",
        "BU reverse-tunnelled through the home agent; option 0xFE = AES(Kbm, home address)",
        "return routability as RFC 6275; the BU from the home address with option 0xFE and "
        "the Alternate CoA, in the MN-HA tunnel, then in clear on HA-CN",
        "Kbm from the keygen tokens over the source; home address = AES-decrypt(Kbm, option "
        "0xFE), checked against the source",
        draft=True, needs_privacy_node=True),
    MN_INITIATED_RR := Procedure(
        "5.3.1", Kind.CORRESPONDENT, "draft 5.3.1",
        "return routability from a routable pseudo home address",
        "a Home BU registering a new pseudo home address first, the HoTI from it, the BU with "
        "it in the HAO, data with it in the HAO / RH2",
        "the home binding cache: the pseudo home address a Home BU registered",
        draft=True, needs_routable_pseudo=True),
    CN_INITIATED_RR := Procedure(
        "5.3.2", Kind.CORRESPONDENT, "draft 5.3.2",
        "correspondent-initiated: the BU reverse-tunnelled as in 4.2",
        "the correspondent's data to the home address, tunnelled on by the home agent, the "
        "answer reverse-tunnelled; then return routability and the BU as in 4.2",
        "as 4.2: the same BU on the wire",
        draft=True),
    REVERSE_TUNNELLING := Procedure(
        "5.4", Kind.CORRESPONDENT, "draft 5.4",
        "reverse tunnelling: no binding at the correspondent",
        "data MN -> HA in the ESP tunnel, HA -> CN in clear, and back the same way",
        "no BU: the tunnel's ESP SA ties its packets to the node",
        draft=True, binds=False),
    PREFIX_DISCOVERY := Procedure(
        "5.5", Kind.OTHER, "draft 5.5",
        "mobile prefix discovery",
        "MPS / MPA in ESP transport mode with the current pseudo home address in the HAO / "
        "RH2 (in the ESP tunnel for a 5.2.2 node)",
        "a HAO toward a home agent under ESP: a pseudo home address with Ki from the packet's "
        "own ESP sequence number",
        draft=True, binds=False),
)

BY_ID: dict[str, Procedure] = {p.id: p for p in PROCEDURES}


def of_kind(kind: Kind) -> tuple[Procedure, ...]:
    """The rows of one kind, in table order (the lab's choices and draws follow it)."""
    return tuple(p for p in PROCEDURES if p.kind is kind)


def ids(kind: Kind) -> tuple[str, ...]:
    return tuple(p.id for p in of_kind(kind))
