"""Per-browser back-pressure (issue 12): a browser that stops reading is sent nothing new once
its queue is full, is told how many rows it was not sent, and neither stalls the capture nor
the other browsers. The browsers here are real Engine.IO / Socket.IO clients over HTTP long
polling (the transport the page falls back to): one polls all the time, one never again."""
from __future__ import annotations

import json
import struct
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fuzz.captures import EPB, Capture
from tests.fuzz.conftest import base_capture
from tests.waiting import wait_for
from tests.web.conftest import start_server, wait_status
from web.app import CLIENT_BACKLOG

RECORD = "\x1e"           # Engine.IO v4 separates the packets of one poll with this


class PollingClient:
    """A Socket.IO client on Engine.IO v4 long polling, by hand (urllib)."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        opened = self._request("GET", self._url())
        assert opened.startswith("0"), opened[:100]
        self.sid = json.loads(opened[1:])["sid"]
        self.events: list[tuple[str, object]] = []
        self._post(f'40{json.dumps({"token": token})}')

    def _url(self, sid: str | None = None) -> str:
        url = f"{self.base}/socket.io/?EIO=4&transport=polling&token={self.token}"
        return url + (f"&sid={sid}" if sid else "")

    def _request(self, method: str, url: str, body: str | None = None) -> str:
        request = urllib.request.Request(url, method=method,
                                         data=body.encode() if body is not None else None,
                                         headers={"Content-Type": "text/plain;charset=UTF-8"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.read().decode()

    def _post(self, packet: str) -> None:
        assert self._request("POST", self._url(self.sid), packet).lower() == "ok"

    def emit(self, event: str, *args: object) -> None:
        self._post("42" + json.dumps([event, *args]))

    def poll(self) -> None:
        """One long poll: every packet waiting, events kept, pings answered."""
        for packet in self._request("GET", self._url(self.sid)).split(RECORD):
            if packet == "2":
                self._post("3")
            elif packet.startswith("42"):
                name, *args = json.loads(packet[2:])
                self.events.append((name, args[0] if args else None))

    def rows(self) -> list[int]:
        return [row["seq"] for name, data in list(self.events) if name in ("rows", "backlog")
                for row in data["rows"]]


@pytest.fixture(scope="module")
def long_capture(tmp_path_factory) -> Path:
    """The fuzz base capture 50 times over, its 2,000 frames 20 ms apart: 4 s at --speed 10,
    about 160 batches of rows (many more than CLIENT_BACKLOG). Its length is in the pacing,
    not in the work: a machine 10 times slower still replays it in seconds, well before the
    stalled browser's Engine.IO ping timeout (25 + 20 s) ends its connection, which would take
    it and its counts out of the status."""
    base = base_capture()
    e = base.endian
    units, usec = [], 1_767_225_600 * 1_000_000
    for unit in base.units[2:] * 50:
        if unit.btype == EPB:
            usec += 20_000
            unit = replace(unit, body=unit.body[:4] + struct.pack(e + "II", usec >> 32,
                                                                   usec & 0xFFFFFFFF)
                           + unit.body[12:])
        units.append(unit)
    path = tmp_path_factory.mktemp("backpressure") / "long.pcapng"
    path.write_bytes(Capture(base.kind, e, base.units[:2] + units).to_bytes())
    return path


class Reading:
    """A browser that reads all the time: a thread that long-polls `client` until stopped,
    as a page's socket does (between polls, nothing else: a test loop that also asked for
    the status between polls fell behind on a loaded machine and was rightly held back)."""

    def __init__(self, client: PollingClient):
        self.client = client
        self.stopping = threading.Event()
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.client.poll()
            except Exception as exc:            # the server stopped under the last poll
                if not self.stopping.is_set():
                    self.failed.append(exc)
                return

    def stop(self) -> None:
        self.stopping.set()


def test_a_browser_that_stops_reading_stalls_nothing_and_is_told_what_it_missed(long_capture):
    # paced, so the replay waits for a browser's "ready" and both are connected before the
    # first row, and lasts long enough to fill a queue that nobody reads
    server = start_server("replay", str(long_capture), "--speed", "10", "--port", "0")
    try:
        stalled = PollingClient(server.base, server.token)        # never polls again
        reader = PollingClient(server.base, server.token)
        reader.poll()
        reader.emit("ready")
        reading = Reading(reader)
        try:
            status = wait_status(server, ("done", "error"), timeout=240)
            assert status["state"] == "done", status
            # the capture was read to its end, every frame accounted for
            assert status["read"] == (status["analysed"] + status["malformed"]
                                      + status["filtered"] + status["dropped"]) > 1_000
            # the reading browser gets every row, in order, none missed: the last ones are
            # flushed after the state turned to done
            every = list(range(1, status["rows"] + 1))
            wait_for(lambda: sorted(set(reader.rows())) == every or reading.failed, 60)
            assert not reading.failed, reading.failed
            seqs = sorted(set(reader.rows()))
            assert seqs == every, (len(seqs), status["rows"])
        finally:
            reading.stop()
        # the stalled one was sent nothing once its queue was full, and that is counted
        assert len(status["clients"]) == 2, status["clients"]
        held = sorted(c["rows_held_back"] for c in status["clients"])
        assert held[0] == 0 and held[1] > 0, status["clients"]
        stalled.poll()               # what had queued for it before it fell behind
        got = len(set(stalled.rows()))
        assert got + held[1] <= status["rows"] and got < status["rows"]
        names = [name for name, _ in stalled.events]
        assert names.count("rows") <= CLIENT_BACKLOG + 2, names.count("rows")
    finally:
        server.stop()
