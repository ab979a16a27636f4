"""The registry of scheduled jobs: each periodic job is declared once, here.

A job is a `Job` registered from an app's ``jobs.py`` module (every installed
app is looked at on first use, as Django's admin finds ``admin.py``), e.g.
``viral_clips/jobs.py``::

    register(Job(
        entry="weekly-report",                       # beat entry name = Sentry monitor slug
        task="viral_clips.tasks.send_weekly_report", # Celery task name
        schedule_setting="WEEKLY_REPORT_SCHEDULE",   # settings attribute: a ParsedSchedule
    ))

From that one declaration the rest of the project derives, with no entry name
special-cased anywhere else:

* the beat entry (config/celery.py, `beat_entries()`), with `Job.kwargs()`;
* the execution guard (scheduling/guard.py `scheduled_job`): slot claim, lease,
  ledger rows, shutdown, overlap policy;
* the Sentry cron monitor (scheduling/crons.py `monitor_config(job)`);
* catch-up (how far back a missed slot is still run: `Job.catch_up`) and the
  status lines (beat_status, dashboard, /health/).

Public API (stable: add, don't rename): `Job`, `register`, `jobs`, `get`,
`for_task`, `schedule`, `beat_entries`, `OVERLAP_DEFER`, `OVERLAP_SKIP`.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings

from scheduling.schedules import ParsedSchedule

# A slot that falls due while another run of its overlap group is active is
# recorded `deferred` and executed once that run ends (never lost, never doubled).
OVERLAP_DEFER = "defer"
# ... or recorded `skipped` (with the reason) and not executed: for jobs where a
# late run is worthless once the next is due.
OVERLAP_SKIP = "skip"
OVERLAP_POLICIES = (OVERLAP_DEFER, OVERLAP_SKIP)


def _no_kwargs() -> dict:
    return {}


@dataclass(frozen=True)
class Job:
    """One periodic job.

    entry: the beat entry's name; also the ledger's `JobRun.job` and the Sentry
        monitor slug. Never rename an existing one (Redis entries, queued
        messages and monitors are keyed by it).
    task: the Celery task's registered name (its function carries
        `@scheduled_job(entry)` under `@shared_task(bind=True, acks_late=True)`).
    schedule_setting: the settings attribute holding its `ParsedSchedule`.
    kwargs: called (settings loaded) for the keyword arguments beat sends.
    overlap: OVERLAP_DEFER or OVERLAP_SKIP, for a *scheduled* slot due while
        another run of `overlap_group` is active. Manual and command runs are
        always refused then.
    overlap_group: runs sharing a group never overlap (default: `entry`).
    catch_up: how far back the latest missed slot is still dispatched when a
        scheduler takes the lock (timedelta(0): never).
    ledger: record runs in `JobRun` and guard them (False: the task runs bare,
        e.g. a canary whose only point is to show the worker consumes).
    monitor: a Sentry cron monitor for it.
    checkin_margin_minutes / max_runtime_minutes: the monitor's margin and max
        runtime, capped by the schedule's period (scheduling/crons.py).
    failure_issue_threshold / recovery_threshold: the monitor's thresholds;
        `recovery_threshold_frequent` applies when the period is under an hour.
    lease_seconds: how long a run holds its lease without renewing it. A run
        renews at every progress call; a worker that died frees the job this
        long after its last renewal, and its redelivery then takes over.
    description: one line for humans (docs, beat_status).
    expires_with_period: each message expires after one period of an interval
        schedule (a stopped worker comes back to no backlog of stale ones).
    """

    entry: str
    task: str
    schedule_setting: str
    kwargs: Callable[[], dict] = field(default=_no_kwargs, compare=False)
    overlap: str = OVERLAP_SKIP
    overlap_group: str = ""
    catch_up: timedelta = timedelta(0)
    ledger: bool = True
    monitor: bool = True
    checkin_margin_minutes: int = 5
    max_runtime_minutes: int = 60
    failure_issue_threshold: int = 1
    recovery_threshold: int = 1
    recovery_threshold_frequent: int = 3
    lease_seconds: int = 120
    description: str = ""
    expires_with_period: bool = False

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(f"job {self.entry}: overlap must be one of {OVERLAP_POLICIES}")
        if not self.overlap_group:
            object.__setattr__(self, "overlap_group", self.entry)
        if self.lease_seconds < 5:
            raise ValueError(f"job {self.entry}: lease_seconds must be at least 5")

    @property
    def group(self) -> str:
        """The overlap group (same as `overlap_group`, never empty)."""
        return self.overlap_group

    def schedule(self) -> ParsedSchedule:
        return schedule(self)

    def beat_kwargs(self) -> dict:
        return dict(self.kwargs())


_jobs: dict[str, Job] = {}
_lock = threading.Lock()
_discovered = False


def register(job: Job) -> Job:
    """Add `job` (idempotent for an equal declaration; a clash raises ValueError)."""
    with _lock:
        known = _jobs.get(job.entry)
        if known is not None and known != job:
            raise ValueError(f"scheduled job {job.entry!r} is declared twice, differently")
        for other in _jobs.values():
            if other.task == job.task and other.entry != job.entry:
                raise ValueError(f"task {job.task!r} already belongs to job {other.entry!r}")
        _jobs[job.entry] = job
    return job


def _discover() -> None:
    """Import every installed app's ``jobs`` module. From settings, not Django's
    app registry: Celery configures itself (and builds beat entries) before
    the registry is ready."""
    global _discovered
    if _discovered:
        return
    for app in settings.INSTALLED_APPS:
        try:
            found = importlib.util.find_spec(f"{app}.jobs") is not None
        except ModuleNotFoundError:  # an AppConfig path, not a package
            found = False
        if found:
            importlib.import_module(f"{app}.jobs")
    _discovered = True


def jobs() -> list[Job]:
    """Every registered job, in declaration order."""
    _discover()
    return list(_jobs.values())


def get(entry: str) -> Job:
    """The job whose beat entry is `entry`; KeyError if none."""
    _discover()
    try:
        return _jobs[entry]
    except KeyError:
        raise KeyError(f"no scheduled job {entry!r}; registered: {sorted(_jobs)}") from None


def for_task(task_name: str | None) -> Job | None:
    """The job run by the Celery task `task_name`, or None."""
    _discover()
    for job in _jobs.values():
        if job.task == task_name:
            return job
    return None


def schedule(job: Job) -> ParsedSchedule:
    """The job's parsed schedule, read from settings now (tests may override it)."""
    value = getattr(settings, job.schedule_setting)
    if not isinstance(value, ParsedSchedule):
        raise TypeError(f"settings.{job.schedule_setting} must be a ParsedSchedule")
    return value


def beat_entries() -> dict[str, dict]:
    """Celery `beat_schedule` entries for every registered job."""
    return {
        job.entry: {
            "task": job.task,
            "schedule": schedule(job).celery_schedule,
            "kwargs": job.beat_kwargs(),
        }
        for job in jobs()
    }
