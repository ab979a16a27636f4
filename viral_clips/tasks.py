"""Celery tasks: thin wrappers over the services in this app."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings

from config.celery import CLEANUP_ENTRY
from scheduling import guard as run_guard
from scheduling import shutdown
from scheduling.beat import SLOT_HEADER
from scheduling.crons import report_cleanup_to_sentry
from viral_clips import cube_stats, reports
from viral_clips.cleanup import (
    CleanupInterrupted,
    record_skipped_run,
    run_cleanup,
    validate_retention_days,
)
from viral_clips.models import CleanupRun

logger = logging.getLogger(__name__)


class CleanupFailed(Exception):
    """A cleanup run ended `failed`: raised so Celery and Sentry see it."""


@shared_task(name="viral_clips.tasks.scheduled_cloudcube_cleanup", bind=True, acks_late=True)
@report_cleanup_to_sentry  # cron check-ins, failed and partial runs: scheduling/crons.py
def scheduled_cloudcube_cleanup(
    self,
    retention_days: int | None = None,
    dry_run: bool = False,
    trigger: str = CleanupRun.Trigger.SCHEDULE,
) -> dict:
    """Delete clip files older than `retention_days` (default CLEANUP_RETENTION_DAYS)."""
    if retention_days is None:
        retention_days = settings.CLEANUP_RETENTION_DAYS
    logger.info("Starting scheduled Cloudcube cleanup (retention: %s days)", retention_days)
    retention_days = validate_retention_days(retention_days)
    task_id = self.request.id or uuid.uuid4().hex
    slot = _scheduled_slot(self.request)

    admission = run_guard.admit(task_id, CLEANUP_ENTRY if slot else None, slot)
    if not admission.admitted:
        run = record_skipped_run(
            retention_days, dry_run, trigger, admission.reason, task_id=task_id, scheduled_for=slot
        )
        logger.warning("Skipped Cloudcube cleanup (run #%s): %s", run.pk, admission.reason)
        return {"run_id": run.pk, "status": CleanupRun.Status.SKIPPED, "reason": admission.reason}
    try:
        with shutdown.stoppable():
            report = run_cleanup(
                retention_days,
                dry_run=dry_run,
                trigger=trigger,
                task_id=task_id,
                scheduled_for=slot,
                should_stop=shutdown.requested,
                progress=lambda scanned, deleted: admission.refresh(),
            )
    except CleanupInterrupted as exc:
        # Shutting down: back on the queue; the next worker resumes this run.
        logger.warning("Cloudcube cleanup interrupted by shutdown; re-queued (%s)", exc)
        raise Reject(str(exc), requeue=True) from exc
    finally:
        admission.release()
    logger.info(
        "Scheduled cleanup completed: %s %d files (%.2f MB), retained %d recent clips",
        "Would delete" if dry_run else "Deleted",
        report.files_deleted,
        report.mb_freed,
        report.clips_retained,
    )
    if report.status == CleanupRun.Status.FAILED:
        raise CleanupFailed(
            f"cleanup run {report.run_id} failed: {report.error_count} key(s) could not be deleted"
        )
    return report.as_dict()


def _scheduled_slot(request) -> datetime | None:
    """The beat slot this message was sent for (scheduling/beat.py), if any."""
    headers = getattr(request, "headers", None) or {}
    value = headers.get(SLOT_HEADER) or getattr(request, SLOT_HEADER, None)
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


@shared_task(name="viral_clips.tasks.send_weekly_report")
def send_weekly_report() -> dict:
    """Mail ADMINS the week's cleanup runs and the cube's size (see viral_clips.reports)."""
    report = reports.send_weekly_report()
    if report is None:
        return {"sent": False}
    return {
        "sent": True,
        "runs": len(report.runs),
        "files_deleted": report.files_deleted,
        "bytes_freed": report.bytes_freed,
        "failures": len(report.failures),
    }


@shared_task(name="viral_clips.tasks.refresh_cube_stats")
def refresh_cube_stats() -> dict:
    """Measure the cube's size for the dashboard and the report (see viral_clips.cube_stats)."""
    stats = cube_stats.refresh_cube_stats()
    return {"objects": stats.objects, "bytes": stats.bytes}
