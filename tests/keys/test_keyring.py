"""Loading the keyring of PROFILE.md, and the one-line errors a bad one gets."""
import os
import re
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import formulas
from keys.keyring import KeyringError, KeyringPermissionWarning, load_keyring, parse_keyring
from tests.conftest import SHARED

PROFILE = SHARED / "spec" / "PROFILE.md"
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


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_a_keyring_others_may_access_is_refused_unless_allowed(tmp_path, mode):
    """As ssh does with private keys (issue 13): one line, and only a warning with
    --allow-insecure-keyring."""
    path = write(tmp_path, GOOD, mode=mode)
    if mode & 0o077 == 0:
        load_keyring(path)
        return
    with pytest.raises(KeyringError, match="accessible by group or others") as err:
        load_keyring(path)
    assert "--allow-insecure-keyring" in str(err.value) and "\n" not in str(err.value)
    with pytest.warns(KeyringPermissionWarning, match=f"mode {mode:04o}"):
        assert load_keyring(path, allow_insecure=True).mobile_nodes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_keyring(write(tmp_path, GOOD, mode=0o600))


def test_what_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "keyring.fifo"
    os.mkfifo(fifo, 0o600)                 # opening it for reading would wait for a writer
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(KeyringError, match="not a regular file|cannot read"):
            load_keyring(path)


def test_a_huge_file_is_refused_after_a_bounded_read(tmp_path):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)       # sparse: 64 MB of zeros, no disk used
    os.chmod(path, 0o600)
    with pytest.raises(KeyringError, match="larger than 16 MiB"):
        load_keyring(path)


@pytest.mark.parametrize("text, expected", [
    ("home_agent = [1, 2]\n", r"\[\[home_agent\]\] must be an array of tables"),
    ("mobile_node = [\"x\"]\n", r"\[\[mobile_node\]\] must be an array of tables"),
    ("esp_sa = 3\n", r"must be an array of tables"),
    ("x = " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    ("a = " + "{b = " * 5_000 + "1" + "}" * 5_000 + "\n", "nested too deeply|unknown table"),
    ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "not"),
])
def test_wrong_shapes_are_one_line_errors_not_tracebacks(tmp_path, text, expected):
    with pytest.raises(KeyringError, match=expected) as err:
        load_keyring(write(tmp_path, text))
    assert "\n" not in str(err.value)


_FIELDS = ["address", "prefixes", "name", "home_address", "home_agent", "ks", "kph",
           "phoa_cipher", "key_index", "spi", "src", "dst", "encryption", "encryption_key",
           "authentication", "authentication_key", "kcn", "nonces", "correspondent",
           "care_of_address", "kbm", "1", "x"]
_SCALARS = (st.booleans() | st.integers(-2, 1 << 40) | st.floats(allow_nan=False)
            | st.text(max_size=6) | st.sampled_from(
                ["2001:db8::1", "*", "2001:db8:1::/64", "0x1001", "aes-ctr", "aes-cbc", "null",
                 "hmac-sha1-96", "00" * 16, "00" * 20, "00" * 8, "esp-seq"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=5),
                       max_leaves=12)
_DOCS = st.dictionaries(st.sampled_from(["home_agent", "mobile_node", "esp_sa", "correspondent",
                                         "binding_key", "other"]), _VALUES, max_size=4)


@settings(max_examples=200, deadline=None)
@given(_DOCS)
def test_any_document_shape_is_a_keyring_or_a_one_line_error(doc):
    """Whatever TOML parses to, the keyring is built or refused in one line (no TypeError,
    AttributeError... from a value of the wrong type)."""
    try:
        parse_keyring(doc, "k.toml")
    except KeyringError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("k.toml")
