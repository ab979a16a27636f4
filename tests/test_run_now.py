"""Run now / Dry run: queue the cleanup with trigger `manual`, never a duplicate."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from celery.signals import task_postrun
from django.conf import settings
from django.utils import timezone

from devstack.ports import free_port
from scheduling.claim import claim
from scheduling.execution import Execution
from scheduling.models import JobLease
from tests.support.broker import queued_messages
from tests.support.jobs import CLEANUP
from tests.support.runs import make_run
from viral_clips.cube_stats import cube_stats
from viral_clips.models import CleanupRun
from viral_clips.run_now import (
    PENDING_KEY,
    PENDING_TIMEOUT,
    current_activity,
    release_pending,
    request_cleanup,
)
from viral_clips.tasks import scheduled_cloudcube_cleanup

pytestmark = pytest.mark.django_db


def test_a_press_queues_the_task_with_trigger_manual(redis_client):
    result = request_cleanup(dry_run=True, requested_by="ops")
    assert result.queued
    assert queued_messages(redis_client) == [
        {
            "task": "viral_clips.tasks.scheduled_cloudcube_cleanup",
            "id": result.task_id,
            "retention_days": settings.CLEANUP_RETENTION_DAYS,
            "dry_run": True,
            "trigger": "manual",
        }
    ]
    activity = current_activity()
    assert (activity.state, activity.dry_run, activity.requested_by) == ("queued", True, "ops")
    # The marker cannot outlive its timeout: nothing blocks the buttons for ever.
    assert 0 < redis_client.ttl(PENDING_KEY) <= PENDING_TIMEOUT


def test_a_second_press_while_queued_queues_nothing(redis_client):
    first = request_cleanup(dry_run=False, requested_by="ops")
    second = request_cleanup(dry_run=True, requested_by="lead")
    assert first.queued and not second.queued
    assert second.busy.state == "queued"
    assert second.busy.requested_by == "ops"
    assert "queued" in second.busy.describe()
    assert len(queued_messages(redis_client)) == 1


def start_running(trigger: str = "schedule", task_id: str = "task-in-progress") -> CleanupRun:
    """A cleanup as the task runs one: the lease taken, its rows `running`."""
    execution = claim(CLEANUP, trigger="manual" if trigger == "schedule" else trigger,
                            task_id=task_id)  # fmt: skip
    assert isinstance(execution, Execution)
    return make_run(timezone.now() - timedelta(minutes=3), duration=None, trigger=trigger,
                    task_id=task_id, status=CleanupRun.Status.RUNNING,
                    job_run=execution.run)  # fmt: skip


@pytest.mark.parametrize("trigger", ["schedule", "manual", "command"])
def test_a_press_while_a_run_is_running_queues_nothing(redis_client, trigger):
    run = start_running(trigger)
    result = request_cleanup(dry_run=True, requested_by="ops")
    assert not result.queued
    assert (result.busy.state, result.busy.run_id) == ("running", run.pk)
    assert f"({trigger}) is running, run #{run.pk}" in result.busy.describe()
    assert queued_messages(redis_client) == []
    assert not redis_client.exists(PENDING_KEY)


def test_a_cleanup_admitted_but_not_yet_recorded_also_blocks(redis_client):
    assert isinstance(claim(CLEANUP, trigger="manual", task_id="just-admitted"),
                      Execution)  # fmt: skip
    result = request_cleanup(dry_run=True, requested_by="ops")
    assert not result.queued
    assert result.busy.describe() == "A cleanup is starting"


def test_a_running_row_whose_worker_died_does_not_block(redis_client):
    """The row stays `running` when its worker is killed; the lease lapses
    (CLEANUP_LEASE_SECONDS), and from then on the buttons work again."""
    start_running()
    lease = JobLease.objects.get(group=CLEANUP.group)
    left = (lease.expires_at - timezone.now()).total_seconds()
    assert 0 < left <= settings.CLEANUP_LEASE_SECONDS
    assert not request_cleanup(dry_run=True, requested_by="ops").queued
    # As when the lease's expiry passes without renewal.
    JobLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert CleanupRun.objects.filter(status="running").exists()
    assert request_cleanup(dry_run=True, requested_by="ops").queued


def test_an_expired_marker_frees_the_buttons(redis_client):
    assert request_cleanup(dry_run=True, requested_by="ops").queued
    redis_client.pexpire(PENDING_KEY, 1)  # as if PENDING_TIMEOUT had passed
    redis_client.delete("celery")
    time.sleep(0.05)
    assert current_activity() is None
    assert request_cleanup(dry_run=True, requested_by="ops").queued


def test_the_finished_task_frees_the_buttons(redis_client):
    """task_postrun, as the worker sends it: only the marker's own task clears it."""
    first = request_cleanup(dry_run=True, requested_by="ops")

    task_postrun.send(sender=scheduled_cloudcube_cleanup, task_id="some-other-task")
    assert redis_client.exists(PENDING_KEY)  # not that task's marker

    task_postrun.send(sender=scheduled_cloudcube_cleanup, task_id=first.task_id)
    assert not redis_client.exists(PENDING_KEY)
    assert request_cleanup(dry_run=False, requested_by="ops").queued


def test_release_only_removes_its_own_marker(redis_client):
    result = request_cleanup(dry_run=True, requested_by="ops")
    assert release_pending("another") is False
    assert release_pending(result.task_id) is True
    assert release_pending(result.task_id) is False


def test_redis_down_raises_and_queues_nothing(redis_client, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.RedisError):
        request_cleanup(dry_run=True, requested_by="ops")
    assert not redis_client.exists(PENDING_KEY)


@pytest.mark.processes
def test_the_procfile_worker_runs_a_pressed_dry_run_and_frees_the_buttons(
    worker_env, redis_client, cube, tmp_path
):
    """A real worker: the queued marker lives until the task ends, then a press works again."""
    from tests.support.processes import ProcfileProcess

    cube.put("testcube/public/clips/old.mp4", b"o" * 1000, age=timedelta(days=9))
    cube.put("testcube/public/clips/new.mp4", b"n" * 10, age=timedelta(days=1))
    first = request_cleanup(dry_run=True, requested_by="ops")
    assert first.queued
    assert not request_cleanup(dry_run=False, requested_by="ops").queued

    worker = ProcfileProcess("worker", worker_env, tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and redis_client.exists(PENDING_KEY):
            time.sleep(0.2)
        assert not redis_client.exists(PENDING_KEY), worker.output()
    finally:
        worker.stop()

    run = CleanupRun.objects.get(task_id=first.task_id)
    assert (run.trigger, run.dry_run, run.status) == ("manual", True, "succeeded")
    assert (run.files_deleted, run.bytes_freed, run.clips_retained) == (1, 1000, 1)
    assert (run.objects_scanned, run.bytes_scanned) == (2, 1010)
    # The run's scan is the cube's newest measurement (a dry run deleted nothing).
    stats = cube_stats()
    assert (stats.objects, stats.bytes, stats.source) == (2, 1010, f"cleanup run #{run.pk}")
    assert current_activity() is None
    assert cube.keys() == ["testcube/public/clips/new.mp4", "testcube/public/clips/old.mp4"]
    assert request_cleanup(dry_run=True, requested_by="ops").queued
