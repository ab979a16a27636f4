"""The registry of periodic jobs: each is declared once, with `@periodic_job`
(scheduling/periodic.py) on its task function in an app's ``tasks.py``.

From that one declaration the rest of the project derives, with no entry name
special-cased anywhere else: the beat entry (`beat_entries`, read by the
scheduler when it takes the lock), the guard (slot claim, lease, ledger rows,
shutdown, overlap policy), the Sentry cron monitor (scheduling/crons.py),
catch-up (`Job.catch_up`) and the status lines (beat_status, the dashboard,
/health/). Settings are read when used, never at import.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

from scheduling.schedules import ParsedSchedule

# A slot that falls due while another run of its overlap group is active is
# recorded `deferred` and executed once that run ends (never lost, never doubled).
OVERLAP_DEFER = "defer"
# ... or recorded `skipped` (with the reason) and not executed: for jobs where a
# late run is worthless once the next is due.
OVERLAP_SKIP = "skip"
OVERLAP_POLICIES = (OVERLAP_DEFER, OVERLAP_SKIP)


@dataclass(frozen=True)
class Job:
    """One periodic job.

    entry: the beat entry's name; also the ledger's `JobRun.job` and the Sentry
        monitor slug. Never rename an existing one (Redis entries, queued
        messages and monitors are keyed by it).
    task: the Celery task's registered name.
    schedule_setting: the settings attribute holding its `ParsedSchedule`.
    timezone_setting: the settings attribute holding the IANA time zone its
        cron is read in (e.g. "WEEKLY_REPORT_TIMEZONE"); "" means UTC. The
        DST rule is scheduling/zoned.py's; slots stay UTC instants.
    kwargs_settings: keyword arguments beat sends, each read from a setting
        when the entry is built ({"retention_days": "CLEANUP_RETENTION_DAYS"}).
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
    lease: seconds a run holds its lease without renewing it, or the name of
        the setting holding them. A run renews at every progress call; a
        worker that died frees the job this long after its last renewal.
    description: one line for humans (docs, beat_status).
    expires_with_period: each message expires after one period of an interval
        schedule (a stopped worker comes back to no backlog of stale ones).
    """

    entry: str
    task: str
    schedule_setting: str
    timezone_setting: str = ""
    kwargs_settings: dict[str, str] = field(default_factory=dict, hash=False)
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
    lease: int | str = 120
    description: str = ""
    expires_with_period: bool = False

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(f"job {self.entry}: overlap must be one of {OVERLAP_POLICIES}")
        if not self.overlap_group:
            object.__setattr__(self, "overlap_group", self.entry)
        if isinstance(self.lease, int) and self.lease < 5:
            raise ValueError(f"job {self.entry}: a lease must be at least 5 seconds")

    @property
    def group(self) -> str:
        """The overlap group (same as `overlap_group`, never empty)."""
        return self.overlap_group

    @property
    def lease_seconds(self) -> int:
        return int(getattr(settings, self.lease) if isinstance(self.lease, str) else self.lease)

    @property
    def timezone(self) -> str:
        """The IANA name its schedule is read in, from settings now ("UTC" by default)."""
        return getattr(settings, self.timezone_setting) if self.timezone_setting else "UTC"

    def schedule(self) -> ParsedSchedule:
        """The job's parsed schedule on its time zone, read from settings now
        (tests may override either)."""
        value = getattr(settings, self.schedule_setting)
        if not isinstance(value, ParsedSchedule):
            raise TypeError(f"settings.{self.schedule_setting} must be a ParsedSchedule")
        return value.in_zone(self.timezone)

    def beat_kwargs(self) -> dict:
        return {name: getattr(settings, setting) for name, setting in self.kwargs_settings.items()}


_jobs: dict[str, Job] = {}
_lock = threading.Lock()
_discovered = False


def register(job: Job) -> Job:
    """Add `job` (idempotent for an equal declaration; a clash raises ValueError)."""
    with _lock:
        known = _jobs.get(job.entry)
        if known is not None and known != job:
            raise ValueError(f"periodic job {job.entry!r} is declared twice, differently")
        for other in _jobs.values():
            if other.task == job.task and other.entry != job.entry:
                raise ValueError(f"task {job.task!r} already belongs to job {other.entry!r}")
        _jobs[job.entry] = job
    return job


def unregister(entry: str) -> None:
    """Forget a job (a test's own job, once the test is done)."""
    with _lock:
        _jobs.pop(entry, None)


def _discover() -> None:
    """Import every installed app's ``tasks`` module, where jobs are declared."""
    global _discovered
    if not _discovered:
        autodiscover_modules("tasks")
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


def beat_entries() -> dict[str, dict]:
    """Celery `beat_schedule` entries for every registered job: the only place
    they are built (the scheduler installs them when it takes the lock)."""
    entries = {}
    for job in jobs():
        parsed = job.schedule()
        entry = {
            "task": job.task,
            "schedule": parsed.celery_schedule,
            "kwargs": job.beat_kwargs(),
        }
        if job.expires_with_period and parsed.interval_seconds:
            entry["options"] = {"expires": parsed.interval_seconds}
        entries[job.entry] = entry
    return entries
