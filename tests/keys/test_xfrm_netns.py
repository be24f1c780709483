"""`mip6mon keys import-xfrm` on real kernel states: a network namespace with an `ip xfrm
state add` for every algorithm pair PROFILE.md has, imported from inside it, with --netns,
and from its saved output; the keyring reads back the same SPIs, addresses and algorithms.

Needs root and a kernel with ESP (CONFIG_INET6_ESP and the crypto algorithms). Where the
kernel has no ESP at all (`ip xfrm state add` answers "Requested type not found", as on the
project's own machine, whose kernel has XFRM but neither ESP nor module loading), the test is
skipped and test_xfrm.py covers the same path with iproute2 printing the states.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from keys.keyring import EspSa, Secret, load_keyring

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

KEY16 = bytes.fromhex("8f4c1d9e2a7b3c5d6e0f1a2b3c4d5e6f")
KEY20 = bytes.fromhex("4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d01020304")
KEY32 = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff")
SHA1 = bytes.fromhex("d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e")
HA, MN, CN = "2001:db8:1::1", "2001:db8:1::100", "2001:db8:3::5"

# (`ip xfrm state add` arguments after the addresses and SPI, the [[esp_sa]] it must become)
STATES = [
    ("mode transport enc cbc(aes) 0x{k16} auth-trunc hmac(sha1) 0x{sha1} 96",
     EspSa(0x1001, MN, HA, "aes-cbc", Secret(KEY16), "hmac-sha1-96", Secret(SHA1))),
    ("mode tunnel enc cbc(aes) 0x{k32} auth-trunc hmac(sha256) 0x{k32} 128",
     EspSa(0x1002, HA, MN, "aes-cbc", Secret(KEY32), "hmac-sha256-128", Secret(KEY32))),
    ("mode tunnel enc rfc3686(ctr(aes)) 0x{k20} auth-trunc hmac(sha1) 0x{sha1} 96",
     EspSa(0x1003, MN, CN, "aes-ctr", Secret(KEY20), "hmac-sha1-96", Secret(SHA1))),
    ("mode tunnel aead rfc4106(gcm(aes)) 0x{k20} 128",
     EspSa(0x1004, CN, MN, "aes-gcm-16", Secret(KEY20), "null", Secret(b""))),
    ("mode transport enc ecb(cipher_null) '' auth-trunc digest_null '' 0",
     EspSa(0x1005, HA, CN, "null", Secret(b""), "null", Secret(b""))),
]
# what the kernel holds but PROFILE.md cannot express (skipped with --skip-unsupported)
REFUSED = ("mode tunnel enc cbc(aes) 0x{k16} auth hmac(sha256) 0x{k32}",   # 96-bit default
           EspSa(0x1006, CN, HA, "aes-cbc", Secret(KEY16), "null", Secret(b"")))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def add_state(netns: str, arguments: str, sa: EspSa) -> subprocess.CompletedProcess[str]:
    words = shlex.split(arguments.format(k16=KEY16.hex(), k20=KEY20.hex(), k32=KEY32.hex(),
                                         sha1=SHA1.hex()))
    return ip("-n", netns, "xfrm", "state", "add", "src", sa.src, "dst", sa.dst, "proto", "esp",
              "spi", f"0x{sa.spi:x}", *words, check=False)


@pytest.fixture
def netns():
    name = f"mip6mon-xfrm-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "del", name, check=False)


def mip6mon(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "monitor.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_kernel_states_round_trip_through_the_keyring(netns, tmp_path):
    added = []
    for arguments, sa in STATES:
        result = add_state(netns, arguments, sa)
        if "Requested type not found" in result.stderr:
            pytest.skip("this kernel has no ESP (`ip xfrm state add`: Requested type not found)")
        if "algorithm not found" in result.stderr:
            continue                             # a cipher this kernel lacks: not its state
        assert result.returncode == 0, result.stderr
        added.append(sa)
    assert added, "the kernel took none of the states"
    refused = add_state(netns, *REFUSED)
    assert refused.returncode == 0, refused.stderr
    keys = {KEY16.hex(), KEY20.hex(), KEY32.hex(), SHA1.hex()}

    # from inside the namespace, as an operator runs it there
    inside = tmp_path / "inside.toml"
    result = mip6mon("keys", "import-xfrm", "-o", str(inside), "--skip-unsupported",
                     prefix=("ip", "netns", "exec", netns))
    assert result.returncode == 0, result.stderr
    assert f"skipped SPI 0x{REFUSED[1].spi:08x}" in result.stderr
    assert not any(k in result.stdout + result.stderr for k in keys)
    assert sorted(load_keyring(inside).esp_sas, key=lambda s: s.spi) == added
    # without --skip-unsupported the refused SA stops it, named
    stopped = mip6mon("keys", "import-xfrm", "-o", str(tmp_path / "no.toml"), "--netns", netns)
    assert stopped.returncode == 2 and "hmac(sha256) truncated to 96 bits" in stopped.stderr
    assert not (tmp_path / "no.toml").exists()

    # with --netns, and from saved `ip -s xfrm state` output: the same keyring
    for how, args in (("netns", ("--netns", netns)), ("saved", ("--from", "saved.txt"))):
        saved = tmp_path / "saved.txt"
        saved.write_text(ip("-s", "-n", netns, "xfrm", "state").stdout)
        out = tmp_path / f"{how}.toml"
        args = tuple(str(saved) if a == "saved.txt" else a for a in args)
        result = mip6mon("keys", "import-xfrm", "-o", str(out), "--skip-unsupported", *args)
        assert result.returncode == 0, (how, result.stderr)
        assert load_keyring(out).esp_sas == load_keyring(inside).esp_sas, how
