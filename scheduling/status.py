"""The scheduler's state, read one way for beat_status, the dashboard, /health/
and preflight.

* The lock (`read_lock`): who holds RedBeat's lock and when it last ticked, from
  Redis - `<prefix>:lock` and the holder record beat writes (`holder_key`).
  Callers pass their own client: /health/ a quick one with short timeouts.
* Each job's line (`job_status`): its schedule as a beat stored it in Redis when
  asked (so `beat_status` run with another environment shows the worker's
  schedule) or from settings, its next slot (scheduling/slots.py), and from the
  run ledger what ran last and how it ended ("never" for a job that never ran;
  RedBeat's `last_run_at` only says when an entry was last sent). A job's
  times are UTC instants; `timezone` and the `*_local` properties give the
  same instants on the wall clock its schedule is read in, so every reader
  shows both (`when_text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import redis
from celery import Celery, current_app
from django.db import DatabaseError
from redbeat.schedulers import ensure_conf, get_redis

from scheduling import controls, ledger, registry, slots
from scheduling.entries import KoolclipsEntry
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
    timezone: str = "UTC"  # the IANA zone the schedule's wall-clock times are in

    @property
    def next_run_local(self) -> datetime | None:
        return local_time(self.next_run_at, self.timezone)

    @property
    def last_run_local(self) -> datetime | None:
        return local_time(self.last_run_at, self.timezone)


def local_time(moment: datetime | None, timezone: str) -> datetime | None:
    """`moment` on `timezone`'s wall clock (None stays None)."""
    return moment.astimezone(ZoneInfo(timezone)) if moment is not None else None


def when_text(moment: datetime | None, timezone: str) -> str:
    """'2026-12-07 09:00 CET (Europe/Berlin) = 08:00 UTC', or the UTC time alone
    for a job on UTC; seconds only when there are some."""
    if moment is None:
        return "unknown"
    moment = moment.astimezone(UTC)
    fmt = "%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M"
    if timezone == "UTC":
        return f"{moment:{fmt}} UTC"
    local = moment.astimezone(ZoneInfo(timezone))
    short = "%H:%M:%S" if moment.second else "%H:%M"
    same_day = local.date() == moment.date()
    utc = f"{moment:{short}}" if same_day else f"{moment:{fmt}}"
    return f"{local:{fmt}} {local.tzname()} ({timezone}) = {utc} UTC"


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
            if parsed.kind == "interval":  # no wall clock stored: the job's zone
                parsed = parsed.in_zone(job.timezone)
            given, words, zone = parsed.raw, parsed.describe(), parsed.timezone
        except ScheduleError:
            given = words = type(schedule).__name__
            zone = job.timezone
        last_sent = entry.last_run_at
    else:
        parsed = job.schedule()
        schedule, given, words = parsed.celery_schedule, parsed.raw, parsed.describe()
        zone = parsed.timezone
        last_sent = None
    line = EntryStatus(
        name=job.entry,
        task=entry.task if entry is not None else job.task,
        schedule=given,
        schedule_words=words,
        in_scheduler=entry is not None,
        next_run_at=_next_slot(schedule, last_sent, now),
        description=job.description,
        timezone=zone,
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


def _stored_entry(name: str) -> KoolclipsEntry | None:
    try:
        return KoolclipsEntry.from_key(
            KoolclipsEntry.generate_key(current_app, name), app=current_app
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
