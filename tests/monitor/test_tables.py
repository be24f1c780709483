"""monitor.tables: the one text table printer and the Markdown one, on cells of any width."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.tables import markdown_table, report_cell, text_table, titled_table

CELL = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12)


@st.composite
def grids(draw):
    width = draw(st.integers(1, 5))
    headers = draw(st.lists(CELL.filter(bool), min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELL, min_size=width, max_size=width), max_size=6))
    return headers, rows


@given(grids())
def test_text_table_aligns_every_column(grid):
    headers, rows = grid
    lines = text_table(headers, rows).split("\n")
    assert len(lines) == len(rows) + 2
    widths = [max(len(r[n]) for r in (headers, *rows)) for n in range(len(headers))]
    assert lines[1] == "  ".join("-" * w for w in widths)
    for line, cells in zip([lines[0], *lines[2:]], [headers, *rows], strict=True):
        assert line == line.rstrip()
        start = 0
        for cell, w in zip(cells, widths, strict=True):
            # every cell starts where its column starts, whatever the cells before it
            assert line[start:start + len(cell)] == cell
            start += w + 2


@given(grids())
def test_markdown_table_has_one_row_per_line(grid):
    headers, rows = grid
    lines = markdown_table(headers, rows).split("\n")
    assert lines[0] == "| " + " | ".join(headers) + " |"
    assert lines[1] == "| --- " * len(headers) + "|"
    assert [ln.count(" | ") for ln in lines[2:]] == [len(headers) - 1] * len(rows)


def test_titled_table_writes_report_values():
    assert titled_table("findings", [("frame", "frame")], []) == "findings: none"
    text = titled_table("rows", [("a", "a"), ("t", "time"), ("ok", "ok")],
                        [{"a": None, "t": 1001.5, "ok": True}, {"a": "x", "t": 2.0, "ok": None}])
    assert text.splitlines() == ["rows (2):", "a  time         ok", "-  -----------  ----",
                                 "-  1001.500000  True", "x  2.000000     -"]
    assert report_cell(0) == "0" and report_cell(0.0) == "0.000000"
