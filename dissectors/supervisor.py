"""The one child supervisor: every process mip6mon starts goes through here (issues 12, 13).

The children: dumpcap under `live` (dissectors.live), the dissector child of `report` and
`replay` (monitor.procsource), the dashboard's attacker worker (web.attacker_worker). Each is
started by `spawn_command` (a program: exec) or `spawn_function` (Python code: a fork), and
then, whatever it is:

- it dies with its parent: PR_SET_PDEATHSIG (Linux) sends it SIGTERM when the thread that
  started it ends (a parent killed with -9 runs no clean-up of its own). The signal follows the
  starting *thread*, not the process: start children from a thread that lives as long as they
  should (the main thread, a source's reading thread, a worker's own feeder);
- it runs in a process group of its own, so Ctrl-C on the terminal reaches only mip6mon, which
  decides; a forked child ignores SIGINT, and on SIGTERM ends its own group and its children,
  starts no new one, reaps them and leaves at once (no clean-up that could block: a put into a
  full queue, a join);
- `Child.stop()` ends it (SIGTERM, then SIGKILL after STOP_GRACE seconds) and reaps it; every
  child still running when the interpreter exits is stopped (atexit), so none outlives a
  `report` or a dashboard that ended on an error, SIGTERM or Ctrl-C;
- `Child.how()` says how it ended, in words ("was killed by SIGKILL", "ended (exit code 1)").

`Supervisor` adds the mode: with a `Backoff` (live capture) a child that died is started again,
the first time at once, then after 0.5, 1, 2 ... seconds (at most `cap`), and the supervisor
gives up (`GaveUp`, one line) when restarts keep failing for `give_up` seconds; without one (a
capture file) a dead child is a failure for its owner to report. Each death and restart is
logged on the `mip6mon` logger and counted in `Supervisor.restarts`.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger("mip6mon")

PR_SET_PDEATHSIG = 1          # linux/prctl.h
EXIT_STATUS_SECONDS = 15.0    # a child whose pipe closed has its exit status by then
STOP_GRACE = 2.0              # seconds a child has to end after SIGTERM before SIGKILL
REAP_SECONDS = 0.3            # a forked child ending on SIGTERM waits this long for its own
                              # children before SIGKILL,
GIVE_UP_SECONDS = 2.0         # and leaves after this long even with a child not reaped

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:               # no C library to load: no parent-death signal either
    _LIBC = None


def die_with_parent(parent: int) -> None:
    """In a child, before anything else: SIGTERM when the parent's starting thread ends, and
    if the parent is already gone (it died before this took effect), end now."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_code_text(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"ended (exit code {code})"


class Child:
    """One child process, however it was started: its name, pid, when it started, whether it
    runs, how it ended; `stop()` ends and reaps it."""

    name: str
    started: float            # time.monotonic() at the start

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def poll(self) -> int | None:
        """None while it runs, else its exit code (negative: the signal that killed it)."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code once it ended (reaped), None if still running after `timeout`."""
        raise NotImplementedError

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except OSError:       # its group is not (yet) its own: the child alone
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def stop(self, grace: float = STOP_GRACE) -> None:
        """End it (SIGTERM to its group, SIGKILL after `grace` seconds) and reap it."""
        if self.poll() is None:
            self._signal_group(signal.SIGTERM)
            if self.wait(grace) is None:
                self._signal_group(signal.SIGKILL)
                self.wait(5.0)
        _RUNNING.discard(self)

    @property
    def alive(self) -> bool:
        return self.poll() is None

    def how(self) -> str:
        """How it ended, in words ("was killed by SIGKILL"), or "is running"."""
        return _exit_code_text(self.poll())

    def how_it_ended(self, timeout: float = EXIT_STATUS_SECONDS) -> str:
        """Once its pipe has closed: how it ended. The kernel closes a dying child's pipes
        before its exit status can be read, and on a loaded machine that took more than a
        second (CI read "is running" after waiting 1 s), so wait for the status first."""
        self.wait(timeout)
        return self.how()

    def ran_for(self) -> float:
        return time.monotonic() - self.started


class Command(Child):
    """A program started with `spawn_command`."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes]):
        self.name = name
        self.popen = popen
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class Forked(Child):
    """Python code started with `spawn_function` (a multiprocessing fork)."""

    def __init__(self, name: str, process: multiprocessing.process.BaseProcess):
        self.name = name
        self.process = process
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def poll(self) -> int | None:
        return self.process.exitcode        # reaps it (a non-blocking waitpid) once it ended

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode


# every child started and not yet stopped: stopped at the interpreter's exit
_RUNNING: weakref.WeakSet[Child] = weakref.WeakSet()


def stop_all() -> None:
    """Stop and reap every child still running (the interpreter is exiting)."""
    for child in list(_RUNNING):
        child.stop(grace=1.0)


atexit.register(stop_all)


def _command_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:          # in the child, between fork and exec
        die_with_parent(parent)
    return setup


def spawn_command(name: str, argv: list[str], stdout: int | IO[Any] | None = None,
                  stderr: int | IO[Any] | None = None) -> Command:
    """Start a program as a supervised child: its own process group, SIGTERM when this
    thread ends (PR_SET_PDEATHSIG holds across exec), stdin from /dev/null. FileNotFoundError
    when the program is not installed. In a forked child that is ending (_end_now), the
    calling thread waits for the end instead."""
    if _ENDING.is_set():
        threading.Event().wait()
    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                             process_group=0, preexec_fn=_command_setup(os.getpid()))
    child = Command(name, popen)
    _RUNNING.add(child)
    return child


# set in a forked child once SIGTERM has told it to end: from then on no thread of it starts a
# child (its dumpcap supervisor would start again the dumpcap _end_now has just killed)
_ENDING = threading.Event()


def _end_now(_signum: int, _frame: object) -> None:
    """SIGTERM in a forked child (its parent stops it, or died): end its own process group and
    its children, reap them, and leave at once, whatever its threads were doing (a put into a
    full queue, a write to a pipe nobody reads: a clean-up that waited for them could take
    forever). It leaves after GIVE_UP_SECONDS even with a child not reaped: that child's
    parent-death signal ends it then."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _ENDING.set()
    for group in [0, *_own_children()]:          # its children lead groups of their own
        try:
            os.killpg(group, signal.SIGTERM)
        except OSError:
            pass
    started = time.monotonic()
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid:
                continue
            waited = time.monotonic() - started
            if waited > GIVE_UP_SECONDS:
                break
            if waited > REAP_SECONDS:            # every pass: one a thread started meanwhile too
                for child in _own_children():
                    try:
                        os.kill(child, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.005)
    except ChildProcessError:
        pass                                        # every child reaped
    os._exit(0)


def _own_children() -> list[int]:
    children: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                children += [int(pid) for pid in f.read().split()]
        except OSError:
            pass
    return children


def _forked_main(parent: int, nice: int, target: Callable[..., object],
                 args: tuple[Any, ...]) -> None:
    os.setpgid(0, 0)              # its own group: Ctrl-C is the parent's; its children, its own
    signal.signal(signal.SIGTERM, _end_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides, and says SIGTERM
    die_with_parent(parent)
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    target(*args)


def spawn_function(name: str, target: Callable[..., object], args: tuple[Any, ...] = (),
                   nice: int = 0) -> Forked:
    """Run `target(*args)` in a supervised child process (a fork: the child starts with this
    process's modules and objects, and nothing re-runs the caller's __main__)."""
    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_forked_main, name=f"mip6mon-{name}", daemon=True,
                          args=(os.getpid(), nice, target, args))
    process.start()
    child = Forked(name, process)
    _RUNNING.add(child)
    return child


@dataclass(frozen=True)
class Backoff:
    """When to start a child again after it died (live capture, issue 12): the first time at
    once, then after `delay` seconds, doubling up to `cap`. A child that ran `stable` seconds
    starts the count afresh; after `give_up` seconds of restarts that do not last, stop."""
    delay: float = 0.5
    cap: float = 30.0
    give_up: float = 120.0
    stable: float = 10.0

    def delays(self) -> Iterator[float]:
        yield 0.0
        delay = self.delay
        while True:
            yield delay
            delay = min(self.cap, delay * 2)


class GaveUp(Exception):
    """A child the supervisor no longer restarts: why, in one line."""


class Stopped(Exception):
    """The supervisor was stopped while it waited to restart its child."""


class Supervisor:
    """One child (of one kind) at a time: started by `start`, started again after it died by
    `restart` when the mode has a `Backoff`, ended by `stop`. Its owner reads the child's
    output and tells the supervisor when it ended (the end of its pipe, usually)."""

    def __init__(self, name: str, start: Callable[[], Child], backoff: Backoff | None = None):
        self.name = name
        self._start = start
        self.backoff = backoff
        self.child: Child | None = None
        self.restarts = 0
        self._delays: Iterator[float] | None = None
        self._failing_since: float | None = None
        self._stopping = threading.Event()

    def start(self) -> Child:
        self.child = self._start()
        return self.child

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def ended(self, timeout: float = 5.0) -> str:
        """The child has ended (its pipe closed): reap it and say how it ended."""
        child = self.child
        if child is None:
            return "never started"
        if child.wait(timeout) is None:          # its output ended, the process did not
            child.stop()
        _RUNNING.discard(child)
        return child.how()

    def restart(self, why: str, ready: Callable[[], str | None] | None = None) -> Child:
        """Start the child again after it died (`why`: how, in words), per the back-off;
        `ready()` says what keeps it from running (an interface that is gone), None when it
        can. Raises GaveUp when there is no back-off or restarts kept failing for
        `give_up` seconds, Stopped when `stop()` was called meanwhile."""
        if self.backoff is None:
            raise GaveUp(f"{self.name} {why}")
        backoff = self.backoff
        now = time.monotonic()
        if self._delays is None or (self.child is not None
                                    and self.child.ran_for() >= backoff.stable):
            self._delays = backoff.delays()            # a new run of failures
            self._failing_since = now
        assert self._failing_since is not None
        problem = why
        while True:
            failing = time.monotonic() - self._failing_since
            if failing >= backoff.give_up:
                raise GaveUp(f"{self.name} {why}; restarts kept failing for {failing:.0f} s "
                             f"({problem})")
            delay = next(self._delays)
            if delay:
                log.info("%s: restarting in %.1f s", self.name, delay)
            if self._stopping.wait(delay):
                raise Stopped(self.name)
            blocker = ready() if ready is not None else None
            if blocker is None:
                try:
                    child = self._start()
                except OSError as exc:
                    blocker = f"cannot start: {exc.strerror or exc}"
                else:
                    self.child = child
                    self.restarts += 1
                    log.warning("%s: restarted (pid %d; restart %d) after it %s", self.name,
                                child.pid, self.restarts, why)
                    return child
            problem = blocker
            log.warning("%s: cannot restart yet: %s", self.name, problem)

    def stop(self) -> None:
        """End the child (and any wait to restart it) and reap it."""
        self._stopping.set()
        if self.child is not None:
            self.child.stop()
