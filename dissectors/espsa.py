"""ESP security associations for tshark, from the keyring, in a private config directory.

tshark decrypts ESP with its `esp_sa` UAT table. Key material must not appear in a process's
argv (anyone can read it with `ps`), so the table is written to `esp_sa` in a temporary
configuration directory (mode 0700, file 0600) that tshark reads through XDG_CONFIG_HOME;
the directory is removed when the capture is closed. (Measured with tshark 4.0.17: a
`wireshark/esp_sa` file under XDG_CONFIG_HOME decrypts exactly like `-o uat:esp_sa:...`.)

Draft 6.4: the mobile node and its home agent move to a new SPI (same keys) for every Home BU
exchange. A keyring usually lists the SAs as first configured, so for every mobile node whose
Kph is known, the next SPIs of each listed SA are predicted with keys.formulas.spi_chain and
added with the same keys and addresses.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from dissectors.protocol import SPI_LOOKAHEAD
from keys import formulas
from keys.keyring import EspSa, Keyring, Secret

# tshark 4.0 esp_sa UAT labels (PLATFORM-NOTES: they must be these exact strings)
ENCRYPTION_LABELS = {"null": "NULL", "aes-cbc": "AES-CBC [RFC3602]",
                     "aes-ctr": "AES-CTR [RFC3686]",
                     "aes-gcm-16": "AES-GCM with 16 octet ICV [RFC4106]"}
AUTHENTICATION_LABELS = {"null": "NULL", "hmac-sha1-96": "HMAC-SHA-1-96 [RFC2404]",
                         "hmac-sha256-128": "HMAC-SHA-256-128 [RFC4868]"}

PREFERENCES = (
    "esp.enable_encryption_decode: TRUE\n"
    # one tshark pass: no sequence analysis state that depends on later frames
)


@dataclass(frozen=True, slots=True)
class SaEntry:
    spi: int
    sa: EspSa            # keys and addresses (the listed SA the SPI was predicted from)
    predicted: bool      # True when the SPI comes from a draft 6.4 chain


def sa_entries(keyring: Keyring | None, chain_length: int = SPI_LOOKAHEAD) -> list[SaEntry]:
    """Listed SAs first, then the SPIs each mobile node's Kph predicts from them (6.4)."""
    if keyring is None:
        return []
    entries = [SaEntry(sa.spi, sa, False) for sa in keyring.esp_sas]
    seen = {(e.spi, e.sa.src, e.sa.dst) for e in entries}
    for node in keyring.mobile_nodes:
        for sa in keyring.esp_sas:
            for spi in formulas.spi_chain(node.kph.value, sa.spi, chain_length + 1)[1:]:
                if (spi, sa.src, sa.dst) not in seen:
                    seen.add((spi, sa.src, sa.dst))
                    entries.append(SaEntry(spi, sa, True))
    return entries


def _uat_line(entry: SaEntry) -> str:
    sa = entry.sa
    def key(secret: Secret) -> str:
        return "0x" + secret.value.hex() if secret.value else ""
    fields = ["IPv6", sa.src, sa.dst, f"0x{entry.spi:08x}",
              ENCRYPTION_LABELS[sa.encryption], key(sa.encryption_key),
              AUTHENTICATION_LABELS[sa.authentication], key(sa.authentication_key)]
    return ",".join(f'"{f}"' for f in fields)


class TsharkConfig:
    """A private tshark configuration directory; `env` points tshark at it."""

    def __init__(self, keyring: Keyring | None = None,
                 chain_length: int = SPI_LOOKAHEAD):
        self.entries = sa_entries(keyring, chain_length)
        self.path = tempfile.mkdtemp(prefix="mip6mon-tshark-")   # mode 0700
        conf = os.path.join(self.path, "wireshark")
        os.mkdir(conf, 0o700)
        self._write(os.path.join(conf, "preferences"), PREFERENCES)
        if self.entries:
            self._write(os.path.join(conf, "esp_sa"),
                        "".join(_uat_line(e) + "\n" for e in self.entries))

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_CONFIG_HOME"] = self.path
        # and no personal plugins: tshark 4.0 loads them from $HOME/.local/lib/wireshark/
        # plugins, and a user's Lua post-dissector that raises there (or an older mip6mon
        # plugin) put an expert error on every frame: seen, 237 of 309 demo frames malformed
        return env | {"HOME": self.path}

    def remove(self) -> None:
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = ""

    def __enter__(self) -> TsharkConfig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
