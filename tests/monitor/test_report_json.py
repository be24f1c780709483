"""`mip6mon report --format json` writes exactly what json.dumps(indent=2) would (issue 10: the
keyed process's JSON in C a container at a time, monitor.report.json_chunks)."""
import collections
import enum
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import report as report_module
from monitor.report import json_chunks, json_item_text, write_json

# strings that look like the separators json_chunks rewrites between records, and escapes
TEXT = st.text(alphabet=st.sampled_from(list('ab}{[],: \n"\\') + ["\u00e9", "\u2028", "\x00"]),
               max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), TEXT)
KEYS = st.one_of(TEXT, st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(),
                 st.none())
RECORD = st.dictionaries(TEXT, SCALARS, min_size=1, max_size=4)
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(RECORD, max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_same_text_as_json_dumps(value):
    assert "".join(json_chunks(value)) == json.dumps(value, indent=2)


@settings(max_examples=50, deadline=None)
@given(st.lists(RECORD, min_size=1, max_size=40), st.integers(1, 7))
def test_records_split_across_encoder_calls_read_as_one_list(records, at_once):
    report_module.RECORDS_AT_ONCE, before = at_once, report_module.RECORDS_AT_ONCE
    try:
        assert "".join(json_chunks({"r": records})) == json.dumps({"r": records}, indent=2)
    finally:
        report_module.RECORDS_AT_ONCE = before


def test_write_json_ends_with_a_newline_and_writes_in_pieces():
    value = {"bindings": [{"frame": n, "time": n / 3} for n in range(10_000)]}
    out = io.StringIO()
    write_json(value, out)
    assert out.getvalue() == json.dumps(value, indent=2) + "\n"


@pytest.mark.parametrize("value", [{"a": object()}, [1, {2}], {(1, 2): 3}, [{"a": b"x"}]])
def test_what_json_cannot_encode_fails_as_json_fails(value):
    with pytest.raises(TypeError):
        json.dumps(value, indent=2)
    with pytest.raises(TypeError):
        "".join(json_chunks(value))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(TEXT, VALUES, max_size=5), st.data())
def test_items_encoded_ahead_write_the_same_text(value, data):
    # ReportPrinter.prepare: the keyed sections' text made while the attacker's process
    # finishes; an item replaced since (another object) is encoded anew, never the old text
    ahead = data.draw(st.lists(st.sampled_from(sorted(value)), unique=True) if value
                      else st.just([]))
    encoded = {key: (value[key], json_item_text(value[key])) for key in ahead}
    replaced = data.draw(st.sampled_from(ahead)) if ahead else None
    if replaced is not None:
        value[replaced] = [value[replaced]]
    out = io.StringIO()
    write_json(value, out, encoded)
    assert out.getvalue() == json.dumps(value, indent=2) + "\n"


class _Kind(enum.IntEnum):
    BU = 5


class _Name(str):
    pass


@pytest.mark.parametrize("value", [
    [{"type": _Kind.BU, "name": _Name("x")}, {"type": 1}],       # scalars of subclasses
    [collections.OrderedDict(a=1), {"b": 2.5}],                  # a record of a dict subclass
    [{"a": 1}, {}],                                              # an empty record
    [{"a": 1}, {"b": [1, 2]}],                                   # a record not flat
    [{"a": 1}, [1]],                                             # not a record
    {"k": _Kind.BU, "n": None, "s": _Name("y")},
])
def test_records_and_flat_containers_of_other_types_read_as_json_dumps(value):
    """The exact-type check in C (_flat, _flat_records) falls back to isinstance: what is not
    a dict or a scalar of json's own types is written as json.dumps writes it."""
    assert "".join(json_chunks({"r": value})) == json.dumps({"r": value}, indent=2)
