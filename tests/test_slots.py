"""Slots are the schedule's exact due times (scheduling/slots.py), as beat stamps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab, schedule
from freezegun import freeze_time
from redbeat.schedulers import RedBeatSchedulerEntry

from config.celery import app
from scheduling import slots
from scheduling.beat import scheduled_slot


def at(hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second, micro, tzinfo=UTC)


def entry(sched, last_run_at: datetime) -> RedBeatSchedulerEntry:
    made = RedBeatSchedulerEntry("slot-test", "viral_clips.tasks.x", sched, app=app)
    made.last_run_at = last_run_at
    return made


def test_an_0821_cron_slot_is_stamped_0821():
    # The clock moves between two reads of "now" (tick=True): the old estimate
    # `now + remaining_estimate(last)` landed a hair before 08:21:00 and, with
    # its microseconds cut, stamped 08:20:59.
    with freeze_time("2026-12-01 08:21:00.000400", tick=True):
        assert scheduled_slot(entry(crontab(minute="*"), at(8, 20))) == at(8, 21)


def test_a_cron_overdue_by_several_slots_is_sent_for_the_latest():
    sched = crontab(minute="*")
    assert slots.latest_due(sched, at(8, 16, 30), at(8, 21, 0, 300)) == at(8, 21)
    assert slots.latest_due(sched, at(8, 21), at(8, 21, 59)) is None  # nothing new due
    daily = crontab(minute=0, hour=2)
    assert slots.next_after(daily, at(2, 0)) == at(2, 0) + timedelta(days=1)
    assert slots.latest_in_window(daily, at(8, 21), timedelta(hours=23)) == at(2, 0)
    assert slots.latest_in_window(daily, at(1, 59), timedelta(minutes=30)) is None


def test_interval_slots_are_the_grid_of_the_last_run():
    every = schedule(run_every=timedelta(seconds=2))
    # Due: last + run_every, whatever the tick's own lateness.
    assert scheduled_slot(entry(every, at(8, 20)), at(8, 20, 2, 900_000)) == at(8, 20, 2)
    # Overdue by many: the latest grid point, not a burst of old ones.
    assert slots.latest_due(every, at(8, 20), at(8, 20, 7, 400)) == at(8, 20, 6)
    assert slots.latest_due(every, at(8, 20), at(8, 20, 1)) is None


def test_every_scheduler_computes_the_same_slot():
    sched = crontab(minute="*/5")
    last = at(8, 15)
    seen = {scheduled_slot(entry(sched, last), at(8, 20, 0, n * 1000)) for n in range(50)}
    assert seen == {at(8, 20)}
