"""Health checks for GET /health/: each answers quickly and never leaks a secret."""

from __future__ import annotations

from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=2,
        socket_timeout=2,
        **(settings.REDIS_SSL_OPTIONS or {}),
    )
    try:
        client.ping()
    finally:
        client.close()


def check_cloudcube() -> None:
    from viral_clips.s3 import cloudcube_client

    # Cube credentials are scoped to the cube's prefix: list one key under it
    # rather than HeadBucket, which a shared bucket may refuse.
    client = cloudcube_client(connect_timeout=2, read_timeout=3, max_attempts=1)
    client.list_objects_v2(
        Bucket=settings.CLOUDCUBE.bucket, Prefix=settings.CLOUDCUBE.prefix, MaxKeys=1
    )


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "cloudcube": check_cloudcube,
}


def run_checks() -> tuple[bool, dict[str, dict]]:
    """Run every check; returns (all ok, per-check results)."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            # The exception's type only: messages can carry hosts or URLs.
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True}
    return all(r["ok"] for r in results.values()), results
