"""The weekly cleanup report mailed to ADMINS (task: send_weekly_report).

It covers the seven days up to the moment it is built: every cleanup run that
started in that window, what the real (not dry) runs deleted and freed, which
runs failed or partly failed and why, and the cube's last measured size (with its age).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone
from django.utils.timesince import timesince

from scheduling.execution import Execution
from viral_clips.cube_stats import CubeStats, cube_stats
from viral_clips.models import CleanupRun

logger = logging.getLogger(__name__)

REPORT_PERIOD = timedelta(days=7)
FAILURE_STATUSES = (CleanupRun.Status.FAILED, CleanupRun.Status.PARTIAL)


@dataclass
class WeeklyReport:
    period_start: datetime
    period_end: datetime
    runs: list[CleanupRun]  # oldest first
    cube: CubeStats | None
    cube_error: str = ""
    status_counts: Counter = field(default_factory=Counter)

    @property
    def real_runs(self) -> list[CleanupRun]:
        return [r for r in self.runs if not r.dry_run]

    @property
    def dry_runs(self) -> list[CleanupRun]:
        return [r for r in self.runs if r.dry_run]

    @property
    def files_deleted(self) -> int:
        return sum(r.files_deleted for r in self.real_runs)

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes_freed for r in self.real_runs)

    @property
    def mb_freed(self) -> float:
        return self.bytes_freed / (1024 * 1024)

    @property
    def failures(self) -> list[CleanupRun]:
        return [r for r in self.runs if r.status in FAILURE_STATUSES]


def build_weekly_report(now: datetime | None = None) -> WeeklyReport:
    """Gather the week up to `now` (default: this moment) and the cube's last measured size."""
    end = now or timezone.now()
    start = end - REPORT_PERIOD
    runs = list(
        CleanupRun.objects.filter(started_at__gte=start, started_at__lt=end).order_by("started_at")
    )
    report = WeeklyReport(
        period_start=start,
        period_end=end,
        runs=runs,
        cube=None,
        status_counts=Counter(r.status for r in runs),
    )
    try:
        report.cube = cube_stats(as_of=end)  # the last measurement, from the database: no listing
    except Exception as exc:  # noqa: BLE001 - the report still goes out, saying so
        logger.warning("weekly report: cube size unavailable (%s)", type(exc).__name__)
        report.cube_error = type(exc).__name__
    return report


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value):,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"  # pragma: no cover - the loop always returns


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _duration(run: CleanupRun) -> str:
    seconds = run.duration_seconds
    return "-" if seconds is None else f"{seconds:.1f} s"


def render_weekly_report(report: WeeklyReport) -> tuple[str, str]:
    """(subject, plain-text body)."""
    failures = report.failures
    subject = (
        f"koolclips weekly cleanup report: {_plural(len(report.real_runs), 'cleanup run')},"
        f" {_plural(report.files_deleted, 'file')} deleted, {report.mb_freed:,.1f} MB freed,"
        f" {_plural(len(failures), 'failure')}"
    )
    fmt = "%Y-%m-%d %H:%M UTC"
    lines = [
        "Cloudcube cleanup, weekly report",
        f"Week: {report.period_start:%a} {report.period_start.strftime(fmt)}"
        f" to {report.period_end:%a} {report.period_end.strftime(fmt)}",
        "",
        f"Runs:          {len(report.runs):,} ({_plural(len(report.real_runs), 'cleanup')},"
        f" {_plural(len(report.dry_runs), 'dry run')})",
        "By status:     "
        + ", ".join(
            f"{label.lower()} {report.status_counts.get(value, 0)}"
            for value, label in CleanupRun.STATUS_CHOICES
        ),
        f"Files deleted: {report.files_deleted:,}",
        f"MB freed:      {report.mb_freed:,.1f} MB",
        f"Failures:      {len(failures):,}",
    ]
    for run in failures:
        reason = run.detail or (f"{run.error_count} error(s)" if run.error_count else "")
        lines.append(
            f"  - run #{run.pk} {run.started_at.strftime(fmt)} {run.trigger}: {run.status}"
            + (f" - {reason}" if reason else "")
        )
    if report.cube is not None:
        age = timesince(report.cube.measured_at, report.period_end)
        lines.append(
            f"Cube size:     {human_bytes(report.cube.bytes)} in"
            f" {_plural(report.cube.objects, 'object')}"
            f" (measured {report.cube.measured_at.strftime(fmt)}, {age} before this report,"
            f" by the {report.cube.source})"
        )
    elif report.cube_error:
        lines.append(f"Cube size:     unavailable ({report.cube_error})")
    else:
        lines.append("Cube size:     never measured (no cleanup run or measurement yet)")
    lines += ["", "Runs this week (oldest first):"]
    if not report.runs:
        lines.append("  none. Is the worker running? (heroku ps)")
    else:
        header = (
            f"  {'run':>6}  {'started':<20} {'trigger':<9} {'status':<10}"
            f" {'deleted':>8} {'freed':>12} {'retained':>9} {'duration':>9} {'errors':>6}"
        )
        lines.append(header)
        for run in report.runs:
            deleted = f"{run.files_deleted:,}" + ("*" if run.dry_run else "")
            freed = human_bytes(run.bytes_freed)
            lines.append(
                f"  {'#' + str(run.pk):>6}  {run.started_at.strftime(fmt):<20}"
                f" {run.trigger:<9} {run.status:<10} {deleted:>8} {freed:>12}"
                f" {run.clips_retained:>9,} {_duration(run):>9} {run.error_count:>6,}"
            )
        if report.dry_runs:
            lines.append("  * dry run: counted, nothing deleted")
    return subject, "\n".join(lines) + "\n"


def send_weekly_report(
    now: datetime | None = None, *, slot: datetime | None = None
) -> WeeklyReport | None:
    """Build the report and mail it to ADMINS. None (and a warning) when ADMINS is empty.

    A mail failure raises, so Celery and Sentry see it. `slot` (the schedule
    slot it is sent for) goes into an X-Koolclips-Slot header.
    """
    recipients = [address for _, address in settings.ADMINS]
    if not recipients:
        logger.warning("Weekly report not sent: DJANGO_ADMIN_EMAILS is empty")
        return None
    report = build_weekly_report(now)
    subject, body = render_weekly_report(report)
    EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"X-Koolclips-Slot": slot.isoformat()} if slot else None,
    ).send(fail_silently=False)
    logger.info(
        "Weekly report sent to %d admin(s): %d runs, %d files deleted, %.2f MB freed",
        len(recipients),
        len(report.runs),
        report.files_deleted,
        report.mb_freed,
    )
    return report


def send_weekly_report_once(execution: Execution) -> dict:
    """The scheduled report: exactly one mail per slot.

    The slot is claimed (the guard's ledger row) before anything is sent, and
    `sent` is recorded in that row right after the mail left: a redelivery that
    takes the run over (its worker died) sees it and does not send again. Only a
    worker dying in the instant between sending and recording can cost a second
    mail; nothing can cost a lost one.
    """
    if execution.state.get("sent"):
        logger.info("Weekly report for this slot was already sent (run #%s)", execution.run.pk)
        return {"sent": True, "already_sent": True}
    report = send_weekly_report(slot=execution.slot)
    if report is None:
        return {"sent": False}
    execution.checkpoint(sent=True)
    return {
        "sent": True,
        "runs": len(report.runs),
        "files_deleted": report.files_deleted,
        "bytes_freed": report.bytes_freed,
        "failures": len(report.failures),
    }
