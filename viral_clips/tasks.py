"""Celery tasks: thin wrappers over the services in this app.

Each scheduled job's task carries `@scheduled_job(<entry>)` (scheduling/guard.py):
slot claim, lease, ledger row, shutdown handling and Sentry check-ins. The body
only calls its service with the execution (`current_execution()`).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from scheduling.guard import current_execution, scheduled_job
from viral_clips import reports
from viral_clips.cleanup import run_guarded_cleanup
from viral_clips.jobs import CLEANUP, WEEKLY_REPORT
from viral_clips.models import CleanupRun
from viral_clips.monitoring import report_cleanup_to_sentry

logger = logging.getLogger(__name__)


class CleanupFailed(Exception):
    """A cleanup run ended `failed`: raised so Celery and Sentry see it."""


@shared_task(name=CLEANUP.task, bind=True, acks_late=True)
@scheduled_job(CLEANUP.entry, sentry=report_cleanup_to_sentry)
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
    report = run_guarded_cleanup(
        current_execution(), retention_days, dry_run=dry_run, trigger=trigger
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


@shared_task(name=WEEKLY_REPORT.task, bind=True, acks_late=True)
@scheduled_job(WEEKLY_REPORT.entry)
def send_weekly_report(self) -> dict:
    """Mail ADMINS the week's cleanup runs and the cube's size (see viral_clips.reports)."""
    return reports.send_weekly_report_once(current_execution())
