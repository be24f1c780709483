"""Key material never leaves the process: not in `report` output (text or JSON), not in errors."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from keys import formulas
from lab.run import run_scenario
from lab.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def secrets_of(keyring_path: Path) -> set[str]:
    """Every hex key in the keyring, and the Kph derived from each Ks (lower-case hex)."""
    doc = tomllib.loads(keyring_path.read_text())
    found = set(re.findall(r'"(?:0x)?([0-9a-fA-F]{16,})"', keyring_path.read_text()))
    for node in doc.get("mobile_node", []):
        if "ks" in node:
            found.add(formulas.kph_from_ks(bytes.fromhex(node["ks"])).hex())
    return {s.lower() for s in found}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("leak-demo")
    run_scenario(load_scenario("demo"), out)
    return out


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_report_never_prints_a_key(demo, fmt):
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "report",
                          str(demo / "capture.pcapng"), "--keys", str(demo / "keyring.toml"),
                          "--format", fmt], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    secrets = secrets_of(demo / "keyring.toml")
    assert len(secrets) > 10
    output = (run.stdout + run.stderr).lower().replace(":", "")
    assert "home_bindings" in output or "home bindings" in output
    leaked = [s[:6] + "…" for s in secrets if s in output]
    assert not leaked, f"key material in report output: {leaked}"


def test_bad_keyring_error_does_not_echo_the_key(demo, tmp_path):
    bad = tmp_path / "bad.toml"
    text = (demo / "keyring.toml").read_text()
    key = re.search(r'ks\s*=\s*"([0-9a-f]+)"', text).group(1)
    bad.write_text(text.replace(key, key[:-1] + "Z", 1))
    bad.chmod(0o600)
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "report",
                          str(demo / "capture.pcapng"), "--keys", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "bad hex" in run.stderr
    assert key[:-1] not in run.stderr and "Traceback" not in run.stderr
