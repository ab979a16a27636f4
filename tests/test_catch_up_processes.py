"""Redis forgets, the ledger does not: FLUSHALL against real `celery worker --beat`
processes from the Procfile's line.

Loop 1 s, lock 5 s, the cleanup every 10 s (long enough that the slot queued
when Redis is flushed is still the latest due one when a beat takes the lock
again, a few seconds later).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devstack.procinfo import wait_for
from scheduling.models import JobRun
from tests.support.jobs import CLEANUP
from tests.support.processes import WorkerDynos

pytestmark = pytest.mark.processes

JOB = "scheduled-cloudcube-cleanup"
EVERY = 10


@pytest.fixture
def start_worker(worker_env, own_redis, tmp_path, cube):
    dynos = WorkerDynos(
        dict(
            worker_env,
            REDIS_URL=own_redis.url,
            CLEANUP_SCHEDULE=f"{EVERY}s",
            BEAT_MAX_LOOP_INTERVAL="1",
            REDBEAT_LOCK_TIMEOUT="5",
            CELERY_WORKER_CONCURRENCY="1",
        ),
        tmp_path,
    )
    yield dynos.start
    dynos.stop_all()


def executions() -> Counter:
    rows = JobRun.objects.filter(job=JOB).exclude(status=JobRun.Status.SKIPPED)
    return Counter(rows.values_list("slot", flat=True))


def queued_slots(client) -> list[datetime]:
    """The cleanup's slots waiting in the queue (the worker canary waits there too)."""
    found = []
    for raw in client.lrange("celery", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers.get("task") == CLEANUP.task:
            found.append(datetime.fromisoformat(headers["scheduled_for"]))
    return found


def test_a_slot_flushed_from_the_queue_still_runs_exactly_once(start_worker, own_redis):
    # The ledger knows the job's grid (an earlier run); no worker consumes the
    # default queue yet, so what beat sends waits in Redis.
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=EVERY * 30)
    JobRun.objects.create(job=JOB, slot=anchor, trigger="schedule", status="succeeded")
    client = own_redis.client()
    beat_only = start_worker(extra_args="-Q nothing-here")
    # Two: the first is the takeover's own catch-up, the second was sent on time.
    assert wait_for(lambda: len(queued_slots(client)) >= 2, 40), beat_only.output()[-3000:]
    lost = max(queued_slots(client))  # the newest (kombu LPUSHes: newest first)

    client.flushall()  # the message, the lock and the schedule: gone
    assert not queued_slots(client)
    # The beat loses its lock, a new one takes it and catches the slot up.
    assert wait_for(lambda: lost in queued_slots(client), 20), beat_only.output()[-3000:]
    consumer = start_worker()
    assert wait_for(lambda: executions()[lost] >= 1, 40), consumer.output()[-3000:]
    time.sleep(EVERY + 3)

    assert executions()[lost] == 1
    run = JobRun.objects.get(job=JOB, slot=lost)
    assert run.trigger == JobRun.Trigger.CATCH_UP
    doubled = {slot: n for slot, n in executions().items() if n > 1}
    assert not doubled, doubled
    assert "catching up scheduled-cloudcube-cleanup" in beat_only.output()


def test_a_flush_after_a_slot_ran_sends_no_extra_run(start_worker, own_redis):
    worker = start_worker()
    client = own_redis.client()
    done = wait_for(
        lambda: JobRun.objects.filter(job=JOB, status=JobRun.Status.SUCCEEDED).first(), 40
    )
    assert done, worker.output()[-3000:]
    ran = done.slot
    client.flushall()
    flushed_at = time.monotonic()
    # The schedule comes back on the ledger's grid: the next slot runs ...
    following = ran + timedelta(seconds=EVERY)
    assert wait_for(lambda: executions()[following] >= 1, EVERY + 25), worker.output()[-3000:]
    assert time.monotonic() - flushed_at < EVERY + 20
    time.sleep(2)
    # ... and the slot that had run was not sent again: no second row at all.
    assert JobRun.objects.filter(job=JOB, slot=ran).count() == 1
    assert "lost the scheduler lock" in worker.output()  # the flush took the lock with it
    doubled = {slot: n for slot, n in executions().items() if n > 1}
    assert not doubled, doubled
