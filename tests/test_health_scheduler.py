"""/health/ follows the real scheduler: 503 when beat stops ticking, 200 when it is back.

Real processes: the Procfile's `worker` line (celery worker with embedded beat)
against the suite's redis-server, with a 1 s beat loop so the test stays short.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.support.processes import ProcfileProcess
from tests.support.runs import make_run
from viral_clips.models import CleanupRun

pytestmark = pytest.mark.processes

LOOP = 1  # seconds between beat ticks in the test workers
LOCK_TIMEOUT = 4  # a SIGKILLed holder's lock (and holder record) expires after this
MAX_AGE = 3  # /health/'s threshold: three loop intervals
HEALTH_TOKEN = "health-token-for-the-scheduler-test-0123456789"


def poll_health(client, want_status: int, timeout: float) -> tuple[float, dict]:
    """GET /health/ until it answers `want_status`; (seconds it took, body)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        response = client.get("/health/", HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}")
        if response.status_code == want_status or time.monotonic() > deadline:
            assert response.status_code == want_status, response.json()
            return time.monotonic() - started, response.json()
        time.sleep(0.25)


def test_503_when_the_scheduler_stops_ticking_and_200_when_it_resumes(
    client, worker_env, redis_client, cube, tmp_path, settings, django_user_model
):
    settings.HEALTH_SCHEDULER_MAX_AGE = MAX_AGE
    # What is timed here is the scheduler check's threshold, not /health/'s
    # cache (tests/test_health_processes.py covers that): every GET computes.
    settings.HEALTH_CACHE_SECONDS = 0
    env = dict(
        worker_env,
        DYNO="worker.1",
        BEAT_MAX_LOOP_INTERVAL=str(LOOP),
        REDBEAT_LOCK_TIMEOUT=str(LOCK_TIMEOUT),
    )
    # The details (errors, ages, the last cleanup) are for staff or a token; anonymous
    # callers see only up/down per part (tests/test_web_security.py).
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    last = make_run(timezone.now() - timedelta(hours=3), status=CleanupRun.Status.PARTIAL)
    make_run(timezone.now() - timedelta(hours=1), status=CleanupRun.Status.SKIPPED)

    # No scheduler has ever run: down, and it says why.
    response = client.get("/health/", HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["scheduler"]["ok"] is False
    assert body["checks"]["scheduler"]["error"] == "no scheduler tick on record"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    # The last cleanup that ran (skipped duplicates aside): status and age.
    assert body["last_cleanup"]["id"] == last.pk
    assert body["last_cleanup"]["status"] == "partial"
    assert 3 * 3600 - 60 < body["last_cleanup"]["age_seconds"] < 3 * 3600 + 60

    first = ProcfileProcess("worker", env, tmp_path / "worker-1.log").start()
    try:
        _, body = poll_health(client, 200, timeout=40)
        scheduler = body["checks"]["scheduler"]
        assert scheduler["ok"] is True
        assert scheduler["seconds_since_tick"] <= MAX_AGE
        assert scheduler["max_age_seconds"] == MAX_AGE
        assert body["status"] == "ok"

        # The dashboard reads the same state: the holder, and beat's next run.
        staff = django_user_model.objects.create_user("ops", password="pw-9x!", is_staff=True)
        client.force_login(staff)
        page = client.get("/").content.decode()
        assert '<strong id="lock-holder">worker.1</strong>' in page
        assert 'id="next-run"' in page and "No beat has written the schedule" not in page
        client.logout()

        # The whole worker dies at once (SIGKILL): nobody ticks any more.
        first.kill_group()
        waited, body = poll_health(client, 503, timeout=MAX_AGE + 5)
        assert waited <= MAX_AGE + LOOP + 2
        assert body["status"] == "unavailable"
        assert body["checks"]["scheduler"]["ok"] is False
        assert body["checks"]["database"]["ok"] and body["checks"]["cloudcube"]["ok"]
    finally:
        first.stop()

    # A new worker takes the lock once the dead holder's expires, and ticks.
    second = ProcfileProcess("worker", env, tmp_path / "worker-2.log").start()
    try:
        _, body = poll_health(client, 200, timeout=LOCK_TIMEOUT + 40)
        assert body["checks"]["scheduler"]["ok"] is True
    finally:
        second.stop()
