"""`mip6mon replay | live | demo`: serve the dashboard over a capture file or an interface."""
from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import sys
import warnings
from pathlib import Path

from keys.errors import UserError
from web.capture_tools import CaptureTools
from web.session import MonitorSession, parse_speed


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def _keyring(path: str | None):
    if not path:
        return None
    from keys.keyring import load_keyring
    return load_keyring(path)


def _quiet_handler():
    """Werkzeug's request handler, logging requests without their query string (the first
    page load carries the access token there, and logs are read by more people)."""
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):
            path = self.path.split("?", 1)[0]
            self.log("info", '"%s %s" %s', self.command, path, getattr(code, "value", code))

    return Handler


def serve(session: MonitorSession, tools: CaptureTools | None, args) -> int:
    """Run the web server until interrupted; prints the URL (with its token) on stdout."""
    from werkzeug.serving import make_server

    from web.app import create_app

    host = args.host or "127.0.0.1"
    if not _is_loopback(host):
        warnings.warn(f"serving on {host}, not loopback: anyone who can reach it and has the "
                      "URL's token sees the decoded traffic", stacklevel=2)
    token = args.token or secrets.token_urlsafe(24)
    vantage = getattr(args, "vantage", "all") or "all"
    # a paced replay waits for the first browser, so its beginning is seen; max speed does not
    wait = session.speed is not None and tools is not None
    app = create_app(session, token, tools, vantage=vantage, wait_for_client=wait)
    socketio = app.extensions["socketio"]
    dash = app.extensions["mip6mon"]
    try:
        server = make_server(host, args.port or 0, app, threaded=True,
                             request_handler=_quiet_handler())
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}") from None

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    dash.start(socketio)
    print(f"mip6mon: {session.source.name}: dashboard at {_url(host, server.server_port, token)}",
          flush=True)
    if wait:
        print("mip6mon: the replay starts when the dashboard connects", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop()
        server.server_close()
    return 0


LIVE_ROWS = 100_000               # packets the list (and the keyed per-frame state) keeps
LIVE_ATTACKER_WINDOW = 30_000     # newest packets each live attacker analyses


def command_replay(args) -> int:
    capture = args.capture
    if not os.path.isfile(capture):
        raise UserError(f"{capture}: no such capture file")
    speed = parse_speed(getattr(args, "speed", "1"))
    keys = getattr(args, "keys", None)
    keyring = _keyring(keys)
    # dissection in a child process (web/procsource.py): a second core for 1,000 packets/s
    from web.procsource import ProcessPcapSource
    source = ProcessPcapSource(capture, keyring_path=keys)
    tools = CaptureTools(capture, keyring=keyring)
    session = MonitorSession(source, keyring=keyring, speed=speed, capture_path=capture)
    return serve(session, tools, args)


def command_live(args) -> int:
    keyring = _keyring(getattr(args, "keys", None))
    from monitor.sources import LiveSource
    source = LiveSource(args.interface, keyring=keyring, bpf=getattr(args, "bpf", None))
    # a live source that keeps its capture in a file lets tshark filter and export it
    saved = next((getattr(source, a) for a in ("path", "capture_file", "saved_file")
                  if isinstance(getattr(source, a, None), str)), None)
    tools = CaptureTools(saved, keyring=keyring) if saved else None
    # A live capture may run for days: the keyed per-frame state follows the packet list's
    # rows, and the attacker analyses the newest LIVE_ATTACKER_WINDOW packets (its batch
    # analysis costs about 2 s per 10,000: a window keeps the pane refreshing)
    from monitor.keyed import KeyedAnalyzer
    from web.attacker_worker import AttackerWorker
    session = MonitorSession(source, keyring=keyring, speed=None, capture_path=saved,
                             keyed=KeyedAnalyzer(keyring, max_frames=LIVE_ROWS),
                             attackers=AttackerWorker(window=LIVE_ATTACKER_WINDOW),
                             max_rows=LIVE_ROWS)
    return serve(session, tools, args)


def demo_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mip6mon" / "demo"


def build_demo(outdir: Path) -> Path:
    """Write the bundled `demo` scenario (capture + keyring + truth). Rebuilt on every start
    (a fraction of a second, byte-identical for the same lab code), so a demo left in the
    cache by an older mip6mon never disagrees with this one."""
    from lab.run import run_scenario
    from lab.scenario import load_scenario
    outdir.mkdir(parents=True, exist_ok=True)
    run_scenario(load_scenario("demo"), str(outdir))
    return outdir


def command_demo(args) -> int:
    outdir = build_demo(demo_directory())
    args.capture = str(outdir / "capture.pcapng")
    args.keys = str(outdir / "keyring.toml")
    if not getattr(args, "speed", None):
        args.speed = "1"
    print(f"mip6mon: demo scenario in {outdir}", file=sys.stderr, flush=True)
    return command_replay(args)


__all__ = ["command_replay", "command_live", "command_demo"]
