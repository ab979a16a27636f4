"""Pause and Stop against the real thing: the Procfile's worker (beat embedded),
the suite's redis-server, the local S3 server over HTTP (behind the latency
proxy for the stop), real sentry-sdk against the local collector.

Both fail on cb7ad3a (no pause, no stop there)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from devstack.latency_proxy import S3LatencyProxy
from devstack.procinfo import wait_for
from scheduling import controls
from scheduling.models import JobRun
from tests.support.jobs import CLEANUP
from tests.support.processes import WorkerDynos
from tests.support.sentry_collector import SentryCollector
from viral_clips.models import CleanupRun
from viral_clips.run_now import request_cleanup

pytestmark = pytest.mark.processes

EVERY = 5  # CLEANUP_SCHEDULE, seconds
PAUSED_FOR = 30  # the window
OLD = timedelta(days=30)


@pytest.fixture
def collector():
    with SentryCollector() as server:
        yield server


@pytest.fixture
def dynos(worker_env, redis_client, tmp_path):
    started = WorkerDynos(dict(worker_env, CELERY_WORKER_CONCURRENCY="2"), tmp_path)
    yield started
    started.stop_all()


def executions(after: datetime) -> list[JobRun]:
    """The cleanup's executions (not skipped) claimed after `after`."""
    return list(
        JobRun.objects.filter(job=CLEANUP.entry, created_at__gt=after)
        .exclude(status=JobRun.Status.SKIPPED)
        .order_by("slot")
    )


def check_ins_for(collector: SentryCollector, run: JobRun) -> list[str]:
    wanted = uuid.UUID(run.task_id).hex
    found = [c for c, _ in collector.check_ins() if c["check_in_id"] == wanted]
    found.sort(key=lambda c: datetime.fromisoformat(c["timestamp"]))
    return [c["status"] for c in found]


def test_a_paused_cleanup_skips_its_slots_quietly_and_resumes_without_a_burst(
    dynos, collector, cube
):
    worker = dynos.start(
        CLEANUP_SCHEDULE=f"{EVERY}s",
        SENTRY_DSN=collector.dsn,
        BEAT_MAX_LOOP_INTERVAL="1",
    )
    started = timezone.now()
    assert wait_for(lambda: executions(started), 60), worker.output()[-3000:]

    controls.pause(CLEANUP, "ops", "cube being migrated")
    paused_at = timezone.now()
    time.sleep(PAUSED_FOR)
    controls.resume(CLEANUP, "ops", "migration done")
    resumed_at = timezone.now()

    # A run claimed in the instant of the press may still end; none starts later.
    late = [r for r in executions(paused_at) if r.created_at > paused_at + timedelta(seconds=1)]
    assert late == [], worker.output()[-3000:]
    skipped = list(
        JobRun.objects.filter(
            job=CLEANUP.entry, status="skipped", created_at__gt=paused_at, slot__isnull=False
        )
    )
    assert len(skipped) >= PAUSED_FOR // EVERY - 2, worker.output()[-3000:]
    for row in skipped:
        assert row.detail.startswith("paused (by ops since "), row.detail
        assert "cube being migrated" in row.detail
    # Each paused slot's check-in is opened by beat and closed ok: Sentry sees
    # the slot handled, never missed; nothing reports an error.
    assert collector.wait_for(
        lambda: all(check_ins_for(collector, row) == ["in_progress", "ok"] for row in skipped), 20
    ), [check_ins_for(collector, row) for row in skipped]
    statuses = {c["status"] for c, _ in collector.check_ins()}
    assert statuses <= {"in_progress", "ok"}, statuses
    assert [e for e, _ in collector.events() if e.get("level") in ("error", "fatal")] == []

    # Resumed: the next slot runs, on the grid, and nothing of the pause is caught up.
    assert wait_for(lambda: executions(resumed_at), 20), worker.output()[-3000:]
    time.sleep(3 * EVERY)
    after = executions(resumed_at)
    assert all(run.slot >= resumed_at - timedelta(seconds=1) for run in after), after
    assert all(run.trigger == "schedule" for run in after), [r.trigger for r in after]
    window = (timezone.now() - resumed_at).total_seconds()
    assert len(after) <= window // EVERY + 1, (len(after), window)


@pytest.fixture
def slow_s3(s3_server, cube):
    """S3 'far away': 1.5 s a 1,000-key DeleteObjects."""
    proxy = S3LatencyProxy(s3_server.port, list_ms=20, delete_ms_per_1000=1500).start()
    yield proxy
    proxy.stop()


def test_stop_ends_a_deleting_cleanup_within_5_s_counted_and_never_resumed(
    dynos, cube, slow_s3, redis_client
):
    expired = 20_000
    when = datetime.now(UTC) - OLD
    cube.server.put_many(
        cube.bucket,
        ((f"testcube/public/clips/{i:06d}.mp4", b"x", when) for i in range(expired)),
    )
    worker = dynos.start(
        CLOUDCUBE_URL=slow_s3.cloudcube_url(cube.bucket, cube.name),
        CLEANUP_SCHEDULE="1h",  # no scheduled run: the manual one only
        CLEANUP_DELETES_IN_FLIGHT="2",
        # A message not acked comes back within seconds: a stopped run's must not.
        CELERY_VISIBILITY_TIMEOUT="3",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        SCHEDULING_DEFER_RETRY_SECONDS="1",
    )
    assert worker.wait_for_output("ready", 60), worker.output()
    queued = request_cleanup(dry_run=False, requested_by="ops", reason="test")

    def deleting() -> CleanupRun | None:
        run = CleanupRun.objects.filter(task_id=queued.task_id).first()
        return run if run is not None and run.files_deleted >= 3000 else None

    run = wait_for(deleting, 90)
    assert run is not None, worker.output()[-3000:]
    assert (timezone.now() - run.started_at).total_seconds() >= 2  # deleting for a while

    controls.stop(CLEANUP, "ops", "deleting the wrong thing")
    asked = time.monotonic()
    ended = wait_for(
        lambda: JobRun.objects.filter(pk=run.job_run_id, status="interrupted").first(), 10
    )
    took = time.monotonic() - asked
    assert ended is not None, worker.output()[-3000:]
    assert took < 5, took
    assert ended.detail == "stopped by ops: deleting the wrong thing; not resumed"

    time.sleep(6)  # two visibility timeouts: a message not acked would be back by now
    run.refresh_from_db()
    left = len(cube.keys())
    assert run.status == "interrupted" and "stopped by ops" in run.detail
    assert run.finished_at is not None  # final: it waits for no redelivery
    assert 0 < left < expired
    assert run.files_deleted == expired - left  # every batch sent was counted
    assert slow_s3.operations["DeleteObjects"] * 1000 >= run.files_deleted

    # A redelivery of the same message (same task id) is refused, not resumed.
    from config.celery import app

    app.send_task(
        CLEANUP.task,
        kwargs={"retention_days": 5, "trigger": "manual"},
        task_id=queued.task_id,
    )
    refused = wait_for(
        lambda: JobRun.objects.filter(
            task_id=queued.task_id, status="skipped", detail__contains="stopped by"
        ).first(),
        30,
    )
    assert refused is not None and "stopped by ops" in refused.detail, worker.output()[-3000:]
    time.sleep(2)
    ended.refresh_from_db()
    assert (ended.status, ended.attempt) == ("interrupted", 1)
    assert len(cube.keys()) == left
    assert CleanupRun.objects.count() == 1
