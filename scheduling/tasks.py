"""Tasks of the scheduling layer itself (not jobs): the worker canary."""

from __future__ import annotations

import logging

import redis
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from scheduling.canary import CANARY_TASK, record_canary

logger = logging.getLogger(__name__)


@shared_task(name=CANARY_TASK, ignore_result=True, acks_late=False)
def canary() -> None:
    """Record that a worker executed a task just now (see scheduling/canary.py)."""
    try:
        record_canary()
    except redis.RedisError as exc:
        # /health/ reports Redis itself; a warning (a breadcrumb, not an event)
        # rather than an error every interval.
        logger.warning("canary not recorded: Redis unavailable (%s)", type(exc).__name__)


@worker_ready.connect
def _canary_at_start(sender=None, **kwargs) -> None:
    # A worker that just started is healthy as soon as it executes one task,
    # not after beat's first interval.
    try:
        canary.apply_async(expires=settings.HEALTH_CANARY_INTERVAL)
    except Exception as exc:  # noqa: BLE001 - a missing first canary only delays "ok"
        logger.warning("could not send the start-up canary (%s)", type(exc).__name__)
