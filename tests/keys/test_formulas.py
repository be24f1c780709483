"""PROFILE.md test vectors, one test each."""
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import formulas as f

KCN = bytes(range(20))
HOME_NONCE = bytes.fromhex("1111111111111111")
CARE_OF_NONCE = bytes.fromhex("2222222222222222")
HOA, COA, CN = "2001:db8:1::100", "2001:db8:2::100", "2001:db8:3::5"
KS = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
OTHER_PREFIX = "2001:db8:100::/64"


@pytest.fixture
def tokens():
    return (f.home_keygen_token(KCN, HOA, HOME_NONCE),
            f.care_of_keygen_token(KCN, COA, CARE_OF_NONCE))


def test_keygen_tokens(tokens):
    assert tokens[0].hex() == "c71a754160cffb9a"
    assert tokens[1].hex() == "ad30f3dfdcfc2d09"


def test_kbm(tokens):
    assert f.binding_management_key(*tokens).hex() == "1bb66dda1addc2a096296a15cfd42e4bc0272552"


def test_privacy_keygen_token_and_kpm(tokens):
    ptoken = f.privacy_keygen_token(KCN, HOME_NONCE)
    assert ptoken.hex() == "d54fcc9022435730"
    assert f.privacy_management_key(ptoken, tokens[1]).hex() == \
        "a59d078eb5f5960a65dffa7d64a0f8889170e091"


def test_rr_pseudo_home_address_round_trip():
    kpm = bytes.fromhex("a59d078eb5f5960a65dffa7d64a0f8889170e091")
    phoa = f.rr_pseudo_home_address(kpm, COA, 1, 2, HOA)
    assert phoa == "9da1:3c1e:4a9b:45a8:c518:30e1:454d:5997"
    assert f.rr_home_address(kpm, COA, 1, 2, phoa) == HOA


def test_encrypted_pseudo_home_address_round_trip(tokens):
    kbm = f.binding_management_key(*tokens)
    phoa = f.encrypted_pseudo_home_address(kbm, HOA)
    assert phoa == "6fb9:5a83:dbf6:f0dc:753d:dbff:4984:6a93"
    assert f.decrypted_home_address(kbm, phoa) == HOA


def test_kph_and_dynamic_key():
    kph = f.kph_from_ks(KS)
    assert kph.hex() == "52d48edafa23e3a55ad89b57284194d989a2fada"
    assert f.dynamic_key(kph, 7).hex() == "86d66585fe5cfd5d5b479507b7ff5b8044985cb2"


@pytest.mark.parametrize("cipher,expected", [
    ("aes-ctr", "2001:db8:100:0:996a:8561:d196:5aec"),
    ("aes-ecb-trunc", "2001:db8:100:0:f61a:2828:dc85:e0a0"),
])
def test_routable_pseudo_home_address(cipher, expected):
    k7 = f.dynamic_key(f.kph_from_ks(KS), 7)
    assert f.routable_pseudo_home_address(k7, HOA, OTHER_PREFIX, cipher) == expected


def test_routable_pseudo_home_address_inverts_for_stream_cipher():
    k7 = f.dynamic_key(f.kph_from_ks(KS), 7)
    iid = f.routable_home_interface_id(k7, "2001:db8:100:0:996a:8561:d196:5aec")
    assert iid == f.address_bytes(HOA)[8:]


def test_bu_sequence_increment(tokens):
    kbm = f.binding_management_key(*tokens)
    assert f.bu_sequence_increment(kbm, 1, 2) == 75
    assert f.next_bu_sequence(1000, kbm, 1, 2) == 1075
    assert f.next_bu_sequence(65500, kbm, 1, 2) == (65500 + 75) % 65536


def test_spi_increment():
    kph = f.kph_from_ks(KS)
    assert f.spi_increment(kph, 0x1001) == 116
    assert f.next_spi(kph, 0x1001) == 0x1075
    assert f.spi_chain(kph, 0x1001, 3)[:2] == [0x1001, 0x1075]


def test_authenticator_depends_on_every_input(tokens):
    kbm = f.binding_management_key(*tokens)
    base = f.authenticator(kbm, COA, CN, b"\x3b\x03\x05\x00")
    assert len(base) == 12
    assert f.authenticator(kbm, COA, CN, b"\x3b\x03\x05\x01") != base
    assert f.authenticator(kbm, HOA, CN, b"\x3b\x03\x05\x00") != base


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=100), spi=st.integers(0, 2**32 - 1),
       home_index=st.integers(0, 65535), care_of_index=st.integers(0, 65535))
def test_one_shot_hmac_equals_an_hmac_object(key, spi, home_index, care_of_index):
    """The formulas' one-shot HMAC-SHA1 is the one an hmac object computes, for keys of every
    length (empty, under a block, over a block: hashed first, RFC 2104 2)."""
    def reference(data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha1).digest()

    assert f.kph_from_ks(key) == reference(b"\x00")
    assert f.dynamic_key(key, spi) == reference(spi.to_bytes(4, "big"))
    assert f.spi_increment(key, spi) == (reference(spi.to_bytes(4, "big"))[0] or 1)
    assert f.bu_sequence_increment(key, home_index, care_of_index) == (
        reference(home_index.to_bytes(2, "big") + care_of_index.to_bytes(2, "big"))[0] or 1)
    assert f.home_keygen_token(key, HOA, HOME_NONCE) == \
        reference(f.address_bytes(HOA) + HOME_NONCE + b"\x00")[:8]
    # the keys kept (Kcn's tokens) and the keys used once (Kbm, Kpm): the same HMAC
    assert f.care_of_keygen_token(key, COA, CARE_OF_NONCE) == \
        reference(f.address_bytes(COA) + CARE_OF_NONCE + b"\x01")[:8]
    assert f.privacy_keygen_token(key, HOME_NONCE) == \
        reference(bytes(16) + HOME_NONCE + b"\x02")[:8]
    mh_data = spi.to_bytes(4, "big") * 3
    assert f.authenticator(key, COA, CN, mh_data) == \
        reference(f.address_bytes(COA) + f.address_bytes(CN) + mh_data)[:12]
    assert f.rr_mask(key, COA, home_index, care_of_index) == reference(
        f.address_bytes(COA) + home_index.to_bytes(2, "big")
        + care_of_index.to_bytes(2, "big"))[:16]


def test_aes_block_is_one_block_of_aes_128_in_both_directions():
    """FIPS-197 C.1: the one-block AES the pseudo home addresses use (no finalize call), under
    the first 128 bits of a longer key (Kbm is 160), and its inverse."""
    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    sealed = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    assert f._aes_block(key + b"\xff" * 4, block) == sealed
    assert f._aes_block(key, sealed, decrypt=True) == block
