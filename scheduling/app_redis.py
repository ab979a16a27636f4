"""Short-lived Redis connections for the app's own keys (run-now marker, the
worker canary, /health/'s checks and cache, preflight).

Heroku Redis mini allows 20 connections in all, so nothing here keeps one open
between uses: each client holds at most one connection, opened on first use and
closed with the client. Short timeouts, and no retry of a timed-out call
(redis-py 8 retries by default: measured here, a ping through a black-holed
connection with a 1 s timeout took 15.6 s to fail): a page must answer even
when Redis does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


def quick_redis(timeout: float) -> redis.Redis:
    """A client to REDIS_URL (TLS without certificate checks for Heroku's
    rediss:// URLs) that gives up after `timeout` seconds, once. It connects
    on first use, inside the caller's error handling; close() ends it."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=1,
        **(settings.REDIS_SSL_OPTIONS or {}),
    )


@contextmanager
def app_redis(timeout: float = 2) -> Iterator[redis.Redis]:
    """`quick_redis` for the length of a block."""
    client = quick_redis(timeout)
    try:
        yield client
    finally:
        client.close()
