"""`mip6mon wireshark install`: put mip6mon's Lua plugin where Wireshark and tshark load it.

The folder is the one tshark itself reports (`tshark -G folders`), so it follows HOME and
whatever rules the installed Wireshark version has, instead of a path guessed here. The copy
is atomic (a temporary file in the folder, then a rename), so a Wireshark starting meanwhile
never loads half a plugin; running it again is harmless and says the copy is already current.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from dissectors import luaplugin
from keys.errors import UserError

TSHARK = "tshark"
# `tshark -G folders` labels, best first: Wireshark 3.x and 4.x list a "Personal Lua Plugins"
# folder (no version in its name); older versions load Lua scripts from "Personal Plugins".
FOLDER_LABELS = ("Personal Lua Plugins", "Personal Plugins")


def _tshark(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("tshark not found: install Wireshark's tshark package "
                        "(apt-get install tshark)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"`tshark {' '.join(args)}` did not answer within 60 s") from None


def personal_plugin_folder() -> Path:
    """The personal Lua plugin folder of the tshark on PATH, for this user's environment."""
    result = _tshark("-G", "folders")
    folders: dict[str, str] = {}
    for line in result.stdout.splitlines():
        label, sep, path = line.partition(":")
        if sep:
            folders.setdefault(label.strip(), path.strip())
    for label in FOLDER_LABELS:
        if folders.get(label):
            return Path(folders[label])
    raise UserError("`tshark -G folders` names no personal plugin folder "
                    f"(exit code {result.returncode})")


def install(folder: Path) -> str:
    """Copy the plugin into `folder` (made if needed). Returns "installed", "updated" or
    "current" (the same octets were there already)."""
    target = folder / luaplugin.PLUGIN.name
    plugin = luaplugin.PLUGIN.read_bytes()
    try:
        if target.read_bytes() == plugin:
            return "current"
        state = "updated"
    except (FileNotFoundError, NotADirectoryError):   # mkdir below says what is in the way
        state = "installed"
    except OSError as exc:
        raise UserError(f"cannot read {target}: {exc.strerror or exc}") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".mip6mon-", suffix=".lua.tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(plugin)
            os.chmod(temporary, 0o644)         # code, not a secret: readable like the original
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except PermissionError:
        raise UserError(f"cannot install the Wireshark plugin into {folder}: "
                        "permission denied") from None
    except (NotADirectoryError, FileExistsError):
        in_the_way = next((p for p in reversed((folder, *folder.parents))
                           if p.exists() and not p.is_dir()), folder)
        raise UserError(f"cannot install the Wireshark plugin into {folder}: "
                        f"{in_the_way} is not a directory") from None
    except OSError as exc:
        raise UserError(f"cannot install the Wireshark plugin into {folder}: "
                        f"{exc.strerror or exc}") from None
    return state


def check_loaded(target: Path) -> None:
    """tshark, run as the user runs it, registers the plugin's protocol from this copy."""
    result = _tshark("-G", "protocols")
    standing_down = [line for line in result.stderr.splitlines()
                     if line.startswith(f"{luaplugin.PROTOCOL}: not loading {target}")]
    if standing_down:                          # another copy is loaded before this one
        raise UserError(f"installed {target}, but tshark uses another copy: "
                        f"{standing_down[0].partition(': ')[2]}")
    # one line per protocol: name, short name, filter name
    if not any(line.split("\t")[2:3] == [luaplugin.PROTOCOL]
               for line in result.stdout.splitlines()):
        raise UserError(f"installed {target}, but tshark does not load it "
                        "(is Lua enabled in this Wireshark build?)")


def command_wireshark(args: argparse.Namespace) -> int:
    folder = personal_plugin_folder()
    target = folder / luaplugin.PLUGIN.name
    if args.print_path:
        print(target)
        return 0
    state = install(folder)
    check_loaded(target)
    print({"installed": f"installed {target}",
           "updated": f"updated {target} (it held another version)",
           "current": f"already current: {target}"}[state])
    if state != "current":
        print("tshark and Wireshark load it from now on (in a running Wireshark: "
              "Analyze > Reload Lua Plugins); try: tshark -r CAPTURE -Y mip6lp.phoa")
    return 0
