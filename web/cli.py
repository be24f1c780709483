"""`mip6mon replay | live | demo`: serve the dashboard over a capture file or an interface."""
from __future__ import annotations

import ipaddress
import os
import re
import secrets
import signal
import socket
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler

from dissectors.dissect import check_capture_file
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


def _keyring(path: str | None, allow_insecure: bool = False):
    if not path:
        return None
    from keys.keyring import load_keyring
    return load_keyring(path, allow_insecure)


TOKEN_ENV = "MIP6MON_TOKEN"
TOKEN_FILE_LIMIT = 4096
# the token goes in a URL and an HTML attribute as it is: URL-safe characters only
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


def _read_token_file(path: str) -> str:
    """The first line of a small regular file (a FIFO or a device would hang or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: the token file is not a regular file")
        if info.st_size > TOKEN_FILE_LIMIT:
            raise UserError(f"{path}: not a token file (over {TOKEN_FILE_LIMIT} bytes)")
        data = fh.read(TOKEN_FILE_LIMIT)
    lines = data.decode("utf-8", "replace").splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise UserError(f"{path}: the token file is empty")
    if info.st_mode & 0o077:
        warnings.warn(f"{path}: the token file is readable by other users (chmod 600 it)",
                      stacklevel=2)
    return token


def access_token(args) -> str:
    """--token, else --token-file's first line, else $MIP6MON_TOKEN, else a random one.
    (--token is visible to every local user in `ps`; the file and the variable are not.)"""
    token, origin = getattr(args, "token", None), "--token"
    path = getattr(args, "token_file", None)
    if token is None and path:
        origin = f"--token-file {path}"
        token = _read_token_file(path)
    if token is None and TOKEN_ENV in os.environ:
        origin = f"${TOKEN_ENV}"
        token = os.environ[TOKEN_ENV].strip()
    # the children (the dissector, tshark) have no use for it
    os.environ.pop(TOKEN_ENV, None)
    if token is None:
        return secrets.token_urlsafe(24)
    if not TOKEN_CHARS.fullmatch(token):
        raise UserError(f"{origin}: the access token must be letters, digits and . _ ~ - only "
                        "(it goes in the dashboard's URL)")
    return token


# Control characters (C0, DEL, C1) and the backslash, as \xNN: a request path is the
# client's bytes, and a log line is read on a terminal
_LOG_ESCAPES = str.maketrans({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
                             | {ord("\\"): "\\\\"})
_QUERY = re.compile(r"\?[^ ]*")
REQUEST_LINE_LOGGED = 200      # characters of a malformed request line that reach the log


def escape_log(text: str) -> str:
    return text.translate(_LOG_ESCAPES)


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler with one escaped line per request: no query string (the
    printed URL and the page's own scripts carry the access token there, and logs are read
    by more people), and a malformed or oversized request line is answered (400, 414) and
    logged like any other."""

    def log_request(self, code="-", size="-"):
        code = getattr(code, "value", code)
        path = getattr(self, "path", None)
        command = getattr(self, "command", None)
        if path is not None and command:
            line = f"{command} {path.split('?', 1)[0]}"
        elif str(code) == "414":   # http.server does not keep a request line that long
            line = "(request line over 64 KiB)"
        else:                      # the request line did not parse: show (a piece of) it
            raw = getattr(self, "requestline", "") or ""
            line = _QUERY.sub("?…", raw[:REQUEST_LINE_LOGGED])
            if len(raw) > REQUEST_LINE_LOGGED:
                line += f"… ({len(raw)} characters)"
        self.log("info", '"%s" %s', line, code)

    def log_error(self, format, *args):
        # http.server's send_error() says "code 400, message ..." before log_request() logs
        # the same request: one line per request is enough
        if format.startswith("code %d"):
            return
        super().log_error(format, *args)

    def log(self, type, message, *args):
        text = escape_log(message % args if args else message)
        super().log(type, "%s", text)


LISTEN_BACKLOG = 128


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line UserError (a name that does not
    resolve, an address not on this machine, a port in use or out of range). Werkzeug would
    print its own text and exit 1 instead; it gets this socket ready-made."""
    # the family Werkzeug will assume for this host (select_address_family)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not 0 <= port <= 65535:      # getaddrinfo would quietly take it modulo 65536
        raise UserError(f"cannot listen on {where}: a port is 0 to 65535")
    sock = None
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(LISTEN_BACKLOG)
        return sock
    except (OSError, OverflowError, UnicodeError) as exc:
        if sock is not None:
            sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"cannot listen on {where}: {reason}") from None


@dataclass
class Endpoint:
    """Where the dashboard listens and the token it wants."""
    host: str
    sock: socket.socket
    token: str


def endpoint(args) -> Endpoint:
    """The access token and the listening socket, settled before any child process starts:
    a bad token file, a bad --host or a port in use is one line and exit 2, and no child is
    left to clean up."""
    host = args.host or "127.0.0.1"
    token = access_token(args)
    sock = listen(host, args.port or 0)
    if not _is_loopback(host):
        warnings.warn(f"serving on {host}, not loopback: anyone who can reach it and has the "
                      "URL's token sees the decoded traffic", stacklevel=2)
    return Endpoint(host, sock, token)


def serve(session: MonitorSession, tools: CaptureTools | None, args, where: Endpoint) -> int:
    """Run the web server until interrupted; prints the URL (with its token) on stdout."""
    from werkzeug.serving import make_server

    from web.app import create_app

    host, token, sock = where.host, where.token, where.sock
    vantage = getattr(args, "vantage", "all") or "all"
    # a paced replay waits for the first browser, so its beginning is seen; max speed does not
    wait = session.speed is not None and tools is not None
    app = create_app(session, token, tools, vantage=vantage, wait_for_client=wait)
    socketio = app.extensions["socketio"]
    dash = app.extensions["mip6mon"]
    try:
        server = make_server(host, sock.getsockname()[1], app, threaded=True,
                             request_handler=QuietRequestHandler, fd=sock.fileno())
    finally:
        sock.close()             # the server holds its own duplicate of the descriptor

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    dash.start(socketio)
    print(f"mip6mon: {session.source.name}: dashboard at {_url(host, server.port, token)}",
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


LIVE_ROWS = 20_000                # packets the list (and the keyed per-frame state) keeps
LIVE_ATTACKER_WINDOW = 30_000     # newest packets each live attacker analyses


def command_replay(args) -> int:
    capture = args.capture
    # report's check, so both say the same of a missing file, a directory, a FIFO or a device
    # (a FIFO is not "no such file": it is there, and reading it could wait forever)
    check_capture_file(capture)
    speed = parse_speed(getattr(args, "speed", "1"))
    keys = getattr(args, "keys", None)
    keyring = _keyring(keys, getattr(args, "allow_insecure_keyring", False))
    where = endpoint(args)
    if getattr(args, "engine", "walk") == "pyshark":
        # pyshark's tshark is the second process that dissects (monitor/engines.py)
        from monitor.engines import PysharkPcapSource
        source = PysharkPcapSource(capture, keyring=keyring)
    else:
        # dissection in a child process (web/procsource.py): a second core for 1,000 packets/s
        from web.procsource import ProcessPcapSource
        source = ProcessPcapSource(capture, keyring_path=keys)
    tools = CaptureTools(capture, keyring=keyring)
    session = MonitorSession(source, keyring=keyring, speed=speed, capture_path=capture)
    return serve(session, tools, args, where)


def command_live(args) -> int:
    keyring = _keyring(getattr(args, "keys", None), getattr(args, "allow_insecure_keyring", False))
    where = endpoint(args)
    from monitor.engines import DEFAULT_ENGINE, live_source
    engine = getattr(args, "engine", DEFAULT_ENGINE)
    if engine == "walk":
        # capture, dissection and decryption in a child process (web/procsource.py): the
        # analysis keeps this one's core (issue 12's soak: 2,000 packets/s)
        from web.procsource import ProcessLiveSource
        source = ProcessLiveSource(args.interface, keyring, getattr(args, "bpf", None))
    else:
        source = live_source(args.interface, keyring, getattr(args, "bpf", None), engine)
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
    return serve(session, tools, args, where)


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
