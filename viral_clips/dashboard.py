"""Everything the staff dashboard shows, gathered in one place for a thin view.

Each part is fetched on its own: Redis or the cube being down costs only the
part that needs it, and the page says which part and why (the exception's
type only; messages can carry hosts or URLs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from scheduling import controls, ledger, registry
from scheduling.models import JobAction, JobRun
from scheduling.registry import Job
from scheduling.schedules import ParsedSchedule
from scheduling.status import scheduler_status
from viral_clips.cleanup import default_retention_days, retention_or_default
from viral_clips.cube_stats import CubeStats, cube_stats
from viral_clips.models import CleanupRun
from viral_clips.run_now import CleanupActivity, current_activity
from viral_clips.storage_chart import storage_chart_svg
from viral_clips.tasks import scheduled_cloudcube_cleanup, send_weekly_report

logger = logging.getLogger(__name__)

RECENT_RUNS = 20
RECENT_ACTIONS = 20


@dataclass
class Dashboard:
    schedule_words: str
    schedule_raw: str
    retention_days: int
    report_schedule_words: str
    runs: list[CleanupRun]
    chart: str
    now: datetime
    cube_interval_seconds: int  # how often the scheduled job measures the cube
    scheduler: Any = None  # scheduling.status.SchedulerStatus
    cleanup_entry: Any = None  # its entry for the cleanup
    report_entry: Any = None  # its entry for the weekly report
    cube: CubeStats | None = None
    activity: CleanupActivity | None = None
    next_run_at: datetime | None = None
    next_run_from_beat: bool = False  # False: computed from the schedule, beat has not said
    report_next_run_at: datetime | None = None
    report_last: ReportLastRun | None = None
    active_run: CleanupRun | None = None  # the running cleanup's row, for its progress
    controls: list[JobControl] = field(default_factory=list)  # pause/stop/run per job
    actions: list[JobAction] = field(default_factory=list)  # the audit trail, newest first
    errors: dict[str, str] = field(default_factory=dict)
    cleanup_timezone: str = "UTC"  # the zones their schedules are read in
    report_timezone: str = "UTC"

    @property
    def active_run_elapsed_seconds(self) -> float | None:
        if self.active_run is None:
            return None
        return (self.now - self.active_run.started_at).total_seconds()


@dataclass
class ReportLastRun:
    """The weekly report's last send, as far as anything records it."""

    sent_at: datetime  # when its last execution started (the run ledger)
    outcome: str | None = None


def report_last_run(entry=None) -> ReportLastRun | None:
    """The weekly report's last run, from the run ledger (None: it never ran)."""
    run = ledger.last_run(send_weekly_report.job.entry)
    if run is None:
        return None
    outcome = run.get_status_display()
    if run.detail:
        outcome = f"{outcome} ({run.detail})"
    return ReportLastRun(sent_at=run.started_at or run.created_at, outcome=outcome)


def _attempt(errors: dict[str, str], part: str, fetch):
    try:
        return fetch()
    except Exception as exc:  # noqa: BLE001 - one broken part must not break the page
        logger.warning("dashboard: %s unavailable (%s)", part, type(exc).__name__)
        errors[part] = type(exc).__name__
        return None


def _on_the_minute(when: datetime, schedule: ParsedSchedule) -> datetime:
    """A cron slot is a whole minute: round off the estimate's clock skew (an
    estimate truncated to 01:59:59 means 02:00). Intervals keep their seconds."""
    if schedule.kind != "crontab":
        return when
    return (when + timedelta(seconds=30)).replace(second=0, microsecond=0)


def build_dashboard() -> Dashboard:
    errors: dict[str, str] = {}
    # Activity before the runs: a run that finishes in between is then in the
    # table, never missing from both (the page refreshes only while busy).
    activity = _attempt(errors, "activity", current_activity)
    runs = list(CleanupRun.objects.order_by("-started_at")[:RECENT_RUNS])
    cleanup_schedule = scheduled_cloudcube_cleanup.job.schedule()
    report_schedule = send_weekly_report.job.schedule()
    board = Dashboard(
        schedule_words=cleanup_schedule.describe(),
        schedule_raw=cleanup_schedule.raw,
        retention_days=default_retention_days(),
        report_schedule_words=report_schedule.describe(),
        runs=runs,
        chart=storage_chart_svg(runs),
        now=timezone.now(),
        cube_interval_seconds=settings.CUBE_STATS_INTERVAL,
        activity=activity,
        errors=errors,
        cleanup_timezone=cleanup_schedule.timezone,
        report_timezone=report_schedule.timezone,
    )
    board.scheduler = _attempt(errors, "scheduler", scheduler_status)
    if board.scheduler is not None:
        # What a beat stored; the per-job table shows every registered job.
        entries = {e.name: e for e in board.scheduler.entries if e.in_scheduler}
        board.cleanup_entry = entries.get(scheduled_cloudcube_cleanup.job.entry)
        board.report_entry = entries.get(send_weekly_report.job.entry)
        board.report_last = _attempt(errors, "report", lambda: report_last_run(board.report_entry))
        if board.report_entry is not None and board.report_entry.next_run_at is not None:
            board.report_next_run_at = _on_the_minute(
                board.report_entry.next_run_at, report_schedule
            )
    if board.cleanup_entry is not None and board.cleanup_entry.next_run_at is not None:
        board.next_run_at = _on_the_minute(board.cleanup_entry.next_run_at, cleanup_schedule)
        board.next_run_from_beat = True
    elif cleanup_schedule.kind == "crontab":
        # No beat has written the entry yet: the schedule's next slot is still
        # worth showing (an interval has no slot until a beat starts counting).
        cron = cleanup_schedule.celery_schedule
        board.next_run_at = _on_the_minute(
            board.now + cron.remaining_estimate(board.now), cleanup_schedule
        )
    if activity is not None and activity.run_id is not None:
        # Its counters are saved between delete batches: that is the progress.
        board.active_run = CleanupRun.objects.filter(pk=activity.run_id).first()
    # From the database only (the last full scan): never a listing in a request.
    board.cube = _attempt(errors, "cube", cube_stats)
    board.controls = _attempt(errors, "controls", job_controls) or []
    board.actions = _attempt(errors, "actions", recent_actions) or []
    board.now = timezone.now()  # after every part, so no "ago" is in the future
    return board


@dataclass
class RunNowConfirmation:
    """What the Run now confirmation page says before a real deletion."""

    retention_days: int
    cube: str
    last_dry_run: CleanupRun | None
    now: datetime
    default_retention_days: int = 0


def run_now_confirmation(retention_days: object | None = None) -> RunNowConfirmation:
    """For the retention asked (validated like CLEANUP_RETENTION_DAYS:
    InvalidRetention), the last dry run with that retention."""
    retention = retention_or_default(retention_days)
    last_dry_run = (
        CleanupRun.objects.filter(
            dry_run=True, status=CleanupRun.Status.SUCCEEDED, retention_days=retention
        )
        .order_by("-started_at")
        .first()
    )
    return RunNowConfirmation(
        retention_days=retention,
        cube=settings.CLOUDCUBE.cube,
        last_dry_run=last_dry_run,
        now=timezone.now(),
        default_retention_days=default_retention_days(),
    )


@dataclass
class StopConfirmation:
    job: str
    run: JobRun | None
    cleanup_run: CleanupRun | None
    now: datetime


def stop_confirmation(job: Job) -> StopConfirmation:
    run = controls.running_run(job)
    cleanup = CleanupRun.objects.filter(job_run=run).first() if run is not None else None
    return StopConfirmation(job.entry, run, cleanup, timezone.now())


@dataclass
class JobControl:
    """One row of the dashboard's controls: a job, paused or not, running or not."""

    entry: str
    description: str
    pause: controls.PauseState
    running: JobRun | None
    stopping: bool = False
    own_card: bool = False  # the cleanup: Run now is its card's (retention, dry run)
    controllable: bool = True  # False: outside the run ledger, no button at all


def job_controls() -> list[JobControl]:
    paused = controls.paused_entries()
    rows = []
    for job in registry.jobs():
        if not controls.controllable(job):
            # No claim reads its pause: a pause row (if one was ever written)
            # would be a false banner.
            rows.append(
                JobControl(
                    entry=job.entry,
                    description=job.description,
                    pause=controls.PauseState(paused=False),
                    running=None,
                    controllable=False,
                )
            )
            continue
        running = controls.running_run(job)
        rows.append(
            JobControl(
                entry=job.entry,
                description=job.description,
                pause=paused.get(job.entry, controls.PauseState(paused=False)),
                running=running,
                stopping=running is not None and controls.stop_order(running.pk) is not None,
                own_card=job == scheduled_cloudcube_cleanup.job,
            )
        )
    return rows


def recent_actions(n: int = RECENT_ACTIONS) -> list[JobAction]:
    return list(JobAction.objects.order_by("-created_at", "-pk")[:n])
