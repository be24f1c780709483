"""ESP (RFC 4303) opened in Python: integrity first, then decryption, then the trailer.

One `EspTransform` per keyring SA holds its algorithms and keys, with the cipher contexts built
once: AES-CBC decrypts through one CBC context fed each packet's IV block first (RFC 3602 2.1,
EspTransform._cbc), AES-CTR makes its keystream through one reused ECB context (RFC 3686 4), so
no packet pays for building a cipher. Nothing here chooses an SA; dissectors.decrypt does that.

The algorithms are the keyring's (PROFILE.md "The keyring", keys.keyring): their wire layout is
declared once, in ENCRYPTION and INTEGRITY below.
"""
from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.keyring import EspSa

ESP_HEADER = 8          # RFC 4303 2.1, 2.2: SPI, Sequence Number
TRAILER = 2             # RFC 4303 2.5, 2.6: Pad Length, Next Header
AES_BLOCK = 16


@dataclass(frozen=True, slots=True)
class EncryptionAlgorithm:
    """How an encryption algorithm lays out the ESP payload."""
    name: str                 # keyring name (PROFILE.md)
    rfc: str
    iv: int                   # octets of IV at the start of the payload
    block: int                # the ciphertext is a multiple of this (RFC 4303 2.4: at least 4)
    salt: int                 # octets at the end of the keyring key that are not AES key
    tag: int                  # combined mode: its own ICV octets at the end (RFC 4303 3.2.3)


@dataclass(frozen=True, slots=True)
class IntegrityAlgorithm:
    name: str
    rfc: str
    digest: type[hashes.HashAlgorithm] | None   # the hash of the HMAC
    icv: int                  # truncated ICV octets


ENCRYPTION = {a.name: a for a in (
    EncryptionAlgorithm("null", "RFC 2410", iv=0, block=4, salt=0, tag=0),
    EncryptionAlgorithm("aes-cbc", "RFC 3602", iv=16, block=AES_BLOCK, salt=0, tag=0),
    EncryptionAlgorithm("aes-ctr", "RFC 3686", iv=8, block=4, salt=4, tag=0),
    EncryptionAlgorithm("aes-gcm-16", "RFC 4106", iv=8, block=4, salt=4, tag=16),
)}
INTEGRITY = {a.name: a for a in (
    IntegrityAlgorithm("null", "RFC 4303 3.2", None, 0),
    IntegrityAlgorithm("hmac-sha1-96", "RFC 2404", hashes.SHA1, 12),
    IntegrityAlgorithm("hmac-sha256-128", "RFC 4868", hashes.SHA256, 16),
)}


class Opened(enum.Enum):
    """What opening one ESP packet with one SA gave."""
    OK = "ok"
    ICV_FAILED = "icv-failed"            # the integrity check (HMAC or GCM tag) failed
    SHORT = "short"                      # too short, or not a whole number of cipher blocks
    BAD_TRAILER = "bad-trailer"          # Pad Length beyond the payload (RFC 4303 2.5)


class Plaintext(NamedTuple):
    """An ESP payload opened with one SA: what followed the ESP header, before it was protected.
    (A named tuple: one is made for every ESP packet opened.)"""
    next_header: int                     # RFC 4303 2.6
    data: bytes                          # the protected payload, padding and trailer removed
    default_padding: bool                # the padding was 1, 2, 3, ... (RFC 4303 2.4)


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


# RFC 4303 2.4: the default padding of each length (1, 2, 3, ...; at most 255 octets)
_DEFAULT_PADDING = tuple(bytes(range(1, n + 1)) for n in range(256))


def _default_padding(padding: bytes) -> bool:
    return len(padding) < 256 and padding == _DEFAULT_PADDING[len(padding)]


class EspTransform:
    """One SA's algorithms and keys (never printed: no __repr__ shows a key). Like the
    EspDecryptor that holds it, one thread uses it: its AES-CBC context carries state from one
    packet to the next (_cbc)."""

    __slots__ = ("encryption", "integrity", "_aes", "_aead", "_salt", "_mac", "icv_octets",
                 "overhead", "verifies", "_decrypt")

    def __init__(self, sa: EspSa):
        self.encryption = ENCRYPTION[sa.encryption]
        self.integrity = INTEGRITY[sa.authentication]
        key = sa.encryption_key.value
        self._salt = b""
        if self.encryption.salt:
            key, self._salt = key[:-self.encryption.salt], key[-self.encryption.salt:]
        self._aes: CipherContext | None = None
        self._aead: AESGCM | None = None
        # the algorithm's decryption of IV | ciphertext, chosen once (every packet of the SA
        # takes it)
        self._decrypt: Callable[[bytes, bytes], bytes | Opened] = self._null
        if self.encryption.name == "aes-cbc":
            self._aes = Cipher(algorithms.AES(key), modes.CBC(bytes(AES_BLOCK))).decryptor()
            self._decrypt = self._cbc
        elif self.encryption.name == "aes-ctr":
            self._aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
            self._decrypt = self._ctr
        elif self.encryption.name == "aes-gcm-16":
            self._aead = AESGCM(key)
            self._decrypt = self._gcm
        # cryptography's HMAC, keyed once: a copy per packet (about a third of the cost of
        # the standard library's, whose copy and update are Python methods around OpenSSL's)
        self._mac = (crypto_hmac.HMAC(sa.authentication_key.value, self.integrity.digest())
                     if self.integrity.digest else None)
        self.icv_octets = self.integrity.icv
        # octets that are not ciphertext: IV, combined-mode tag, ICV
        self.overhead = self.encryption.iv + self.encryption.tag + self.icv_octets
        # a wrong SA cannot pass: an HMAC ICV or a combined-mode tag
        self.verifies = self._mac is not None or self.encryption.tag > 0

    def __repr__(self) -> str:
        return f"<EspTransform {self.encryption.name}/{self.integrity.name}>"

    def icv_ok(self, header: bytes, payload: bytes) -> bool:
        """RFC 4303 3.4.4.1: the ICV covers the ESP header and the payload up to the ICV."""
        if self._mac is None:
            return True
        n = self.icv_octets
        if len(payload) < n:
            return False
        mac = self._mac.copy()
        mac.update(header + payload[:-n])
        return hmac.compare_digest(mac.finalize()[:n], payload[-n:])

    def decrypt(self, header: bytes, payload: bytes) -> bytes | Opened:
        """The plaintext (padding and trailer included) of an ESP payload whose ICV, if any,
        has been checked; Opened.SHORT or ICV_FAILED (GCM's own tag) when it cannot be."""
        enc = self.encryption
        end = len(payload) - self.icv_octets
        body = end - enc.iv
        if body < enc.tag + TRAILER or (body - enc.tag) % enc.block:
            return Opened.SHORT
        return self._decrypt(header, payload[:end])

    def _null(self, header: bytes, sealed: bytes) -> bytes | Opened:
        return sealed                                              # RFC 2410: no IV

    def _cbc(self, header: bytes, sealed: bytes) -> bytes | Opened:
        # RFC 3602 2.1: P_i = D(C_i) XOR C_(i-1), C_0 the IV. The SA's one CBC context is fed
        # the packet's IV block first: whatever it gives for that block is dropped, and the
        # block is then the C_(i-1) of the first ciphertext block, as a context started with
        # this IV would have it. (Only whole blocks reach it: decrypt's check.)
        assert self._aes is not None
        return self._aes.update(sealed)[AES_BLOCK:]

    def _ctr(self, header: bytes, sealed: bytes) -> bytes | Opened:
        # RFC 3686 4: counter block = nonce (salt) | IV | block counter from 1
        assert self._aes is not None
        n = self.encryption.iv
        iv, body = sealed[:n], sealed[n:]
        blocks = (len(body) + AES_BLOCK - 1) // AES_BLOCK
        prefix = self._salt + iv
        counters = b"".join([prefix + n.to_bytes(4, "big") for n in range(1, blocks + 1)])
        return _xor(body, self._aes.update(counters))

    def _gcm(self, header: bytes, sealed: bytes) -> bytes | Opened:
        assert self._aead is not None
        n = self.encryption.iv
        try:            # RFC 4106 4, 5: nonce = salt | IV; AAD = SPI | Sequence Number
            return self._aead.decrypt(self._salt + sealed[:n], sealed[n:], header)
        except InvalidTag:
            return Opened.ICV_FAILED

    def open(self, header: bytes, payload: bytes) -> Plaintext | Opened:
        """Verify, decrypt and strip the trailer of one ESP payload (everything after the
        8-octet header: IV, ciphertext, ICV)."""
        if len(payload) < self.overhead + TRAILER:
            return Opened.SHORT
        if self._mac is not None and not self.icv_ok(header, payload):
            return Opened.ICV_FAILED
        plain = self.decrypt(header, payload)
        if not isinstance(plain, bytes):    # (not isinstance(plain, Opened): bytes is quicker)
            return plain
        pad = plain[-2]
        end = len(plain) - TRAILER - pad
        if end < 0:
            return Opened.BAD_TRAILER
        return Plaintext(plain[-1], plain[:end], _default_padding(plain[end:-TRAILER]))
