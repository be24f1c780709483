"""keys.formulas' faster forms give what the plain ones gave (issue 10): an address's text
through inet_ntop, and the aes-ctr interface ID through one ECB block."""
import ipaddress

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import formulas

# 16-bit groups, zero often (runs of zero groups decide where "::" goes), 0xffff and small
# values at times (the ::ffff:0:0/96 and ::/96 IPv4 forms, which inet_ntop writes dotted)
GROUP = st.one_of(st.just(0), st.just(0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF))
ADDRESS = st.lists(GROUP, min_size=8, max_size=8).map(
    lambda groups: b"".join(g.to_bytes(2, "big") for g in groups))


@settings(max_examples=2000, deadline=None)
@given(ADDRESS)
def test_address_text_is_ipaddress_text(packed):
    assert formulas.address_text(packed) == str(ipaddress.IPv6Address(packed))


@pytest.mark.parametrize("text", ["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:1.2.3.4",
                                  "1::", "1:0:0:1::1", "2001:db8::1:0:0:1", "fe80::1:0:0:0",
                                  "0:0:1::", "::ffff", "2001:db8:0:0:1:0:0:1"])
def test_address_text_of_the_edge_cases(text):
    packed = ipaddress.IPv6Address(text).packed
    assert formulas.address_text(packed) == str(ipaddress.IPv6Address(packed))


def test_address_text_refuses_what_is_not_16_octets():
    with pytest.raises(ValueError):
        formulas.address_text(bytes(4))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=20), st.binary(min_size=8, max_size=8))
def test_the_ctr_interface_id_is_aes_ctr_with_a_zero_counter_block(ki, iid):
    keystream = Cipher(algorithms.AES(ki[:16]), modes.CTR(bytes(16))).encryptor().update(
        bytes(8))
    assert formulas._encrypt_iid(ki, iid, "aes-ctr") == bytes(
        a ^ b for a, b in zip(iid, keystream, strict=True))
