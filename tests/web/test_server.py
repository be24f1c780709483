"""The dashboard's web server as an attacker or a careless user meets it (issue 13): where it
listens, what it makes of broken requests, what it logs, where its token comes from, and how
many tshark processes a burst of requests can start."""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.web.conftest import ChildWatch, _env, logging_wrapper, start_server, wait_done
from tests.web.test_cli import run_cli
from web.capture_tools import Slots, ToolsBusy

# one request log line: address, date, the request (escaped), the status
LOG_LINE = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "[^\x00-\x1f\x7f-\x9f]*" \d{3}$')


def one_line_exit_2(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mip6mon: error: "), done.stderr
    return lines[0]


# --- where it listens --------------------------------------------------------------------------

def test_a_port_in_use_is_one_line_and_exit_2(ctr_lab):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = run_cli("replay", str(ctr_lab.capture), "--port", str(port))
    finally:
        taken.close()
    line = one_line_exit_2(done)
    assert line == f"mip6mon: error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("host, where, reason", [
    # the resolver's reason varies with the machine's DNS (unknown name, no server)
    ("no-such-host.invalid", "no-such-host.invalid:0", None),
    ("192.0.2.1", "192.0.2.1:0", "Cannot assign requested address"),   # TEST-NET-1
    ("2001:db8::1", "[2001:db8::1]:0", None),      # not here, or no IPv6 at all
])
def test_a_bad_host_is_one_line_and_exit_2(ctr_lab, host, where, reason):
    line = one_line_exit_2(run_cli("replay", str(ctr_lab.capture), "--host", host))
    assert line.startswith(f"mip6mon: error: cannot listen on {where}: ")
    assert reason is None or line.endswith(reason)


def test_a_port_out_of_range_never_serves_elsewhere(ctr_lab):
    # getaddrinfo() takes a port modulo 65536: 99999 would have served on 34463
    line = one_line_exit_2(run_cli("replay", str(ctr_lab.capture), "--port", "99999"))
    assert "99999" in line


# --- broken requests and the log ---------------------------------------------------------------

def _exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer (every one of these closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_broken_requests_get_a_clean_status_and_one_escaped_log_line(ctr_lab):
    server = start_server("replay", str(ctr_lab.capture), "--speed", "max")
    port = int(server.base.rsplit(":", 1)[1])
    try:
        wait_done(server)
        closing = b"Host: x\r\nConnection: close\r\n\r\n"
        sent = {
            # a request line that does not parse, and one that carries the token
            "garbage": (b"GARBAGE\r\n\r\n", b"Error code: 400"),
            "token in a bad line": (f"GET /?token={server.token} HTTP/1.1 junk\r\n\r\n".encode(),
                                    b"Error code: 400"),
            # a line longer than http.server reads (65,536 octets); it reads exactly 65,537 of
            # them, so this sends no more (unread octets would reset the connection)
            "64 KiB URI": (b"GET /" + b"a" * 65532, b"HTTP/1.1 414 "),
            # an ANSI colour sequence, a C1 CSI (U+009B) and a backslash in the path
            "escapes": (b"GET /\x1b[2J\x1b[31mred\xc2\x9b0m\\x HTTP/1.1\r\n" + closing,
                        b"HTTP/1.1 401 "),
            "control bytes": (b"GET /a\x07b\x00c HTTP/1.1\r\n" + closing, b"HTTP/1.1 401 "),
        }
        for name, (request, answer) in sent.items():
            got = _exchange(port, request)
            assert answer in got, (name, got[:200])
    finally:
        server.stop()
    err = server.process.stderr.read()
    assert "Traceback" not in err and "AttributeError" not in err
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", err), repr(err)   # nothing raw
    lines = err.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    assert server.token not in err
    by_request = [line.split('"', 1)[1] for line in lines if "/api/status" not in line]
    assert by_request == [
        'GARBAGE" 400',
        'GET /?… HTTP/1.1 junk" 400',
        '(request line over 64 KiB)" 414',
        'GET /\\x1b[2J\\x1b[31mred\u00c2\\x9b0m\\\\x" 401',
        'GET /a\\x07b\\x00c" 401',
    ], lines


# --- the token ---------------------------------------------------------------------------------

def test_the_token_comes_from_a_file_or_the_environment_not_the_command_line(ctr_lab, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789\n")
    token_file.chmod(0o600)
    env = _env()
    env["MIP6MON_TOKEN"] = "from-the-environment-0123"
    cases = [(("--token-file", str(token_file)), None, "from-a-file-0123456789"),
             ((), env, "from-the-environment-0123"),
             (("--token", "on-the-command-line-0123"), env, "on-the-command-line-0123")]
    for argv, environment, expected in cases:
        server = start_server("replay", str(ctr_lab.capture), "--speed", "max", *argv,
                              env=environment)
        try:
            assert server.token == expected
            assert server.get("/api/status")["source"] == str(ctr_lab.capture)
            with open(f"/proc/{server.process.pid}/cmdline", "rb") as f:
                visible_in_ps = expected.encode() in f.read()
            assert visible_in_ps == (argv[:1] == ("--token",))
        finally:
            server.stop()


def test_a_bad_token_source_is_one_line_and_exit_2(ctr_lab, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                      # reading it would wait forever
    capture = str(ctr_lab.capture)
    for argv, message in [(("--token-file", str(tmp_path / "missing")), "cannot read"),
                          (("--token-file", str(empty)), "empty"),
                          (("--token-file", str(fifo)), "not a regular file"),
                          (("--token-file", "/dev/zero"), "not a regular file"),
                          (("--token", "has space"), "letters, digits")]:
        line = one_line_exit_2(run_cli("replay", capture, *argv, timeout=30))
        assert message in line, line
    env = _env()
    env["MIP6MON_TOKEN"] = "<script>"
    assert "$MIP6MON_TOKEN" in one_line_exit_2(run_cli("replay", capture, env=env))


def test_a_token_file_others_can_read_is_warned_about(ctr_lab, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("readable-by-all-0123456789")
    token_file.chmod(0o644)
    server = start_server("replay", str(ctr_lab.capture), "--speed", "max",
                          "--token-file", str(token_file))
    server.stop()
    assert "readable by other users" in server.process.stderr.read()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o644      # told, not changed


# --- tshark processes --------------------------------------------------------------------------

def test_a_burst_of_filters_runs_at_most_two_tshark_at_once(demo_lab, tmp_path):
    """Twelve display filters at once (each a different one: no cache helps): never more than
    two tshark processes, every answer right or a 429 with Retry-After, at least the eight
    that fit (two running, six waiting) answered, and one tshark run per answer (counted by
    a wrapper on PATH: a watcher polling the process tree misses short runs under load)."""
    env, runs = logging_wrapper(tmp_path, "tshark")
    server = start_server("replay", str(demo_lab.capture), "--speed", "max", env=env)
    frames = sum(demo_lab.truth["paths"].values())
    try:
        wait_done(server)
        before = len(runs.read_text().splitlines())

        def ask(first: int):
            query = urllib.parse.urlencode({"filter": f"frame.number >= {first}"})
            request = urllib.request.Request(f"{server.base}/api/filter?{query}",
                                             headers={"X-Mip6mon-Token": server.token})
            try:
                with urllib.request.urlopen(request, timeout=120) as r:
                    return first, r.status, r.read(), None
            except urllib.error.HTTPError as refused:
                return first, refused.code, refused.read(), refused.headers.get("Retry-After")

        with ChildWatch(server.process.pid, "tshark") as tshark, \
                ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(ask, range(1, 13)))
    finally:
        server.stop()
    assert 1 <= tshark.most <= 2, tshark.most
    answered = 0
    for first, status, body, retry_after in answers:
        if status == 200:
            answered += 1
            assert json.loads(body)["frames"] == list(range(first, frames + 1))
        else:
            assert status == 429 and retry_after.isdigit(), (status, body)
            assert json.loads(body)["error"].startswith("busy: ")
    assert answered >= 8 and len(runs.read_text().splitlines()) - before == answered


def test_slots_queue_a_few_and_refuse_the_rest():
    slots = Slots(running=2, waiting=1, patience=30)
    release = threading.Event()
    order: list[str] = []

    def hold(name: str) -> None:
        with slots.hold():
            order.append(name)
            release.wait(30)

    first = [threading.Thread(target=hold, args=(n,)) for n in ("a", "b")]
    for t in first:
        t.start()
    while slots.running < 2:
        time.sleep(0.01)
    queued = threading.Thread(target=hold, args=("c",))
    queued.start()
    while slots.waiting < 1:
        time.sleep(0.01)
    with pytest.raises(ToolsBusy):                  # two running, one waiting: refused
        with slots.hold():
            pass
    assert order == ["a", "b"]
    release.set()
    for t in (*first, queued):
        t.join(30)
    assert sorted(order) == ["a", "b", "c"] and slots.running == slots.waiting == 0
    impatient = Slots(running=1, waiting=1, patience=0.05)
    with impatient.hold():
        with pytest.raises(ToolsBusy):              # waited its patience out
            with impatient.hold():
                pass
    assert impatient.running == impatient.waiting == 0
