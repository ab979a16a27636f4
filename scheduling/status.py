"""What the beat scheduler is doing, read from Redis: for beat_status, the
dashboard and /health/.

Who holds the lock and for how long, when it last ticked, and every schedule
entry with its last and next run (from RedBeat's own keys) and the outcome of
its last cleanup run (from CleanupRun).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from config.celery import app
from scheduling import registry


@dataclass
class LockHolder:
    dyno: str
    hostname: str
    pid: int | None
    acquired_at: datetime | None


@dataclass
class EntryStatus:
    name: str
    task: str
    schedule: str  # as given, e.g. "0 2 * * *" or "30s"
    schedule_words: str
    last_run_at: datetime | None  # when beat last sent it
    next_run_at: datetime | None
    last_status: str | None = None  # the last CleanupRun's status, for the cleanup


@dataclass
class SchedulerStatus:
    lock_held: bool
    holder: LockHolder | None
    lock_ttl_seconds: float | None
    last_tick_at: datetime | None
    entries: list[EntryStatus] = field(default_factory=list)


def scheduler_status() -> SchedulerStatus:
    """Read the scheduler's state. Raises redis.RedisError when Redis is unreachable."""
    from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf, get_redis

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
    entries = []
    for name in sorted(conf.schedule):
        try:
            entry = RedBeatSchedulerEntry.from_key(
                RedBeatSchedulerEntry.generate_key(app, name), app=app
            )
        except KeyError:
            continue  # not yet written by a beat
        entries.append(_entry_status(entry))
    return SchedulerStatus(
        lock_held=lock_held,
        holder=holder if lock_held else None,
        lock_ttl_seconds=round(ttl_ms / 1000, 1) if lock_held and ttl_ms > 0 else None,
        last_tick_at=_from_timestamp(raw.get("last_tick_at")) if lock_held else None,
        entries=entries,
    )


def _entry_status(entry) -> EntryStatus:
    from viral_clips.models import CleanupRun

    schedule = entry.schedule
    given, words = _describe(entry.name, schedule)
    last = entry.last_run_at
    next_run = None
    if last is not None:
        next_run = (schedule.now() + schedule.remaining_estimate(last)).astimezone(UTC)
    last_status = None
    # (per-job ledger rows: the beat helper's status work replaces this)
    if entry.name == "scheduled-cloudcube-cleanup":
        last_status = (
            CleanupRun.objects.filter(trigger=CleanupRun.Trigger.SCHEDULE)
            .exclude(status=CleanupRun.Status.RUNNING)
            .values_list("status", flat=True)
            .first()
        )
    return EntryStatus(
        name=entry.name,
        task=entry.task,
        schedule=given,
        schedule_words=words,
        last_run_at=last.astimezone(UTC) if last else None,
        next_run_at=next_run.replace(microsecond=0) if next_run else None,
        last_status=last_status,
    )


def _describe(name: str, schedule) -> tuple[str, str]:
    try:
        parsed = registry.schedule(registry.get(name))
    except KeyError:
        return str(schedule), str(schedule)
    return parsed.raw, parsed.describe()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except ValueError:
        return None
