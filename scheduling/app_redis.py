"""Short-lived Redis connections for the app's own keys (run guard, run-now marker,
cube stats cache, the health check).

Heroku Redis mini allows 20 connections in all, so nothing here keeps one open
between uses: each `with app_redis() as client:` opens one connection and
closes it. Short timeouts, and no retry of a timed-out call (redis-py 8
retries three times by default: a 2 s timeout would become about 8 s): a page
must answer even when Redis does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


@contextmanager
def app_redis(timeout: float = 2) -> Iterator[redis.Redis]:
    """One connection to REDIS_URL for the block (TLS without certificate checks
    for Heroku's rediss:// URLs), closed when the block ends."""
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        single_connection_client=True,
        # A fresh connection per block: nothing stale to retry on.
        retry=Retry(NoBackoff(), 0),
        **(settings.REDIS_SSL_OPTIONS or {}),
    )
    try:
        yield client
    finally:
        client.close()
