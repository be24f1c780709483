"""`mip6mon serve --subscribe URL`: the dashboard over every sensor's events (issue 14).

The same dashboard as `replay` and `live` (web.app, web.session), on a different source:
monitor.subscribe.StreamSource (a Redis Stream consumer group, the sensors' events merged in
capture order, each packet once, ESP opened here with the keyring). Two differences:
- the attacker panes follow the sensors' vantage labels (web.attacker_worker, routed): the
  eavesdropper at MN-HA sees what the MN-HA sensors saw, the colluders see every sensor;
- `/api/status` (and the status bar) add each sensor (name, vantage point, rate, lag, drops,
  last seen) and Redis's state.

One web worker (Flask-SocketIO's threading mode, one process): the analysis lives in that
process, so a second worker would need its own copy of it, and then the message queue
Flask-SocketIO offers (`message_queue=`) would only share the browsers, not the panes. One
worker serves many browsers (issue 5's budget); more dashboards are more `serve` processes,
each with its own --group.
"""
from __future__ import annotations

from typing import Any

from keys.errors import UserError
from web.cli import LIVE_ATTACKER_WINDOW, LIVE_ROWS, _keyring, endpoint, serve
from web.session import MonitorSession


class ServeSession(MonitorSession):
    """A MonitorSession whose status says how each sensor and Redis are doing."""

    def status(self) -> dict[str, Any]:
        status = super().status()
        source = self.source.status()
        if status["state"] == "running" and source["redis"]["state"] != "running":
            # 'running' must mean packets are being analysed (the briefing)
            status["state"] = source["redis"]["state"]
        status.update(source)
        return status


def command_serve(args: Any) -> int:
    from monitor.keyed import KeyedAnalyzer
    from monitor.subscribe import StreamSource
    from web.attacker_worker import AttackerWorker
    if args.dedup_window < 0:
        raise UserError("--dedup-window must not be negative")
    keyring = _keyring(getattr(args, "keys", None), getattr(args, "allow_insecure_keyring", False))
    where = endpoint(args)                 # a bad token or port: one line, before Redis
    source = StreamSource(args.subscribe, keyring, stream=args.stream, group=args.group,
                          consumer=args.consumer, start=args.start, window=args.dedup_window)
    attackers = AttackerWorker(window=LIVE_ATTACKER_WINDOW, route=source.route)
    source.on_observation = attackers.observe_at
    # like `live`: it runs for as long as the sensors do (web/cli.py's windows)
    session = ServeSession(source, keyring=keyring, speed=None,
                           keyed=KeyedAnalyzer(keyring, max_frames=LIVE_ROWS),
                           attackers=attackers, max_rows=LIVE_ROWS)
    return serve(session, None, args, where)
