"""The Procfile's worker line, as a real process: beat takes the lock and schedules."""

import pytest

from tests.support.processes import ProcfileProcess

pytestmark = pytest.mark.processes


def test_worker_with_embedded_beat_holds_lock_and_schedules(worker_env, redis_client, tmp_path):
    env = dict(worker_env, CLEANUP_SCHEDULE="2s")
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output("beat: Acquired lock", timeout=40), worker.output()
        # The Procfile passes no --scheduler: CELERY_BEAT_SCHEDULER chose ours.
        assert worker.wait_for_output("beat: holding the scheduler lock", timeout=10), (
            worker.output()
        )
        # A line per registered job says what runs when.
        assert worker.wait_for_output(
            "beat: scheduled-cloudcube-cleanup runs every 2 seconds; next run 20", timeout=10
        ), worker.output()
        # The next line of the same start-up: written a moment later, so waited for too.
        assert worker.wait_for_output(
            "beat: weekly-report runs every Monday at 09:00 UTC; next run 20", timeout=10
        ), worker.output()
        assert worker.wait_for_output("Sending due task scheduled-cloudcube-cleanup", timeout=20), (
            worker.output()
        )
        assert redis_client.exists("koolclips:redbeat::lock")
        assert redis_client.ttl("koolclips:redbeat::lock") <= 25
    finally:
        worker.stop()
    # A clean stop releases the lock at once.
    assert not redis_client.exists("koolclips:redbeat::lock")
