"""Loading the keyring of PROFILE.md, and the one-line errors a bad one gets."""
import os
import re
import warnings
from pathlib import Path

import pytest

from keys import formulas
from keys.keyring import KeyringError, KeyringPermissionWarning, load_keyring

PROFILE = Path(__file__).resolve().parents[3] / "shared" / "spec" / "PROFILE.md"
GOOD = re.search(r"```toml\n(.*?)```", PROFILE.read_text(), re.S).group(1)


def write(tmp_path, text, mode=0o600):
    path = tmp_path / "keyring.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_profile_example_loads(tmp_path):
    ring = load_keyring(write(tmp_path, GOOD))
    mn = ring.mobile_nodes[0]
    assert mn.name == "mn1" and mn.home_address == "2001:db8:1::100"
    assert mn.kph.value == formulas.kph_from_ks(bytes.fromhex("0f0e0d0c0b0a09080706050403020100"))
    assert ring.esp_sas[0].spi == 0x1001
    assert ring.correspondent("2001:db8:3::5").nonces[2].value == bytes.fromhex("22" * 8)
    assert ring.binding_key("2001:db8:3::5", "2001:db8:2::100").value.hex().startswith("1bb66d")
    assert ring.home_agent("2001:db8:1::1").prefixes == ("2001:db8:1::/64", "2001:db8:100::/64")


def test_secrets_never_print(tmp_path):
    ring = load_keyring(write(tmp_path, GOOD))
    text = repr(ring)
    for secret in ("0f0e0d0c", "00112233445566778899", "000102030405", "1bb66dda"):
        assert secret not in text
    assert "<secret 20 octets>" in text


@pytest.mark.parametrize("old,new,expected", [
    ('kcn     = "000102030405060708090a0b0c0d0e0f10111213"', 'kcn = "zz"',
     r"\[correspondent #1\] kcn: bad hex"),
    ('kcn     = "000102030405060708090a0b0c0d0e0f10111213"', 'kcn = "0001"',
     r"\[correspondent #1\] kcn: wrong key length 2 octets, expected 20"),
    ('phoa_cipher  = "aes-ctr"', 'phoa_cipher = "rc4"',
     r"\[mobile_node #1\] phoa_cipher: unknown value 'rc4'"),
    ('home_address = "2001:db8:1::100"', 'home_address = "2001:db8:1::zz"',
     r"\[mobile_node #1\] home_address: not an IPv6 address"),
    ('"2001:db8:100::/64"]', '"2001:db8:100::/48"]',
     r"\[home_agent #1\] prefixes: prefix .* is not /64"),
    ('encryption         = "aes-cbc"', 'encryption = "des"',
     r"\[esp_sa #1\] encryption: unknown value"),
    ('spi                = "0x00001001"', 'spi = "12"', r"\[esp_sa #1\] spi: out of range"),
])
def test_bad_fields_name_file_table_and_field(tmp_path, old, new, expected):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(KeyringError) as err:
        load_keyring(path)
    message = str(err.value)
    assert str(path) in message and re.search(expected, message)
    assert "\n" not in message
    assert "000102030405060708090a0b0c0d0e0f10111213" not in message


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(KeyringError, match="not valid TOML"):
        load_keyring(write(tmp_path, "[[home_agent]\n"))
    with pytest.raises(KeyringError, match="no such keyring file"):
        load_keyring(tmp_path / "absent.toml")


def test_world_readable_keyring_warns(tmp_path):
    with pytest.warns(KeyringPermissionWarning, match="readable by group or others"):
        load_keyring(write(tmp_path, GOOD, mode=0o644))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_keyring(write(tmp_path, GOOD, mode=0o600))
