"""`mip6mon wireshark install`: the Lua plugin lands where the real tshark looks for personal
plugins in a fresh HOME, and a plain tshark (no -X) then names the profile's extensions."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dissectors import luaplugin
from lab.run import run_scenario
from lab.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
PERSONAL = Path(".local") / "lib" / "wireshark" / "plugins"     # tshark 4.0, under HOME


def _env(home: Path, xdg: str = "unset", path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    if xdg == "there":
        env |= {"XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share")}
    if path is not None:
        env["PATH"] = path
    return env


def mip6mon(*args: str, env: dict[str, str],
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "monitor.cli", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("mip6mon: error: ")
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def rr_privacy(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rr-privacy")
    run_scenario(load_scenario("rr-privacy"), str(directory))
    return directory


@pytest.mark.parametrize("xdg", ["unset", "there"])
def test_after_install_plain_tshark_finds_the_pseudo_home_addresses(rr_privacy, tmp_path, xdg):
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, xdg)
    result = mip6mon("wireshark", "install", env=env)
    assert result.returncode == 0, result.stderr
    target = home / PERSONAL / luaplugin.PLUGIN.name
    assert result.stdout.splitlines()[0] == f"installed {target}"
    assert target.read_bytes() == luaplugin.PLUGIN.read_bytes()

    # plain tshark as the user runs it: no -X, no keyring (4.1's 0xFE travels in clear)
    tshark = subprocess.run(["tshark", "-n", "-r", str(rr_privacy / "capture.pcapng"),
                             "-Y", "mip6lp.phoa", "-T", "fields", "-e", "frame.number",
                             "-e", "mip6lp.phoa"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert tshark.returncode == 0 and "lua" not in tshark.stderr.lower(), tshark.stderr
    truth = json.loads((rr_privacy / "truth.json").read_text())
    want = {b["frame"]: b["pseudo_home_address"] for b in truth["correspondent_bindings"]
            if truth["frames"][str(b["frame"])]["procedure"] == "4.1"}
    assert len(want) >= 2
    got = {int(n): a for n, a in (line.split("\t") for line in tshark.stdout.splitlines())}
    assert got == want

    # and without the plugin the same tshark knows no such field (the test is not vacuous)
    target.unlink()
    without = subprocess.run(["tshark", "-r", str(rr_privacy / "capture.pcapng"), "-Y",
                              "mip6lp.phoa"], env=env, capture_output=True, text=True, timeout=60)
    assert without.returncode != 0 and "mip6lp.phoa" in without.stderr


def test_install_is_idempotent_and_replaces_another_version(tmp_path):
    env = _env(tmp_path)
    assert mip6mon("wireshark", "install", env=env).returncode == 0
    target = tmp_path / PERSONAL / luaplugin.PLUGIN.name
    before = target.stat()
    again = mip6mon("wireshark", "install", env=env)
    assert again.returncode == 0 and again.stdout == f"already current: {target}\n"
    assert target.stat().st_ino == before.st_ino and target.stat().st_mtime_ns == before.st_mtime_ns

    target.write_text("-- an older mip6mon_privacy.lua\n")
    updated = mip6mon("wireshark", "install", env=env)
    assert updated.returncode == 0
    assert updated.stdout.splitlines()[0] == f"updated {target} (it held another version)"
    assert target.read_bytes() == luaplugin.PLUGIN.read_bytes()
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]   # no temporaries


def test_print_path_installs_nothing(tmp_path):
    result = mip6mon("wireshark", "install", "--print-path", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path / PERSONAL / luaplugin.PLUGIN.name}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop the capability that ignores modes")
def test_unwritable_folder_is_a_one_line_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    # root without CAP_DAC_OVERRIDE obeys file modes like any user
    drop = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    result = mip6mon("wireshark", "install", env=_env(home), prefix=drop)
    assert_one_line_error(result, "permission denied", str(home / PERSONAL))
    assert list(home.iterdir()) == []


def test_a_file_in_the_way_is_a_one_line_error(tmp_path):
    (tmp_path / ".local").write_text("not a folder")
    result = mip6mon("wireshark", "install", env=_env(tmp_path))
    assert_one_line_error(result, f"{tmp_path / '.local'} is not a directory")


def test_no_tshark_is_a_one_line_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    for args in (("install",), ("install", "--print-path")):
        result = mip6mon("wireshark", *args, env=_env(tmp_path, path=str(empty)))
        assert_one_line_error(result, "tshark not found")


def test_personal_plugins_never_reach_mip6mons_own_tshark(rr_privacy, tmp_path):
    """After `wireshark install`, and with a personal Lua plugin that raises on every frame
    (a user's buggy one, or a broken copy), `report` is byte for byte what it is without."""
    def report(home: Path) -> str:
        result = mip6mon("report", str(rr_privacy / "capture.pcapng"), "--keys",
                         str(rr_privacy / "keyring.toml"), "--format", "json", env=_env(home))
        assert result.returncode == 0, result.stderr
        return result.stdout

    clean = tmp_path / "clean"
    clean.mkdir()
    installed = tmp_path / "installed"
    installed.mkdir()
    assert mip6mon("wireshark", "install", env=_env(installed)).returncode == 0
    raising = tmp_path / "raising"
    (raising / PERSONAL).mkdir(parents=True)
    (raising / PERSONAL / "users_own.lua").write_text(
        'local p = Proto("usersown", "A user\'s post-dissector")\n'
        'function p.dissector(tvb, pinfo, tree) error("boom") end\n'
        "register_postdissector(p)\n")
    want = report(clean)
    assert json.loads(want)["capture"]["malformed"] == 0
    assert report(installed) == want
    assert report(raising) == want
