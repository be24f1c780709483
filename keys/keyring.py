"""The operator's keyring (PROFILE.md "The keyring"): load, validate, and look up.

Every error names the file, the table and the field, and never quotes key material.
"""
from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from keys import formulas
from keys.errors import UserError

PHOA_CIPHERS = ("aes-ctr", "aes-ecb-trunc")
KEY_INDEXES = ("esp-seq", "counter")
ESP_ENCRYPTIONS = ("null", "aes-cbc", "aes-ctr", "aes-gcm-16")
ESP_AUTHENTICATIONS = ("null", "hmac-sha1-96", "hmac-sha256-128")


class KeyringError(UserError):
    """A keyring that cannot be used; the message is one line, fit for stderr."""


class KeyringPermissionWarning(UserWarning):
    pass


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """Key bytes that never print: repr and str show only the length."""
    value: bytes

    def __repr__(self) -> str:
        return f"<secret {len(self.value)} octets>"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class HomeAgent:
    address: str
    prefixes: tuple[str, ...]          # "2001:db8:1::/64", all /64


@dataclass(frozen=True, slots=True)
class MobileNode:
    name: str
    home_address: str
    home_agent: str | None
    kph: Secret                        # given, or HMAC_SHA1(Ks, 0) (draft 5.1.2)
    phoa_cipher: str = "aes-ctr"
    key_index: str = "esp-seq"


@dataclass(frozen=True, slots=True)
class EspSa:
    spi: int
    src: str                           # address or "*"
    dst: str
    encryption: str
    encryption_key: Secret
    authentication: str
    authentication_key: Secret
    # the [[mobile_node]] whose SA this is (PROFILE.md): a label on the SA, not part of what
    # it is, so two tables of the same SA compare equal whether they name it or not
    mobile_node: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Correspondent:
    address: str
    kcn: Secret
    nonces: dict[int, Secret] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class BindingKey:
    correspondent: str
    care_of_address: str
    kbm: Secret


@dataclass(frozen=True, slots=True)
class Keyring:
    home_agents: tuple[HomeAgent, ...] = ()
    mobile_nodes: tuple[MobileNode, ...] = ()
    esp_sas: tuple[EspSa, ...] = ()
    correspondents: tuple[Correspondent, ...] = ()
    binding_keys: tuple[BindingKey, ...] = ()
    # lookups by address, built once: the keyed analyzer asks several times per packet
    _index: dict[tuple[str, Any], Any] = field(init=False, repr=False, compare=False,
                                               hash=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, Any], Any] = {}
        for kind, items, key in (("ha", self.home_agents, lambda h: h.address),
                                 ("cn", self.correspondents, lambda c: c.address),
                                 ("mn", self.mobile_nodes, lambda m: m.home_address),
                                 ("kbm", self.binding_keys,
                                  lambda b: (b.correspondent, b.care_of_address))):
            for item in items:
                index.setdefault((kind, key(item)), item)      # the first one listed wins
        object.__setattr__(self, "_index", index)

    def home_agent(self, address: str) -> HomeAgent | None:
        return self._index.get(("ha", address))

    def correspondent(self, address: str) -> Correspondent | None:
        return self._index.get(("cn", address))

    def mobile_node_by_home_address(self, address: str) -> MobileNode | None:
        return self._index.get(("mn", address))

    def binding_key(self, correspondent: str, care_of_address: str) -> Secret | None:
        key = self._index.get(("kbm", (correspondent, care_of_address)))
        return key.kbm if key is not None else None


class _Table:
    """One table of the TOML file, with typed field readers that raise named errors."""

    def __init__(self, path: Path, name: str, data: dict[str, Any]):
        self.path, self.name, self.data = path, name, data

    def error(self, fld: str, problem: str) -> KeyringError:
        return KeyringError(f"{self.path}: [{self.name}] {fld}: {problem}")

    def raw(self, fld: str, required: bool = True) -> Any:
        if fld not in self.data:
            if required:
                raise self.error(fld, "missing")
            return None
        return self.data[fld]

    @overload
    def text(self, fld: str, required: Literal[True] = True) -> str: ...
    @overload
    def text(self, fld: str, required: bool) -> str | None: ...

    def text(self, fld: str, required: bool = True) -> str | None:
        value = self.raw(fld, required)
        if value is not None and not isinstance(value, str):
            raise self.error(fld, "must be a string")
        return value

    @overload
    def address(self, fld: str, required: Literal[True] = True, wildcard: bool = False) -> str: ...
    @overload
    def address(self, fld: str, required: bool, wildcard: bool = False) -> str | None: ...

    def address(self, fld: str, required: bool = True, wildcard: bool = False) -> str | None:
        value = self.text(fld, required)
        if value is None or (wildcard and value == "*"):
            return value
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            raise self.error(fld, "not an IPv6 address") from None

    @overload
    def hex_key(self, fld: str, lengths: tuple[int, ...],
                required: Literal[True] = True) -> Secret: ...
    @overload
    def hex_key(self, fld: str, lengths: tuple[int, ...], required: bool) -> Secret | None: ...

    def hex_key(self, fld: str, lengths: tuple[int, ...], required: bool = True) -> Secret | None:
        value = self.text(fld, required)
        if value is None:
            return None
        try:
            octets = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise self.error(fld, "bad hex") from None  # never echo the value: it is a key
        if lengths and len(octets) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise self.error(fld, f"wrong key length {len(octets)} octets, expected {want}")
        return Secret(octets)

    def choice(self, fld: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(fld, required=default is None) or default
        if value not in choices:
            raise self.error(fld, f"unknown value {value!r}, expected one of {', '.join(choices)}")
        return value


def _tables(path: Path, doc: dict[str, Any], key: str) -> list[_Table]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise KeyringError(f"{path}: [[{key}]] must be an array of tables")
    return [_Table(path, f"{key} #{n + 1}", item) for n, item in enumerate(items)]


def _prefix(table: _Table, value: Any) -> str:
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except (ValueError, TypeError):
        raise table.error("prefixes", f"not an IPv6 prefix: {value!r}") from None
    if net.prefixlen != 64:
        raise table.error("prefixes", f"prefix {value} is not /64")
    return str(net)


def _esp_key_lengths(algorithm: str) -> tuple[int, ...]:
    # RFC 3602 (16/24/32), RFC 3686 and RFC 4106 (key plus 4-octet salt), RFC 2404, RFC 4868
    return {"null": (0,), "aes-cbc": (16, 24, 32), "aes-ctr": (20, 28, 36),
            "aes-gcm-16": (20, 28, 36), "hmac-sha1-96": (20,), "hmac-sha256-128": (32,)}[algorithm]


def _sa_node(table: _Table) -> str | None:
    """An [[esp_sa]]'s optional mobile_node: the node whose SA this is (PROFILE.md), so no
    search for it is needed. Usually a [[mobile_node]] of this keyring (its Kph moves the SA's
    SPI, draft 6.4); an SA imported before its node is described may name one not (yet) here."""
    name = table.text("mobile_node", required=False)
    if name is not None and not name.strip():
        raise table.error("mobile_node", "must be a node's name, not empty")
    return name


def parse_keyring(doc: dict[str, Any], path: Path | str = "<keyring>") -> Keyring:
    path = Path(path)
    home_agents = []
    for t in _tables(path, doc, "home_agent"):
        prefixes = t.raw("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise t.error("prefixes", "must be a non-empty list of /64 prefixes")
        home_agents.append(HomeAgent(t.address("address"), tuple(_prefix(t, p) for p in prefixes)))

    mobile_nodes = []
    for t in _tables(path, doc, "mobile_node"):
        ks = t.hex_key("ks", (), required=False)
        kph = t.hex_key("kph", (20,), required=False)
        if (ks is None) == (kph is None):
            raise t.error("ks", "give exactly one of ks or kph")
        if ks is not None and not ks.value:
            raise t.error("ks", "empty key")
        mobile_nodes.append(MobileNode(
            name=t.text("name"), home_address=t.address("home_address"),
            home_agent=t.address("home_agent", required=False),
            kph=kph if kph is not None else Secret(formulas.kph_from_ks(ks.value if ks else b"")),
            phoa_cipher=t.choice("phoa_cipher", PHOA_CIPHERS, "aes-ctr"),
            key_index=t.choice("key_index", KEY_INDEXES, "esp-seq")))

    esp_sas = []
    for t in _tables(path, doc, "esp_sa"):
        spi_text = t.text("spi")
        try:
            spi = int(spi_text, 0)
        except ValueError:
            raise t.error("spi", "not an integer (use 0x... for hex)") from None
        if not 256 <= spi < 1 << 32:
            raise t.error("spi", "out of range 256..2^32-1 (RFC 4303 2.1)")
        enc = t.choice("encryption", ESP_ENCRYPTIONS)
        auth = t.choice("authentication", ESP_AUTHENTICATIONS)
        esp_sas.append(EspSa(
            spi=spi, src=t.address("src", wildcard=True), dst=t.address("dst", wildcard=True),
            encryption=enc,
            encryption_key=t.hex_key("encryption_key", _esp_key_lengths(enc), enc != "null")
            or Secret(b""),
            authentication=auth,
            authentication_key=t.hex_key("authentication_key", _esp_key_lengths(auth),
                                         auth != "null") or Secret(b""),
            mobile_node=_sa_node(t)))

    correspondents = []
    for t in _tables(path, doc, "correspondent"):
        nonces_doc = t.raw("nonces", required=False) or {}
        if not isinstance(nonces_doc, dict):
            raise t.error("nonces", "must be a table of index = nonce")
        nonces_table = _Table(path, f"{t.name}.nonces", nonces_doc)
        nonces: dict[int, Secret] = {}
        for index in nonces_doc:
            if not index.isdigit() or int(index) > 0xFFFF:
                raise nonces_table.error(index, "nonce index must be 0..65535")
            nonces[int(index)] = nonces_table.hex_key(index, (8,))
        correspondents.append(Correspondent(t.address("address"), t.hex_key("kcn", (20,)),
                                            nonces))

    binding_keys = [BindingKey(t.address("correspondent"), t.address("care_of_address"),
                               t.hex_key("kbm", (20,)))
                    for t in _tables(path, doc, "binding_key")]
    unknown = set(doc) - {"home_agent", "mobile_node", "esp_sa", "correspondent", "binding_key"}
    if unknown:
        raise KeyringError(f"{path}: unknown table [{sorted(unknown)[0]}]")
    return Keyring(tuple(home_agents), tuple(mobile_nodes), tuple(esp_sas),
                   tuple(correspondents), tuple(binding_keys))


MAX_KEYRING_OCTETS = 16 * 1024 * 1024   # a 500-node keyring is about 0.3 MB
INSECURE_MODE_BITS = 0o077              # any access by group or others, as ssh checks keys


def _read_keyring_file(path: Path) -> tuple[int, bytes]:
    """(mode, content) of a regular file of bounded size. A FIFO would block the open and a
    device may never end (/dev/zero): both are refused before anything is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyringError(f"{path}: no such keyring file") from None
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read keyring: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyringError(f"{path}: not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_KEYRING_OCTETS + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEYRING_OCTETS:
        raise KeyringError(f"{path}: larger than {MAX_KEYRING_OCTETS // (1024 * 1024)} MiB, "
                           "not a keyring")
    return mode, data


def load_keyring(path: str | os.PathLike[str], allow_insecure: bool = False) -> Keyring:
    """Read and validate a keyring file. One that group or others may access is refused
    (KeyringError) unless `allow_insecure`, which only warns (KeyringPermissionWarning)."""
    path = Path(path)
    mode, data = _read_keyring_file(path)
    if mode & INSECURE_MODE_BITS:
        problem = (f"{path}: keyring is accessible by group or others "
                   f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it")
        if not allow_insecure:
            raise KeyringError(problem + ", or pass --allow-insecure-keyring")
        warnings.warn(problem, KeyringPermissionWarning, stacklevel=2)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyringError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeyringError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise KeyringError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_keyring(doc, path)
