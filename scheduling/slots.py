"""Slots: the exact due times of a schedule, computed from the schedule itself.

A slot names one execution of a job (the ledger's unique (job, slot)), so every
scheduler must compute the same instant for it. `now + remaining_estimate(...)`
does not: it lands a hair before the due time and, with its microseconds cut,
stamps an 08:21:00 cron slot `08:20:59`. Here:

* crontab: the cron occurrence itself (whole minutes), found by stepping from
  the last run with the crontab's own field matching; a cron in a time zone
  (scheduling/zoned.py's ZonedCrontab) names its occurrences by its DST rule,
  each one UTC instant;
* interval: the grid `last_run_at + k * run_every`.

When several occurrences passed since the last run (no scheduler was alive),
the slot is the latest of them: a schedule overdue by many slots runs once,
for the most recent one (older ones are superseded; scheduling/catchup.py
decides whether even that one is still worth running).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab
from celery.schedules import schedule as interval

from scheduling.zoned import ZonedCrontab

# Never step through more occurrences than this looking for the latest one
# (an every-minute cron over a week); older history is clipped first.
_MAX_STEPS = 20_000


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def next_after(schedule, moment: datetime) -> datetime:
    """The schedule's first occurrence strictly after `moment` (UTC)."""
    moment = _utc(moment)
    if isinstance(schedule, ZonedCrontab):
        return schedule.next_after(moment)
    if isinstance(schedule, crontab):
        start, delta, _now = schedule.remaining_delta(moment)
        found = _utc(start + delta)
        if found <= moment:  # `moment` sat on an occurrence's minute: step a minute on
            start, delta, _now = schedule.remaining_delta(moment + timedelta(minutes=1))
            found = _utc(start + delta)
        return found
    if isinstance(schedule, interval):
        return moment + schedule.run_every
    raise TypeError(f"no slots for schedule type {type(schedule).__name__}")


def latest_due(schedule, last_run_at: datetime | None, now: datetime) -> datetime | None:
    """The latest occurrence in (last_run_at, now]: the slot due now, or None
    when nothing fell due since the last run. For an interval the grid is
    anchored at `last_run_at` (None: no grid, nothing due)."""
    now = _utc(now)
    if last_run_at is None:
        return latest_in_window(schedule, now, None) if isinstance(schedule, crontab) else None
    last = _utc(last_run_at)
    if isinstance(schedule, interval):
        last = last.replace(microsecond=0)  # a grid of whole seconds
        every = schedule.run_every.total_seconds()
        steps = int((now - last).total_seconds() // every) if every > 0 else 0
        return last + timedelta(seconds=every * steps) if steps >= 1 else None
    if isinstance(schedule, ZonedCrontab):
        return schedule.latest_between(last, now)
    found = None
    moment = last
    for _ in range(_MAX_STEPS):
        following = next_after(schedule, moment)
        if following > now:
            return found
        found = moment = following
    # Overdue beyond the step budget: restart from recent history.
    return latest_in_window(schedule, now, timedelta(days=7))


_WIDENING = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=9),
    timedelta(days=40),
)


def latest_in_window(schedule, now: datetime, window: timedelta | None) -> datetime | None:
    """The latest cron occurrence in (now - window, now] (a day when None).
    Searched in widening windows, so a frequent cron costs a few steps."""
    now = _utc(now)
    window = window if window is not None else timedelta(days=1)
    for width in (*(w for w in _WIDENING if w < window), window):
        found = latest_due(schedule, now - width, now)
        if found is not None:
            return found
    return None


def slot_for(schedule, last_run_at: datetime | None, now: datetime) -> datetime:
    """The slot a due entry is sent for (`now` if no occurrence can be named)."""
    return latest_due(schedule, last_run_at, now) or _utc(now).replace(microsecond=0)
