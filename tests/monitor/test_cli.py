"""The command line's own checks (monitor/cli.py): arguments refused by argparse in one line
with exit 2, --allow-insecure-keyring wherever --keys is taken, and stale key files removed
at every start (issue 13)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from keys.errors import EXIT_BAD_INPUT
from monitor.cli import build_parser
from tests.monitor.conftest import run_cli


@pytest.mark.parametrize("port", ["-1", "99999", "65536", "http", "1e3"])
def test_a_bad_port_is_one_line_and_exit_2(port):
    run = run_cli("replay", "capture.pcapng", "--port", port)
    assert run.returncode == EXIT_BAD_INPUT == 2
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("mip6mon: error: argument --port:") and "Traceback" not in line
    assert line.endswith("(see mip6mon replay --help)")


@pytest.mark.parametrize("port", ["0", "8080", "65535"])
def test_a_good_port_is_taken(port):
    args = build_parser().parse_args(["replay", "c.pcapng", "--port", port])
    assert args.port == int(port)


def test_every_command_that_takes_keys_takes_allow_insecure_keyring():
    parser = build_parser()
    commands = {"report": ["c"], "compare": ["a", "b"], "replay": ["c"], "live": ["-i", "lo"]}
    for command, positional in commands.items():
        args = parser.parse_args([command, *positional, "--keys", "k.toml",
                                  "--allow-insecure-keyring"])
        assert args.allow_insecure_keyring is True
        assert parser.parse_args([command, *positional]).allow_insecure_keyring is False


def test_an_insecure_keyring_is_refused_then_allowed_with_one_warning(scenario_runs, tmp_path):
    out = scenario_runs("baseline")[3]
    capture, keys = out / "capture.pcapng", tmp_path / "keyring.toml"
    shutil.copy(out / "keyring.toml", keys)
    os.chmod(keys, 0o644)
    run = run_cli("report", str(capture), "--keys", str(keys))
    assert run.returncode == 2 and run.stdout == ""
    [line] = run.stderr.strip().splitlines()
    assert "chmod 600" in line and "--allow-insecure-keyring" in line
    run = run_cli("report", str(capture), "--keys", str(keys), "--allow-insecure-keyring")
    assert run.returncode == 0
    assert run.stderr.strip().splitlines() == [
        f"mip6mon: warning: {keys}: keyring is accessible by group or others (mode 0644): "
        "chmod 600 it"]


def test_a_subcommands_own_options_are_imported_only_when_it_is_parsed():
    """`report` starts without the evaluation grid and the lab's crowds (their options are
    declared where they are read); `evaluate` and `lab crowd` still take and show them."""
    code = ("import sys; from monitor.cli import build_parser; "
            "build_parser().parse_args(['report', 'c.pcapng']); "
            "print(sorted(m for m in ('monitor.evaluate', 'lab.crowd') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
    parser = build_parser()
    assert parser.parse_args(["evaluate", "--nodes", "3", "--seeds", "2"]).nodes == [3]
    assert parser.parse_args(["lab", "crowd", "-o", "out", "-n", "4"]).nodes == 4
    for command in (["evaluate"], ["lab", "crowd"]):
        run = run_cli(*command, "--help")
        assert run.returncode == 0 and "--nodes" in run.stdout
    run = run_cli("evaluate", "--seeds", "many")
    assert run.returncode == EXIT_BAD_INPUT and "argument --seeds" in run.stderr
