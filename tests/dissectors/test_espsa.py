"""Where the ESP keys handed to tshark live, and for how long (dissectors.espsa, issue 13):
a 0700 directory on a memory filesystem named for its owner, a key file gone as soon as
tshark has read it, and directories of dead owners removed by the next mip6mon start."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dissectors import espsa
from tests.monitor.conftest import ROOT, run_cli


def test_the_key_directory_is_private_on_a_memory_filesystem_and_named_for_its_owner(tmp_path):
    from keys.keyring import load_keyring
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    out = tmp_path
    run_scenario(load_scenario("home-transport-ctr"), str(out))
    with espsa.TsharkConfig(load_keyring(out / "keyring.toml")) as config:
        path = Path(config.path)
        assert path.parent == Path("/dev/shm")                   # present on this machine
        assert path.name.startswith(f"mip6mon-tshark-{os.getpid()}-")
        assert path.stat().st_mode & 0o777 == 0o700
        key_file = Path(config.key_file)
        assert key_file.stat().st_mode & 0o777 == 0o600
        # tshark reads it: the key file is gone at once, the directory stays until closed
        run = subprocess.run(["tshark", "-n", "-r", str(out / "capture.pcapng"), "-Y", "esp",
                              "-T", "fields", "-e", "esp.decrypted_data"], env=config.env(),
                             capture_output=True, text=True, timeout=60)
        decrypted = [line for line in run.stdout.splitlines() if line.strip()]
        assert decrypted and len(decrypted) == len(run.stdout.splitlines())
        deadline = time.monotonic() + 5
        while key_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not key_file.exists() and path.is_dir()
    assert not path.exists()


HOLDER = """
import sys, time
from dissectors.espsa import TsharkConfig
from keys.keyring import parse_keyring
doc = {"esp_sa": [{"spi": "0x1001", "src": "*", "dst": "*", "encryption": "aes-cbc",
                   "encryption_key": "00" * 16, "authentication": "null"}]}
config = TsharkConfig(parse_keyring(doc))
print(config.path, flush=True)
time.sleep(120)
"""


def _holder() -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_start_removes_the_directories_of_dead_owners_only():
    dead, dead_path = _holder()
    alive, alive_path = _holder()
    try:
        assert (dead_path / "wireshark" / "esp_sa").exists()
        os.kill(dead.pid, signal.SIGKILL)             # no cleanup can run
        dead.wait(10)
        assert dead_path.exists()
        run = run_cli("lab", "list")                  # any mip6mon start
        assert run.returncode == 0
        assert not dead_path.exists()
        assert (alive_path / "wireshark" / "esp_sa").exists()
    finally:
        for proc in (dead, alive):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    # a directory whose pid lives on in another process (recycled) is judged by start time
    assert not espsa._owner_alive(f"mip6mon-tshark-{os.getpid()}-1-x")
    assert espsa._owner_alive(f"mip6mon-tshark-{os.getpid()}-{espsa._start_time(os.getpid())}-x")
