"""`mip6mon lab live SCENARIO` and `mip6mon lab down`: the live lab in one command (issue 14).

`lab live` (root) builds what a lab operator would, with the pieces a user runs by hand:
- the network namespaces of lab/netns.py (`lo` up in each);
- `redis-server` on a unix socket in a 0700 directory (no TCP port: `--port 0`), with its
  append-only file on (`appendfsync always`: an entry Redis took survives a crash), as the
  README says to run it;
- `mip6mon serve` in the root namespace, where the browser is, with the scenario's keyring;
- one `mip6mon sensor` per path link, inside the namespace at the link's far end, labelled
  with the link's path (so the attacker panes are the eavesdroppers on those links);
then waits until serve sees every sensor capturing, prints the dashboard's URL (stdout, as
`replay` does), sends the scenario at its pace (lab.netns.send_frames) and returns, leaving
the lab running for the browser. `mip6mon lab down` ends every process it started (their
pids are kept in RUN_DIR/processes.json and checked against /proc before a signal is sent),
then removes the namespaces (lab.netns.down ends what still runs inside them) and RUN_DIR.

This module sits above the lab (it starts monitor and web processes); lab/netns.py keeps the
namespace plumbing and imports neither.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from dissectors.protocol import PATHS
from keys.errors import UserError

RUN_DIR = Path(os.environ.get("MIP6MON_LAB_DIR", "/run/mip6mon-lab"))
REDIS_SERVER = "redis-server"
START_SECONDS = 90.0          # for serve's URL and every sensor to capture (a loaded machine)
STOP_SECONDS = 5.0            # what a process gets to end before SIGKILL
URL_LINE = re.compile(r"dashboard at (http://\S+/\?token=\S+)")


def _paths(run_dir: Path) -> dict[str, Path]:
    return {"state": run_dir / "processes.json", "socket": run_dir / "redis.sock",
            "redis_dir": run_dir / "redis", "scenario": run_dir / "scenario",
            "logs": run_dir / "logs"}


def redis_url(run_dir: Path = RUN_DIR) -> str:
    return f"unix://{_paths(run_dir)['socket']}"


def _mip6mon(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *args]


def _env() -> dict[str, str]:
    """The children find this very mip6mon (a checkout run without installing it too)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn(argv: list[str], log: Path, netns: str | None = None) -> subprocess.Popen[bytes]:
    """Start a detached process (its own session: a Ctrl-C of `lab live` does not end it)."""
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]    # exec: the pid is the process's own
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=_env())


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _alive(pid: int, marker: str) -> bool:
    """pid still runs the process a live lab started (its command line holds `marker`): a pid
    from processes.json may have ended and been given to another process since."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return marker in cmdline


class LiveLab:
    """The processes of one live lab and where they keep their state."""

    def __init__(self, run_dir: Path = RUN_DIR):
        self.run_dir = run_dir
        self.paths = _paths(run_dir)
        self.processes: dict[str, dict[str, Any]] = {}     # name -> {pid, marker, log}
        self._children: dict[str, subprocess.Popen[bytes]] = {}   # started by this process

    def _save(self) -> None:
        self.paths["state"].write_text(json.dumps(self.processes, indent=1) + "\n")

    def _add(self, name: str, child: subprocess.Popen[bytes], marker: str, log: Path) -> None:
        self._children[name] = child
        self.processes[name] = {"pid": child.pid, "marker": marker, "log": str(log)}
        self._save()

    def _check_alive(self, name: str) -> None:
        # our own child: poll() (its command line reads empty for a moment after exec)
        if self._children[name].poll() is not None:
            log = Path(self.processes[name]["log"])
            raise UserError(f"lab live: {name} ended: {_tail(log) or 'no output'}")

    # --- start -------------------------------------------------------------------------------
    def prepare(self) -> None:
        for path in (self.run_dir, self.paths["redis_dir"], self.paths["logs"]):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)        # the socket's directory: its owner only (README)

    def start_redis(self) -> None:
        log = self.paths["logs"] / "redis.log"
        sock = str(self.paths["socket"])
        if shutil.which(REDIS_SERVER) is None:
            raise UserError("redis-server not found: install Debian's redis-server package")
        child = _spawn([REDIS_SERVER, "--port", "0", "--unixsocket", sock,
                      "--unixsocketperm", "700", "--dir", str(self.paths["redis_dir"]),
                      "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                      "--daemonize", "no", "--protected-mode", "yes"], log)
        self._add("redis-server", child, sock, log)
        from monitor.redisconn import connect
        client = connect(redis_url(self.run_dir))
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except Exception:
                self._check_alive("redis-server")
                if time.monotonic() > deadline:
                    raise UserError("lab live: redis-server did not answer within 20 s") \
                        from None
                time.sleep(0.1)

    def start_serve(self, keyring: Path, port: int, token: str) -> str:
        log = self.paths["logs"] / "serve.log"
        token_file = self.run_dir / "token"        # not on a command line: ps shows those
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        argv = _mip6mon("serve", "--subscribe", redis_url(self.run_dir), "--keys", str(keyring),
                        "--port", str(port), "--token-file", str(token_file))
        self._add("serve", _spawn(argv, log), "serve --subscribe", log)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            match = URL_LINE.search(log.read_text(errors="replace"))
            if match:
                return match.group(1)
            self._check_alive("serve")
            time.sleep(0.1)
        raise UserError(f"lab live: serve printed no URL within {START_SECONDS:.0f} s")

    def start_sensors(self) -> list[str]:
        from lab import netns
        names = []
        for link in netns.LINKS:
            if link.path not in PATHS:
                continue                      # background traffic: no eavesdropper's path
            log = self.paths["logs"] / f"sensor-{link.name}.log"
            argv = _mip6mon("sensor", "-i", link.b_if, "--vantage", link.path,
                            "--publish", redis_url(self.run_dir), "--name", link.name)
            child = _spawn(argv, log, netns.namespace(link.b))
            self._add(f"sensor {link.name}", child, f"--name {link.name}", log)
            names.append(link.name)
        return names

    def wait_capturing(self, url: str, names: list[str]) -> None:
        """Until serve's status shows every sensor capturing (the state itself: a packet
        sent before a sensor's dumpcap runs would be lost)."""
        base, token = url.split("/?token=")
        deadline = time.monotonic() + START_SECONDS
        missing = set(names)
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    status = json.load(r)
                capturing = {s["name"] for s in status.get("sensors", [])
                             if s.get("state") == "capturing"}
                missing = set(names) - capturing
                if not missing:
                    return
            except OSError:
                pass
            for name in list(self.processes):
                self._check_alive(name)
            time.sleep(0.2)
        raise UserError(f"lab live: sensors not capturing after {START_SECONDS:.0f} s: "
                        + ", ".join(sorted(missing)))

    # --- stop --------------------------------------------------------------------------------
    @classmethod
    def stop_all(cls, run_dir: Path = RUN_DIR) -> int:
        """End every process a live lab started (sensors first, Redis last); how many."""
        lab = cls(run_dir)
        try:
            processes = json.loads(lab.paths["state"].read_text())
        except (OSError, ValueError):
            return 0
        order = sorted(processes.items(), key=lambda kv: (kv[0] == "redis-server",
                                                          kv[0] == "serve"))
        ended = 0
        for _name, proc in order:
            pid, marker = int(proc["pid"]), str(proc["marker"])
            if not _alive(pid, marker):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            while _alive(pid, marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, marker):
                os.kill(pid, signal.SIGKILL)
            ended += 1
        return ended


def command_lab_live(args: Any) -> int:
    from lab import netns
    from lab.run import build, write_output
    from lab.scenario import load_scenario
    from web.cli import access_token
    if os.geteuid() != 0:
        raise UserError("lab live builds network namespaces and captures on them: run as root")
    if not args.speed > 0:
        raise UserError("--speed must be positive")
    scenario = load_scenario(args.scenario)
    netns.check_fits(scenario)
    out = build(scenario, args.seed)
    _down(quiet=True)                         # an older lab, live or sent, goes first
    lab = LiveLab()
    try:
        lab.prepare()
        write_output(out, lab.paths["scenario"])   # capture.pcapng: `report` it to compare
        netns.build_topology()
        lab.start_redis()
        url = lab.start_serve(lab.paths["scenario"] / "keyring.toml", args.port,
                              access_token(args))
        lab.wait_capturing(url, lab.start_sensors())
    except BaseException as exc:
        _down(quiet=True, keep_logs=True)
        if isinstance(exc, UserError):
            raise UserError(f"{exc} (logs: {lab.paths['logs']})") from None
        raise
    print(f"mip6mon: lab live {scenario.name}: dashboard at {url}", flush=True)
    print(f"mip6mon: lab live: sending {len(out.frames)} packets at x{args.speed:g} the "
          f"scenario's pace; the lab stays up until 'mip6mon lab down' (Redis at "
          f"{redis_url()}, logs in {lab.paths['logs']})", file=sys.stderr, flush=True)
    counts = netns.send_frames(out.frames, args.speed)
    summary = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
    print(f"mip6mon: lab live {scenario.name}: sent {sum(counts.values())} packets "
          f"({summary}); the same traffic as one file: {lab.paths['scenario']}/capture.pcapng",
          file=sys.stderr, flush=True)
    return 0


def _down(quiet: bool = False, keep_logs: bool = False) -> tuple[int, int]:
    from lab import netns
    ended = LiveLab.stop_all()
    removed = netns.down()
    if keep_logs:                # a failed start: what each process said stays to be read
        for path in RUN_DIR.iterdir() if RUN_DIR.is_dir() else ():
            if path.is_dir() and path.name != "logs":
                shutil.rmtree(path, ignore_errors=True)
            elif not path.is_dir():
                path.unlink(missing_ok=True)
    else:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    if not quiet:
        print(f"mip6mon: lab down: ended {ended} processes, removed {removed} namespaces",
              file=sys.stderr)
    return ended, removed


def command_lab_down(args: Any) -> int:
    if os.geteuid() != 0:
        raise UserError("lab down removes network namespaces: run as root")
    _down()
    return 0
