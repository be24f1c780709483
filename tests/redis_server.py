"""A real redis-server for the tests: a private unix socket in a 0700 directory, append-only
file on (as README tells users to run it), killed and restarted at will, never left behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


def end(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class RedisServer:
    def __init__(self, directory: Path, *extra: str, auth: tuple[str, str] | None = None):
        self.directory = directory
        self.auth = auth                 # (user, password) the readiness check logs in as
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.socket = directory / "redis.sock"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def argv(self) -> list[str]:
        return [REDIS_SERVER, "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--daemonize", "no", *self.extra]

    def start(self) -> RedisServer:
        log = open(self.directory / "redis.log", "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        import redis
        user, password = self.auth or (None, None)
        client = redis.Redis(unix_socket_path=str(self.socket), username=user, password=password)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    client.close()
                    return
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log()[-500:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync (the append-only file must be enough)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path_factory):
    """A started redis-server, stopped at teardown whatever the test did to it."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    # a short path: a unix socket's path is limited to 107 octets
    directory = Path(tmp_path_factory.mktemp("redis"))
    server = RedisServer(directory).start()
    yield server
    server.stop()
