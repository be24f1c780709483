"""The Wireshark Lua plugin (wireshark/mip6mon_privacy.lua): where it is, how tshark loads it.

The plugin names the profile's extensions for Wireshark and tshark (`mip6lp.phoa`,
`mip6lp.hoti.p`, `mip6lp.pkt.*`). Every tshark that mip6mon runs for people (the dashboard's
display filters) loads this one file, so a `mip6lp.*` filter means the same in the dashboard,
in Wireshark and in `tshark -X lua_script:` by hand; `mip6mon wireshark install` copies it into
the user's personal plugin folder. The report's hot path reads the same octets with its own
byte readers (dissectors/), and tests/dissectors/test_lua_plugin.py holds the two equal.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "wireshark" / "mip6mon_privacy.lua"
PROTOCOL = "mip6lp"        # the plugin's Proto() abbreviation: every field starts with it


def tshark_options(plugin: Path = PLUGIN) -> list[str]:
    """tshark arguments that load the plugin (Lua post-dissector, PLATFORM-NOTES)."""
    return ["-X", f"lua_script:{plugin}"]


def without_personal_plugins(env: Mapping[str, str], home: str) -> dict[str, str]:
    """`env` with HOME moved to `home`, a private directory without plugins.

    tshark 4.0 loads personal plugins from $HOME/.local/lib/wireshark/plugins (`tshark -G
    folders`). mip6mon's tshark must run the plugin this package ships and no other copy: a
    copy installed there earlier may be another version (the plugin would then stand down in
    its favour), and the user's other personal plugins would run on every frame. Its
    configuration is private already (XDG_CONFIG_HOME, dissectors.espsa)."""
    return {**env, "HOME": home}
