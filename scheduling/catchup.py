"""Catch-up from the ledger: what a scheduler sends when it takes the lock.

Redis may lose a slot's message (FLUSHALL, a failover, an empty restart) or
RedBeat's `last_run_at`; the database does not. So when a beat takes the lock
it asks the ledger, per registered job:

* the job's latest due slot within its catch-up window (`Job.catch_up`) that
  has no ledger row is sent once (trigger `catch_up`): a slot whose message
  vanished still runs;
* a slot whose row says it was claimed but is not done (`deferred`,
  `interrupted`, `abandoned`, `queued`) is sent again: its message may have
  vanished too, and the guard resumes the row (a duplicate message is refused
  by the guard, never executed twice);
* a slot that has a row is never sent: an entry re-created after a flush
  fires no extra run.

A paused job is not caught up, nor is a slot that fell before its last
resume, nor a run an operator stopped (scheduling/controls.py).

Only a job the ledger has history for is caught up: a job with no row at all
is new (just added, or the ledger was just deployed next to entries that the
previous code ran), so nothing of it was missed, and RedBeat's own entry starts
it on its schedule. For an interval the slots are the grid of the job's latest
recorded slot (`last + k * every`). `plan` is pure bookkeeping;
scheduling/beat.py sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.schedules import crontab

from scheduling import controls, ledger, registry, slots
from scheduling.registry import Job

logger = logging.getLogger("celery.beat")


@dataclass(frozen=True)
class CatchUp:
    job: Job
    slot: datetime
    why: str


def latest_recorded_slot(job: Job) -> datetime | None:
    rows = ledger.latest_slot_rows(job.entry, 1)
    return rows[0].slot if rows else None


def latest_due_slot(job: Job, now: datetime) -> datetime | None:
    """The job's latest slot in (now - catch_up, now], or None."""
    if job.catch_up <= timedelta(0):
        return None
    schedule = job.schedule().celery_schedule
    since = now - job.catch_up
    if isinstance(schedule, crontab):
        return slots.latest_due(schedule, since, now)
    anchor = latest_recorded_slot(job)
    if anchor is None:
        return None
    due = slots.latest_due(schedule, anchor, now)
    return due if due is not None and due > since else None


def plan(now: datetime) -> list[CatchUp]:
    """Every slot to send now, oldest first per job."""
    planned: list[CatchUp] = []
    for job in registry.jobs():
        if not job.ledger or job.catch_up <= timedelta(0):
            continue
        if latest_recorded_slot(job) is None:
            continue  # a new job: nothing of it was missed
        if controls.pause_state(job.entry).paused:
            continue  # its slots would only be recorded skipped
        since = now - job.catch_up
        # Slots that fell while the job was paused are never caught up.
        resumed = controls.resumed_at(job.entry)
        if resumed is not None:
            since = max(since, resumed)
        seen: set[datetime] = set()
        for row in ledger.resumable_rows(job.entry, since):
            if controls.stop_order(row.pk) is not None:
                continue  # an operator stopped it: not resumed
            if row.slot is not None and row.slot not in seen:
                seen.add(row.slot)
                planned.append(CatchUp(job, row.slot, f"its row is {row.status}"))
        due = latest_due_slot(job, now)
        if due is not None and due < since:
            due = None
        if due is not None and due not in seen and not ledger.slot_recorded(job.entry, due):
            planned.append(CatchUp(job, due, "no ledger row"))
    return planned


def aligned_last_run(job: Job, now: datetime) -> datetime:
    """`last_run_at` for an entry RedBeat just created (Redis had none, e.g.
    after a flush): the schedule's latest occurrence, so the entry itself sends
    nothing now - catch-up alone decides about that slot - and an interval
    keeps the ledger's grid."""
    schedule = job.schedule().celery_schedule
    if isinstance(schedule, crontab):
        return slots.latest_in_window(schedule, now, timedelta(days=400)) or now
    anchor = latest_recorded_slot(job)
    if anchor is None:
        return now.replace(microsecond=0)
    return slots.latest_due(schedule, anchor, now) or anchor
