"""Celery tasks: thin wrappers over the services in this app.

Each scheduled job's task carries `@scheduled_job(<entry>)` (scheduling/guard.py):
slot claim, lease, ledger row, shutdown handling and Sentry check-ins. The body
only calls its service with the execution (`current_execution()`).
"""

from __future__ import annotations

import logging

from celery import shared_task

from scheduling.guard import current_execution, scheduled_job
from viral_clips import cube_stats, reports
from viral_clips.cleanup import retention_or_default, run_cleanup
from viral_clips.jobs import CLEANUP, CUBE_STATS, WEEKLY_REPORT
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
    retention_days = retention_or_default(retention_days)
    # "scheduled" only for the schedule's own runs; a press of Run now says "manual".
    kind = "scheduled" if trigger == CleanupRun.Trigger.SCHEDULE else str(trigger)
    logger.info("Starting %s Cloudcube cleanup (retention: %s days)", kind, retention_days)
    report = run_cleanup(
        retention_days, dry_run=dry_run, trigger=trigger, context=current_execution()
    )
    logger.info(
        "%s cleanup completed: %s %d files (%.2f MB), retained %d recent clips",
        kind.capitalize(),
        "Would delete" if dry_run else "Deleted",
        report.files_deleted,
        report.mb_freed,
        report.recent_kept,  # younger than the retention period; pinned ones below
    )
    if report.pinned_kept:
        logger.info("Kept %d expired files of pinned or recent clips", report.pinned_kept)
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


@shared_task(name=CUBE_STATS.task, bind=True, acks_late=True)
@scheduled_job(CUBE_STATS.entry)
def refresh_cube_stats(self) -> dict:
    """Measure the cube's size for the dashboard and the report (see viral_clips.cube_stats)."""
    stats = cube_stats.refresh_cube_stats()
    return {"objects": stats.objects, "bytes": stats.bytes}
