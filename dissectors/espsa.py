"""ESP security associations for tshark, from the keyring, in a private config directory.

tshark decrypts ESP with its `esp_sa` UAT table. Key material must not appear in a process's
argv (anyone can read it with `ps`), so the table is written to `esp_sa` in a private
configuration directory that tshark reads through XDG_CONFIG_HOME. (Measured with tshark
4.0.17: a `wireshark/esp_sa` file under XDG_CONFIG_HOME decrypts exactly like
`-o uat:esp_sa:...`; tshark opens it once, at start, before `preferences`.)

Where the keys live, and for how long (issue 13; README "Security"):
- on a memory filesystem (/dev/shm when present, else the temporary directory), never on a
  disk, in a directory of mode 0700 (file 0600) named `mip6mon-tshark-PID-START-...` for the
  process that owns it (its pid and its start time, so a recycled pid is not mistaken for it);
- the key file is unlinked as soon as tshark has read it (Linux inotify tells when it closes
  the file; where inotify is missing, when the directory is removed), and the directory when
  the capture or the filter is closed;
- a process killed with -9 cannot clean up: every mip6mon start removes the directories whose
  owner is dead (`remove_stale`).

Draft 6.4: the mobile node and its home agent move to a new SPI (same keys) for every Home BU
exchange. A keyring usually lists the SAs as first configured, so for every mobile node whose
Kph is known, the next SPIs of each listed SA are predicted with keys.formulas.spi_chain and
added with the same keys and addresses.
"""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import struct
import tempfile
import threading
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


CONFIG_PREFIX = "mip6mon-tshark-"
MEMORY_FS = "/dev/shm"
KEY_FILE_WAIT = 300.0     # seconds a watcher waits for tshark to read the key file


def config_root() -> str:
    """Where the directories go: a memory filesystem when there is one (keys never on disk)."""
    if os.path.isdir(MEMORY_FS) and os.access(MEMORY_FS, os.W_OK | os.X_OK):
        return MEMORY_FS
    return tempfile.gettempdir()


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[1].split()[19].decode()


def _owner_alive(name: str) -> bool:
    """Whether the process a directory is named for still runs (pid and start time)."""
    parts = name[len(CONFIG_PREFIX):].split("-")
    if len(parts) < 3 or not parts[0].isdigit():
        return True                     # not named by this scheme: not ours to judge
    return _start_time(int(parts[0])) == parts[1]


def remove_stale(root: str | None = None) -> list[str]:
    """Remove the configuration directories whose owner process is dead (killed with -9, so
    it could not clean up). Returns the paths removed. Run at every mip6mon start."""
    root = root or config_root()
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith(CONFIG_PREFIX) or _owner_alive(name):
            continue
        try:
            owner = os.stat(path, follow_symlinks=False).st_uid
        except OSError:          # another mip6mon starting at the same time removed it first
            continue
        if owner == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class _ReadWatch:
    """Unlinks a file as soon as a reader has closed it (Linux inotify IN_CLOSE_NOWRITE)."""

    IN_CLOSE_NOWRITE = 0x10
    IN_NONBLOCK = 0o4000

    def __init__(self, path: str):
        self.path = path
        self._stop = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(self.IN_NONBLOCK)
        if self._fd < 0 or libc.inotify_add_watch(self._fd, path.encode(),
                                                  self.IN_CLOSE_NOWRITE) < 0:
            raise OSError(ctypes.get_errno(), "inotify unavailable")
        threading.Thread(target=self._run, name="mip6mon-keyfile", daemon=True).start()

    def _run(self) -> None:
        try:
            waited = 0.0
            while not self._stop.is_set() and waited < KEY_FILE_WAIT:
                ready, _, _ = select.select([self._fd], [], [], 0.2)
                waited += 0.2
                if not ready:
                    continue
                events = os.read(self._fd, 4096)
                if any(struct.unpack_from("iIII", events, at)[1] & self.IN_CLOSE_NOWRITE
                       for at in _event_offsets(events)):
                    _unlink(self.path)
                    return
        finally:
            os.close(self._fd)

    def stop(self) -> None:
        self._stop.set()


def _event_offsets(events: bytes) -> list[int]:
    offsets, at = [], 0
    while at + 16 <= len(events):
        offsets.append(at)
        at += 16 + struct.unpack_from("iIII", events, at)[3]
    return offsets


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class TsharkConfig:
    """A private tshark configuration directory; `env` points tshark at it. The key file
    disappears once tshark has read it; `remove()` (or the context manager) removes the rest."""

    def __init__(self, keyring: Keyring | None = None,
                 chain_length: int = SPI_LOOKAHEAD):
        remove_stale()
        self.entries = sa_entries(keyring, chain_length)
        owner = f"{os.getpid()}-{_start_time(os.getpid()) or 0}-"
        self.path = tempfile.mkdtemp(prefix=CONFIG_PREFIX + owner, dir=config_root())  # 0700
        conf = os.path.join(self.path, "wireshark")
        os.mkdir(conf, 0o700)
        self._write(os.path.join(conf, "preferences"), PREFERENCES)
        self.key_file: str | None = None
        self._watch: _ReadWatch | None = None
        if self.entries:
            self.key_file = os.path.join(conf, "esp_sa")
            self._write(self.key_file, "".join(_uat_line(e) + "\n" for e in self.entries))
            try:
                self._watch = _ReadWatch(self.key_file)
            except (OSError, AttributeError):
                self._watch = None       # no inotify: the file goes with the directory

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
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = ""

    def __enter__(self) -> TsharkConfig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
