"""The scheduling layer's own periodic jobs: the worker canary
(scheduling/canary.py) and the run history's pruning (scheduling/history.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from django.conf import settings

from scheduling import history
from scheduling.canary import record_canary
from scheduling.execution import current_execution
from scheduling.periodic import periodic_job
from scheduling.registry import OVERLAP_SKIP

logger = logging.getLogger(__name__)


@periodic_job(
    entry="worker-canary",
    schedule_setting="HEALTH_CANARY_SCHEDULE",
    # Bookkeeping, not work: no run ledger, no Sentry monitor, and each message
    # expires after one interval (a stopped worker comes back to no backlog).
    ledger=False,
    monitor=False,
    expires_with_period=True,
    task_options={"ignore_result": True, "acks_late": False},
)
def canary() -> None:
    """Prove a worker still consumes tasks (/health/'s worker check)."""
    try:
        record_canary()
    except redis.RedisError as exc:
        # /health/ reports Redis itself; a warning (a breadcrumb, not an event)
        # rather than an error every interval.
        logger.warning("canary not recorded: Redis unavailable (%s)", type(exc).__name__)


def canary_at_start(sender=None, **kwargs) -> None:
    """`worker_ready` receiver: a worker that just started is healthy as soon as
    it executes one task, not after beat's first interval."""
    try:
        canary.apply_async(expires=settings.HEALTH_CANARY_INTERVAL)
    except Exception as exc:  # noqa: BLE001 - a missing first canary only delays "ok"
        logger.warning("could not send the start-up canary (%s)", type(exc).__name__)


@periodic_job(
    entry="prune-run-history",
    schedule_setting="RUN_HISTORY_PRUNE_SCHEDULE",
    timezone_setting="RUN_HISTORY_PRUNE_TIMEZONE",
    kwargs_settings={"days": "RUN_HISTORY_DAYS"},
    # Tomorrow's run deletes what today's left: a late one is worth nothing.
    overlap=OVERLAP_SKIP,
    catch_up=timedelta(0),
    checkin_margin_minutes=15,
    # bench/history_bench.py: a year of a minute schedule in well under a minute.
    max_runtime_minutes=30,
    lease=120,
)
def prune_run_history(days: int | None = None) -> dict:
    """Delete run history older than RUN_HISTORY_DAYS, keeping what matters."""
    days = days or settings.RUN_HISTORY_DAYS
    return history.prune(days, progress=current_execution().progress).as_dict()
