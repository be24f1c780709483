"""`mip6mon`: one command, with subcommands. Each subcommand lives in the module that owns it.

This module is the command line, and the one module declared to sit on top of every layer
(keys <- dissectors <- monitor <- web, with lab beside; docs/DESIGN.md, tests/test_layers.py):
it imports the lab and the web dashboard, each only when its subcommand runs, so that `report`
never pays for Flask.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from keys.errors import EXIT_BAD_INPUT, UserError
from monitor.engines import DEFAULT_ENGINE, ENGINE_HELP, ENGINES
from monitor.placement import VANTAGES


def _report(args: argparse.Namespace) -> int:
    from monitor.report import command_report
    return command_report(args)


def _compare(args: argparse.Namespace) -> int:
    from monitor.compare import command_compare
    return command_compare(args)


def _evaluate(args: argparse.Namespace) -> int:
    # the crowds come from the lab (this module is the one on top of every layer)
    from lab.crowd import run_crowd
    from monitor.evaluate import command_evaluate
    return command_evaluate(args, run_crowd)


def _lab(args: argparse.Namespace) -> int:
    if args.lab_command in ("live", "down"):
        # processes beside the namespaces (redis-server, sensors, serve): above the lab
        from web.lablive import command_lab_down, command_lab_live
        return command_lab_live(args) if args.lab_command == "live" else command_lab_down(args)
    from lab.cli import command_lab
    return command_lab(args)


def _sensor(args: argparse.Namespace) -> int:
    from monitor.sensor import command_sensor
    return command_sensor(args)


def _serve(args: argparse.Namespace) -> int:
    from web.serve import command_serve
    return command_serve(args)


def _replay(args: argparse.Namespace) -> int:
    from web.cli import command_replay
    return command_replay(args)


def _live(args: argparse.Namespace) -> int:
    from web.cli import command_live
    return command_live(args)


def _demo(args: argparse.Namespace) -> int:
    from web.cli import command_demo
    return command_demo(args)


def _wireshark(args: argparse.Namespace) -> int:
    from monitor.wireshark import command_wireshark
    return command_wireshark(args)


def _keys(args: argparse.Namespace) -> int:
    from keys.cli import command_keys
    return command_keys(args)


# subcommand -> the function that runs it (parsed args in, exit code out)
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "report": _report, "compare": _compare, "evaluate": _evaluate, "lab": _lab,
    "replay": _replay, "live": _live, "demo": _demo, "wireshark": _wireshark,
    "keys": _keys, "sensor": _sensor, "serve": _serve,
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage is one `--help` away), exit 2.
    `declare(parser)`: a subcommand's options declared by the module that reads them, imported
    when that subcommand is parsed (its --help included), not at every start: `report` does
    not import the evaluation grid and the lab's crowds (~0.04 s before its first packet)."""

    def __init__(self, *args, declare: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._declare = declare

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._declare is not None:
            declare, self._declare = self._declare, None
            declare(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"mip6mon: error: {message} (see {self.prog} --help)\n")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from monitor.evaluate import add_arguments
    add_arguments(parser)


def _crowd_arguments(parser: argparse.ArgumentParser) -> None:
    # one option per crowd parameter, declared in lab/crowd.py (its table only: no third-party
    # import, the crowd's generation is imported when `lab crowd` runs)
    from lab.crowd import add_arguments
    add_arguments(parser)


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535: no silent wrap, no OverflowError."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0..65535")
    return port


def _keys_arguments(parser: argparse.ArgumentParser, help_text: str = "keyring TOML (PROFILE.md)",
                    second: bool = False) -> None:
    parser.add_argument("--keys", help=help_text)
    if second:
        parser.add_argument("--keys-b", help="keyring for capture B")
    parser.add_argument("--allow-insecure-keyring", action="store_true",
                        help="use a keyring that group or others may read (warns)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mip6mon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("report", help="analyse a capture, print binding caches and findings")
    p.add_argument("capture")
    _keys_arguments(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--vantage", choices=VANTAGES, default="all")
    p.add_argument("--detail", action="store_true",
                   help="json: keep every per-frame list (the attacker's frames and evidence, "
                        "every finding); by default they are counts plus the first frame")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)

    p = sub.add_parser("compare", help="privacy metrics of two captures side by side, or "
                                       "Markdown tables of lab runs (--lab)")
    p.add_argument("capture_a", nargs="?")
    p.add_argument("capture_b", nargs="?")
    _keys_arguments(p, "keyring for capture A (and B unless --keys-b)", second=True)
    p.add_argument("--lab", nargs="+", metavar="DIR",
                   help="lab output directories (capture.pcapng + keyring.toml): Markdown "
                        "tables as in docs/compare.md")
    p.add_argument("--vantage", choices=(*VANTAGES, "matrix"), default="all",
                   help="vantage point; 'matrix' (with --lab): every vantage point")
    p.add_argument("--format", choices=("text", "json"), default="text")

    sub.add_parser("evaluate", help="score the keyless attacker on lab crowds over a grid "
                                     "(procedures, N, IIDs, SPIs, vantage points, seeds)",
                   declare=_evaluate_arguments)

    p = sub.add_parser("lab", help="generate MIPv6 location-privacy traffic")
    lab = p.add_subparsers(dest="lab_command", required=True)
    q = lab.add_parser("run", help="write capture.pcapng, keyring.toml, truth.json")
    q.add_argument("scenario", help="a shipped scenario name or a TOML file")
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--seed", type=int)
    lab.add_parser("crowd", help="N mobile nodes in one scenario: write scenario.toml, "
                                 "capture.pcapng, keyring.toml, truth.json",
                   declare=_crowd_arguments)
    q = lab.add_parser("send", help="send a scenario live into network namespaces (root)")
    q.add_argument("scenario")
    q.add_argument("--topology", choices=("netns",), default="netns")
    q.add_argument("--speed", type=float, default=1.0, help="pace multiplier")
    q.add_argument("--seed", type=int)
    q = lab.add_parser("live", help="the live lab in one command (root): namespaces, "
                                    "redis-server, a sensor per link, serve; sends the scenario")
    q.add_argument("scenario")
    q.add_argument("--speed", type=float, default=1.0, help="pace multiplier")
    q.add_argument("--seed", type=int)
    q.add_argument("--port", type=int, default=0, help="dashboard port (0 picks a free one)")
    q.add_argument("--token", help="dashboard access token (default: $MIP6MON_TOKEN, else "
                                   "random)")
    lab.add_parser("down", help="remove what `lab send` or `lab live` built, processes "
                                "included")
    lab.add_parser("list", help="list the shipped scenarios")

    for name in ("replay", "live", "demo"):
        q = sub.add_parser(name, help={"replay": "replay a capture into the dashboard",
                                       "live": "monitor a live interface in the dashboard",
                                       "demo": "replay the bundled demo scenario"}[name])
        if name == "replay":
            q.add_argument("capture")
            q.add_argument("--speed", default="1", help="1, 10 or max")
        if name == "live":
            q.add_argument("-i", "--interface", required=True)
            q.add_argument("--bpf", help="capture filter (default: mobility traffic only)")
        if name != "demo":
            _keys_arguments(q)
            q.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                           help=ENGINE_HELP)
        q.add_argument("--vantage", choices=VANTAGES, default="all")
        _dashboard_arguments(q)

    p = sub.add_parser("keys", help="keyring tools")
    keys = p.add_subparsers(dest="keys_command", required=True)
    q = keys.add_parser("import-xfrm", help="add the kernel's ESP SAs (ip xfrm state) to a "
                        "keyring")
    q.add_argument("-o", "--output", required=True, metavar="KEYRING",
                   help="keyring to create (mode 0600) or add to")
    q.add_argument("--from", dest="source", metavar="FILE",
                   help="saved `ip xfrm state` output ('-': standard input) instead of running ip")
    q.add_argument("--netns", metavar="NAME", help="the SAs of this network namespace")
    q.add_argument("--mobile-node", metavar="NAME",
                   help="the [[mobile_node]] these SAs belong to (PROFILE.md)")
    q.add_argument("--replace", action="store_true",
                   help="overwrite an SA the keyring has with other keys")
    q.add_argument("--skip-unsupported", action="store_true",
                   help="import what PROFILE.md can express, skip (and name) the rest")

    p = sub.add_parser("wireshark", help="use the profile's extensions in Wireshark and tshark")
    ws = p.add_subparsers(dest="wireshark_command", required=True)
    q = ws.add_parser("install", help="copy the Lua plugin into your personal plugin folder")
    q.add_argument("--print-path", action="store_true",
                   help="print where the plugin goes, install nothing")

    _stream_arguments(sub)
    return parser


def _dashboard_arguments(q: argparse.ArgumentParser) -> None:
    """Where a dashboard listens and its access token (replay, live, demo, serve)."""
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=port_number, default=0, help="0 picks a free port")
    q.add_argument("--token", help="access token (default: $MIP6MON_TOKEN, else random; "
                                   "visible in ps: prefer --token-file or the variable)")
    q.add_argument("--token-file", help="read the access token from this file's first line")


def _stream_arguments(sub) -> None:
    """`sensor` and `serve`: many sensors, one dashboard, over a Redis Stream (issue 14)."""
    from monitor import entries, merge, sensor

    p = sub.add_parser("sensor", help="capture (or read a file), dissect with no keys and "
                                      "publish the events to a Redis Stream")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-i", "--interface", help="capture live on this interface")
    where.add_argument("-r", "--capture", help="read this capture file (a shard of an archive)")
    p.add_argument("--vantage", choices=VANTAGES, required=True,
                   help="the path this sensor watches (all: a capture of several paths)")
    p.add_argument("--publish", required=True, metavar="URL",
                   help="redis://, rediss:// (TLS) or unix:///path/redis.sock")
    p.add_argument("--name", help="sensor name (default: HOST:INTERFACE or HOST:FILE)")
    p.add_argument("--bpf", help="capture filter (default: mobility traffic only)")
    p.add_argument("--stream", default=entries.STREAM, help="the stream's key")
    p.add_argument("--maxlen", type=int, default=sensor.MAXLEN,
                   help="entries the stream keeps (trimmed approximately)")
    p.add_argument("--buffer", type=int, default=sensor.BUFFER,
                   help="events kept while Redis is unreachable (live: more are dropped, "
                        "counted)")
    p.add_argument("--speed", type=float,
                   help="-r: publish at the capture's pace times this (default: at once)")
    p.add_argument("--max-delay", type=float, default=sensor.MAX_DELAY,
                   help="seconds a live packet may take to reach the publisher (serve orders "
                        "the sensors' events by capture time and waits this long for them)")

    p = sub.add_parser("serve", help="the dashboard over every sensor's events from a Redis "
                                     "Stream")
    p.add_argument("--subscribe", required=True, metavar="URL",
                   help="redis://, rediss:// (TLS) or unix:///path/redis.sock")
    _keys_arguments(p, "keyring TOML (PROFILE.md): decrypts here, never on sensors")
    p.add_argument("--stream", default=entries.STREAM, help="the stream's key")
    p.add_argument("--group", default=entries.GROUP,
                   help="consumer group (one per dashboard)")
    p.add_argument("--consumer", default="serve", help=argparse.SUPPRESS)
    p.add_argument("--from", dest="start", choices=("start", "new"), default="start",
                   help="analyse everything the stream holds (start) or only new entries")
    p.add_argument("--dedup-window", type=float, default=merge.DEDUP_WINDOW,
                   help="seconds within which two sensors' copies of a packet are one")
    p.add_argument("--vantage", choices=VANTAGES, default="all",
                   help="the attacker pane shown first")
    _dashboard_arguments(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # key files of mip6mon processes killed with -9 (they could not clean up): gone now
    from dissectors.espsa import remove_stale
    remove_stale()
    warnings.formatwarning = lambda msg, cat, *a, **k: f"mip6mon: warning: {msg}\n"
    try:
        return COMMANDS[args.command](args) or 0
    except UserError as exc:          # keyring errors included (KeyringError is a UserError)
        print(f"mip6mon: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
