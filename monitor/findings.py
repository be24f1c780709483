"""What the keyed view finds, declared once: `FINDINGS`, one `Finding` row per kind.

A finding says that one frame goes against RFC 6275 or the draft, as far as the keys can tell.
In a report it is `{"kind", "frame", "message"}`; the message says what was seen and never holds
key material. Each row names its kind, its category, the RFC or draft section it checks, and what
it means:

- `integrity`: a value the keys (or the header itself) can check does not verify: forged,
  corrupted, or made with other keys than the keyring's
- `privacy`: one of the draft's countermeasures is not applied as it says, so an eavesdropper
  can link or locate the node
- `signalling`: an exchange did not go through (rejected, lost, answered with an error)

`monitor.keyed` reports a finding by naming its row (`log.add(SPI_STEP, frame, message)`);
the table in docs/DESIGN.md is `findings_markdown()` (tests/monitor/test_findings.py keeps it in
step, and holds a must-fire / must-not-fire pair for every row).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from monitor.history import History
from monitor.tables import markdown_table

Category = Literal["integrity", "privacy", "signalling"]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str                   # the report's "kind"
    category: Category
    section: str                # where RFC 6275 or the draft says what is checked
    meaning: str                # when the keyed view reports it

    def entry(self, frame: int, message: str) -> dict[str, Any]:
        """The report's form of one occurrence."""
        return {"kind": self.kind, "frame": frame, "message": message}


FINDINGS: tuple[Finding, ...] = (
    AUTHENTICATOR_INVALID := Finding(
        "authenticator-invalid", "integrity", "RFC 6275 9.5.1",
        "a correspondent BU's Authenticator does not verify with the Kbm the keys give"),
    KEYGEN_TOKEN_INVALID := Finding(
        "keygen-token-invalid", "integrity", "RFC 6275 5.2.5, draft 4.1",
        "a HoT/CoT keygen token or a privacy keygen token differs from the one Kcn and the "
        "nonce give"),
    HOME_BU_UNVERIFIED := Finding(
        "home-bu-unverified", "integrity", "draft 5.2.1",
        "a Home BU's home address field is neither the node's home address nor a pseudo home "
        "address Kph derives (the home agent rejects it)"),
    PSEUDO_HOME_ADDRESS_MISMATCH := Finding(
        "pseudo-home-address-mismatch", "integrity", "draft 4.2, 5.3.2",
        "AES-decrypting option 0xFE with Kbm does not give the BU's source home address"),
    SEQUENCE_STEP := Finding(
        "sequence-step", "privacy", "draft 6.3",
        "a correspondent BU of a node that uses pseudo home addresses whose sequence number "
        "is not previous + First(8, HMAC_SHA1(Kbm, its nonce indices)) (not checked across an "
        "expired binding)"),
    SPI_STEP := Finding(
        "spi-step", "privacy", "draft 6.4",
        "a Home BU's SPI is not the SPI of that SA's previous Home BU advanced by next_spi once "
        "per acknowledged exchange since (a plain node may keep its SPI); checked only on SAs "
        "whose node is certain (the keyring names it, or its chain reached a verified SPI)"),
    PSEUDO_HOME_ADDRESS_NOT_ROUTABLE := Finding(
        "pseudo-home-address-not-routable", "signalling", "draft 5.1.1, 5.1.3",
        "a HoTI source (5.3.1) or a Home BU's HAO (5.2.1) under no home agent prefix"),
    PSEUDO_HOME_ADDRESS_REUSED := Finding(
        "pseudo-home-address-reused", "privacy", "draft 5.1.4, 5.3.1",
        "a pseudo home address used again in a later Home BU, or with a second correspondent"),
    HOME_ADDRESS_IN_CLEAR := Finding(
        "home-address-in-clear", "privacy", "draft 6.2.1, 6.2.3",
        "a HAO or a HoTI source carries a node's real home address toward a peer (its home "
        "agent, or one correspondent) to which it otherwise sends pseudo home addresses "
        "(4.1 HoTIs, from the real address by design, excepted)"),
    HOME_BU_RETRANSMITTED := Finding(
        "home-bu-retransmitted", "signalling", "RFC 6275 11.8",
        "a node sent another Home BU before a BA acknowledged the previous one (that one is "
        "no binding)"),
    BA_ERROR_STATUS := Finding(
        "ba-error-status", "signalling", "RFC 6275 6.1.8",
        "a Binding Acknowledgement with status >= 128"),
    BINDING_ERROR := Finding(
        "binding-error", "signalling", "RFC 6275 6.1.9", "a Binding Error message"),
    ESP_AMBIGUOUS := Finding(
        "esp-ambiguous", "integrity", "RFC 4303 3.4.4, draft 6.4",
        "an ESP packet under null authentication (no ICV to decide) that more than one keyring "
        "SA opens to a payload that parses: left encrypted and tied to no node, since "
        "picking one would be a guess"),
    MH_CHECKSUM_INVALID := Finding(
        "mh-checksum-invalid", "integrity", "RFC 6275 9.2",
        "a Mobility Header whose checksum does not verify (a receiver discards it; the monitor "
        "still reads it and says so)"),
    MH_HEADER_LEN_SHORT := Finding(
        "mh-header-len-short", "integrity", "RFC 6275 9.2",
        "a Mobility Header whose Header Len is below its type's minimum (an H-flagged BU with "
        "Header Len 0): a receiver discards it silently, so the keyed view does too"),
)


class FindingLog:
    """The findings of one analysis, in the order they were made (a live view reads what is
    new at the end); `dedupe` keys say "this was reported already" for checks that see the
    same fault again (a retransmitted BU, a HoT forwarded on two paths).

    A message is text, or a `str.format` template and its values (`add(KIND, frame, "{} after
    {}", a, b)`): the text is made when the finding is read (`entries`, `by_frame`), not when
    it is found. A check that fires for every Home BU of a capture (a retransmission, a reused
    pseudo home address) costs a tuple, not a text and a dict each; a report shows only the
    first FINDINGS_SHOWN of each kind (monitor.report), a live view the newest."""

    __slots__ = ("_made", "_reported", "keep")

    def __init__(self, keep: int | None = None) -> None:
        # (finding, frame, message or template, template's values or None), in order made
        self._made: list[tuple[Finding, int, str, tuple[Any, ...] | None]] = \
            [] if keep is None else History(keep)  # type: ignore[assignment]
        self._reported: set[Hashable] = set()
        # a live capture's bound (monitor.history): the newest `keep` findings; None keeps all
        self.keep = keep

    def add(self, finding: Finding, frame: int, message: str, *values: Any,
            dedupe: Hashable | None = None) -> None:
        if dedupe is not None:
            if dedupe in self._reported:
                return
            self._reported.add(dedupe)
        self._made.append((finding, frame, message, values or None))

    @property
    def entries(self) -> FindingEntries:
        """Every finding in the order made, each as the report's dict (made when read);
        positions and `len` count every finding ever made, as History's do."""
        return FindingEntries(self._made)

    def by_frame(self) -> list[dict[str, Any]]:
        """The report's order: by frame, and in the order made within one frame."""
        return [_entry(made) for made in sorted(self._made, key=_frame_of)]


def _frame_of(made: tuple[Finding, int, str, tuple[Any, ...] | None]) -> int:
    return made[1]


def _entry(made: tuple[Finding, int, str, tuple[Any, ...] | None]) -> dict[str, Any]:
    finding, frame, message, values = made
    return finding.entry(frame, message if values is None else message.format(*values))


class FindingEntries(Sequence[dict[str, Any]]):
    """A FindingLog's findings as the report's dicts, each made when it is read."""

    __slots__ = ("_made",)

    def __init__(self, made: Any) -> None:
        self._made = made

    def __len__(self) -> int:
        return len(self._made)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [_entry(made) for made in self._made[index]]
        return _entry(self._made[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(_entry, self._made)


def findings_markdown() -> str:
    """The findings table of docs/DESIGN.md, generated from `FINDINGS`."""
    return markdown_table(["kind", "category", "section", "meaning"],
                          [[f"`{f.kind}`", f.category, f.section, f.meaning] for f in FINDINGS])
