"""monitor.entries: what sensors publish round-trips, and what serve reads is checked."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.events import to_dict
from lab.run import build
from lab.scenario import load_scenario, shipped_scenarios
from monitor import entries
from monitor.entries import BadEntry, decode, decode_event, encode_event
from monitor.sources import PcapSource


@pytest.fixture(scope="module")
def lab_events(tmp_path_factory):
    """Every event of every shipped scenario, as the keyless dissector makes them."""
    from lab.run import write_output
    out = []
    for name in shipped_scenarios():
        directory = tmp_path_factory.mktemp(name)
        write_output(build(load_scenario(name)), directory)
        out += list(PcapSource(str(directory / "capture.pcapng")).events())
    return out


def fields(event_json: str, **over) -> dict[bytes, bytes]:
    base = {"s": "mn-ha", "r": "r1", "v": "mn-ha", "n": "1", "t": "1767225600.5",
            **entries.event_fields(event_json, b"\x01" * 16)}
    base.update(over)
    return {k.encode(): v.encode() if isinstance(v, str) else v for k, v in base.items()}


def test_every_lab_event_round_trips_and_shrinks(lab_events):
    assert len(lab_events) > 500
    full = compact = 0
    for event in lab_events:
        text = encode_event(event)
        assert decode_event(text) == event
        full += len(json.dumps(to_dict(event)))
        compact += len(text)
    assert compact < 0.7 * full


def test_an_event_entry_decodes(lab_events):
    entry = decode(fields(encode_event(lab_events[0])))
    assert (entry.kind, entry.sensor, entry.run, entry.vantage, entry.number) == \
        (entries.EVENT, "mn-ha", "r1", "mn-ha", 1)
    assert entry.event == lab_events[0] and entry.digest == b"\x01" * 16


def test_an_unknown_field_is_ignored(lab_events):
    """A newer sensor may add fields: the event decodes without them (dataclass defaults)."""
    data = json.loads(encode_event(lab_events[0]))
    data["from_a_newer_sensor"] = 1
    assert decode(fields(json.dumps(data))).event == lab_events[0]


def test_a_beat_decodes_with_its_status():
    status = {"state": "capturing", "read": 5, "published": 3, "bogus": "x", "dropped": -1}
    entry = decode({b"k": b"beat", b"s": b"a", b"r": b"r", b"v": b"all", b"n": b"2",
                    b"t": b"1.5", **{k.encode(): v.encode() for k, v in
                                     entries.beat_fields("beat", 12.5, status).items()}})
    assert entry.watermark == 12.5
    assert entry.status["state"] == "capturing" and entry.status["read"] == 5
    assert entry.status["dropped"] == 0 and "bogus" not in entry.status


BAD_EVENTS = {
    "not JSON": "{",
    "not an object": "[1]",
    "no layers": json.dumps({"frame": 1, "time": 1.0, "length": 10, "layers": []}),
    "a time that is not a number": json.dumps(
        {"frame": 1, "time": "x", "length": 10, "layers": [{"src": "::1", "dst": "::2"}]}),
    "NaN time": '{"frame":1,"time":NaN,"length":10,"layers":[{"src":"::1","dst":"::2"}]}',
    "a bool for an int": json.dumps(
        {"frame": True, "time": 1.0, "length": 10, "layers": [{"src": "::1", "dst": "::2"}]}),
    "a negative length": json.dumps(
        {"frame": 1, "time": 1.0, "length": -1, "layers": [{"src": "::1", "dst": "::2"}]}),
    "an address that is not one": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10, "layers": [{"src": "evil", "dst": "::2"}]}),
    "a type 2 routing address that is IPv4": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10,
         "layers": [{"src": "::1", "dst": "::2", "routing_home_address": "10.0.0.1"}]}),
    "a layer that is a string": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10, "layers": ["x"]}),
    "a mobility type that is text": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10, "layers": [{"src": "::1", "dst": "::2"}],
         "mobility": {"mh_type": "5"}}),
    "a cookie that is not hex": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10, "layers": [{"src": "::1", "dst": "::2"}],
         "mobility": {"mh_type": 1, "cookie": "zz"}}),
    "ESP a sensor claims to have decrypted": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10,
         "layers": [{"src": "::1", "dst": "::2",
                     "esp": {"spi": 4097, "sequence": 1, "decrypted": True}}],
         "mobility": {"mh_type": 5, "sequence": 1, "flags": ["H"], "lifetime": 400}}),
    "a prefix that is not one": json.dumps(
        {"frame": 1, "time": 1.0, "length": 10, "layers": [{"src": "::1", "dst": "::2"}],
         "prefix_discovery": {"icmp_type": 147, "identifier": 1, "prefixes": ["x/64"]}}),
}


@pytest.mark.parametrize("why", sorted(BAD_EVENTS))
def test_a_bad_event_is_one_bad_entry(why):
    with pytest.raises(BadEntry):
        decode(fields(BAD_EVENTS[why]))


BAD_FIELDS = {
    "unknown kind": {"k": "evil"},
    "unknown vantage": {"v": "everywhere"},
    "no sensor": {"s": ""},
    "entry number zero": {"n": "0"},
    "entry number not a number": {"n": "one"},
    "infinite send time": {"t": "inf"},
    "digest not hex": {"d": "xyz"},
    "not UTF-8": {"s": b"\xff\xfe"},
    "a value too long": {"e": "x" * (entries.MAX_VALUE + 1)},
}


@pytest.mark.parametrize("why", sorted(BAD_FIELDS))
def test_a_bad_field_is_one_bad_entry(why, lab_events):
    with pytest.raises(BadEntry):
        decode(fields(encode_event(lab_events[0]), **BAD_FIELDS[why]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_damage_is_a_bad_entry_or_a_well_typed_event(data):
    """Whatever a writer to the stream puts there, decode gives a well-typed entry or one
    BadEntry: never another exception an analyzer would meet."""
    text = json.dumps({"frame": 3, "time": 1767225600.25, "length": 120,
                       "layers": [{"src": "2001:db8:2::100", "dst": "2001:db8:1::1",
                                   "home_address": "2001:db8:1::100",
                                   "esp": {"spi": 4097, "sequence": 1, "decrypted": False}}],
                       "mobility": {"mh_type": 5, "sequence": 7, "flags": ["A", "H"],
                                    "lifetime": 400, "cookie": "0011"}})
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(max_size=8))
    damaged = text[:cut] + junk + text[cut + data.draw(st.integers(0, 4)):]
    try:
        entry = decode(fields(damaged))
    except BadEntry:
        return
    assert entry.event is not None and entry.event.layers
