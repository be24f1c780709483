import json

from dissectors.events import (
    Esp,
    IPv6Layer,
    MobilityMessage,
    PacketEvent,
    Transport,
    from_dict,
    to_dict,
)


def test_event_round_trips_through_json():
    event = PacketEvent(
        frame=3, time=1.5, length=120,
        layers=(IPv6Layer("2001:db8:2::100", "2001:db8:1::1", home_address="2001:db8:100::1",
                          esp=Esp(0x1001, 7, True)),),
        mobility=MobilityMessage(5, sequence=9, flags=frozenset({"A", "H"}), lifetime=400,
                                 authenticator=b"\x01" * 12, home_nonce_index=1),
        transport=Transport("udp", 1, 2, "<script>"), path="mn-ha")
    again = from_dict(json.loads(json.dumps(to_dict(event))))
    assert again == event
    assert again.mobility.name == "BU"
    assert again.esp_headers() == (Esp(0x1001, 7, True),)


def test_events_pickle_by_position_and_come_back_equal():
    """Events cross process boundaries in the dashboard (dissector -> analyzers -> attacker
    worker); they pickle as (class, values) and must come back equal, nested parts too."""
    import pickle

    from dissectors.events import (
        Esp,
        IPv6Layer,
        MobilePrefix,
        MobilityMessage,
        PacketEvent,
        Transport,
    )
    event = PacketEvent(
        frame=7, time=1.5, length=120,
        layers=(IPv6Layer("2001:db8:2::101", "2001:db8:1::1", esp=Esp(0x1076, 7, True)),
                IPv6Layer("2001:db8:1::100", "2001:db8:3::5", home_address="2001:db8:1::100")),
        mobility=MobilityMessage(5, True, 10, frozenset({"A", "H"}), 420, cookie=b"\x01" * 8),
        prefix_discovery=MobilePrefix(147, 3, ("2001:db8:1::/64",)),
        transport=Transport("udp", 1, 2, "<script>"), path="mn-ha", info="x", malformed=None)
    again = pickle.loads(pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == event and again.layers[0].esp.spi == 0x1076
    assert type(event).__reduce__(event)[1][0] == 7          # by position, not a state dict


def test_esp_as_the_dissector_leaves_it_round_trips_bundles_and_reasons_included():
    """What a sensor publishes (issue 14): ESP still encrypted, its octets and why it stayed
    so; an SA bundle (ESP inside ESP) nests."""
    import pickle

    from dissectors.events import Esp, IPv6Layer, PacketEvent, from_dict, to_dict
    inner = Esp(0x2002, 9, False, b"\x00\x01ciphertext", False, "icv-failed")
    outer = Esp(0x1001, 8, True, b"", False, None, "mn1", inner)
    event = PacketEvent(frame=4, time=2.5, length=200, layers=(
        IPv6Layer("2001:db8:2::1", "2001:db8:1::1", esp=outer),))
    again = from_dict(json.loads(json.dumps(to_dict(event))))
    assert again == event == pickle.loads(pickle.dumps(event))
    assert again.esp_headers() == (outer, inner)
    assert again.layers[0].esp.bundled.payload == b"\x00\x01ciphertext"


def test_event_classes_stay_frozen_dataclasses_with_their_constructor():
    """Their `__new__` fills a twin with the same slots and makes it an instance of the class
    (faster, dissectors.events); every class keeps the dataclass's parameters and defaults,
    fills each field from its argument (by position and by name), makes an instance of
    itself, refuses assignment, hashes and compares by value, pickles, and works with
    dataclasses.replace."""
    import dataclasses
    import inspect
    import pickle

    import pytest

    from dissectors.events import _TYPES

    for cls in _TYPES.values():
        fields = dataclasses.fields(cls)
        assert dataclasses.is_dataclass(cls)
        params = list(inspect.signature(cls).parameters.values())
        assert [p.name for p in params] == [f.name for f in fields]
        assert [p.default for p in params] == [
            inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            for f in fields]
        values = [object() for _ in fields]         # a distinct value per field
        for made in (cls(*values), cls(**{f.name: v for f, v in zip(fields, values, strict=True)})):
            assert type(made) is cls
            assert [getattr(made, f.name) for f in fields] == values
            for f in fields:
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(made, f.name, 1)
            assert made == cls(*values) and hash(made) == hash(cls(*values))
            assert made != cls(*values[:-1], object())
        numbers = cls(*range(len(fields)))
        assert pickle.loads(pickle.dumps(numbers)) == numbers
        required = [f for f in fields if f.default is dataclasses.MISSING]
        bare = cls(*values[:len(required)])
        assert [getattr(bare, f.name) for f in fields[len(required):]] == \
            [f.default for f in fields[len(required):]]
        last = fields[-1].name
        assert getattr(dataclasses.replace(bare, **{last: values[-1]}), last) is values[-1]
    with pytest.raises(TypeError):
        PacketEvent(1)                               # type: ignore[call-arg]
