"""Text rendering: the one table printer of mip6mon, and the keyed view's text tables.

- `text_table(headers, rows)`: cells padded to their column's widest, two spaces apart, a rule
  of dashes under the headers, trailing blanks stripped (`mip6mon report --format text`,
  `mip6mon compare`).
- `markdown_table(headers, rows)`: the same cells as a GitHub Markdown table (docs/compare.md,
  the findings table of docs/DESIGN.md).
- `titled_table(title, columns, rows)`: report rows (dicts) under their title and count, or
  "title: none"; `report_cell` says how a report value is written.
- `keyed_text(report)`: the keyed sections of a report (home and correspondent bindings,
  findings), each column declared once in `HOME_BINDING_COLUMNS`, ... below.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# (report field, column header), in the order printed
Columns = Sequence[tuple[str, str]]

HOME_BINDING_COLUMNS: Columns = (
    ("frame", "frame"), ("time", "time"), ("home_agent", "home agent"),
    ("home_address", "home address"), ("pseudo_home_address", "pseudo home address"),
    ("care_of_address", "care-of address"), ("sequence", "seq"), ("lifetime", "lifetime"))
CORRESPONDENT_BINDING_COLUMNS: Columns = (
    ("frame", "frame"), ("time", "time"), ("correspondent", "correspondent"),
    ("home_address", "home address"), ("pseudo_home_address", "pseudo home address"),
    ("care_of_address", "care-of address"), ("sequence", "seq"),
    ("authenticator_valid", "auth ok"))
FINDING_COLUMNS: Columns = (("frame", "frame"), ("kind", "kind"), ("message", "message"))


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns of text cells, headers first and a rule of dashes under them."""
    widths = [max(len(row[n]) for row in (headers, *rows)) for n in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table of text cells (no trailing newline)."""
    return "\n".join(["| " + " | ".join(headers) + " |", "| --- " * len(headers) + "|",
                      *("| " + " | ".join(row) + " |" for row in rows)])


def report_cell(value: object) -> str:
    """A report value in a text table: null as "-", times with microseconds."""
    if value is None:
        return "-"
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def titled_table(title: str, columns: Columns, rows: Sequence[dict[str, Any]]) -> str:
    """`title (count):` and the rows' `columns` as a text table, or `title: none`."""
    if not rows:
        return f"{title}: none"
    return f"{title} ({len(rows)}):\n" + text_table(
        [header for _, header in columns],
        [[report_cell(row.get(key)) for key, _ in columns] for row in rows])


def keyed_text(report: dict[str, Any]) -> str:
    """Readable tables of the keyed sections of a report (`mip6mon report --format text`)."""
    return "\n\n".join([
        titled_table("home bindings", HOME_BINDING_COLUMNS, report.get("home_bindings", [])),
        titled_table("correspondent bindings", CORRESPONDENT_BINDING_COLUMNS,
                     report.get("correspondent_bindings", [])),
        titled_table("findings", FINDING_COLUMNS, report.get("findings", []))])
