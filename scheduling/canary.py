"""The worker canary: proof that a worker is still consuming and executing tasks.

Beat sends `scheduling.tasks.canary` every HEALTH_CANARY_INTERVAL seconds
through the broker like any task; the worker that executes it writes the time
into Redis. /health/ reads it back: a canary older than HEALTH_CANARY_MAX_AGE
means no worker has executed a task lately although beat may still be ticking
(a consumer that stopped after a broker reconnect, a stuck pool).

The canary is bookkeeping, not a job: it is in no run ledger, has no Sentry
cron monitor, and sends Sentry nothing (config/sentry.py drops its transactions
and events). Each message expires after one interval, so a stopped worker does
not come back to a backlog of stale canaries.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from scheduling.app_redis import quick_redis

logger = logging.getLogger(__name__)

CANARY_KEY = "koolclips:health:canary"


def record_canary(now: float | None = None) -> float:
    """Write this execution's time (epoch seconds); the key expires by itself."""
    now = time.time() if now is None else now
    client = quick_redis(2)
    try:
        client.set(CANARY_KEY, repr(now), ex=10 * settings.HEALTH_CANARY_MAX_AGE)
    finally:
        client.close()
    return now


def last_canary(client: redis.Redis) -> float | None:
    raw = client.get(CANARY_KEY)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
