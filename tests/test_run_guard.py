"""The task refuses a slot twice and refuses to overlap a running cleanup."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from scheduling import guard as run_guard
from scheduling.beat import SLOT_HEADER
from tests.support.processes import ProcfileProcess
from viral_clips.models import CleanupRun
from viral_clips.tasks import scheduled_cloudcube_cleanup

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def run_task(task_id: str | None = None, slot: datetime | None = SLOT, **kwargs) -> dict:
    headers = {SLOT_HEADER: slot.isoformat()} if slot else {}
    return scheduled_cloudcube_cleanup.apply(
        kwargs=kwargs, task_id=task_id or str(uuid.uuid4()), headers=headers
    ).get()


def test_a_slot_runs_once_and_a_second_delivery_is_skipped(cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=timedelta(days=9))
    first = run_task()
    second = run_task()

    assert first["status"] == "succeeded" and first["files_deleted"] == 1
    assert second["status"] == "skipped"
    assert "already ran" in second["reason"]
    runs = list(CleanupRun.objects.order_by("pk"))
    assert [r.status for r in runs] == ["succeeded", "skipped"]
    assert runs[0].scheduled_for == runs[1].scheduled_for == SLOT
    assert "already ran" in runs[1].detail and runs[1].finished_at is not None
    # The next slot is a new one.
    assert run_task(slot=SLOT + timedelta(days=1))["status"] == "succeeded"


def test_a_redelivered_task_is_not_skipped(cube, redis_client):
    task_id = str(uuid.uuid4())
    assert run_task(task_id)["status"] == "succeeded"
    assert run_task(task_id)["status"] == "succeeded"


def test_a_run_overlapping_a_running_cleanup_is_skipped(cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=timedelta(days=9))
    redis_client.set(run_guard.RUNNING_KEY, "other-task", ex=60)
    assert run_guard.cleanup_in_progress()

    result = run_task(slot=None, trigger="manual")

    assert result["status"] == "skipped"
    assert "another cleanup is running (task other-task)" in result["reason"]
    assert cube.keys() == ["testcube/public/clips/old.mp4"]
    # The guard is the other run's: a skipped run leaves it alone.
    assert redis_client.get(run_guard.RUNNING_KEY) == b"other-task"


def test_the_guard_is_released_after_a_run_and_expires_if_never_released(cube, redis_client):
    run_task(slot=None, trigger="manual")
    assert not run_guard.cleanup_in_progress()
    admission = run_guard.admit("task-x")
    assert admission.admitted
    redis_client.expire(run_guard.RUNNING_KEY, 5)
    admission.refresh()
    assert 100 < redis_client.ttl(run_guard.RUNNING_KEY) <= 120
    # Another task's guard is neither renewed nor released by this one.
    other = run_guard.Admission(True, token="someone-else")
    other.refresh()
    other.release()
    assert redis_client.get(run_guard.RUNNING_KEY) == b"task-x"
    admission.release()
    assert not run_guard.cleanup_in_progress()


@pytest.mark.processes
def test_beat_status_names_the_holder_and_the_entries(worker_env, redis_client, tmp_path):
    env = dict(worker_env, CLEANUP_SCHEDULE="1h", DYNO="worker.7")
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output("holding the scheduler lock", timeout=40), worker.output()
        out = StringIO()
        call_command("beat_status", "--json", stdout=out)
        status = json.loads(out.getvalue())
        text = StringIO()
        call_command("beat_status", stdout=text)
    finally:
        worker.stop()

    assert status["lock_held"] is True
    assert status["holder"]["dyno"] == "worker.7"
    assert 0 < status["lock_ttl_seconds"] <= 25
    tick = datetime.fromisoformat(status["last_tick_at"])
    assert abs((datetime.now(UTC) - tick).total_seconds()) < 30
    [entry] = [e for e in status["entries"] if e["name"] == "scheduled-cloudcube-cleanup"]
    assert entry["task"] == "viral_clips.tasks.scheduled_cloudcube_cleanup"
    next_run = datetime.fromisoformat(entry["next_run_at"])
    assert timedelta(minutes=55) < next_run - datetime.now(UTC) <= timedelta(hours=1)
    assert "Scheduler lock: held by worker.7" in text.getvalue()
    assert "next run:" in text.getvalue() and "(in " in text.getvalue()

    # After a clean stop the lock is free and the command says so.
    time.sleep(0.5)
    out = StringIO()
    call_command("beat_status", stdout=out)
    assert "no beat is scheduling right now" in out.getvalue()
