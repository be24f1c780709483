"""dissectors.supervisor with real processes: how a child ended in words, restarts on a
back-off that gives up with one line, a stop that ends a wait to restart, and no child left
behind when its parent exits."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dissectors.supervisor import Backoff, GaveUp, Stopped, Supervisor, spawn_command

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_child_says_how_it_ended_and_stop_reaps_it():
    child = spawn_command("sleep", ["sleep", "30"])
    assert child.alive and child.how() == "is running"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(5) == -signal.SIGKILL
    assert child.how() == "was killed by SIGKILL"
    failed = spawn_command("false", ["false"])
    assert failed.wait(5) == 1 and failed.how() == "ended (exit code 1)"
    running = spawn_command("sleep", ["sleep", "30"])
    assert os.getpgid(running.pid) == running.pid          # a process group of its own
    running.stop()
    assert _gone(running.pid) and running.how() == "was killed by SIGTERM"


@dataclass(frozen=True)
class _Recorded(Backoff):
    """A Backoff that keeps each delay the supervisor takes from it, in order."""
    used: list[float] = field(default_factory=list)

    def delays(self) -> Iterator[float]:
        for delay in super().delays():
            self.used.append(delay)
            yield delay


def test_restarts_back_off_and_give_up_in_one_line():
    """What the back-off schedules (at once, then doubling up to the cap) and that each
    restart waits that long, measured from the restart's call to the child's start: not the
    time `false` takes to start and end, which a loaded machine stretches (on 2 busy cores
    the first restart took 0.19-0.50 s around it, and only 3 restarts fitted into 1 s)."""
    backoff = _Recorded(delay=0.5, cap=0.75, give_up=2.0, stable=5.0)
    began: list[float] = []

    def start():
        began.append(time.monotonic())
        return spawn_command("false", ["false"])
    supervisor = Supervisor("false", start, backoff)
    supervisor.start().wait(5)
    asked: list[float] = []
    with pytest.raises(GaveUp) as gave_up:
        while True:
            asked.append(time.monotonic())
            supervisor.restart("ended (exit code 1)").wait(5)
    gave_up_after = time.monotonic() - asked[0]
    waited = [b - a for a, b in zip(asked, began[1:], strict=False)]
    # three restarts fit in give_up seconds even when each `false` takes a while: at once,
    # after delay, after the cap (not twice the delay)
    assert supervisor.restarts == len(waited) == len(backoff.used) >= 3
    assert backoff.used == [0.0, 0.5, 0.75, 0.75, 0.75][:len(backoff.used)]
    assert all(w >= d - 0.01 for w, d in zip(waited, backoff.used, strict=True)), waited
    assert waited[0] < backoff.used[1]           # the first restart came before any delay
    assert gave_up_after >= backoff.give_up      # it gave up once they kept failing
    text = str(gave_up.value)
    assert "\n" not in text and text.startswith("false ended (exit code 1); restarts kept "
                                                "failing for ")
    assert int(text.split("failing for ")[1].split(" s")[0]) >= backoff.give_up


def test_without_a_backoff_a_dead_child_is_a_failure():
    supervisor = Supervisor("false", lambda: spawn_command("false", ["false"]))
    supervisor.start().wait(5)
    with pytest.raises(GaveUp, match="^false ended"):
        supervisor.restart("ended (exit code 1)")


def test_stop_ends_a_wait_to_restart():
    backoff = Backoff(delay=30.0, cap=30.0, give_up=300.0)
    supervisor = Supervisor("false", lambda: spawn_command("false", ["false"]), backoff)
    supervisor.start().wait(5)
    supervisor.restart("ended").wait(5)              # the first restart is at once
    threading.Timer(0.3, supervisor.stop).start()
    began = time.monotonic()
    with pytest.raises(Stopped):
        supervisor.restart("ended")                  # would wait 30 s
    assert time.monotonic() - began < 5


def test_no_child_outlives_its_parent():
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from dissectors.supervisor import spawn_command;"
            "print(spawn_command('sleep', ['sleep', '60']).pid, flush=True)")
    for how in ("exit", "sigkill"):
        parent = subprocess.Popen([sys.executable, "-c", code + (
            "" if how == "exit" else "; import time; time.sleep(60)"), str(ROOT)],
            stdout=subprocess.PIPE, text=True)
        child = int(parent.stdout.readline())
        if how == "sigkill":                         # no clean-up runs: the death signal
            parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child), how
