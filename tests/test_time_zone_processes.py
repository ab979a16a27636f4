"""A real `celery worker --beat` (the Procfile's line) through Berlin's autumn
night under a faked, sped-up clock: a daily 02:30 job runs once, at the first
02:30 (00:30 UTC), and not again when 02:30 comes round a second time.

The job is the history pruning (database only): the cleanup's S3 calls get a
fraction of their timeouts under a sped-up clock and fail against the local
S3 server, which says nothing about scheduling.

Only the worker's environment gets libfaketime (LD_PRELOAD): redis-server, the
S3 server and this test keep the real clock. The clock starts at
2026-10-25 00:24 UTC and runs 150 times as fast, so the night's 70 minutes
take 28 s (the worker's start-up takes about ten of them). Its sleeps and
timeouts shrink by the same factor, hence the long loop, lock and socket
timeouts below (30 s of faked loop is 0.2 s).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.procinfo import wait_for
from scheduling.entries import EntryEncoder
from scheduling.models import JobRun
from scheduling.status import read_lock
from scheduling.tasks import prune_run_history
from scheduling.zoned import ZonedCrontab
from tests.support.processes import WorkerDynos

pytestmark = pytest.mark.processes

LIBFAKETIME = next(
    (
        path
        for path in (
            Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/faketime/libfaketime.so.1"),
        )
        if path.exists()
    ),
    None,
)
JOB = prune_run_history.job
ENTRY_KEY = f"koolclips:redbeat:{JOB.entry}"
SCHEDULE_KEY = "koolclips:redbeat::schedule"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def seed_entry(client, last_run_at: datetime) -> None:
    """The entry as a beat left it the night before (sent for Saturday's 02:30),
    so the worker that starts tonight schedules from it like any restart."""
    definition = {
        "name": JOB.entry,
        "task": JOB.task,
        "args": [],
        "kwargs": {"days": 400},
        "options": {},
        "schedule": ZonedCrontab("30", "2", timezone="Europe/Berlin"),
        "enabled": True,
    }
    client.hset(ENTRY_KEY, "definition", json.dumps(definition, cls=EntryEncoder))
    client.hset(ENTRY_KEY, "meta", json.dumps({"last_run_at": last_run_at}, cls=EntryEncoder))
    client.zadd(SCHEDULE_KEY, {ENTRY_KEY: utc("2026-10-25 00:30").timestamp()})


@pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="libfaketime is not installed (Debian: apt-get install faketime; .ci/run installs it)",
)
def test_a_worker_through_berlins_autumn_night_runs_a_0230_job_once(
    worker_env, own_redis, tmp_path
):
    client = own_redis.client()
    seed_entry(client, last_run_at=utc("2026-10-24 00:30"))
    dynos = WorkerDynos(
        dict(
            worker_env,
            REDIS_URL=own_redis.url,
            RUN_HISTORY_PRUNE_SCHEDULE="30 2 * * *",
            RUN_HISTORY_PRUNE_TIMEZONE="Europe/Berlin",
            BEAT_MAX_LOOP_INTERVAL="30",
            REDBEAT_LOCK_TIMEOUT="300",
            REDIS_SOCKET_TIMEOUT="60",
            CELERY_WORKER_CONCURRENCY="1",
            TZ="UTC",
            LD_PRELOAD=str(LIBFAKETIME),
            HEALTH_CANARY_INTERVAL="60",
            FAKETIME="@2026-10-25 00:24:00 x150",
            FAKETIME_NO_CACHE="1",
        ),
        tmp_path,
    )
    worker = dynos.start()
    try:
        # The beat's own clock (its last tick, faked) past the second 02:30
        # (01:30 UTC) and a few loops more.
        ticked = wait_for(
            lambda: (
                (read_lock(client).last_tick_at or utc("2000-01-01")) >= utc("2026-10-25 01:33")
            ),
            60,
        )
        assert ticked, worker.output()[-3000:]
    finally:
        dynos.stop_all()

    rows = list(JobRun.objects.filter(job=JOB.entry).order_by("pk"))
    assert [(r.slot, r.trigger, r.status) for r in rows] == [
        (utc("2026-10-25 00:30"), JobRun.Trigger.SCHEDULE, JobRun.Status.SUCCEEDED)
    ], worker.output()[-3000:]
    assert worker.output().count(f"Sending due task {JOB.entry}") == 1
