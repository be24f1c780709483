"""The replay's dissector child (web.procsource) and the other children of the dashboard, as
they end (issue 13): with a parent killed by -9, on SIGTERM and Ctrl-C (quick and quiet), and
when the dissector itself dies (the replay's state turns to `error`, never `done`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fuzz.captures import Capture
from tests.fuzz.conftest import base_capture
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    """24,000 frames: seconds of dissection, so a child is caught mid-run."""
    base = base_capture()
    path = tmp_path_factory.mktemp("procsource") / "big.pcapng"
    path.write_bytes(Capture(base.kind, base.endian,
                             base.units[:2] + base.units[2:] * 600).to_bytes())
    return path


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"



# `mip6mon ARGS` as a shell runs a job in the foreground of a terminal, where Ctrl-C reaches it:
# SIGINT at its default. A test run started in the background of a script inherits SIGINT
# ignored (POSIX shells ignore it for asynchronous commands), Python then keeps it ignored, and
# the replay rightly never saw the Ctrl-C: the suite hung there for 30 s and failed.
AS_A_FOREGROUND_JOB = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'monitor.cli', "
                       "*sys.argv[1:]])")


def _replay(capture: Path, *args: str, children: int = 2
            ) -> tuple[subprocess.Popen, set[int], str]:
    """`mip6mon replay` in its own process group, once `children` descendants run (its
    dissector and attacker children; the dissector runs no tshark since issue 10); and its
    dashboard URL."""
    proc = subprocess.Popen([sys.executable, "-c", AS_A_FOREGROUND_JOB, "replay", str(capture),
                             "--port", "0", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = proc.stdout.readline().strip().rpartition(" ")[2]
    assert url.startswith("http://127.0.0.1:"), url
    assert wait_for(lambda: len(_descendants(proc.pid)) >= children, 30), _descendants(proc.pid)
    return proc, _descendants(proc.pid), url


def test_kill_9_of_the_replay_leaves_no_child_behind(big_capture):
    """A paced replay waits for a browser, so its dissector runs ahead until its queue and
    its pipe are full; it used to stay blocked on that pipe forever once the parent died."""
    proc, children, _ = _replay(big_capture, "--speed", "1")
    time.sleep(2)                                    # the dissector fills its queue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert wait_for(lambda: not any(_running(c) for c in children), 10), \
        [c for c in children if _running(c)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_end_the_replay_quickly_and_quietly(big_capture, how):
    proc, children, _ = _replay(big_capture, "--speed", "1")
    time.sleep(1)
    started = time.monotonic()
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)           # Ctrl-C: the terminal's whole group
    else:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:                      # failed: leave nothing running behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    took = time.monotonic() - started
    assert took < 2.0, took
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "SystemExit" not in err
    assert wait_for(lambda: not any(_running(c) for c in children), 5)


def _session_over(capture: Path):
    from web.procsource import ProcessPcapSource
    from web.session import MonitorSession
    source = ProcessPcapSource(str(capture))
    session = MonitorSession(source, speed=None)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    assert wait_for(lambda: session.stream.accounting.analysed > 0, 30)
    return source, session, thread


def test_a_dissector_that_dies_turns_the_replay_to_error(big_capture):
    source, session, thread = _session_over(big_capture)
    try:
        assert not _descendants(source._proc.pid)       # it dissects itself: no tshark
        os.kill(source._proc.pid, signal.SIGKILL)
        assert wait_for(lambda: session.state == "error", 30), (session.state, session.error)
        assert "killed by SIGKILL" in session.error
        assert "dissector process" in session.error
        assert session.stream.accounting.read < 24_000 + 0   # not presented as all of it
        assert session.status()["state"] == "error"
    finally:
        session.close()
        thread.join(10)


def test_an_allowed_insecure_keyring_warns_once_under_replay(tmp_path):
    """The parent and the dissector child both load the keyring: one warning, not two."""
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    run_scenario(load_scenario("baseline"), str(tmp_path))
    keys = tmp_path / "keyring.toml"
    keys.chmod(0o644)
    proc, _, url = _replay(tmp_path / "capture.pcapng", "--speed", "max", "--keys", str(keys),
                           "--allow-insecure-keyring", children=1)
    status = url.replace("/?token=", "/api/status?token=")

    def done() -> bool:          # the child has loaded the keyring and dissected it all
        with urllib.request.urlopen(status, timeout=5) as answer:
            return json.load(answer)["state"] == "done"
    assert wait_for(done, 30)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert err.count("keyring is accessible by group or others") == 1, err
