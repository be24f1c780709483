"""Adding `[[esp_sa]]` tables to a keyring file (PROFILE.md "The keyring"), safely.

- A new keyring is created with O_CREAT|O_EXCL and mode 0600: never over a file that appeared
  meanwhile, never readable by others even for a moment, whatever the umask.
- An existing keyring is edited with tomlkit, which keeps its other tables, comments and
  layout; the result goes to a temporary file (0600) in the same folder, then replaces the
  keyring in one rename, so a reader sees the old file or the new one, never half of one. Its
  owner is kept, and its mode narrowed to the owner's bits (a keyring is a secret).
- Every value is written by tomlkit (strings escaped), and the text is read back with the
  keyring's own validator before it is written, so a name cannot inject TOML and the file
  always loads.
- An SA already there with the same keys (its addresses the same, or wildcards) is left
  alone; one with the same SPI and overlapping addresses but other keys is refused unless
  `replace` is given. Errors name SPIs and
  addresses, never keys.
"""
from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from keys.errors import UserError
from keys.keyring import EspSa, Keyring, KeyringError, parse_keyring

NEW_KEYRING_HEADER = ("mip6mon keyring (PROFILE.md \"The keyring\"). It holds keys: keep it "
                      "chmod 600.")


@dataclass
class Merge:
    """What adding the SAs did, in the order they were given."""
    added: list[EspSa] = field(default_factory=list)
    present: list[EspSa] = field(default_factory=list)      # the same SA was there already
    replaced: list[EspSa] = field(default_factory=list)
    created: bool = False                                    # a new keyring file
    narrowed_mode: int | None = None                         # the old mode, when narrowed


def title(sa: EspSa) -> str:
    return f"SPI 0x{sa.spi:08x} {sa.src} -> {sa.dst}"


def _overlaps(a: EspSa, b: EspSa) -> bool:
    """Could both SAs claim the same packet? Same SPI, and addresses equal or a wildcard."""
    return a.spi == b.spi and all(x == y or "*" in (x, y) for x, y in ((a.src, b.src),
                                                                      (a.dst, b.dst)))


def _covers(old: EspSa, new: EspSa) -> bool:
    """Does `old` already decrypt what `new` does: same SPI, algorithms and keys, and its
    addresses the same or wildcards?"""
    return (old.spi, old.encryption, old.encryption_key, old.authentication,
            old.authentication_key) == (new.spi, new.encryption, new.encryption_key,
                                        new.authentication, new.authentication_key) and \
        all(o in (n, "*") for o, n in ((old.src, new.src), (old.dst, new.dst)))


def esp_sa_table(sa: EspSa, mobile_node: str | None, note: str | None = None) -> Table:
    """One [[esp_sa]] table in PROFILE.md's field order; keys as lowercase hex."""
    table = tomlkit.table()
    if note:
        table.comment(note)
    _set_esp_sa(table, sa, mobile_node)
    return table


def _set_esp_sa(table: Table, sa: EspSa, mobile_node: str | None) -> None:
    table["spi"] = f"0x{sa.spi:08x}"
    if mobile_node is not None:
        table["mobile_node"] = mobile_node
    table["src"] = sa.src
    table["dst"] = sa.dst
    table["encryption"] = sa.encryption
    if sa.encryption_key.value or "encryption_key" in table:
        table["encryption_key"] = sa.encryption_key.value.hex()
    table["authentication"] = sa.authentication
    if sa.authentication_key.value or "authentication_key" in table:
        table["authentication_key"] = sa.authentication_key.value.hex()


def _read(path: Path) -> tuple[str, Keyring, dict[str, Any]] | None:
    """(text, keyring, its TOML as plain data), or None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"{path}: cannot read keyring: {exc.__class__.__name__}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyringError(f"{path}: not valid TOML: {exc}") from None
    return text, parse_keyring(doc, path), doc


def merge_esp_sas(path: str | os.PathLike[str], sas: Sequence[EspSa],
                  mobile_node: str | None = None, replace: bool = False,
                  note: str | None = None) -> Merge:
    """Add `sas` to the keyring at `path` (created if absent); see the module's rules."""
    path = Path(os.path.realpath(path))                   # edit the file a symlink names
    if mobile_node is not None and (not mobile_node or not mobile_node.isprintable()):
        raise UserError("a mobile node name must be printable text, not empty")
    merge = Merge()
    existing = _read(path)
    if existing is None:
        document = tomlkit.document()
        document.add(tomlkit.comment(NEW_KEYRING_HEADER))
        document.add(tomlkit.nl())
        listed: list[EspSa] = []
        raw_tables: list[dict[str, Any]] = []
        merge.created = True
    else:
        text, keyring, doc = existing
        document = tomlkit.parse(text)
        listed = list(keyring.esp_sas)
        raw_tables = list(doc.get("esp_sa", []))
    tables = document.get("esp_sa")
    if tables is None:
        tables = tomlkit.aot()
        document.append("esp_sa", tables)
    if not isinstance(tables, AoT):
        raise KeyringError(f"{path}: esp_sa must be written as [[esp_sa]] tables to add to it")

    seen: list[EspSa] = []
    for sa in sas:
        twin = next((s for s in seen if _overlaps(s, sa)), None)
        if twin is not None:
            if twin != sa:
                raise UserError(f"{title(sa)}: given twice, with different keys or algorithms")
            continue
        seen.append(sa)
        index = next((i for i, old in enumerate(listed) if _overlaps(old, sa)), None)
        if index is None:
            tables.append(esp_sa_table(sa, mobile_node, note))
            listed.append(sa)
            raw_tables.append({})
            merge.added.append(sa)
            continue
        old_node = raw_tables[index].get("mobile_node")
        if _covers(listed[index], sa) and (mobile_node is None or mobile_node == old_node):
            merge.present.append(sa)
            continue
        if not replace:
            raise UserError(f"{title(sa)}: the keyring already has SPI 0x{sa.spi:08x} "
                            f"({title(listed[index])}, [[esp_sa]] #{index + 1}) with other "
                            "keys, algorithms, addresses or mobile node; --replace to overwrite")
        _set_esp_sa(tables[index], sa, mobile_node)
        listed[index] = sa
        merge.replaced.append(sa)

    if not merge.added and not merge.replaced:
        return merge
    text = tomlkit.dumps(document)
    _check_round_trip(text, path, [*merge.added, *merge.replaced])
    if merge.created:
        _create(path, text)
    else:
        merge.narrowed_mode = _replace(path, text)
    return merge


def _check_round_trip(text: str, path: Path, written: list[EspSa]) -> None:
    """The new text loads with the keyring's own validator and holds every SA written."""
    try:
        keyring = parse_keyring(tomllib.loads(text), path)
    except tomllib.TOMLDecodeError:                        # tomlkit wrote something unreadable
        raise KeyringError(f"{path}: the edited keyring would not be valid TOML; "
                           "nothing was written") from None
    missing = [sa for sa in written if sa not in keyring.esp_sas]
    if missing:
        raise KeyringError(f"{path}: {title(missing[0])} did not read back; nothing was written")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _create(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UserError(f"{path}: appeared while the keyring was being made; run again") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot create the keyring: {exc.strerror or exc}") from None
    try:
        _write_all(fd, text)
    except OSError as exc:
        os.unlink(path)
        raise UserError(f"{path}: cannot write the keyring: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    _fsync_folder(path.parent)


def _replace(path: Path, text: str) -> int | None:
    """Write `text` over the keyring in one rename; returns the old mode if it was narrowed."""
    old = path.stat()
    mode = stat.S_IMODE(old.st_mode) & 0o600
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write next to the keyring: "
                        f"{exc.strerror or exc}") from None
    try:
        try:
            _write_all(fd, text)
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)     # keep its owner (when root)
                except PermissionError:
                    pass
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise UserError(f"{path}: cannot replace the keyring: {exc.strerror or exc}") from None
    _fsync_folder(path.parent)
    return stat.S_IMODE(old.st_mode) if mode != stat.S_IMODE(old.st_mode) else None
