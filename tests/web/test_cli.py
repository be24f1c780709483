"""`mip6mon replay | demo | live` as a user runs them: URL with a token, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.web.conftest import ROOT, Server, _env, start_server, wait_done, wait_status


def run_cli(*argv: str, timeout: float = 60,
            env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *argv], cwd=ROOT,
                          env=env or _env(), capture_output=True, text=True, timeout=timeout)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


@pytest.mark.parametrize("argv, message", [
    (("replay", "/nonexistent/capture.pcapng"), "no such file"),
    (("replay", __file__), "not a capture file"),
    (("replay", "FIFO"), "not a regular file"),
    (("replay", "/"), "not a regular file"),
    (("replay", "CAPTURE", "--speed", "fast"), "--speed must be 1, 10 or max"),
    (("replay", "CAPTURE", "--keys", "/nonexistent/keyring.toml"), "keyring"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, ctr_lab, tmp_path):
    fifo = tmp_path / "capture.pcapng"
    os.mkfifo(fifo)         # there, but not a file: reading it would wait for a writer
    argv = tuple({"CAPTURE": str(ctr_lab.capture), "FIFO": str(fifo)}.get(a, a) for a in argv)
    done = run_cli(*argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mip6mon: error: "), done.stderr
    assert message in lines[0].lower() or message in lines[0]
    assert "Traceback" not in done.stderr


def test_replay_prints_a_loopback_url_with_a_random_token(ctr_lab):
    servers = [start_server("replay", str(ctr_lab.capture), "--speed", "max") for _ in range(2)]
    try:
        tokens = {s.token for s in servers}
        assert len(tokens) == 2 and all(len(t) >= 24 for t in tokens)
        for server in servers:
            assert server.base.startswith("http://127.0.0.1:")
            status = wait_done(server)
            assert status["analysed"] == len(ctr_lab.truth["frames"])
            assert status["keyed"] is False
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.base + "/api/status")
            assert refused.value.code == 401
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert server.process.returncode in (0, -15)
        log = server.process.stderr.read()
        assert "GET /api/status" in log and server.token not in log     # requests logged, token not


def test_paced_replay_waits_for_the_browser(ctr_lab):
    server = start_server("replay", str(ctr_lab.capture), "--keys", str(ctr_lab.keyring),
                          "--speed", "10", "--token", "chosen-token-123456")
    try:
        assert server.token == "chosen-token-123456"
        # the session's state leaves "starting" once: waiting, then nothing is analysed
        status = wait_status(server, ("waiting for a browser", "running", "done"))
        assert status["state"] == "waiting for a browser" and status["analysed"] == 0
        assert status["speed"] == 10.0 and status["keyed"] is True
    finally:
        server.stop()
    assert "starts when the dashboard connects" in server.process.stderr.read()


def test_non_loopback_host_warns(ctr_lab):
    server = start_server("replay", str(ctr_lab.capture), "--speed", "max", "--host", "0.0.0.0")
    try:
        assert server.base.startswith("http://0.0.0.0:")
        port = server.base.rsplit(":", 1)[1]
        status = get_json(f"http://127.0.0.1:{port}/api/status?token={server.token}")
        assert status["source"] == str(ctr_lab.capture)
    finally:
        server.stop()
    err = server.process.stderr.read()
    assert "mip6mon: warning: serving on 0.0.0.0, not loopback" in err


def test_demo_builds_the_bundled_scenario_once(tmp_path):
    env = _env()
    env["XDG_CACHE_HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "/?token=" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split("dashboard at ", 1)[1].strip()
        base, token = url.split("/?token=")
        status = wait_status(Server(proc, url, base, token),
                             ("waiting for a browser", "running", "done"))
        assert status["keyed"] is True and status["state"] == "waiting for a browser"
        demo = tmp_path / "mip6mon" / "demo"
        assert (demo / "capture.pcapng").is_file() and (demo / "keyring.toml").is_file()
        assert status["source"] == str(demo / "capture.pcapng")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_live_on_loopback_shows_a_binding_update():
    from scapy.layers.inet6 import HAO, MIP6MH_BU, IPv6, IPv6ExtHdrDestOpt
    from scapy.sendrecv import send
    server = start_server("live", "-i", "lo", "--port", "0")
    try:
        deadline = time.monotonic() + 20
        rows = []
        while time.monotonic() < deadline and not rows:
            send(IPv6(src="::1", dst="::1")
                 / IPv6ExtHdrDestOpt(options=[HAO(hoa="2001:db8:1::100")])
                 / MIP6MH_BU(seq=4242, mhtime=100), verbose=False)
            time.sleep(0.5)
            rows = get_json(f"{server.base}/api/rows?token={server.token}")
        assert rows, "no row from the live capture"
        assert rows[0]["msg"] == "BU" and "seq=4242" in rows[0]["info"]
        bad = urllib.request.Request(f"{server.base}/api/filter?filter=ipv6&token={server.token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad)
        assert refused.value.code == 400
        assert "live" in json.load(refused.value)["error"]
    finally:
        server.stop()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            with open(f"/proc/{stat}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_stopping_the_server_leaves_no_process_behind(ctr_lab):
    # a paced replay: its dissector child and tshark are alive, waiting, when it is stopped
    server = start_server("replay", str(ctr_lab.capture), "--keys", str(ctr_lab.keyring),
                          "--speed", "1")
    try:
        # the dissector process (its tshark may be done) and the attacker worker
        deadline = time.monotonic() + 30
        helpers = _descendants(server.process.pid)
        while len(helpers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            helpers = _descendants(server.process.pid)
    finally:
        server.stop()
    assert len(helpers) >= 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in helpers):
        time.sleep(0.1)
    alive = [p for p in helpers if os.path.exists(f"/proc/{p}")
             and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert alive == []
