"""`mip6mon keys import-xfrm`: the kernel's ESP SAs into the keyring.

The states are printed by the real `ip` (iproute2's own printer, from XFRM netlink messages
as the kernel sends them: tests/keys/xfrm_netlink.py) in its three layouts, imported by the
real command line, read back with load_keyring, and used to decrypt ESP that another
implementation (scapy) encrypted with the same keys. test_xfrm_netns.py does the same with
real kernel states where the kernel has ESP.
"""
from __future__ import annotations

import ipaddress
import os
import random
import re
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import xfrm
from keys.keyring import EspSa, Secret, load_keyring
from tests.keys.xfrm_netlink import Sa, newsa

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = {"plain": [], "stats": ["-s"], "oneline": ["-o"]}    # `ip [-s|-o] xfrm state`


def ip_prints(sas: list[Sa], tmp_path: Path, layout: str = "plain") -> str:
    """What `ip xfrm state` prints for these SAs: iproute2's printer on their netlink dump."""
    dump = tmp_path / f"dump-{random.getrandbits(32)}.bin"
    dump.write_bytes(b"".join(newsa(sa) for sa in sas))
    argv = ["ip", *LAYOUTS[layout], "xfrm", "monitor", "file", str(dump)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    dump.unlink()
    return result.stdout


def mip6mon(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mip6mon: error: "), \
        result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def keys_of(sas: list[Sa]) -> set[str]:
    out = set()
    for sa in sas:
        for part in (sa.enc, sa.auth, sa.aead):
            if part is not None and part[1]:
                out |= {part[1].hex(), part[1].hex().upper()}
    return out


def assert_no_key_in(text: str, sas: list[Sa]) -> None:
    for key in keys_of(sas):
        assert key not in text
        assert key[:16] not in text              # no prefix either


# --- every algorithm pair PROFILE.md has, with random keys, SPIs and addresses -----------------

@dataclass(frozen=True)
class Pair:
    """A kernel algorithm pair and the [[esp_sa]] it must become."""
    enc: str | None
    enc_octets: tuple[int, ...]
    auth: str | None
    auth_octets: int
    bits: int                   # truncation, or the AEAD's ICV
    encryption: str
    authentication: str


PAIRS = (
    Pair("cbc(aes)", (16, 24, 32), "hmac(sha1)", 20, 96, "aes-cbc", "hmac-sha1-96"),
    Pair("cbc(aes)", (16, 24, 32), "hmac(sha256)", 32, 128, "aes-cbc", "hmac-sha256-128"),
    Pair("rfc3686(ctr(aes))", (20, 28, 36), "hmac(sha1)", 20, 96, "aes-ctr", "hmac-sha1-96"),
    Pair("rfc3686(ctr(aes))", (20, 28, 36), "hmac(sha256)", 32, 128, "aes-ctr",
         "hmac-sha256-128"),
    Pair("rfc4106(gcm(aes))", (20, 28, 36), None, 0, 128, "aes-gcm-16", "null"),
    Pair("ecb(cipher_null)", (0,), "digest_null", 0, 0, "null", "null"),
    Pair("ecb(cipher_null)", (0,), "hmac(sha1)", 20, 96, "null", "hmac-sha1-96"),
    Pair("cbc(aes)", (16,), None, 0, 0, "aes-cbc", "null"),        # ESP without integrity
)


def random_address(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96)))


def random_sa(rng: random.Random, pair: Pair) -> tuple[Sa, EspSa]:
    src, dst = random_address(rng), random_address(rng)
    spi = rng.randrange(256, 1 << 32)
    enc_key = rng.randbytes(rng.choice(pair.enc_octets))
    auth_key = rng.randbytes(pair.auth_octets)
    mode = rng.choice(["transport", "tunnel"])
    if pair.authentication == "null" and pair.encryption == "aes-gcm-16":
        sa = Sa(src, dst, spi, aead=(pair.enc or "", enc_key, pair.bits), mode=mode)
    else:
        auth = (pair.auth, auth_key, pair.bits) if pair.auth else None
        sa = Sa(src, dst, spi, enc=(pair.enc or "", enc_key), auth=auth, mode=mode,
                reqid=rng.randrange(1 << 16))
    want = EspSa(spi, src, dst, pair.encryption, Secret(enc_key), pair.authentication,
                 Secret(auth_key if pair.auth and pair.auth != "digest_null" else b""))
    return sa, want


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_pair_round_trips_through_ip_and_the_keyring(tmp_path, layout, seed):
    rng = random.Random(seed)
    made = [random_sa(rng, pair) for pair in PAIRS for _ in range(2)]
    rng.shuffle(made)
    text = ip_prints([sa for sa, _ in made], tmp_path, layout)
    keyring = tmp_path / "sub" / "keyring.toml"
    keyring.parent.mkdir()
    result = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert load_keyring(keyring).esp_sas == tuple(want for _, want in made)
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert_no_key_in(result.stdout + result.stderr, [sa for sa, _ in made])
    summary = [line.strip() for line in result.stdout.splitlines()]
    for _, want in made:      # the summary names each SA: SPI, addresses, algorithms
        assert (f"added    SPI 0x{want.spi:08x} {want.src} -> {want.dst}  "
                f"{want.encryption} / {want.authentication}") in summary


# --- what PROFILE.md cannot express: refused, named, nothing written --------------------------

K16, K20, K32 = bytes(range(1, 17)), bytes(range(1, 21)), bytes(range(1, 33))
A, B = "2001:db8:1::100", "2001:db8:1::1"

# (name, kernel SA, words of the reason)
REFUSED = [
    ("IPv4", Sa("192.0.2.1", "192.0.2.2", 0x2001, enc=("cbc(aes)", K16),
                auth=("hmac(sha1)", K20, 96)), "IPv4"),
    ("reserved SPI", Sa(A, B, 200, enc=("cbc(aes)", K16)), "reserved (RFC 4303 2.1)"),
    ("BEET mode", Sa(A, B, 0x2002, enc=("cbc(aes)", K16), mode="beet"), "mode beet"),
    ("UDP encapsulation", Sa(A, B, 0x2003, enc=("cbc(aes)", K16), encap=True), "espinudp"),
    ("extended sequence numbers", Sa(A, B, 0x2004, aead=("rfc4106(gcm(aes))", K20, 128),
                                     esn=True), "flag esn"),
    ("3DES", Sa(A, B, 0x2005, enc=("cbc(des3_ede)", bytes(24))), "encryption cbc(des3_ede)"),
    ("ChaCha20-Poly1305", Sa(A, B, 0x2006, aead=("rfc7539esp(chacha20,poly1305)",
                                                 bytes(36), 128)), "AEAD rfc7539esp"),
    ("GCM with a 96-bit ICV", Sa(A, B, 0x2007, aead=("rfc4106(gcm(aes))", K20, 96)),
     "96-bit ICV"),
    ("HMAC-MD5", Sa(A, B, 0x2008, enc=("cbc(aes)", K16), auth=("hmac(md5)", K16, 96)),
     "authentication hmac(md5)"),
    ("HMAC-SHA-256 at Linux's 96-bit default", Sa(A, B, 0x2009, enc=("cbc(aes)", K16),
                                                  auth=("hmac(sha256)", K32, 96),
                                                  legacy_auth=True),
     "auth-trunc 'hmac(sha256)' KEY 128"),
    ("HMAC-SHA-1 with a 16-octet key", Sa(A, B, 0x200A, enc=("cbc(aes)", K16),
                                          auth=("hmac(sha1)", K16, 96)),
     "hmac(sha1) key of 16 octets"),
    ("AES-CTR without its nonce", Sa(A, B, 0x200B, enc=("rfc3686(ctr(aes))", K16)),
     "rfc3686(ctr(aes)) key of 16 octets"),
]


@pytest.mark.parametrize("name, sa, reason", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_profile_cannot_express_is_refused_by_name(tmp_path, name, sa, reason):
    good = Sa("2001:db8:2::1", "2001:db8:2::2", 0x3001, enc=("cbc(aes)", K16),
              auth=("hmac(sha1)", K20, 96))
    saved = tmp_path / "xfrm.txt"
    saved.write_text(ip_prints([good, sa], tmp_path))
    keyring = tmp_path / "keyring.toml"
    refused = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", str(saved))
    assert_one_line_error(refused, f"SPI 0x{sa.spi:08x} {sa.src} -> {sa.dst}: ", reason,
                          "nothing was imported")
    assert_no_key_in(refused.stderr, [sa, good])
    assert not keyring.exists()
    # --skip-unsupported: the rest is imported, the refused one named on stderr
    skipped = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", str(saved),
                      "--skip-unsupported")
    assert skipped.returncode == 0, skipped.stderr
    assert [sa.spi for sa in load_keyring(keyring).esp_sas] == [0x3001]
    assert f"mip6mon: warning: skipped SPI 0x{sa.spi:08x}" in skipped.stderr
    assert_no_key_in(skipped.stdout + skipped.stderr, [sa, good])


def test_hidden_keys_and_non_esp_states(tmp_path):
    sas = [Sa(A, B, 0x4001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96)),
           Sa(A, B, 0, proto="route2", mode="ro"), Sa(A, B, 0x4002, proto="ah",
                                                       auth=("hmac(sha1)", K20, 96))]
    # `ip xfrm state list nokeys` prints <<Keys hidden>> in each key's place (ip/ipxfrm.c)
    nokeys = re.sub(r"^(\t(?:enc|auth|auth-trunc|aead) \S+ )0x[0-9a-f]+", r"\1<<Keys hidden>>",
                    ip_prints(sas, tmp_path), flags=re.M)
    assert "<<Keys hidden>> 96" in nokeys
    hidden = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"), "--from", "-",
                     stdin=nokeys)
    assert_one_line_error(hidden, "SPI 0x00004001", "keys are hidden")
    shown = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"), "--from", "-",
                    stdin=ip_prints(sas, tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ("mip6mon: note: skipped 2 state(s) that are not ESP SAs "
                            "(ah, route2)\n")
    assert [sa.spi for sa in load_keyring(tmp_path / "k.toml").esp_sas] == [0x4001]
    nothing = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "n.toml"), "--from", "-",
                      stdin=ip_prints(sas[1:], tmp_path))
    assert_one_line_error(nothing, "no ESP SA to import in standard input")
    assert not (tmp_path / "n.toml").exists()


def test_damaged_input_is_a_one_line_error_without_the_key(tmp_path):
    sa = Sa(A, B, 0x5001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", bytes(range(100, 120)), 96))
    text = ip_prints([sa], tmp_path)
    key = K16.hex()
    damaged = {
        "key not hex": (text.replace("0x" + key, "0x" + key[:-1] + "z"), "line 5: the `enc` key"),
        "name lost": (text.replace("enc cbc(aes) ", "enc "),
                      "encryption (unreadable algorithm name) is not in PROFILE.md"),
        "no proto line": ("\n".join(line for line in text.splitlines()
                                    if "proto esp" not in line), "without its `proto` line"),
        "bad address": (text.replace(f"src {A}", "src 2001:zz8::1"), "line 1: not an address"),
        "truncation lost": (text.replace(" 96\n", "\n"), "without its truncation length"),
    }
    for name, (bad, words) in damaged.items():
        assert bad != text, name
        result = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"), "--from", "-",
                         stdin=bad)
        assert_one_line_error(result, words)
        assert_no_key_in(result.stderr, [sa])


def test_parser_reads_monitor_output_and_policies_do_not_confuse_it():
    """`ip xfrm monitor` mixes policies (with tmpl lines carrying `proto esp`) and events."""
    text = (
        "src ::/0 dst 2001:db8:1::/64 \n\tdir out priority 0 \n"
        "\ttmpl src 2001:db8:1::100 dst 2001:db8:1::1\n\t\tproto esp spi 0x00000666 reqid 1 "
        "mode tunnel\n"
        "Updated src 2001:db8:1::100 dst 2001:db8:1::1\n\tproto esp spi 0x00001001 reqid 1 "
        "mode tunnel\n\treplay-window 0 \n\tenc cbc(aes) 0x" + K16.hex() + "\n"
        "Deleted src 2001:db8:1::100 dst 2001:db8:1::2\n\tproto esp spi 0x00001002 reqid 1 "
        "mode tunnel\n\treplay-window 0 \n\tenc cbc(aes) 0x" + K16.hex() + "\n"
        "[nsid current]src 2001:db8:1::100 dst 2001:db8:1::3\n\tproto esp spi 0x00001003 "
        "reqid 1 mode transport\n\treplay-window 0 flag esn\n\tenc cbc(aes) 0x" + K16.hex() + "\n")
    selection = xfrm.select(xfrm.parse_states(text))
    assert [(state.spi, state.event) for state, _ in selection.sas] == [(0x1001, "Updated")]
    assert [state.spi for state in selection.other] == [0x1002]
    assert [(state.spi, reason.split(" (")[0]) for state, reason in selection.unsupported] == [
        (0x1003, "extended sequence numbers")]


# --- merging into an existing keyring ---------------------------------------------------------

EXISTING = """\
# lab keyring: the home agent and one correspondent   (a comment that must stay)
[[home_agent]]
address  = "2001:db8:1::1"
prefixes = ["2001:db8:1::/64"]

[[mobile_node]]
name         = "mn1"          # the first mobile node
home_address = "2001:db8:1::100"
kph          = "0102030405060708090a0b0c0d0e0f1011121314"

[[esp_sa]]                    # typed by hand
spi                = "0x00001001"
src                = "*"
dst                = "*"
encryption         = "aes-cbc"
encryption_key     = "00112233445566778899aabbccddeeff"
authentication     = "hmac-sha1-96"
authentication_key = "0102030405060708090a0b0c0d0e0f1011121314"

[[correspondent]]
address = "2001:db8:3::5"
kcn     = "000102030405060708090a0b0c0d0e0f10111213"
[correspondent.nonces]
"1" = "1111111111111111"
"""
HAND_ENC = bytes.fromhex("00112233445566778899aabbccddeeff")
HAND_AUTH = bytes.fromhex("0102030405060708090a0b0c0d0e0f1011121314")


def test_merge_keeps_the_keyring_and_refuses_other_keys_for_an_spi(tmp_path):
    keyring = tmp_path / "keyring.toml"
    keyring.write_text(EXISTING)
    os.chmod(keyring, 0o640)
    new = Sa(A, B, 0x1002, enc=("cbc(aes)", K32), auth=("hmac(sha256)", K32, 128))
    same = Sa(A, B, 0x1001, enc=("cbc(aes)", HAND_ENC), auth=("hmac(sha1)", HAND_AUTH, 96))
    result = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-",
                     "--mobile-node", "mn1", stdin=ip_prints([new], tmp_path))
    assert result.returncode == 0, result.stderr
    text = keyring.read_text()
    assert text.startswith(EXISTING.split("[[correspondent]]")[0])   # untouched, comments too
    assert "[correspondent.nonces]" in text and "# the first mobile node" in text
    loaded = load_keyring(keyring)
    assert [sa.spi for sa in loaded.esp_sas] == [0x1001, 0x1002]
    assert loaded.correspondents[0].nonces[1].value == bytes.fromhex("1111111111111111")
    assert tomllib.loads(text)["esp_sa"][1]["mobile_node"] == "mn1"
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600          # narrowed, and said so
    assert "was mode 0640, now 0600" in result.stderr

    # again, and the kernel's SA with the hand-typed wildcard SA's keys: both already there
    inode = keyring.stat().st_ino
    again = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-",
                    stdin=ip_prints([new, same], tmp_path))
    assert again.returncode == 0 and "0 ESP SA(s) added, 0 replaced, 2 already there" in \
        again.stdout
    assert keyring.stat().st_ino == inode and keyring.read_text() == text
    # SPI 0x1001 with other keys than the hand-typed SA: refused, file unchanged
    other = Sa(A, B, 0x1001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96))
    refused = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-",
                      stdin=ip_prints([other, new], tmp_path))
    assert_one_line_error(refused, "SPI 0x00001001 2001:db8:1::100 -> 2001:db8:1::1",
                          "[[esp_sa]] #1", "--replace")
    assert_no_key_in(refused.stderr, [other, same, new])
    assert keyring.read_text() == text
    # --replace: that table takes the kernel's SA, its comment and place kept
    replaced = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-", "--replace",
                       stdin=ip_prints([other], tmp_path))
    assert replaced.returncode == 0, replaced.stderr
    assert "1 replaced" in replaced.stdout
    after = load_keyring(keyring)
    assert after.esp_sas[0] == EspSa(0x1001, A, B, "aes-cbc", Secret(K16), "hmac-sha1-96",
                                     Secret(K20))
    assert after.esp_sas[1] == loaded.esp_sas[1] and len(after.esp_sas) == 2
    assert "[[esp_sa]]                    # typed by hand" in keyring.read_text()


@pytest.mark.parametrize("name", ['mn "one"', "mn1\"\n[[binding_key]]\nkbm = \"00",
                                  "nœud-¹ ]] \\ '''"])
def test_names_cannot_inject_toml(tmp_path, name):
    keyring = tmp_path / "keyring.toml"
    sa = Sa(A, B, 0x6001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96))
    result = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-",
                     "--mobile-node", name, stdin=ip_prints([sa], tmp_path))
    if not name.isprintable():
        assert_one_line_error(result, "mobile node name must be printable")
        assert not keyring.exists()
        return
    assert result.returncode == 0, result.stderr
    doc = tomllib.loads(keyring.read_text())
    assert set(doc) == {"esp_sa"} and doc["esp_sa"][0]["mobile_node"] == name
    assert len(load_keyring(keyring).esp_sas) == 1


def test_new_keyring_is_0600_whatever_the_umask_and_a_symlink_is_followed(tmp_path):
    sa = Sa(A, B, 0x7001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96))
    saved = tmp_path / "xfrm.txt"
    saved.write_text(ip_prints([sa], tmp_path))
    keyring = tmp_path / "keyring.toml"
    run = subprocess.run(["sh", "-c", f'umask 000; exec "{sys.executable}" -m monitor.cli keys '
                          f'import-xfrm -o "{keyring}" --from "{saved}"'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    link = tmp_path / "link.toml"
    link.symlink_to(keyring)
    more = Sa(A, B, 0x7002, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96))
    assert mip6mon("keys", "import-xfrm", "-o", str(link), "--from", "-",
                   stdin=ip_prints([more], tmp_path)).returncode == 0
    assert link.is_symlink() and [s.spi for s in load_keyring(keyring).esp_sas] == [0x7001,
                                                                                   0x7002]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.toml", "link.toml",
                                                          "xfrm.txt"]     # no temporaries


def test_command_line_errors(tmp_path):
    assert_one_line_error(mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"),
                                  "--from", str(tmp_path / "missing.txt")), "no such file")
    assert_one_line_error(mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"),
                                  "--from", "-", "--netns", "x", stdin=""), "--from and --netns")
    assert_one_line_error(mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "no" / "k.toml"),
                                  "--from", "-", stdin=ip_prints(
                                      [Sa(A, B, 0x8001, enc=("cbc(aes)", K16))], tmp_path)),
                          "cannot create the keyring")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[esp_sa]]\nspi = 1\n")
    assert_one_line_error(mip6mon("keys", "import-xfrm", "-o", str(bad), "--from", "-",
                                  stdin=ip_prints([Sa(A, B, 0x8002, enc=("cbc(aes)", K16))],
                                                  tmp_path)), str(bad))
    assert bad.read_text() == "[[esp_sa]]\nspi = 1\n"


# --- the imported keyring decrypts ESP that another implementation encrypted ------------------

# (scapy's algorithm names, the kernel's) for each PROFILE.md pair; scapy takes the AES key
# with its RFC 3686 nonce / RFC 4106 salt appended, as the kernel does
SCAPY = {("aes-cbc", "hmac-sha1-96"): ("AES-CBC", "HMAC-SHA1-96"),
         ("aes-cbc", "hmac-sha256-128"): ("AES-CBC", "SHA2-256-128"),
         ("aes-ctr", "hmac-sha1-96"): ("AES-CTR", "HMAC-SHA1-96"),
         ("aes-ctr", "hmac-sha256-128"): ("AES-CTR", "SHA2-256-128"),
         ("aes-gcm-16", "null"): ("AES-GCM", "NULL"),
         ("null", "null"): ("NULL", "NULL"),
         ("null", "hmac-sha1-96"): ("NULL", "HMAC-SHA1-96"),
         ("aes-cbc", "null"): ("AES-CBC", "NULL")}


def test_imported_keyring_decrypts_esp_encrypted_with_the_same_sas(tmp_path):
    """Every pair, in transport and tunnel mode: scapy encrypts with the kernel SA's keys, the
    imported keyring decrypts every frame (and without it, none is)."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    from monitor.sources import PcapSource

    rng = random.Random(4303)
    made = [random_sa(rng, pair) for pair in PAIRS]
    keyring = tmp_path / "keyring.toml"
    imported = mip6mon("keys", "import-xfrm", "-o", str(keyring), "--from", "-",
                       stdin=ip_prints([sa for sa, _ in made], tmp_path))
    assert imported.returncode == 0, imported.stderr
    frames, payloads = [], {}
    for number, (kernel, want) in enumerate(made, start=1):
        crypt, auth = SCAPY[(want.encryption, want.authentication)]
        tunnel = kernel.mode == "tunnel"
        sa = SecurityAssociation(
            ESP, spi=want.spi, crypt_algo=crypt, crypt_key=want.encryption_key.value or None,
            auth_algo=auth, auth_key=want.authentication_key.value or None,
            tunnel_header=IPv6(src=want.src, dst=want.dst) if tunnel else None)
        payloads[number] = f"frame {number} {crypt}".encode()
        inner = (IPv6(src="2001:db8:3::5", dst="2001:db8:1::200") if tunnel
                 else IPv6(src=want.src, dst=want.dst))
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / sa.encrypt(
            inner / UDP(sport=4000, dport=4001) / Raw(payloads[number]), seq_num=number)
        frame.time = 1_700_000_000 + number
        frames.append(frame)
    capture = tmp_path / "esp.pcap"
    wrpcap(str(capture), frames)

    def events(keys):
        source = PcapSource(str(capture), keyring=keys)
        try:
            return {event.frame: event for event in source.events()}
        finally:
            source.close()

    with_keys = events(load_keyring(keyring))
    assert set(with_keys) == set(payloads)
    for number, event in with_keys.items():
        esp = event.layers[0].esp
        assert esp is not None and esp.spi == made[number - 1][1].spi and esp.decrypted, number
        assert event.transport is not None
        assert event.transport.payload_preview == payloads[number].decode(), number
    without = events(None)
    assert not any(e.layers[0].esp.decrypted for e in without.values() if e.layers[0].esp)


# --- any text: states, or one XfrmError; never another exception ------------------------------

def _ip_text_sample() -> str:
    sas = [Sa(A, B, 0x9001, enc=("cbc(aes)", K16), auth=("hmac(sha1)", K20, 96)),
           Sa(B, A, 0x9002, aead=("rfc4106(gcm(aes))", K20, 128), mode="transport")]
    out = []
    for layout in LAYOUTS:
        dump = b"".join(newsa(sa) for sa in sas)
        result = subprocess.run(["ip", *LAYOUTS[layout], "xfrm", "monitor", "file",
                                 "/dev/stdin"], input=dump, capture_output=True, timeout=30,
                                check=True)
        out.append(result.stdout.decode())
    return "".join(out)


SAMPLE = _ip_text_sample()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_edit_of_real_output_reads_or_fails_in_one_line(data):
    """Real `ip` output with characters deleted, replaced or inserted anywhere."""
    text = SAMPLE
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        text = text[:at] + data.draw(st.text(max_size=8)) + text[at + cut:]
    try:
        selection = xfrm.select(xfrm.parse_states(text))
    except xfrm.XfrmError as exc:
        message = str(exc)
        assert "\n" not in message
        assert K16.hex()[:16] not in message and K20.hex()[:16] not in message
        return
    for state, sa in selection.sas:
        assert isinstance(sa, EspSa) and sa.spi == state.spi


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_reads_or_fails_in_one_line(text):
    try:
        xfrm.select(xfrm.parse_states(text))
    except xfrm.XfrmError as exc:
        assert "\n" not in str(exc)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops a capability root has")
def test_running_ip_without_the_right_is_a_one_line_error(tmp_path):
    """`ip xfrm state` run by mip6mon itself, without CAP_NET_ADMIN (as a plain user)."""
    result = subprocess.run(["setpriv", "--bounding-set=-net_admin", sys.executable, "-m",
                             "monitor.cli", "keys", "import-xfrm", "-o",
                             str(tmp_path / "k.toml")], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert_one_line_error(result, "`ip xfrm state` failed", "needs root")
    assert not (tmp_path / "k.toml").exists()
    missing = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "k.toml"), "--netns",
                      "mip6mon-no-such-namespace")
    assert_one_line_error(missing, "`ip -n mip6mon-no-such-namespace xfrm state` failed")
