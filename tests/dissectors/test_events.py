import json

from dissectors.events import (Esp, IPv6Layer, MobilityMessage, PacketEvent, Transport,
                               from_dict, to_dict)


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
