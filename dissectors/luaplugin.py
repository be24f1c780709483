"""The Wireshark Lua plugin (wireshark/mip6mon_privacy.lua): where it is, how tshark loads it.

The plugin names the profile's extensions for Wireshark and tshark (`mip6lp.phoa`,
`mip6lp.hoti.p`, `mip6lp.pkt.*`). Every tshark that mip6mon runs for people (the dashboard's
display filters) loads this one file, so a `mip6lp.*` filter means the same in the dashboard,
in Wireshark and in `tshark -X lua_script:` by hand; `mip6mon wireshark install` copies it
into the user's personal plugin folder. mip6mon's own tshark loads no personal plugin at all
(dissectors.espsa.TsharkConfig.env moves HOME), so an installed copy of another version, or
another plugin of the user's, never changes what mip6mon sees. The report's hot path reads
the same octets with its own byte readers (dissectors/), and tests/dissectors/
test_lua_plugin.py holds the two equal.
"""
from __future__ import annotations

from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "wireshark" / "mip6mon_privacy.lua"
PROTOCOL = "mip6lp"        # the plugin's Proto() abbreviation: every field starts with it


def tshark_options(plugin: Path = PLUGIN) -> list[str]:
    """tshark arguments that load the plugin (Lua post-dissector, PLATFORM-NOTES)."""
    return ["-X", f"lua_script:{plugin}"]

