"""The dashboard's panes, declared once: `PANES`, one `Pane` row per pane.

The page builds every pane from its first snapshot, which carries this table (`layout()`):
index.html holds only the panels the panes go in, and web/static/app.js holds one builder per
`kind` and one writer per column `format`, plus the code of the panes that need their own
(a plot, the profile selection). The server reads the same rows: how many entries each
snapshot carries (web.session) and the binding caches' CSV columns (web.app).

Adding a pane: a row here (its feed a section of the snapshot web.session sends, or a new one
it sends), and, if no kind or format fits, the builder or writer in app.js (docs/DESIGN.md,
"Adding things"). tests/web/test_panes.py holds the table against the page's kinds and
formats and a real snapshot, and checks in Chromium that the page builds what it declares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

# How the page draws a pane (app.js PANE_KINDS) and writes a column's values (app.js FORMATS,
# and LIST_FORMATS for the packet list)
Kind = Literal["packets", "table", "list", "kpis", "plot", "trail"]
KINDS: tuple[str, ...] = get_args(Kind)
FORMATS: tuple[str, ...] = ("text", "node", "auth", "list", "count", "evidence", "could_be",
                             "number")
LIST_FORMATS: tuple[str, ...] = ("text", "reltime", "class", "info")
PANELS: tuple[str, ...] = ("packets", "keyed", "attacker")      # index.html's sections


@dataclass(frozen=True)
class Column:
    key: str                     # the entry's field (a report field, a web.view.Row key)
    heading: str
    format: str = "text"         # FORMATS (LIST_FORMATS in the packet list)
    width: int | None = None     # packet list: characters (0: the rest of the line)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "heading": self.heading, "format": self.format}
        if self.width is not None:
            out["width"] = self.width
        return out


@dataclass(frozen=True)
class Pane:
    id: str                      # element ids: "{id}-{kind}", "{id}-count", "{id}-note"
    title: str                   # its heading ("": none)
    panel: str                   # PANELS: the section of the page it goes in
    kind: Kind
    feed: tuple[str, ...]        # where its entries are in a snapshot ("rows": the row events)
    columns: tuple[Column, ...] = ()
    rows: int = 0                # the newest entries it keeps (a plot: per node)
    total: tuple[str, ...] = ()  # where the count of all its entries is in a snapshot
    whole: bool = False          # a snapshot carries its whole list when it changed (else: news)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "panel": self.panel, "kind": self.kind,
                "feed": list(self.feed), "columns": [c.as_dict() for c in self.columns],
                "rows": self.rows, "total": list(self.total), "whole": self.whole}


PANES: tuple[Pane, ...] = (
    PACKETS := Pane(
        "packets", "Packets", "packets", "packets", ("rows",), rows=200_000, columns=(
            # No. fits 8 digits and Time a day in seconds (86400.000000) before they are cut
            Column("n", "No.", width=9), Column("t", "Time", "reltime", 14),
            Column("src", "Source", width=22), Column("dst", "Destination", width=22),
            Column("proc", "Procedure", "class", 17), Column("msg", "Msg", width=7),
            Column("path", "Path", width=7), Column("len", "Len", width=6),
            Column("info", "Info", "info", 0))),
    HOME_BINDINGS := Pane(
        "home", "Home agent binding cache", "keyed", "table", ("keyed", "home_bindings"),
        rows=50, total=("keyed", "home_total"), columns=(
            Column("home_agent", "Home agent"), Column("home_address", "Home address", "node"),
            Column("pseudo_home_address", "Pseudo HoA"),
            Column("care_of_address", "Care-of address"), Column("sequence", "Seq"),
            Column("lifetime", "Life"), Column("frame", "Frame"))),
    CORRESPONDENT_BINDINGS := Pane(
        "cn", "Correspondent binding caches", "keyed", "table",
        ("keyed", "correspondent_bindings"), rows=50, total=("keyed", "correspondent_total"),
        columns=(
            Column("correspondent", "Correspondent"),
            Column("home_address", "Home address", "node"),
            Column("pseudo_home_address", "Pseudo HoA"),
            Column("care_of_address", "Care-of address"), Column("sequence", "Seq"),
            Column("authenticator_valid", "Auth", "auth"), Column("frame", "Frame"))),
    CARE_OF_TRAILS := Pane(
        "coa", "Care-of addresses over time", "keyed", "plot", ("trails",), rows=200),
    FINDINGS := Pane(
        "findings", "Findings", "keyed", "list", ("keyed", "findings"), rows=50,
        total=("keyed", "findings_total"),
        # a line per finding: the first column, then "key=value" for the others
        columns=(Column("kind", "Kind"), Column("frame", "Frame"),
                 Column("message", "Message"))),
    PRIVACY := Pane(
        "privacy", "", "attacker", "kpis", ("privacy",), whole=True, columns=(
            Column("link_precision", "link precision", "number"),
            Column("link_recall", "link recall", "number"),
            Column("followed_fraction", "trail followed", "number"),
            Column("care_of_tied_fraction", "CoAs tied to node", "number"),
            Column("home_address_exposed", "HoA exposed", "number"),
            Column("anonymity_set_mean", "anonymity set", "number"),
            Column("entropy_bits_mean", "entropy (bits)", "number"),
            Column("profiles", "profiles", "number"),
            Column("frames_scored", "frames scored", "number"))),
    PROFILES := Pane(
        "profile", "Profiles", "attacker", "table", ("attacker", "profiles"), rows=100,
        total=("attacker", "profiles_total"), whole=True, columns=(
            Column("id", "Profile"),
            Column("care_of_addresses", "Care-of addresses", "list"),
            Column("addresses", "Addresses", "list"),
            Column("correspondents", "Correspondents", "list"),
            Column("frames", "Frames", "count"), Column("evidence", "Evidence", "evidence"),
            # the anonymity set: the profiles it could not be told apart from (issue 9)
            Column("anonymity_set", "Could be", "could_be"))),
    PROFILE_TRAIL := Pane(
        "trail", "Trail", "attacker", "trail", ("attacker", "profiles"), whole=True),
    LINKAGE := Pane(
        "link", "Linkage graph", "attacker", "plot", ("attacker", "profiles"), whole=True),
)

BY_ID: dict[str, Pane] = {pane.id: pane for pane in PANES}


def layout() -> list[dict[str, Any]]:
    """What the page's first snapshot carries to build its panes."""
    return [pane.as_dict() for pane in PANES]


def fed_by(section: str) -> tuple[Pane, ...]:
    """The panes a snapshot section feeds ("keyed", "attacker", ...)."""
    return tuple(pane for pane in PANES if pane.feed[0] == section)


def side_by_side(*panes: Pane) -> list[str]:
    """The panes' column keys, position by position, each once: the binding caches' CSV has
    the home agent's and the correspondent's columns side by side, as the two panes show
    them."""
    keys: list[str] = []
    for position in range(max(len(pane.columns) for pane in panes)):
        for pane in panes:
            if position < len(pane.columns) and pane.columns[position].key not in keys:
                keys.append(pane.columns[position].key)
    return keys
