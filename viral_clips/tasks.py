"""Celery tasks: thin wrappers over the services in this app."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from viral_clips.cleanup import run_cleanup
from viral_clips.models import CleanupRun
from viral_clips.monitoring import report_cleanup_to_sentry

logger = logging.getLogger(__name__)


class CleanupFailed(Exception):
    """A cleanup run ended `failed`: raised so Celery and Sentry see it."""


@shared_task(name="viral_clips.tasks.scheduled_cloudcube_cleanup", bind=True, acks_late=True)
@report_cleanup_to_sentry  # cron check-ins, failed and partial runs: viral_clips/monitoring.py
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
    report = run_cleanup(
        retention_days, dry_run=dry_run, trigger=trigger, task_id=self.request.id or ""
    )
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
