"""The app's own Redis connection (operator state: cube stats cache, run-now marker).

Short timeouts: a page or a health check must answer even when Redis does not.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def app_redis() -> redis.Redis:
    """A client for REDIS_URL (one pool per URL, per process); TLS without
    certificate checks for Heroku's rediss:// URLs."""
    url = settings.REDIS_URL
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=2,
                socket_timeout=2,
                **(settings.REDIS_SSL_OPTIONS or {}),
            )
            _clients[url] = client
        return client
