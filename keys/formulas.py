"""Every formula of the draft and of PROFILE.md, one function each.

Inputs and outputs are bytes (keys, tokens, nonces) or RFC 5952 address text; integers are
encoded big-endian as PROFILE.md fixes them (nonce indices 2 octets, SPI and sequence 4 octets).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ZERO_ADDRESS = bytes(16)  # draft 4.1: "home address set to all zeros"
_ZERO_BLOCK = bytes(16)


def address_bytes(address: str | bytes) -> bytes:
    if isinstance(address, bytes):
        if len(address) != 16:
            raise ValueError("an IPv6 address is 16 octets")
        return address
    return _packed(address)


@functools.lru_cache(maxsize=4096)
def _packed(address: str) -> bytes:
    """Cached: the keyed view asks for the same few home addresses with every Binding Update
    (parsing the text is most of a pseudo home address's cost, profiled)."""
    return ipaddress.IPv6Address(address).packed


def address_text(packed: bytes) -> str:
    """RFC 5952 text of 16 octets. inet_ntop(3) writes the same text (longest run of zero
    groups compressed, the first of equal runs, never a single one; lower case) at a tenth of
    ipaddress's cost (a pseudo home address per Binding Update, profiled), except for
    addresses under ::/80, which it writes with a dotted IPv4 tail (::ffff:1.2.3.4):
    those go to ipaddress. tests/keys/test_formulas_text.py holds the two equal."""
    if len(packed) != 16:
        raise ValueError("an IPv6 address is 16 octets")
    if packed[:10] == _ZERO_80:
        return str(ipaddress.IPv6Address(packed))
    return socket.inet_ntop(socket.AF_INET6, packed)


_ZERO_80 = bytes(10)


# RFC 2104 2: HMAC(K, text) = H(K XOR opad | H(K XOR ipad | text)), K padded with zeros to the
# hash's block (hashed first when longer); the XORs as byte translations
_SHA1_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _padded(key: bytes) -> bytes:
    if len(key) > _SHA1_BLOCK:
        key = hashlib.sha1(key).digest()
    return key.ljust(_SHA1_BLOCK, b"\0")


def _hmac_sha1(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA1 under a key used once or twice (Kbm, Kpm, Ks): RFC 2104 with two hashes,
    no HMAC object (hmac.digest asks OpenSSL for the digest by name and builds an HMAC
    context each call: about a quarter more work, counted in instructions)."""
    key = _padded(key)
    inner = hashlib.sha1(key.translate(_IPAD) + data).digest()
    return hashlib.sha1(key.translate(_OPAD) + inner).digest()


def _hmac_sha1_kept(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA1 under a key used again and again (Kph: a Ki per Home BU, an SPI step; Kcn:
    a keygen token per BU): the key's padded inner and outer hashes are made once (_keyed)
    and copied per call. A one-shot HMAC asks OpenSSL for the digest by name every call, ~13
    us amid the dissector's work against ~1 us for two copies (profiled, 25,000 Home BUs)."""
    inner, outer = _keyed(key)
    inner = inner.copy()
    inner.update(data)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


@functools.lru_cache(maxsize=256)
def _keyed(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA1(K XOR ipad) and SHA1(K XOR opad) started, for _hmac_sha1_kept (the keys stay in
    this process, as the keyring's do)."""
    key = _padded(key)
    return hashlib.sha1(key.translate(_IPAD)), hashlib.sha1(key.translate(_OPAD))


_ECB = modes.ECB()     # no state: one for every block


def _aes_block(key: bytes, block: bytes, decrypt: bool = False) -> bytes:
    """AES-128 of one block under First(128, key). ECB holds nothing back from a whole block,
    so there is nothing to finalize (each call's context is dropped)."""
    cipher = Cipher(algorithms.AES(key[:16]), _ECB)
    return (cipher.decryptor() if decrypt else cipher.encryptor()).update(block)


def _index(i: int) -> bytes:
    return i.to_bytes(2, "big")


# --- RFC 6275 5.2.5 return routability -------------------------------------------------------

def home_keygen_token(kcn: bytes, home_address: str | bytes, nonce: bytes) -> bytes:
    """RFC 6275 5.2.5; in draft 5.3.1 home_address is the pseudo home address."""
    return _hmac_sha1_kept(kcn, address_bytes(home_address) + nonce + b"\x00")[:8]


def care_of_keygen_token(kcn: bytes, care_of_address: str | bytes, nonce: bytes) -> bytes:
    """RFC 6275 5.2.5."""
    return _hmac_sha1_kept(kcn, address_bytes(care_of_address) + nonce + b"\x01")[:8]


def binding_management_key(home_token: bytes, care_of_token: bytes | None) -> bytes:
    """RFC 6275 5.2.5: Kbm; de-registration (care_of_token None) hashes the home token alone."""
    return hashlib.sha1(home_token + (care_of_token or b"")).digest()


def authenticator(kbm: bytes, care_of_address: str | bytes, correspondent: str | bytes,
                  mh_data: bytes) -> bytes:
    """RFC 6275 6.2.7: First(96, HMAC_SHA1(Kbm, CoA | CN | MH data))."""
    return _hmac_sha1(kbm, address_bytes(care_of_address) + address_bytes(correspondent)
                      + mh_data)[:12]


# --- draft 4.1: pseudo home address from return routability ----------------------------------

def privacy_keygen_token(kcn: bytes, home_nonce: bytes) -> bytes:
    """draft 4.1: First(64, HMAC_SHA1(Kcn, :: | nonce | 2))."""
    return _hmac_sha1_kept(kcn, ZERO_ADDRESS + home_nonce + b"\x02")[:8]


def privacy_management_key(privacy_token: bytes, care_of_token: bytes) -> bytes:
    """draft 4.1: Kpm = SHA1(privacy keygen token | care-of keygen token)."""
    return hashlib.sha1(privacy_token + care_of_token).digest()


def rr_mask(kpm: bytes, care_of_address: str | bytes, home_nonce_index: int,
            care_of_nonce_index: int) -> bytes:
    """draft 4.1: String = First(128, HMAC_SHA1(Kpm, CoA | home idx | care-of idx))."""
    return _hmac_sha1(kpm, address_bytes(care_of_address) + _index(home_nonce_index)
                      + _index(care_of_nonce_index))[:16]


def rr_pseudo_home_address(kpm: bytes, care_of_address: str | bytes, home_nonce_index: int,
                           care_of_nonce_index: int, home_address: str | bytes) -> str:
    """draft 4.1: pseudo home address = String XOR HoA (its own inverse)."""
    mask = rr_mask(kpm, care_of_address, home_nonce_index, care_of_nonce_index)
    home = address_bytes(home_address)
    return address_text(bytes(a ^ b for a, b in zip(mask, home, strict=True)))


rr_home_address = rr_pseudo_home_address  # XOR inverts itself: same call with the pseudo address


# --- draft 4.2 / 5.3.2: pseudo home address = AES(Kbm, HoA) ----------------------------------

def encrypted_pseudo_home_address(kbm: bytes, home_address: str | bytes) -> str:
    """draft 4.2 and 5.3.2: Enc(Kpm = Kbm, HoA), AES-128 one block, key First(128, Kbm)."""
    return address_text(_aes_block(kbm, address_bytes(home_address)))


def decrypted_home_address(kbm: bytes, pseudo_home_address: str | bytes) -> str:
    """draft 4.2 and 5.3.2: the correspondent's inverse of encrypted_pseudo_home_address."""
    return address_text(_aes_block(kbm, address_bytes(pseudo_home_address), decrypt=True))


# --- draft 5.1: pseudo home address from the home agent's key --------------------------------

def kph_from_ks(ks: bytes) -> bytes:
    """draft 5.1.2: Kph = HMAC_SHA1(Ks, 0) (one zero octet)."""
    return _hmac_sha1(ks, b"\x00")


def dynamic_key(kph: bytes, i: int) -> bytes:
    """draft 5.1.4: Ki = HMAC_SHA1(Kph, i), i as 4 octets (ESP sequence number or counter)."""
    return _hmac_sha1_kept(kph, i.to_bytes(4, "big"))


def _encrypt_iid(ki: bytes, iid: bytes, cipher: str) -> bytes:
    if cipher == "aes-ctr":
        # CTR's first keystream block, counter block all zero, is AES of that block: one
        # ECB block, without CTR's nonce checks (the same octets; tests/keys)
        keystream = _aes_block(ki, _ZERO_BLOCK)
        return (int.from_bytes(iid, "big") ^ int.from_bytes(keystream[:8], "big")) \
            .to_bytes(8, "big")
    if cipher == "aes-ecb-trunc":
        return _aes_block(ki, iid + bytes(8))[:8]
    raise ValueError(f"unknown pseudo home address cipher {cipher!r}")


def routable_pseudo_home_address(ki: bytes, home_address: str | bytes, prefix: str,
                                 cipher: str) -> str:
    """draft 5.1.3: prefix (64 bits) | E(Ki, interface ID of the HoA)."""
    iid = address_bytes(home_address)[8:]
    return address_text(_prefix64(prefix) + _encrypt_iid(ki, iid, cipher))


@functools.lru_cache(maxsize=1024)
def _prefix64(prefix: str) -> bytes:
    """The first 8 octets of a /64 home prefix (a node's prefix, asked for every Home BU)."""
    net = ipaddress.IPv6Network(prefix, strict=False)
    if net.prefixlen != 64:
        raise ValueError("home prefixes are /64 (PROFILE.md)")
    return net.network_address.packed[:8]


def routable_home_interface_id(ki: bytes, pseudo_home_address: str | bytes) -> bytes:
    """draft 5.1.3 inverse for the stream cipher (aes-ctr): the HoA's interface ID."""
    return _encrypt_iid(ki, address_bytes(pseudo_home_address)[8:], "aes-ctr")


# --- draft 6.3 / 6.4: sequence and SPI increments --------------------------------------------

def bu_sequence_increment(kbm: bytes, home_nonce_index: int, care_of_nonce_index: int) -> int:
    """draft 6.3: First(8, HMAC_SHA1(Kbm, home idx | care-of idx)); 0 becomes 1."""
    inc = _hmac_sha1(kbm, _index(home_nonce_index) + _index(care_of_nonce_index))[0]
    return inc or 1


def next_bu_sequence(previous: int, kbm: bytes, home_nonce_index: int,
                     care_of_nonce_index: int) -> int:
    """draft 6.3: (previous + increment) mod 2^16."""
    return (previous + bu_sequence_increment(kbm, home_nonce_index, care_of_nonce_index)) % 65536


def spi_increment(kph: bytes, spi: int) -> int:
    """draft 6.4: First(8, HMAC_SHA1(Kph, current SPI)); 0 becomes 1."""
    return _hmac_sha1_kept(kph, spi.to_bytes(4, "big"))[0] or 1


def next_spi(kph: bytes, spi: int) -> int:
    """draft 6.4: (SPI + increment) mod 2^32."""
    return (spi + spi_increment(kph, spi)) % (1 << 32)


def spi_chain(kph: bytes, first_spi: int, length: int) -> list[int]:
    """The SPIs a mobile node and its home agent move through (draft 6.4), first one included."""
    chain = [first_spi]
    while len(chain) < length:
        chain.append(next_spi(kph, chain[-1]))
    return chain
