"""What the scheduler is doing: for beat_status, the dashboard and /health/.

One line per registered job (scheduling/registry.py), from two sources:

* Redis, for what the scheduler *holds*: who has the lock, when it last
  ticked, and each job's entry as a beat stored it - its schedule described in
  words from the stored schedule itself (so `beat_status` run with another
  environment still shows the worker's schedule) and its next slot;
* the run ledger (scheduling.models.JobRun), for what *ran*: the last
  execution and its outcome ("never" for a job that never ran; RedBeat's
  `last_run_at` only says when an entry was created or last sent).

Next run is the exact slot (scheduling/slots.py), not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from config.celery import app
from scheduling import registry, slots
from scheduling.schedules import ScheduleError, from_celery_schedule


@dataclass
class LockHolder:
    dyno: str
    hostname: str
    pid: int | None
    acquired_at: datetime | None


@dataclass
class EntryStatus:
    name: str  # the job's beat entry
    task: str
    schedule: str  # as given, e.g. "0 2 * * *" or "30s"
    schedule_words: str
    in_scheduler: bool  # False: no beat has stored this entry (schedule from settings)
    next_run_at: datetime | None  # the next slot
    last_run_at: datetime | None = None  # the ledger's last execution (slot, else start)
    last_trigger: str | None = None
    last_status: str | None = None  # that execution's status
    description: str = ""
    ledger_error: str | None = None  # the ledger could not be read (exception type)


@dataclass
class SchedulerStatus:
    lock_held: bool
    holder: LockHolder | None
    lock_ttl_seconds: float | None
    last_tick_at: datetime | None
    entries: list[EntryStatus] = field(default_factory=list)

    def entry(self, name: str) -> EntryStatus | None:
        return next((e for e in self.entries if e.name == name), None)


def scheduler_status(*, with_ledger: bool = True) -> SchedulerStatus:
    """Read the scheduler's state. Raises redis.RedisError when Redis is
    unreachable; a ledger that cannot be read leaves `ledger_error` set."""
    from redbeat.schedulers import ensure_conf, get_redis

    from scheduling.beat import holder_key

    conf = ensure_conf(app)
    client = get_redis(app)
    ttl_ms = client.pttl(conf.lock_key)
    lock_held = ttl_ms is not None and ttl_ms != -2
    raw = {_text(k): _text(v) for k, v in client.hgetall(holder_key(app)).items()}
    holder = None
    if raw:
        holder = LockHolder(
            dyno=raw.get("dyno", ""),
            hostname=raw.get("hostname", ""),
            pid=int(raw["pid"]) if raw.get("pid", "").isdigit() else None,
            acquired_at=_from_timestamp(raw.get("acquired_at")),
        )
    now = datetime.now(UTC)
    entries = [job_status(job, now, with_ledger) for job in registry.jobs()]
    return SchedulerStatus(
        lock_held=lock_held,
        holder=holder if lock_held else None,
        lock_ttl_seconds=round(ttl_ms / 1000, 1) if lock_held and ttl_ms > 0 else None,
        last_tick_at=_from_timestamp(raw.get("last_tick_at")) if lock_held else None,
        entries=entries,
    )


def _stored_entry(name: str):
    from redbeat.schedulers import RedBeatSchedulerEntry

    try:
        return RedBeatSchedulerEntry.from_key(
            RedBeatSchedulerEntry.generate_key(app, name), app=app
        )
    except KeyError:
        return None  # not yet written by a beat


def job_status(job: registry.Job, now: datetime, with_ledger: bool) -> EntryStatus:
    stored = _stored_entry(job.entry)
    if stored is not None:
        schedule = stored.schedule
        try:
            parsed = from_celery_schedule(schedule)
            given, words = parsed.raw, parsed.describe()
        except ScheduleError:
            given = words = type(schedule).__name__
        last_sent = stored.last_run_at
    else:
        parsed = registry.schedule(job)
        schedule, given, words = parsed.celery_schedule, parsed.raw, parsed.describe()
        last_sent = None
    status = EntryStatus(
        name=job.entry,
        task=stored.task if stored is not None else job.task,
        schedule=given,
        schedule_words=words,
        in_scheduler=stored is not None,
        next_run_at=_next_slot(schedule, last_sent, now),
        description=job.description,
    )
    if with_ledger and job.ledger:
        from django.db import DatabaseError

        from scheduling import ledger

        try:
            run = ledger.last_run(job.entry)
            outcome = ledger.last_outcome(job.entry)
        except DatabaseError as exc:
            # The scheduler's state still stands; the ledger's part is unknown.
            status.ledger_error = type(exc).__name__
            run = outcome = None
        if run is not None:
            status.last_run_at = run.slot or run.started_at or run.created_at
            status.last_trigger = run.trigger
        # The latest scheduled run that has ended (a running one has no outcome yet).
        status.last_status = outcome
    return status


def _next_slot(schedule, last_sent: datetime | None, now: datetime) -> datetime | None:
    """The next slot the scheduler will send: after its last sent slot, or -
    for a cron with no entry yet - the schedule's next occurrence."""
    try:
        if last_sent is not None:
            return slots.next_after(schedule, last_sent)
        if hasattr(schedule, "remaining_delta"):  # a crontab has slots of its own
            return slots.next_after(schedule, now)
    except TypeError:
        pass
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except ValueError:
        return None
