"""Redis connections for `mip6mon sensor` and `mip6mon serve`: a URL in, a client that retries.

URLs are redis-py's (redis.Redis.from_url):
    redis://[[user]:password@]host[:port][/db]       TCP
    rediss://[[user]:password@]host[:port][/db]      TLS (?ssl_ca_certs=CA.pem,
                                                     ?ssl_certfile=&ssl_keyfile= for a client
                                                     certificate)
    unix://[[user]:password@]/path/redis.sock        a unix socket (the lab's default)
A password in a URL is visible to every local user in `ps`: MIP6MON_REDIS_PASSWORD gives it
instead (used when the URL carries none). What is printed of a URL never holds its password.

Retries are redis-py's: each command is retried a few times with exponential back-off
(`redis.retry.Retry`), which rides over a restart of a second or so; `outlast()` retries the
same way for ever, for the loops of a sensor and of serve that must survive Redis being down
for longer, and tells its caller about every failure (for the status bar and the log).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.retry import Retry

from keys.errors import UserError

PASSWORD_ENV = "MIP6MON_REDIS_PASSWORD"
CONNECT_SECONDS = 5.0          # to open a connection (TCP, TLS, unix)
REPLY_SECONDS = 15.0           # to read a reply; XREADGROUP blocks for far less (monitor.merge)
COMMAND_RETRIES = 3            # per command, inside redis-py, before outlast() sees a failure
# Replies that say "not now" rather than "never": Redis loading its append-only file after a
# restart, out of memory, unable to persist, a replica without its master.
TRANSIENT_REPLIES = ("LOADING", "OOM", "MISCONF", "READONLY", "MASTERDOWN", "TRYAGAIN", "BUSY")

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL without its password (for the log, the status bar, errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def transient(error: BaseException) -> bool:
    """A failure that waiting cures: the connection, or a reply in TRANSIENT_REPLIES."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError, BusyLoadingError, OSError)):
        return not isinstance(error, AuthenticationError)
    if isinstance(error, ResponseError):
        return str(error).split(" ", 1)[0].upper() in TRANSIENT_REPLIES
    return False


def connect(url: str, on_connect: Callable[[], None] | None = None) -> redis.Redis:
    """A client for `url` (nothing is sent yet); UserError for a URL redis-py cannot use.
    `on_connect`: called each time a connection is made, the first and every reconnection,
    including those redis-py's own retries make inside a command (which the caller never sees
    fail)."""
    options: dict[str, object] = {}
    if on_connect is not None:
        def connected(connection: Any) -> None:
            connection.on_connect()          # what redis-py does when given no function
            on_connect()
        options["redis_connect_func"] = connected
    try:
        parsed = redis.connection.parse_url(url)
    except ValueError as exc:
        raise UserError(f"{redact(url)}: {exc}") from None
    if "password" not in parsed and os.environ.get(PASSWORD_ENV):
        options["password"] = os.environ[PASSWORD_ENV]
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.02), COMMAND_RETRIES)
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_SECONDS,
                                    socket_timeout=REPLY_SECONDS, retry=retry,
                                    retry_on_error=[OSError], **options)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{redact(url)}: {exc}") from None


def check(client: redis.Redis, url: str) -> None:
    """One PING, so that a wrong URL, password or ACL is one line and exit 2 at start, not a
    sensor that buffers for ever."""
    try:
        client.ping()
    except AuthenticationError as exc:
        raise UserError(f"{redact(url)}: Redis refused the credentials ({exc})") from None
    except NoPermissionError as exc:
        raise UserError(f"{redact(url)}: the Redis user may not do this: {exc}") from None
    except (RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot reach Redis at {redact(url)}: {reason}") from None
    except TypeError as exc:        # an option in the URL's query that redis-py does not know
        raise UserError(f"{redact(url)}: {exc}") from None


class Outage:
    """What the caller of `outlast` learns: since when Redis fails, how often, and why."""

    def __init__(self) -> None:
        self.since: float | None = None     # epoch seconds of the first failure, None: fine
        self.failures = 0
        self.reason = ""
        self.count = 0                      # outages so far

    def failed(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.time()
            self.count += 1
        self.failures += 1
        self.reason = (str(error).splitlines() or [type(error).__name__])[0][:200]

    def ended(self) -> float | None:
        """Mark it over; the outage's length in seconds, or None if there was none."""
        if self.since is None:
            return None
        length = time.time() - self.since
        self.since, self.failures = None, 0
        return length

    def as_dict(self) -> dict[str, object]:
        return {"down_since": self.since, "failures": self.failures, "reason": self.reason,
                "outages": self.count}


class Stopped(Exception):
    """outlast() gave up because its caller is stopping."""


def outlast(do: Callable[[], T], outage: Outage, stopping: Callable[[], bool],
            on_failure: Callable[[Outage], None] | None = None,
            cap: float = 2.0) -> T:
    """`do()`, retried with redis-py's exponential back-off (up to `cap` seconds apart) for
    as long as the failure is transient and the caller is not stopping (then: Stopped)."""

    def failed(error: Exception) -> None:
        if not transient(error):
            raise error
        outage.failed(error)
        if on_failure is not None:
            on_failure(outage)
        if stopping():
            raise Stopped from error

    retry = Retry(ExponentialBackoff(cap=cap, base=0.05), -1,
                  supported_errors=(RedisError, OSError))
    return retry.call_with_retry(do, failed)
