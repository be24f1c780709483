"""Many sensors, one dashboard, through a real redis-server (issue 14), without root: sensors
reading capture files (one per path, as the shards of an archive), `mip6mon serve`, and
Redis killed under them."""
from __future__ import annotations

import threading
import time

import pytest
import redis

from dissectors.events import IPv6Layer, PacketEvent
from keys.errors import UserError
from lab.crowd import crowd_scenario
from lab.scenario import load_scenario
from monitor import entries
from monitor.sensor import BATCH, Digests, Sensor
from monitor.sources import PcapSource
from monitor.subscribe import StreamSource
from tests.streams import (
    PATHS,
    Served,
    bindings,
    lab_with_shards,
    report,
    sensor,
    sensors_done,
    without_frames,
)

pytestmark = pytest.mark.redis


def mobility_events(capture) -> list[PacketEvent]:
    return list(PcapSource(str(capture)).events())


@pytest.mark.parametrize("params", [
    {"nodes": 6, "correspondents": 2, "spi": "sequential", "spi_step": 16, "background": 0.1,
     "seed": 7},
    {"nodes": 9, "correspondents": 1, "home_agents": 2, "moves": "burst", "seed": 23},
], ids=["6-nodes", "9-nodes-2-has-burst"])
def test_shards_through_redis_make_the_report_of_the_whole_capture(redis_server, tmp_path,
                                                                   params):
    """Three sensors, each reading what one path carried, published at once and in any
    interleaving: serve's report.json is `mip6mon report` of the whole capture, frame numbers
    aside (serve numbers what it merged), and each eavesdropper saw exactly its path."""
    _, shards = lab_with_shards(crowd_scenario(**params), tmp_path)
    keys = ("--keys", str(tmp_path / "keyring.toml"))
    served = Served(redis_server.url, *keys, log=tmp_path / "serve.log")
    try:
        procs = [sensor(redis_server.url, path, f"shard-{path}", capture=shards[path],
                        log=tmp_path / f"{path}.log") for path in PATHS]
        for proc in procs:
            assert proc.wait(180) == 0
        whole = report(tmp_path / "capture.pcapng", *keys)
        served.wait(sensors_done([f"shard-{p}" for p in PATHS],
                                 whole["capture"]["mobility_packets"]), what="every shard")
        got = served.get("/api/report.json")
        # like `live`, serve's eavesdroppers keep the newest packets (a window report.json
        # names); this capture fits in it whole
        assert got["attacker"].pop("forgotten") == 0 and got["attacker"].pop("window") > 0
        assert without_frames(got) == without_frames(whole)
        # the sensors had no keys: serve opened every ESP header report opened
        assert got["capture"]["esp_decrypted"] > 0 and got["home_bindings"]
        for path in PATHS:
            attacker = served.get("/api/report.json", vantage=path)["attacker"]
            seen = [e for e in mobility_events(shards[path]) if not e.malformed]
            assert attacker["vantage"] == path
            assert attacker["packets_seen"] == len(seen) > 0
        status = served.status()
        assert status["merged"] == status["resent"] == status["bad_entries"] == 0
        assert {s["name"]: s["vantage"] for s in status["sensors"]} == \
            {f"shard-{p}": p for p in PATHS}
    finally:
        served.stop()


def test_a_second_copy_of_every_packet_adds_nothing(redis_server, tmp_path):
    """A fourth sensor publishing the same packets as the MN-HA one (the link's other end):
    each packet is analysed once, and counted as merged."""
    _, shards = lab_with_shards(load_scenario("demo"), tmp_path)
    keys = ("--keys", str(tmp_path / "keyring.toml"))
    served = Served(redis_server.url, *keys, log=tmp_path / "serve.log")
    try:
        names = [f"shard-{p}" for p in PATHS] + ["mn-ha-again"]
        procs = [sensor(redis_server.url, path, f"shard-{path}", capture=shards[path])
                 for path in PATHS]
        procs.append(sensor(redis_server.url, "mn-ha", "mn-ha-again", capture=shards["mn-ha"]))
        for proc in procs:
            assert proc.wait(180) == 0
        whole = report(tmp_path / "capture.pcapng", *keys)
        status = served.wait(sensors_done(names), what="every sensor")
        again = len(mobility_events(shards["mn-ha"]))
        assert status["merged"] == again > 0, status
        assert status["analysed"] + status["malformed"] == whole["capture"]["mobility_packets"]
        got = served.get("/api/report.json")
        assert without_frames(got["messages"]) == whole["messages"]
        assert bindings(got) == bindings(whole)
    finally:
        served.stop()


def test_redis_killed_and_restarted_mid_run(redis_server, tmp_path):
    """Sensors publishing at the capture's pace, serve consuming; Redis is killed (SIGKILL:
    no shutdown, only its append-only file) and started again: sensors buffered, serve
    resumed from its last acknowledged entry, and every packet is analysed exactly once."""
    scenario = crowd_scenario(nodes=8, correspondents=2, moves="poisson", seed=5)
    out, shards = lab_with_shards(scenario, tmp_path)
    span = (out.frames[-1].usec - out.frames[0].usec) / 1e6
    speed = span / 8.0                                  # about 8 s of publishing
    keys = ("--keys", str(tmp_path / "keyring.toml"))
    served = Served(redis_server.url, *keys, log=tmp_path / "serve.log")
    try:
        procs = [sensor(redis_server.url, path, f"shard-{path}", capture=shards[path],
                        extra=("--speed", f"{speed:.3f}"), log=tmp_path / f"{path}.log")
                 for path in PATHS]
        whole = report(tmp_path / "capture.pcapng", *keys)
        total = whole["capture"]["mobility_packets"]
        served.wait(lambda s: s["analysed"] > total // 5, what="a fifth analysed")
        redis_server.kill()
        down = served.wait(lambda s: s["redis"]["down_since"] is not None, what="Redis down")
        assert down["state"] != "running"             # running means packets are analysed
        time.sleep(1.0)
        redis_server.start()
        for proc in procs:
            assert proc.wait(180) == 0
        status = served.wait(sensors_done([f"shard-{p}" for p in PATHS], total),
                             what="every packet")
        assert status["analysed"] + status["malformed"] == total     # once each: no duplicate
        assert status["redis"]["outages"] >= 1 and status["redis"]["down_since"] is None
        assert all(s["outages"] >= 1 and s["drops"] == 0 for s in status["sensors"])
        got = served.get("/api/report.json")
        assert without_frames(got["messages"]) == whole["messages"]
        assert bindings(got) == bindings(whole)
        assert got["capture"]["dropped"] == 0
        assert got["capture"]["packets"] == whole["capture"]["packets"]
        assert got["capture"]["esp_decrypted"] == whole["capture"]["esp_decrypted"] > 0
    finally:
        served.stop()


def test_a_live_sensor_whose_buffer_fills_counts_every_drop(redis_server, tmp_path):
    """Redis away while a live sensor captures: its bounded buffer keeps what fits, the rest
    is dropped and counted, and serve's accounting still adds up."""
    from lab.run import build, write_output
    write_output(build(load_scenario("demo")), tmp_path)
    capture = tmp_path / "capture.pcapng"
    events = len(mobility_events(capture))
    redis_server.stop()
    client = redis.Redis.from_url(redis_server.url)
    digests = Digests()
    source = PcapSource(str(capture), tap=digests)
    live = Sensor(client, source, name="small", vantage="all", buffer=50, live=True,
                  digests=digests, log=lambda _text: None)
    thread = threading.Thread(target=live.run)
    thread.start()
    deadline = time.monotonic() + 60
    while live.events < events and time.monotonic() < deadline:
        time.sleep(0.05)
    # 50 in the buffer, and the batch the publisher holds (taken before Redis failed it)
    dropped = live.outbox.dropped
    assert events - 50 - BATCH <= dropped <= events - 50
    redis_server.start()
    thread.join(60)
    assert not thread.is_alive() and live.bye_sent
    assert live.published == events - dropped
    served = Served(redis_server.url, log=tmp_path / "serve.log")
    try:
        status = served.wait(sensors_done(["small"], events - dropped), what="the events kept")
        (small,) = status["sensors"]
        assert small["drops"] == small["buffer_dropped"] == dropped
        assert status["dropped"] == dropped
        assert status["analysed"] + status["malformed"] + status["dropped"] \
            + status["filtered"] == status["read"]
    finally:
        served.stop()


def consume(source: StreamSource, until: int, timeout: float = 60) -> list[PacketEvent]:
    """What the source gives, once it has given `until` events (it goes on reading, as under
    a dashboard, until it is closed)."""
    got: list[PacketEvent] = []

    def run() -> None:
        for event in source.events():
            got.append(event)

    threading.Thread(target=run, daemon=True).start()
    deadline = time.monotonic() + timeout
    while len(got) < until and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(got)


def test_resends_redeliveries_and_bad_entries_are_never_analysed(redis_server):
    """What a sensor retried (entry numbers already seen), entries that are not a sensor's,
    and entries Redis delivers again: acknowledged, counted, not analysed twice."""
    client = redis.Redis.from_url(redis_server.url)
    events = [PacketEvent(frame=i, time=1767225600.0 + i, length=90,
                          layers=(IPv6Layer("2001:db8:2::1", f"2001:db8:1::{i}"),))
              for i in range(1, 6)]

    def publish(number: int, ev: PacketEvent) -> None:
        client.xadd(entries.STREAM, {"s": "a", "r": "run1", "v": "mn-ha", "n": str(number),
                                     "t": "1767225600",
                                     **entries.event_fields(entries.encode_event(ev), None)})

    source = StreamSource(redis_server.url)
    try:
        publish(1, events[0])
        publish(2, events[1])
        publish(2, events[1])                              # the sensor retried
        client.xadd(entries.STREAM, {"k": "event", "e": "{not json"})
        client.xadd(entries.STREAM, {"hello": "world"})
        publish(3, events[2])
        publish(5, events[4])                              # 4 never came
        client.xadd(entries.STREAM, {"s": "a", "r": "run1", "v": "mn-ha", "n": "6",
                                     "t": "1767225600",
                                     **entries.beat_fields("bye", None, {"published": 5})})
        got = consume(source, 4)
        assert [e.layers[0].dst for e in got] == ["2001:db8:1::1", "2001:db8:1::2",
                                                   "2001:db8:1::3", "2001:db8:1::5"]
        assert [e.frame for e in got] == [1, 2, 3, 4]
        time.sleep(0.5)
        status = source.status()
        assert status["resent"] == 1 and status["bad_entries"] == 2
        (run,) = status["sensors"]
        assert run["gaps"] == 1 and run["lost"] == 1 and run["drops"] == 1
        assert run["state"] is not None
    finally:
        source.close()
    # everything was acknowledged: nothing is pending for the group
    pending = client.xpending(entries.STREAM, entries.GROUP)
    assert pending["pending"] == 0


def test_redis_back_without_its_data_is_counted_not_hidden(redis_server):
    """Redis restarted with nothing (no append-only file): serve creates its group again,
    goes on with what comes, and the entries lost with the data are counted as a gap."""
    client = redis.Redis.from_url(redis_server.url)
    events = [PacketEvent(frame=i, time=1767225600.0 + i, length=90,
                          layers=(IPv6Layer("2001:db8:2::1", f"2001:db8:1::{i}"),))
              for i in range(1, 7)]

    def publish(pipe, number: int) -> None:
        pipe.xadd(entries.STREAM, {"s": "a", "r": "run1", "v": "all", "n": str(number),
                                   "t": "1767225600", **entries.event_fields(
                                       entries.encode_event(events[number - 1]), None)})

    source = StreamSource(redis_server.url)
    try:
        for number in (1, 2, 3):
            publish(client, number)
        assert len(consume(source, 3)) == 3
        pipe = client.pipeline(transaction=True)     # 4 and 5 go with the data, unread
        publish(pipe, 4)
        publish(pipe, 5)
        pipe.flushall()
        pipe.execute()
        publish(client, 6)
        client.xadd(entries.STREAM, {"s": "a", "r": "run1", "v": "all", "n": "7",
                                     "t": "1767225600",
                                     **entries.beat_fields("bye", None, {"published": 6,
                                                                       "state": "done"})})
        deadline = time.monotonic() + 30
        # until the sensor's bye is read (its count of what it published makes `lost`)
        while source.status()["sensors"][0]["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        status = source.status()
        (run,) = status["sensors"]
        assert status["group_resets"] == 1
        assert run["gaps"] == 2 and run["events"] == 4 and run["lost"] == 2
    finally:
        source.close()


def test_one_line_errors(redis_server, tmp_path):
    """A URL redis-py cannot use, a socket nobody listens on, a group another serve uses."""
    import subprocess

    from tests.streams import ROOT, env, mip6mon
    capture = tmp_path / "none.pcapng"
    from lab.pcapng import write_pcapng
    write_pcapng(capture, [])
    cases = [
        (["sensor", "-r", str(capture), "--vantage", "all", "--publish", "http://x"],
         "must specify one of the following schemes"),
        (["sensor", "-r", str(capture), "--vantage", "all", "--publish",
          f"unix://{tmp_path}/nobody.sock"], "cannot reach Redis"),
        (["serve", "--subscribe", "redis://:secret@127.0.0.1:1"], "cannot reach Redis"),
        (["sensor", "-i", "lo", "--vantage", "all", "--publish", redis_server.url,
          "--speed", "2"], "--speed is for a capture file"),
    ]
    for argv, expected in cases:
        run = subprocess.run(mip6mon(*argv), cwd=ROOT, env=env(), capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2, (argv, run.stderr)
        assert expected in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert "secret" not in run.stderr
    first = StreamSource(redis_server.url)
    try:
        consume(first, 1, timeout=0.5)                     # it is reading: active
        with pytest.raises(UserError, match="is in use"):
            StreamSource(redis_server.url)
        StreamSource(redis_server.url, group="second-dashboard").close()
    finally:
        first.close()


def _reader_connection(client: redis.Redis, deadline: float) -> int:
    """The id of the connection blocked in XREADGROUP (serve's reader waiting for new
    entries)."""
    while time.monotonic() < deadline:
        for conn in client.client_list():
            if conn.get("cmd") == "xreadgroup" and "b" in conn.get("flags", ""):
                return int(conn["id"])
        time.sleep(0.05)
    raise AssertionError("serve's reader never blocked in XREADGROUP")


def test_entries_a_lost_reply_delivered_are_read_after_a_reconnection(redis_server):
    """Redis delivered entries to serve's consumer but the reply never reached it (the
    connection failed first), and redis-py reconnected and read again inside the command:
    the newer entries that read returns must not come first, or the older ones, pending for
    this consumer, look like redeliveries of analysed entries when they come and are lost
    (seen in CI as 2 events 'lost' after Redis was killed and started again)."""
    client = redis.Redis.from_url(redis_server.url)
    events = [PacketEvent(frame=i, time=1767225600.0 + i, length=90,
                          layers=(IPv6Layer("2001:db8:2::1", f"2001:db8:1::{i}"),))
              for i in range(1, 7)]

    def fields(number: int) -> dict:
        return {"s": "a", "r": "run1", "v": "all", "n": str(number), "t": "1767225600",
                **entries.event_fields(entries.encode_event(events[number - 1]), None)}

    source = StreamSource(redis_server.url)
    got: list[PacketEvent] = []

    def read() -> None:
        for event in source.events():
            got.append(event)

    threading.Thread(target=read, daemon=True).start()

    def until(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        client.xadd(entries.STREAM, fields(1))
        until(1)
        reader = _reader_connection(client, time.monotonic() + 30)
        # 2 and 3 added and delivered to serve's consumer in one transaction: the blocked
        # reader is served after it, with nothing left for it (the reply that was lost)
        pipe = client.pipeline(transaction=True)
        pipe.xadd(entries.STREAM, fields(2))
        pipe.xadd(entries.STREAM, fields(3))
        pipe.xreadgroup(entries.GROUP, "serve", {entries.STREAM: ">"}, count=10)
        pipe.execute()
        client.client_kill_filter(_id=reader)     # its connection fails; redis-py reconnects
        _reader_connection(client, time.monotonic() + 30)        # blocked again, retried
        for number in (4, 5, 6):
            client.xadd(entries.STREAM, fields(number))
        until(6)
        assert [e.layers[0].dst for e in got] == [f"2001:db8:1::{i}" for i in range(1, 7)]
        status = source.status()
        (run,) = status["sensors"]
        assert run["gaps"] == 0 and run["lost"] == 0 and status["redelivered"] == 0
    finally:
        source.close()
