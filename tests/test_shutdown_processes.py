"""Heroku's stop (SIGTERM to every process) in the middle of a cleanup: the run
stops between batches, goes back on the queue, and the next worker finishes it."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest

from devstack.procinfo import wait_for
from tests.support.processes import ProcfileProcess
from viral_clips.models import CleanupRun
from viral_clips.tasks import scheduled_cloudcube_cleanup

pytestmark = pytest.mark.processes


def test_sigterm_mid_cleanup_requeues_and_the_next_worker_finishes_the_run(
    worker_env, redis_client, cube, tmp_path
):
    expired = 8000
    for i in range(expired):
        cube.put(f"testcube/public/clips/{i:05d}.mp4", b"x", age=timedelta(days=30))
    cube.put("testcube/public/clips/new.mp4", b"n", age=timedelta(days=1))
    env = dict(
        worker_env,
        CLEANUP_SCHEDULE="1h",  # no scheduled run gets in the way
        REMAP_SIGTERM="SIGQUIT",  # as app.json sets on Heroku
    )
    first = ProcfileProcess("worker", env, tmp_path / "first.log").start()
    assert first.wait_for_output("ready", timeout=40), first.output()
    scheduled_cloudcube_cleanup.apply_async(kwargs={"trigger": "manual"})

    run = wait_for(lambda: CleanupRun.objects.filter(files_deleted__gte=1000).first(), 60)
    assert run is not None, first.output()
    os.killpg(first.pid, signal.SIGTERM)  # Heroku: every process of the dyno
    first.process.wait(30)  # well inside Heroku's 30 s before SIGKILL
    first.stop()

    run.refresh_from_db()
    # Not `running`: no process runs it until the redelivery resumes it.
    assert run.status == "interrupted", first.output()[-3000:]
    assert run.job_run.status == "interrupted"
    assert "interrupted" in run.detail
    assert 1000 <= run.files_deleted < expired
    assert len(cube.keys()) > 1
    assert "re-queued" in first.output()
    # Routine on every restart: Celery's "rejected" line, without a traceback.
    assert "Traceback" not in first.output(), first.output()[-3000:]

    second = ProcfileProcess("worker", env, tmp_path / "second.log").start()
    try:
        finished = wait_for(
            lambda: CleanupRun.objects.filter(pk=run.pk, status="succeeded").first(), 90
        )
    finally:
        second.stop()
    assert finished is not None, second.output()[-3000:]
    assert finished.files_deleted == expired
    assert cube.keys() == ["testcube/public/clips/new.mp4"]
    assert CleanupRun.objects.count() == 1  # the same run, resumed: nothing half-recorded
