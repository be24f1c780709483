"""ESP opened in Python (dissectors.esp): the RFCs' known answers, every algorithm of the
keyring in transport and tunnel mode against real tshark decrypting the same packets."""
from __future__ import annotations

import hmac
import subprocess

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ESP, MIP6MH_BU, UDP, IPv6, Raw
from scapy.layers.ipsec import SecurityAssociation

from dissectors import esp
from dissectors.esp import EspTransform, Opened, Plaintext
from dissectors.espsa import TsharkConfig
from keys import keyring as kr
from keys.keyring import EspSa, Secret, parse_keyring
from monitor.sources import PcapSource
from tests.dissectors import builders as b


def transform(encryption: str, key: str = "", authentication: str = "null",
              auth_key: str = "") -> EspTransform:
    return EspTransform(EspSa(0x100, "*", "*", encryption, Secret(bytes.fromhex(key)),
                              authentication, Secret(bytes.fromhex(auth_key))))


def test_the_algorithms_are_the_keyrings():
    assert tuple(esp.ENCRYPTION) == kr.ESP_ENCRYPTIONS
    assert tuple(esp.INTEGRITY) == kr.ESP_AUTHENTICATIONS


# --- known answers ----------------------------------------------------------------------------

def test_rfc3602_case_5_transport_mode_esp_packet():
    """RFC 3602 4, case #5: a whole ESP packet (ICMP echo), AES-CBC, no authentication; its
    padding is the RFC 4303 2.4 default (1, 2, ... 14)."""
    t = transform("aes-cbc", "90d382b410eeba7ad938c46cec1a82bf")
    header = bytes.fromhex("0000432100000001")
    payload = bytes.fromhex(
        "e96e8c08ab465763fd098d45dd3ff893"                                    # IV
        "f663c25d325c18c6a9453e194e120849a4870b66cc6b9965330013b4898dc856"
        "a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c538ab50c551b874a"
        "a269add047ad2d5913ac19b7cfbad4a6")
    opened = t.open(header, payload)
    assert isinstance(opened, Plaintext)
    assert opened.next_header == 1 and opened.default_padding
    assert opened.data == bytes.fromhex(
        "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f1011121314151617"
        "18191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637")


@pytest.mark.parametrize("key, plaintext, ciphertext", [
    # RFC 3602 4, cases #1 and #2 (raw AES-CBC)
    ("06a9214036b8a15b512e03d534120006" "3dafba429d9eb430b422da802c9fac41",
     b"Single block msg".hex(), "e353779c1079aeb82708942dbe77181a"),
    ("c286696d887c9aa0611bbb3e2025a45a" "562e17996d093d28ddb3ba695a2e6f58",
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"),
])
def test_rfc3602_aes_cbc(key, plaintext, ciphertext):
    t = transform("aes-cbc", key[:32])
    assert t.decrypt(b"", bytes.fromhex(key[32:] + ciphertext)) == bytes.fromhex(plaintext)


@pytest.mark.parametrize("key, nonce, iv, plaintext, ciphertext", [
    # RFC 3686 6, test vectors #1 and #3 (AES-CTR; the keyring key is the AES key | nonce)
    ("ae6852f8121067cc4bf7a5765577f39e", "00000030", "0000000000000000",
     b"Single block msg".hex(), "e4095d4fb7a7b3792d6175a3261311b8"),
    ("7691be035e5020a8ac6e618529f9a0dc", "00e0017b", "27777f3f4a1786f0",
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223",
     "c1cf48a89f2ffdd9cf4652e9efdb72d74540a42bde6d7836d59a5ceaaef3105325b2072f"),
])
def test_rfc3686_aes_ctr(key, nonce, iv, plaintext, ciphertext):
    t = transform("aes-ctr", key + nonce)
    assert t.decrypt(b"", bytes.fromhex(iv + ciphertext)) == bytes.fromhex(plaintext)


def test_rfc4106_aes_gcm_esp_packet():
    """draft-mcgrew-gcm-test-01 4, packet with a 256-bit key and a 32-bit sequence number
    (the RFC 4106 layout: nonce = salt | IV, AAD = SPI | sequence number, 16-octet tag)."""
    t = transform("aes-gcm-16", "abbccddef00112233445566778899aab"
                                "abbccddef00112233445566778899aab" "11223344")
    header = bytes.fromhex("4a2cbfe300000002")
    payload = bytes.fromhex(
        "0102030405060708"                                                    # IV
        "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
        "748a637985771d347f0545659f14e99def842d8eb335f4eecfdbf831824b4c49"
        "15956c96")
    assert t.decrypt(header, payload) == bytes.fromhex(
        "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
        "7002400020bf0000020405b40101040201020201")
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    assert t.open(header, tampered) is Opened.ICV_FAILED


@pytest.mark.parametrize("algorithm, key, icv", [
    # RFC 2404 3 (HMAC-SHA-1-96 test case 1); RFC 4868 2.7.2.1 (AUTH256-1)
    ("hmac-sha1-96", "0b" * 20, "b617318655057264e28bc0b6"),
    ("hmac-sha256-128", "0b" * 32, "198a607eb44bfbc69903a0f1cf2bbdc5"),
])
def test_integrity_known_answers(algorithm, key, icv):
    t = transform("null", "", algorithm, key)
    data = b"Hi There"                    # the ICV covers header and payload alike
    assert t.icv_ok(data[:8], bytes.fromhex(icv)) is True
    assert t.icv_ok(data[:8], bytes.fromhex(icv)[:-1] + b"\x00") is False


def test_trailer_rules():
    t = transform("null")
    assert t.open(b"\x00" * 8, b"abcd" + b"\x01\x02" + b"\x02\x29") == \
        Plaintext(0x29, b"abcd", True)
    assert t.open(b"\x00" * 8, b"abcd" + b"\x07\x09" + b"\x02\x29").default_padding is False
    assert t.open(b"\x00" * 8, b"\x00\x00\x09\x29") is Opened.BAD_TRAILER
    assert t.open(b"\x00" * 8, b"\x29") is Opened.SHORT
    cbc = transform("aes-cbc", "00" * 16)
    assert cbc.open(b"\x00" * 8, bytes(16 + 17)) is Opened.SHORT      # not whole blocks


def test_no_key_in_a_transform_repr():
    t = transform("aes-cbc", "11" * 16, "hmac-sha1-96", "22" * 20)
    assert "11" * 8 not in repr(t) and "22" * 8 not in repr(t)


# --- every algorithm, transport and tunnel mode, against tshark -------------------------------

SCAPY_NAMES = {"null": "NULL", "aes-cbc": "AES-CBC", "aes-ctr": "AES-CTR",
               "aes-gcm-16": "AES-GCM", "hmac-sha1-96": "HMAC-SHA1-96",
               "hmac-sha256-128": "SHA2-256-128"}
KEYS = {"null": "", "aes-cbc": "22" * 16, "aes-ctr": "33" * 20, "aes-gcm-16": "44" * 36,
        "hmac-sha1-96": "55" * 20, "hmac-sha256-128": "66" * 32}
COMBINATIONS = [(enc, auth) for enc in ("null", "aes-cbc", "aes-ctr", "aes-gcm-16")
                for auth in ("null", "hmac-sha1-96", "hmac-sha256-128")
                if not (enc == "aes-gcm-16" and auth != "null")]   # RFC 4303 3.2.3: combined


def _packets():
    """One packet per algorithm pair and mode, with the octets ESP protected in it."""
    packets, sas, protected = [], [], []
    for n, (enc, auth) in enumerate(COMBINATIONS):
        for tunnel in (False, True):
            spi = 0x3000 + 2 * n + tunnel
            sa = SecurityAssociation(
                ESP, spi=spi, crypt_algo=SCAPY_NAMES[enc],
                crypt_key=bytes.fromhex(KEYS[enc]) or None, auth_algo=SCAPY_NAMES[auth],
                auth_key=bytes.fromhex(KEYS[auth]) or None,
                tunnel_header=IPv6(src=b.COA, dst=b.HA) if tunnel else None)
            if tunnel:
                inner = IPv6(src=b.HOA, dst=b.HA) / MIP6MH_BU(seq=spi & 0xFF, flags="AH")
            else:
                inner = IPv6(src=b.COA, dst=b.HA) / b.hao(b.PHOA) / UDP(sport=5, dport=spi) \
                    / Raw(b"payload %d" % n)
            packets.append(sa.encrypt(IPv6(bytes(inner)), seq_num=n + 1))
            # tunnel mode protects the whole inner packet; transport what follows the HAO
            protected.append(bytes(inner) if tunnel else bytes(inner)[40 + 24:])
            entry = {"spi": hex(spi), "src": "*", "dst": "*", "encryption": enc,
                     "authentication": auth}
            if KEYS[enc]:
                entry["encryption_key"] = KEYS[enc]
            if KEYS[auth]:
                entry["authentication_key"] = KEYS[auth]
            sas.append(entry)
    return packets, parse_keyring({"esp_sa": sas}), protected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=16, max_size=16),
                          st.integers(1, 6), st.booleans()), min_size=1, max_size=12))
def test_an_sas_cbc_context_opens_each_packet_as_a_fresh_one(packets):
    """RFC 3602: the SA's one AES-CBC context, carried from packet to packet, gives each
    packet what a context started with that packet's IV gives, whatever came before it
    (other IVs and lengths, a packet whose ICV failed, one too short to open)."""
    key, auth = bytes(range(16)), bytes(range(20))
    t = transform("aes-cbc", key.hex(), "hmac-sha1-96", auth.hex())
    for iv, blocks, tampered in packets:
        plain = bytes(range(blocks * 16 - 2)) + b"\x00\x3b"        # no padding, NH 59
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        header = b"\x00\x00\x01\x00" + blocks.to_bytes(4, "big")
        body = iv + enc.update(plain) + enc.finalize()
        icv = hmac.digest(auth, header + body, "sha1")[:12]
        if tampered:
            assert t.open(header, body + bytes(a ^ 1 for a in icv)) is Opened.ICV_FAILED
            assert t.open(header, body[:20]) is Opened.SHORT
            continue
        fresh = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        assert t.decrypt(header, body + icv) == fresh.update(body[16:]) == plain
        assert t.open(header, body + icv) == Plaintext(0x3B, plain[:-2], True)


def test_every_algorithm_decrypts_as_tshark_decrypts(tmp_path):
    packets, keys, protected = _packets()
    path = b.write(tmp_path / "algorithms.pcapng", packets)
    with TsharkConfig(keys) as config:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|",
             "-e", "esp.spi", "-e", "esp.protocol", "-e", "esp.contained_data",
             "-e", "_ws.col.Info"], capture_output=True, text=True, check=True,
            env=config.env() | {"HOME": config.path}).stdout.splitlines()
    keyless = list(PcapSource(str(path)).events())
    decrypted = list(PcapSource(str(path), keyring=keys).events())
    assert len(keyless) == len(decrypted) == len(out) == 2 * len(COMBINATIONS)
    sas = {sa.spi: sa for sa in keys.esp_sas}
    for raw, event, line, plain in zip(keyless, decrypted, out, protected, strict=True):
        spi, next_header, contained, info = line.split("|")
        header = raw.outer.esp
        opened = EspTransform(sas[header.spi]).open(
            header.spi.to_bytes(4, "big") + header.sequence.to_bytes(4, "big"), header.payload)
        assert isinstance(opened, Plaintext) and opened.default_padding
        # the same octets and Next Header as tshark, and as were protected
        assert opened.data.hex() == contained.replace(":", "") == plain.hex(), line
        assert opened.next_header == int(next_header, 0)
        assert event.outer.esp.decrypted and event.info == info, line
def test_keyless_events_carry_what_a_keyed_stage_needs(tmp_path):
    """The same packets without keys, round-tripped as Redis will carry them (to_dict,
    JSON) and pickled as the dashboard's dissector process sends them, then decrypted by
    the keyed stage: the same events as decrypting at once."""
    import json
    import pickle

    from dissectors.decrypt import EspDecryptor
    from dissectors.events import from_dict, to_dict
    packets, keys, _ = _packets()
    path = b.write(tmp_path / "algorithms.pcapng", packets)
    keyless = list(PcapSource(str(path)).events())
    assert all(not e.outer.esp.decrypted and e.outer.esp.payload for e in keyless)
    carried = [from_dict(json.loads(json.dumps(to_dict(e)))) for e in keyless]
    assert carried == keyless and pickle.loads(pickle.dumps(keyless)) == keyless
    decryptor = EspDecryptor(keys)
    assert [decryptor.decrypt(e) for e in carried] == \
        list(PcapSource(str(path), keyring=keys).events())
