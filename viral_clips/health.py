"""Health checks for GET /health/: each answers quickly and never leaks a secret.

A check returns a dict of details (or None) and raises when its service does
not answer; a details dict with ``"ok": False`` marks it down without an
exception (the scheduler answering, but stale).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from scheduling.app_redis import app_redis
from viral_clips.models import CleanupRun


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    with app_redis() as client:
        client.ping()


def check_cloudcube() -> None:
    from viral_clips.s3 import cloudcube_client

    # Cube credentials are scoped to the cube's prefix: list one key under it
    # rather than HeadBucket, which a shared bucket may refuse.
    client = cloudcube_client(connect_timeout=2, read_timeout=3, max_attempts=1)
    client.list_objects_v2(
        Bucket=settings.CLOUDCUBE.bucket, Prefix=settings.CLOUDCUBE.prefix, MaxKeys=1
    )


def check_scheduler() -> dict:
    """Down when no beat has ticked within HEALTH_SCHEDULER_MAX_AGE seconds.

    Beat ticks at least every BEAT_MAX_LOOP_INTERVAL while it holds the lock;
    a worker whose beat child died keeps running without it, and only this
    check notices.
    """
    from scheduling.status import job_lines, scheduler_status

    max_age = settings.HEALTH_SCHEDULER_MAX_AGE
    status = scheduler_status()
    last_tick = status.last_tick_at
    details: dict = {
        "last_tick_at": None,
        "seconds_since_tick": None,
        "max_age_seconds": max_age,
        "jobs": job_lines(status),  # one line per registered job
    }
    if last_tick is None:
        # Never ticked, or the holder's record expired with its lock.
        return {"ok": False, "error": "no scheduler tick on record", **details}
    age = max(0.0, (timezone.now() - last_tick).total_seconds())
    details.update(last_tick_at=last_tick.isoformat(), seconds_since_tick=round(age, 1))
    if age > max_age:
        return {"ok": False, "error": f"no scheduler tick in the last {max_age} s", **details}
    return details


CHECKS: dict[str, Callable[[], dict | None]] = {
    "database": check_database,
    "redis": check_redis,
    "cloudcube": check_cloudcube,
    "scheduler": check_scheduler,
}


def last_cleanup() -> dict | None:
    """The most recent cleanup that ran (skipped duplicates aside): status and age."""
    run = (
        CleanupRun.objects.exclude(status=CleanupRun.Status.SKIPPED).order_by("-started_at").first()
    )
    if run is None:
        return None
    return {
        "id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "age_seconds": round((timezone.now() - run.started_at).total_seconds()),
    }


def run_checks() -> tuple[bool, dict[str, dict], dict]:
    """Run every check; returns (all ok, per-check results, extra information)."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            details = check() or {}
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            # The exception's type only: messages can carry hosts or URLs.
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": details.pop("ok", True), **details}
    extra: dict = {"last_cleanup": None}
    if results["database"]["ok"]:
        try:
            extra["last_cleanup"] = last_cleanup()
        except Exception as exc:  # noqa: BLE001 - informational; the database check decides
            extra["last_cleanup"] = {"error": type(exc).__name__}
    return all(r["ok"] for r in results.values()), results, extra
