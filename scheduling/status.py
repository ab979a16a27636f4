"""The scheduler's state, read one way for beat_status, the dashboard, /health/
and preflight.

* The lock (`read_lock`): who holds RedBeat's lock and when it last ticked, from
  Redis - `<prefix>:lock` and the holder record beat writes (`holder_key`).
  Callers pass their own client: /health/ a quick one with short timeouts.
* Each job's line (`job_status`): its schedule as a beat stored it in Redis when
  asked (so `beat_status` run with another environment shows the worker's
  schedule) or from settings, its next slot (scheduling/slots.py), and from the
  run ledger what ran last and how it ended ("never" for a job that never ran;
  RedBeat's `last_run_at` only says when an entry was last sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from celery import Celery, current_app
from django.db import DatabaseError
from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf, get_redis

from scheduling import controls, ledger, registry, slots
from scheduling.registry import Job
from scheduling.schedules import ScheduleError, from_celery_schedule


def lock_key(app: Celery | None = None) -> str:
    return ensure_conf(app or current_app).lock_key


def holder_key(app: Celery | None = None) -> str:
    """Where the holding beat records who it is and when it last ticked."""
    return ensure_conf(app or current_app).key_prefix + ":holder"


@dataclass
class LockHolder:
    dyno: str
    hostname: str
    pid: int | None
    acquired_at: datetime | None


@dataclass
class LockState:
    held: bool
    holder: LockHolder | None  # None while free, or held but not yet recorded
    ttl_seconds: float | None
    last_tick_at: datetime | None  # the holder's last tick (None while free)


def read_lock(client: redis.Redis, app: Celery | None = None) -> LockState:
    """The lock as Redis has it now (two round trips). Raises redis.RedisError."""
    ttl_ms = client.pttl(lock_key(app))
    held = ttl_ms is not None and ttl_ms != -2
    raw = {_text(k): _text(v) for k, v in client.hgetall(holder_key(app)).items()}
    holder = None
    if raw and held:
        holder = LockHolder(
            dyno=raw.get("dyno", ""),
            hostname=raw.get("hostname", ""),
            pid=int(raw["pid"]) if raw.get("pid", "").isdigit() else None,
            acquired_at=_from_timestamp(raw.get("acquired_at")),
        )
    return LockState(
        held=held,
        holder=holder,
        ttl_seconds=round(ttl_ms / 1000, 1) if held and ttl_ms > 0 else None,
        last_tick_at=_from_timestamp(raw.get("last_tick_at")) if held else None,
    )


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
    last_status: str | None = None  # the latest ended scheduled run's status
    description: str = ""
    ledger_error: str | None = None  # the ledger could not be read (exception type)
    paused: str | None = None  # "paused (by …)" while an operator paused it


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
    """The lock and every job's line, through RedBeat's client. Raises
    redis.RedisError when Redis is unreachable; a ledger that cannot be read
    leaves `ledger_error` set."""
    lock = read_lock(get_redis(current_app))
    now = datetime.now(UTC)
    return SchedulerStatus(
        lock_held=lock.held,
        holder=lock.holder,
        lock_ttl_seconds=lock.ttl_seconds,
        last_tick_at=lock.last_tick_at,
        entries=[job_status(job, now, with_ledger=with_ledger) for job in registry.jobs()],
    )


def job_status(
    job: Job, now: datetime, *, with_ledger: bool = True, stored: bool = True
) -> EntryStatus:
    """One job's line. `stored=False` reads no Redis (the schedule from settings)."""
    entry = _stored_entry(job.entry) if stored else None
    if entry is not None:
        schedule = entry.schedule
        try:
            parsed = from_celery_schedule(schedule)
            given, words = parsed.raw, parsed.describe()
        except ScheduleError:
            given = words = type(schedule).__name__
        last_sent = entry.last_run_at
    else:
        parsed = job.schedule()
        schedule, given, words = parsed.celery_schedule, parsed.raw, parsed.describe()
        last_sent = None
    line = EntryStatus(
        name=job.entry,
        task=entry.task if entry is not None else job.task,
        schedule=given,
        schedule_words=words,
        in_scheduler=entry is not None,
        next_run_at=_next_slot(schedule, last_sent, now),
        description=job.description,
    )
    if with_ledger and job.ledger:
        try:
            run = ledger.last_run(job.entry)
            line.last_status = ledger.last_outcome(job.entry)
            pause = controls.pause_state(job.entry)
            line.paused = pause.describe() if pause.paused else None
        except DatabaseError as exc:
            # The scheduler's state still stands; the ledger's part is unknown.
            line.ledger_error = type(exc).__name__
            run = None
        if run is not None:
            line.last_run_at = run.when
            line.last_trigger = run.trigger
    return line


def _stored_entry(name: str) -> RedBeatSchedulerEntry | None:
    try:
        return RedBeatSchedulerEntry.from_key(
            RedBeatSchedulerEntry.generate_key(current_app, name), app=current_app
        )
    except KeyError:
        return None  # not yet written by a beat


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
