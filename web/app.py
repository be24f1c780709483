"""The dashboard: a Flask app plus Flask-SocketIO (threading mode) over one MonitorSession.

Security model: one random token guards everything, and no cookie carries it (a cookie set
on 127.0.0.1 goes to every port of 127.0.0.1, RFC 6265 8.5, and SameSite counts other ports
as the same site). The printed URL carries it in the query string; the page it loads keeps it
(a <meta> tag) and sends it in the X-Mip6mon-Token header on every request it makes, in the
query string of its own scripts and stylesheet, and in the socket's auth. Every HTTP route
checks it (a before_request hook, so routes added later are covered too), the socket refuses
a connect without it, and Socket.IO accepts only the page's own origin. Before all of that,
a request that a browser marks as coming from another site's page (Fetch Metadata, Origin)
is refused, token or not, so no other origin can make the dashboard run tshark. Nothing
derived from a keyring's secrets is sent: the browser gets reports and annotation strings
that the analyzers computed.
"""
from __future__ import annotations

import csv
import hmac
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, render_template, request, send_file
from flask_socketio import SocketIO, emit

from dissectors.protocol import OTHER_PATH, PATHS
from monitor.placement import VANTAGES
from web.capture_tools import CaptureTools, FilterError, ToolsBusy
from web.panes import CORRESPONDENT_BINDINGS, HOME_BINDINGS, side_by_side
from web.session import MonitorSession, PaneCursor
from web.view import detail_tree

HEADER = "X-Mip6mon-Token"
# plotly.js creates one empty <style> element and fills it through the CSSOM (which CSP does
# not police); the hash below is SHA-256 of the empty string, so that empty element is the
# only inline style allowed: no 'unsafe-inline', and a <style> with any content is refused.
EMPTY_STYLE_HASH = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
CSP = ("default-src 'self'; script-src 'self'; "
       f"style-src 'self' {EMPTY_STYLE_HASH}; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
ROW_FLUSH_SECONDS = 0.025      # rows leave the server at most 25 ms after the stream saw them
SNAPSHOT_SECONDS = 1.0
ATTACKER_POLL_SECONDS = 0.5    # how often the attacker thread looks for a pane to refresh
RETRY_AFTER_SECONDS = 5        # told to a filter or export refused while tshark is busy (429)
# Per-browser back-pressure (issue 12): messages waiting to go out to one browser beyond which
# it is sent nothing new (about a second of rows at 25 ms batches) until it has caught up. A
# slow browser then never grows this process's memory nor delays the others (emit only
# queues; each browser's socket has its own writer); what it was not sent is counted, and it
# asks for the rows still held once it sees the gap in their sequence numbers ("resync").
CLIENT_BACKLOG = 40


def plotly_js_path() -> str:
    """The vendored basic bundle (see static/VENDORED.txt), else the plotly package's own."""
    basic = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static",
                         "plotly-basic.min.js")
    if os.path.isfile(basic):
        return basic
    import plotly
    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def same_origin(origin: str | None, environ: dict) -> bool:
    """Socket.IO origin check: only pages served by this very host:port (never '*')."""
    host = environ.get("HTTP_HOST")
    if not origin or not host:
        return False
    return origin == f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


def foreign_request(environ: dict) -> str | None:
    """Why a browser's request comes from another site's page, or None. Browsers state where
    a request comes from in Fetch Metadata (Sec-Fetch-Site: a page on another port of
    127.0.0.1 is "same-site", never "same-origin") and in Origin. A top-level GET navigation
    is let through: that is the printed URL opened from another page, and it carries nothing
    but what is in the URL. Clients that send neither header (curl, scripts) are judged by
    the token alone."""
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site not in ("same-origin", "none"):
        top_level = (environ.get("REQUEST_METHOD") == "GET"
                     and environ.get("HTTP_SEC_FETCH_MODE") == "navigate"
                     and environ.get("HTTP_SEC_FETCH_DEST") == "document")
        if not top_level:
            return f"Sec-Fetch-Site: {site}"
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not same_origin(origin, environ):
        return "Origin is not this dashboard"
    return None


def refuse_foreign(wsgi_app):
    """WSGI middleware around everything, the Socket.IO endpoint included."""
    def middleware(environ, start_response):
        why = foreign_request(environ)
        if why is not None:
            body = (f"mip6mon: refused: the request comes from another site's page ({why})\n"
                    .encode("ascii", "backslashreplace"))
            start_response("403 FORBIDDEN", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
                ("Cross-Origin-Resource-Policy", "same-origin"),
                ("Cache-Control", "no-store")])
            return [body]
        return wsgi_app(environ, start_response)
    return middleware


@dataclass
class Client:
    vantage: str = "all"
    cursor: PaneCursor = field(default_factory=PaneCursor)
    snapshots: bool = False         # its connect snapshot is out: periodic ones may follow
    rows_held_back: int = 0         # rows not sent while it was behind (resync fetches them)
    snapshots_held_back: int = 0    # periodic snapshots not sent while it was behind

    def counts(self) -> dict[str, int]:
        return {"rows_held_back": self.rows_held_back,
                "snapshots_held_back": self.snapshots_held_back}


def outgoing(socketio: SocketIO, sid: str) -> int:
    """Messages queued for one browser and not yet written to its socket."""
    server = socketio.server
    try:
        eio_sid = server.manager.eio_sid_from_sid(sid, "/")
        return server.eio.sockets[eio_sid].queue.qsize()
    except (AttributeError, KeyError, TypeError):
        return 0


class Dashboard:
    """Holds the app, its socket, the session, and the background emitters."""

    def __init__(self, session: MonitorSession, token: str, tools: CaptureTools | None,
                 wait_for_client: bool = False):
        self.session = session
        self.first_client = threading.Event()
        self.wait_for_client = wait_for_client
        self.token = token
        self.tools = tools
        self.clients: dict[str, Client] = {}
        self.clients_lock = threading.Lock()
        self.stopping = threading.Event()
        self.started = False

    def token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(),
                                                       self.token.encode())

    # --- background emitters ----------------------------------------------------------------
    def start(self, socketio: SocketIO) -> None:
        if self.started:
            return
        self.started = True
        gate = self.first_client if self.wait_for_client else None
        socketio.start_background_task(self.session.run, gate)
        socketio.start_background_task(self._flush_rows, socketio)
        socketio.start_background_task(self._push_snapshots, socketio)
        socketio.start_background_task(self._refresh_attackers)

    def _flush_rows(self, socketio: SocketIO) -> None:
        while not self.stopping.is_set():
            rows = self.session.view.drain()
            if rows:
                # "sent" lets the benchmark split the latency: server / transport / browser
                batch = {"rows": rows, "sent": time.time() * 1000.0}
                with self.clients_lock:
                    clients = dict(self.clients)
                for sid, client in clients.items():
                    if outgoing(socketio, sid) > CLIENT_BACKLOG:
                        client.rows_held_back += len(rows)
                    else:
                        socketio.emit("rows", batch, to=sid)
            self.stopping.wait(ROW_FLUSH_SECONDS)

    def snapshot_for(self, client: Client) -> dict:
        snap = self.session.pane_update(client.cursor, client.vantage)
        snap["status"]["client"] = client.counts()
        return snap

    def client_counts(self) -> list[dict[str, int]]:
        with self.clients_lock:
            return [client.counts() for client in self.clients.values()]

    def _push_snapshots(self, socketio: SocketIO) -> None:
        last_key = None
        quiet_since = time.monotonic()
        while not self.stopping.is_set():
            self.stopping.wait(SNAPSHOT_SECONDS)
            key = (self.session.view.total, self.session.state,
                   tuple(sorted(self.session.attacker_versions().items())))
            # after the stream goes quiet, keep a slow heartbeat for the status bar's rate
            if key == last_key and time.monotonic() - quiet_since < 2.0:
                continue
            quiet_since = time.monotonic()
            last_key = key
            self.session.resolve_late()
            with self.clients_lock:
                clients = dict(self.clients)
            for sid, client in clients.items():
                if not client.snapshots:
                    continue
                if outgoing(socketio, sid) > CLIENT_BACKLOG:
                    client.snapshots_held_back += 1     # its panes catch up from its cursor
                    continue
                try:
                    socketio.emit("snapshot", self.snapshot_for(client), to=sid)
                except Exception as exc:          # a broken analyzer must not stop the loop
                    socketio.emit("server_error", {"message": f"{type(exc).__name__}: {exc}"[:200]},
                                  to=sid)

    def _refresh_attackers(self) -> None:
        """The attacker panes' analysis, apart from the snapshots: it takes seconds on a long
        capture, and the packet list and keyed pane must not wait for it."""
        while not self.stopping.wait(ATTACKER_POLL_SECONDS):
            with self.clients_lock:
                vantages = {client.vantage for client in self.clients.values()}
            for vantage in sorted(vantages):
                self.session.refresh_attacker(vantage)

    def stop(self) -> None:
        self.stopping.set()
        self.session.close()


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                         for k, v in row.items()})
    return out.getvalue()


def _columns(rows: list[dict], first: list[str]) -> list[str]:
    cols = list(first)
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def create_app(session: MonitorSession, token: str, tools: CaptureTools | None = None,
               vantage: str = "all", wait_for_client: bool = False) -> Flask:
    """The Flask app; `app.extensions["socketio"]` its socket, `["mip6mon"]` the Dashboard."""
    here = os.path.dirname(os.path.abspath(__file__))
    app = Flask("mip6mon.web", root_path=here, static_folder="static",
                template_folder="templates")
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    dash = Dashboard(session, token, tools, wait_for_client)
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=same_origin,
                        logger=False, engineio_logger=False, max_http_buffer_size=1_000_000)
    app.extensions["mip6mon"] = dash
    # outermost, so the socket's endpoint (engine.io's middleware, installed just above) is
    # covered as well as every Flask route
    app.wsgi_app = refuse_foreign(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def require_token():
        # the header from the page's own requests; the query string for the printed URL and
        # the page's scripts and stylesheet (never a cookie: see the module's docstring)
        supplied = request.headers.get(HEADER) or request.args.get("token")
        if not dash.token_ok(supplied):
            return Response("mip6mon: access token required\n", status=401,
                            mimetype="text/plain")
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index():
        response = Response(render_template("index.html", token=token,
                                            vantages=VANTAGES, default_vantage=vantage,
                                            paths=(*PATHS, OTHER_PATH), live=tools is None))
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/plotly.min.js")
    def plotly_js():
        return send_file(plotly_js_path(), mimetype="text/javascript", max_age=3600)

    @app.get("/api/status")
    def api_status():
        # what each browser was not sent while it was behind (per-browser back-pressure)
        return jsonify(dict(session.status(), clients=dash.client_counts()))

    @app.get("/api/snapshot")
    def api_snapshot():
        vantage = request.args.get("vantage", "all")
        if vantage not in VANTAGES:
            return jsonify({"error": f"unknown vantage {vantage!r}"}), 400
        return jsonify(session.snapshot(vantage))

    @app.get("/api/rows")
    def api_rows():
        return jsonify(session.view.backlog())

    @app.get("/api/packet/<int:frame>")
    def api_packet(frame: int):
        event = session.event(frame)
        if event is None:
            return jsonify({"error": f"frame {frame} is not in the packet list"}), 404
        return jsonify({"frame": frame, "tree": detail_tree(event, session.annotations(frame))})

    @app.get("/api/filter")
    def api_filter():
        body, status = _apply_filter(request.args.get("filter", ""))
        response = jsonify(body)
        response.status_code = status
        if status == 429:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def _apply_filter(text: str) -> tuple[dict, int]:
        if not text.strip():
            return {"frames": None}, 200
        if tools is None:
            return {"error": "display filters need a capture file: not available in live mode "
                             "(use the quick filters)"}, 400
        try:
            return {"frames": tools.filter_frames(text)}, 200
        except FilterError as exc:
            return {"error": f"invalid display filter: {exc}"}, 400
        except ToolsBusy as exc:
            return {"error": f"busy: {exc}"}, 429

    @app.post("/api/export.pcapng")
    def api_export():
        if tools is None:
            return Response("export needs a capture file: not available in live mode\n",
                            status=400, mimetype="text/plain")
        text = request.form.get("filter", "").strip()
        try:
            if request.form.get("frames"):
                frames = [int(x) for x in request.form["frames"].split(",") if x.strip()]
            elif text:
                frames = tools.filter_frames(text)
            else:
                frames = [row["n"] for row in session.view.backlog(limit=10**9)]
            data = tools.export(frames)
        except ValueError as exc:      # FilterError is a ValueError; so is a bad frame number
            return Response(f"cannot export: {exc}\n", status=400, mimetype="text/plain")
        except ToolsBusy as exc:
            return Response(f"busy: {exc}\n", status=429, mimetype="text/plain",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return Response(data, mimetype="application/octet-stream", headers={
            "Content-Disposition": 'attachment; filename="mip6mon-export.pcapng"'})

    @app.get("/api/bindings.json")
    def api_bindings_json():
        report = session.keyed_report()
        body = {"home_bindings": report.get("home_bindings", []),
                "correspondent_bindings": report.get("correspondent_bindings", [])}
        return Response(json.dumps(body, indent=2), mimetype="application/json", headers={
            "Content-Disposition": 'attachment; filename="mip6mon-bindings.json"'})

    @app.get("/api/bindings.csv")
    def api_bindings_csv():
        report = session.keyed_report()
        rows = ([{"cache": "home", **b} for b in report.get("home_bindings", [])]
                + [{"cache": "correspondent", **b}
                   for b in report.get("correspondent_bindings", [])])
        # the columns the two binding panes show, side by side, then any other field
        cols = _columns(rows, ["cache", *side_by_side(HOME_BINDINGS, CORRESPONDENT_BINDINGS)])
        return Response(_csv(rows, cols), mimetype="text/csv", headers={
            "Content-Disposition": 'attachment; filename="mip6mon-bindings.csv"'})

    @app.get("/api/report.json")
    def api_report_json():
        vantage = request.args.get("vantage", "all")
        if vantage not in VANTAGES:
            vantage = "all"
        return Response(json.dumps(session.full_report(vantage), indent=2),
                        mimetype="application/json", headers={
                            "Content-Disposition": 'attachment; filename="mip6mon-report.json"'})

    @app.get("/api/findings.csv")
    def api_findings_csv():
        findings = session.keyed_report().get("findings", [])
        rows = [f if isinstance(f, dict) else {"finding": str(f)} for f in findings]
        return Response(_csv(rows, _columns(rows, [])), mimetype="text/csv", headers={
            "Content-Disposition": 'attachment; filename="mip6mon-findings.csv"'})

    # --- Socket.IO ---------------------------------------------------------------------------
    @socketio.on("connect")
    def on_connect(auth=None):
        supplied = auth.get("token") if isinstance(auth, dict) else None
        if not dash.token_ok(supplied):
            raise ConnectionRefusedError("access token required")
        client = Client(vantage=vantage)
        # registered for rows before the backlog is taken, so no batch falls between the two
        # (an overlap the page drops by sequence number)
        with dash.clients_lock:
            dash.clients[request.sid] = client
        emit("backlog", {"rows": session.view.backlog(), "evicted": session.view.evicted})
        emit("snapshot", dash.snapshot_for(client))
        # periodic snapshots only now: one taken by that thread before the emit above took the
        # first snapshot (the one with the panes' layout) and could reach the page after this
        # one, which then had no layout
        client.snapshots = True

    @socketio.on("ready")
    def on_ready(*_args):
        """The page has built its panes from its first snapshot (and drawn its empty plots,
        the costliest draw): a paced replay starts now, so its first rows wait for nothing."""
        dash.first_client.set()

    @socketio.on("disconnect")
    def on_disconnect(*_args):
        with dash.clients_lock:
            dash.clients.pop(request.sid, None)

    @socketio.on("vantage")
    def on_vantage(data):
        vantage = data.get("vantage") if isinstance(data, dict) else None
        if vantage not in VANTAGES:
            return {"error": "unknown vantage"}
        with dash.clients_lock:
            client = dash.clients.get(request.sid)
        if client is None:
            return {"error": "not connected"}
        client.vantage = vantage
        dash.session.refresh_attacker(vantage)
        emit("snapshot", dash.snapshot_for(client))
        return {"ok": True}

    @socketio.on("resync")
    def on_resync(data):
        """Rows a client missed (it saw a gap in the sequence numbers), as an ack."""
        try:
            first, last = int(data.get("from")), int(data.get("to"))
        except (AttributeError, TypeError, ValueError):
            return {"error": "bad range"}
        return {"rows": session.view.rows_between(first, last)}

    @socketio.on("detail")
    def on_detail(data):
        try:
            frame = int(data.get("frame"))
        except (AttributeError, TypeError, ValueError):
            return {"error": "bad frame number"}
        event = session.event(frame)
        if event is None:
            return {"error": f"frame {frame} is not in the packet list"}
        return {"frame": frame, "tree": detail_tree(event, session.annotations(frame))}

    @socketio.on("filter")
    def on_filter(data):
        text = data.get("filter", "") if isinstance(data, dict) else ""
        body, _status = _apply_filter(str(text))
        return body

    return app
