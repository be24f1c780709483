"""The lab's ESP, octet for octet against scapy's IPsec (an independent implementation of
RFC 4303 with AES-CBC and HMAC-SHA1-96), and opened again by the tests' own reader."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation

from lab import packets as P
from tests.lab import wire

HOA, COA, HA, CN = "2001:db8:1::100", "2001:db8:2::7", "2001:db8:1::1", "2001:db8:3::5"

bu = P.BindingUpdate(17, 105, P.BU_FLAG_A | P.BU_FLAG_H, alternate_care_of=COA)
# every shape the lab protects: HAO before ESP, RH2 before ESP, nothing before ESP, and tunnels
SHAPES = {
    "hao": lambda: P.ipv6(COA, HA, P.NH_DSTOPT, P.destination_options(
        [P.home_address_option(HOA)], P.NH_MH) + P.binding_update_mh(bu, HOA, HA)),
    "rh2": lambda: P.ipv6(HA, COA, P.NH_ROUTING, P.type2_routing_header(HOA, P.NH_MH)
                          + P.binding_ack_mh(0, 17, 105, HA, HOA)),
    "plain": lambda: P.ipv6(HOA, HA, P.NH_MH, P.binding_update_mh(bu, HOA, HA)),
    "udp": lambda: P.plain_data(HOA, CN, 45000, 45001, b"x" * 37),
}

sa_keys = st.tuples(st.integers(256, (1 << 32) - 1), st.integers(1, (1 << 32) - 1),
                    st.binary(min_size=16, max_size=16), st.binary(min_size=20, max_size=20),
                    st.binary(min_size=16, max_size=16))


def scapy_protect(packet, spi, seq, enc, auth, iv, tunnel=None, hop_limit=64):
    header = IPv6(src=tunnel[0], dst=tunnel[1], hlim=hop_limit) if tunnel else None
    sa = SecurityAssociation(ESP, spi=spi, seq_num=seq, crypt_algo="AES-CBC", crypt_key=enc,
                             auth_algo="HMAC-SHA1-96", auth_key=auth, tunnel_header=header)
    return bytes(sa.encrypt(IPv6(packet), iv=iv))


@settings(max_examples=60, deadline=None)
@given(sa_keys, st.sampled_from(sorted(SHAPES)), st.booleans(), st.integers(1, 255))
def test_same_octets_as_scapy(keys, shape, tunnel, hop_limit):
    spi, seq, enc, auth, iv = keys
    packet = SHAPES[shape]()
    outer = (COA, HA) if tunnel else None
    sa = P.EspSa(spi, enc, auth, seq=seq)
    ours = sa.protect(packet, iv, outer, hop_limit)
    assert ours == scapy_protect(packet, spi, seq, enc, auth, iv, outer, hop_limit)
    assert sa.seq == seq + 1 and sa.spis_used == [spi]
    levels = wire.parse(ours, {spi: (enc, auth)})
    assert levels[0].esp == (spi, seq) and levels[0].esp_padding_ok
    if tunnel:
        assert levels[0].hop_limit == hop_limit and levels[1].src == IPv6(packet).src
    assert levels[-1].payload == wire.parse(packet, {})[-1].payload


@given(st.integers(0, 40))
def test_payload_lengths_pad_to_the_block(extra):
    sa = P.EspSa(0x1001, bytes(16), bytes(20))
    packet = P.plain_data(HOA, CN, 1, 2, b"y" * extra)
    out = sa.protect(packet, bytes(16))
    esp = out[40:]
    assert (len(esp) - 8 - 16 - 12) % 16 == 0          # SPI, seq, IV, ciphertext, ICV
    assert int.from_bytes(out[4:6], "big") == len(out) - 40
