"""The clips app's periodic jobs, each declared once with `@periodic_job`.

Beat entries, the guard, Sentry monitors and status lines all derive from these
declarations (scheduling/periodic.py). Entry and task names must never change:
Redis entries, queued messages and Sentry monitors use them. Bodies stay a few
lines: the services hold the logic.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from scheduling.execution import current_execution
from scheduling.periodic import periodic_job
from scheduling.registry import OVERLAP_DEFER, OVERLAP_SKIP
from viral_clips import cube_stats, reports
from viral_clips.cleanup import retention_or_default, run_cleanup
from viral_clips.models import CleanupRun
from viral_clips.monitoring import CLEANUP_SENTRY

logger = logging.getLogger(__name__)


class CleanupFailed(Exception):
    """A cleanup run ended `failed`: raised so Celery and Sentry see it."""


@periodic_job(
    entry="scheduled-cloudcube-cleanup",
    schedule_setting="CLEANUP_SCHEDULE",
    timezone_setting="CLEANUP_TIMEZONE",
    kwargs_settings={"retention_days": "CLEANUP_RETENTION_DAYS"},
    # A dry run or a manual press still going at 02:00 must not cost the
    # night's cleanup: the slot waits for it and then runs.
    overlap=OVERLAP_DEFER,
    # A daily job: yesterday's slot is still worth running today, the one
    # before it is superseded by the next run anyway.
    catch_up=timedelta(hours=23),
    # A run normally starts within seconds of its slot; a takeover or a
    # deploy brings it within a minute or two: 5 minutes still calls a late
    # run late.
    checkin_margin_minutes=5,
    # bench/cleanup_bench.py: 16 s for 20,000 objects against the local S3
    # server. An hour is two orders of magnitude of headroom and still
    # reports a hung run the same night.
    max_runtime_minutes=60,
    # Renewed after every listed page (well under a second on S3).
    lease="CLEANUP_LEASE_SECONDS",
    sentry=CLEANUP_SENTRY,
)
def scheduled_cloudcube_cleanup(
    retention_days: int | None = None,
    dry_run: bool = False,
    trigger: str = CleanupRun.Trigger.SCHEDULE,
) -> dict:
    """Delete clip files older than CLEANUP_RETENTION_DAYS from the cube."""
    retention_days = retention_or_default(retention_days)
    execution = current_execution()
    # The ledger decides the trigger (a slot's header, not the kwargs): a bare
    # `.delay(retention_days=5)` from a shell is a manual run.
    trigger = CleanupRun.Trigger.SCHEDULE if execution.slot else execution.trigger
    # "scheduled" only for the schedule's own runs; a press of Run now says "manual".
    kind = "scheduled" if trigger == CleanupRun.Trigger.SCHEDULE else str(trigger)
    logger.info("Starting %s Cloudcube cleanup (retention: %s days)", kind, retention_days)
    report = run_cleanup(retention_days, dry_run=dry_run, trigger=trigger, context=execution)
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


@periodic_job(
    entry="weekly-report",
    schedule_setting="WEEKLY_REPORT_SCHEDULE",
    timezone_setting="WEEKLY_REPORT_TIMEZONE",
    # Two reports for one week are noise; a report running when the next
    # falls due (every few seconds in tests) just lets that slot go.
    overlap=OVERLAP_SKIP,
    # A Monday report missed while no worker ran still goes out that day.
    catch_up=timedelta(hours=12),
    checkin_margin_minutes=15,
    # Building it lists the cube once (seconds) and sends one mail.
    max_runtime_minutes=15,
    lease=60,
)
def send_weekly_report() -> dict:
    """Mail ADMINS the week's cleanup runs and the cube's size."""
    return reports.send_weekly_report_once(current_execution())


@periodic_job(
    entry="refresh-cube-stats",
    schedule_setting="CUBE_STATS_SCHEDULE",
    # A measurement is superseded by the next one: a late one is worthless.
    overlap=OVERLAP_SKIP,
    # It only feeds the dashboard's and the report's size: no Sentry monitor.
    monitor=False,
    lease=300,
)
def refresh_cube_stats() -> dict:
    """Measure the cube's size and object count (CUBE_STATS_INTERVAL)."""
    stats = cube_stats.refresh_cube_stats()
    return {"objects": stats.objects, "bytes": stats.bytes}
