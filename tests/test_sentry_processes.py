"""Sentry from real `celery worker --beat` processes, with the real SDK and transport.

The worker is the Procfile's own line; SENTRY_DSN points at a local collector
(tests/support/sentry_collector.py) that records every envelope and which
process sent it. Every check below is on what actually arrived over HTTP.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devstack.ports import free_port
from tests.support.processes import ProcfileProcess
from tests.support.sentry_collector import SentryCollector
from viral_clips.models import CleanupRun

pytestmark = pytest.mark.processes

REDIS_USER = "koolclips-sentry"
REDIS_PASSWORD = "redis-pw-5e6f7a8b9c0d-secret"
SLUG_COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOCK_KEY = "koolclips:redbeat::lock"
# Bounds for a loaded 2-core machine: a worker boots in ~5 s, runs every 3 s.
BOOT_AND_RUN = 60
EVENT_WAIT = 30


@pytest.fixture
def collector():
    with SentryCollector() as server:
        yield server


@pytest.fixture
def sentry_worker_env(worker_env, redis_client, collector):
    """The worker's environment: Sentry on, a Redis user with a password, 3 s schedule."""
    redis_client.acl_setuser(
        REDIS_USER,
        enabled=True,
        passwords=[f"+{REDIS_PASSWORD}"],
        categories=["+@all"],
        keys=["*"],
        channels=["*"],
    )
    port = redis_client.connection_pool.connection_kwargs["port"]
    env = dict(worker_env)
    env.pop("SENTRY_ENVIRONMENT", None)  # the default, production, is under test
    env.update(
        SENTRY_DSN=collector.dsn,
        HEROKU_SLUG_COMMIT=SLUG_COMMIT,
        REDIS_URL=f"redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
        CLEANUP_SCHEDULE="3s",
    )
    yield env
    redis_client.acl_deluser(REDIS_USER)


def secrets_in(env: dict) -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": env["DJANGO_SECRET_KEY"],
        "CLOUDCUBE_SECRET_ACCESS_KEY": env["CLOUDCUBE_SECRET_ACCESS_KEY"],
        "CLOUDCUBE_ACCESS_KEY_ID": env["CLOUDCUBE_ACCESS_KEY_ID"],
        "Redis password": REDIS_PASSWORD,
    }


def assert_no_secret_arrived(collector: SentryCollector, env: dict) -> None:
    received = collector.raw_bytes()
    assert received, "nothing arrived: the secret check would prove nothing"
    for name, value in secrets_in(env).items():
        assert value.encode() not in received, f"{name} reached Sentry"
    assert collector.rejected == []


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = dict(line.split(":\t", 1) for line in f if ":\t" in line)
            except OSError:
                continue
            if int(status.get("PPid", "0").strip()) == pid and status["State"][0] != "Z":
                found.add(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def check_in_id(run: CleanupRun) -> str:
    return uuid.UUID(run.task_id).hex


def check_ins_of(collector: SentryCollector, run: CleanupRun) -> list[tuple[dict, int | None]]:
    """The run's check-ins in the order they were made (beat's and the pool's
    senders race, so arrival order is not capture order)."""
    found = [(c, pid) for c, pid in collector.check_ins() if c["check_in_id"] == check_in_id(run)]
    return sorted(found, key=lambda found_: datetime.fromisoformat(found_[0]["timestamp"]))


def events_of(collector: SentryCollector, run: CleanupRun) -> list[tuple[dict, int | None]]:
    """Events that belong to `run`: by the Celery task id or the run id in their context."""
    return [
        (e, pid)
        for e, pid in collector.events()
        if e.get("tags", {}).get("celery_task_id") == run.task_id
        or e.get("contexts", {}).get("cleanup_run", {}).get("run_id") == run.pk
    ]


def fully_reported(collector: SentryCollector, run: CleanupRun) -> bool:
    """Its final check-in and (failed, partial) its event have arrived."""
    final = "error" if run.status == CleanupRun.Status.FAILED else "ok"
    statuses = [c["status"] for c, _ in check_ins_of(collector, run)]
    needs_event = run.status in (CleanupRun.Status.FAILED, CleanupRun.Status.PARTIAL)
    return final in statuses and (not needs_event or bool(events_of(collector, run)))


def first_reported_run(collector: SentryCollector, **filters) -> CleanupRun | None:
    for run in CleanupRun.objects.filter(**filters).order_by("pk"):
        if fully_reported(collector, run):
            return run
    return None


def assert_every_finished_run_reported_once(collector: SentryCollector) -> None:
    """Invariants over every run that finished while the worker ran."""
    runs = CleanupRun.objects.exclude(status=CleanupRun.Status.RUNNING)
    assert runs.exists()
    for run in runs:
        statuses = [c["status"] for c, _ in check_ins_of(collector, run)]
        expected_final = "error" if run.status == CleanupRun.Status.FAILED else "ok"
        assert statuses == ["in_progress", expected_final], (run, run.status, statuses)
        events = events_of(collector, run)
        levels = [e["level"] for e, _ in events]
        if run.status == CleanupRun.Status.FAILED:
            assert levels == ["error"], (run, levels)
        elif run.status == CleanupRun.Status.PARTIAL:
            assert levels == ["warning"], (run, levels)
        else:
            assert levels == [], (run, levels)


def test_failing_scheduled_run_reports_error_and_check_ins_from_forked_children(
    sentry_worker_env, collector, s3_server, redis_client, tmp_path
):
    # The cube's bucket does not exist: every run fails with NoSuchBucket.
    env = dict(
        sentry_worker_env,
        CLOUDCUBE_URL=s3_server.cloudcube_url("koolclips-no-such-bucket", "testcube"),
    )
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        run = collector.wait_for(
            lambda: first_reported_run(collector, status=CleanupRun.Status.FAILED), BOOT_AND_RUN
        )
        assert run is not None, worker.output()
        children = children_of(worker.pid)

        # Its beat child dies when the lock is taken from it: it says so first.
        redis_client.delete(LOCK_KEY)
        beat_died = collector.wait_for(
            lambda: [(e, pid) for e, pid in collector.events() if e["level"] == "fatal"],
            EVENT_WAIT,
        )
        assert beat_died, worker.output()
    finally:
        worker.stop()

    # One error event, with the run's context and no credentials, from a pool child.
    [(event, event_pid)] = events_of(collector, run)
    assert event["level"] == "error"
    assert event["exception"]["values"][-1]["type"] == "NoSuchBucket"
    assert event["environment"] == "production"
    assert event["release"] == SLUG_COMMIT
    context = event["contexts"]["cleanup_run"]
    assert context["run_id"] == run.pk
    assert context["task_id"] == run.task_id
    assert context["status"] == "failed"
    assert context["trigger"] == "schedule"
    assert context["retention_days"] == 5
    assert context["dry_run"] is False
    assert context["cube"] == "testcube"
    assert context["bucket"] == "koolclips-no-such-bucket"
    for count in ("objects_scanned", "files_deleted", "error_count"):
        assert context[count] == 0
    assert "NoSuchBucket" in context["detail"]
    assert event["tags"]["cleanup.status"] == "failed"

    # in_progress from the beat child when beat dispatched it, error from the
    # pool child that ran it; both forked from the worker, neither is the worker.
    (opened, opened_pid), (closed, closed_pid) = check_ins_of(collector, run)
    assert (opened["status"], closed["status"]) == ("in_progress", "error")
    assert opened["monitor_slug"] == closed["monitor_slug"] == "scheduled-cloudcube-cleanup"
    assert opened["monitor_config"] == {
        "schedule": {"type": "interval", "value": 1, "unit": "minute"},  # 3 s, rounded up
        "timezone": "UTC",
        "checkin_margin": 1,
        "max_runtime": 1,
        "failure_issue_threshold": 1,
        "recovery_threshold": 3,
    }
    assert opened["environment"] == "production" and opened["release"] == SLUG_COMMIT
    assert closed["duration"] >= 0
    assert opened_pid in children and closed_pid in children
    assert opened_pid != closed_pid
    assert event_pid == closed_pid

    # The beat child reported its own death (the lock lost), then exited.
    [(fatal, fatal_pid)] = beat_died
    assert fatal["exception"]["values"][-1]["type"] == "LockNotOwnedError"
    assert fatal["tags"]["process"] == "celery-beat"
    assert fatal_pid == opened_pid
    assert [e["level"] for e, pid in collector.events() if pid == opened_pid] == ["fatal"]
    assert not running(opened_pid)

    assert_every_finished_run_reported_once(collector)
    assert_no_secret_arrived(collector, env)


PARTIAL_BUCKET = "koolclips-sentry-partial"


@pytest.fixture
def locked_cube(s3_server):
    """A cube where S3 refuses to delete anything under public/clips/locked/ (bucket
    policy). Under clips/: the cleanup's scope since issue 10 (was public/locked/)."""
    s3_server.create_bucket(PARTIAL_BUCKET)
    s3_server.clear(PARTIAL_BUCKET)
    s3_server.deny_deletes(PARTIAL_BUCKET, ["testcube/public/clips/locked/*"])
    old = datetime.now(UTC) - timedelta(days=10)
    for name in (
        "clips/a.mp4",
        "clips/b.mp4",
        "clips/c.mp4",
        "clips/locked/x.mp4",
        "clips/locked/y.mp4",
    ):
        s3_server.put(PARTIAL_BUCKET, f"testcube/public/{name}", b"0123456789", old)
    s3_server.put(PARTIAL_BUCKET, "testcube/public/clips/new.mp4", b"new")
    yield s3_server
    s3_server.allow_deletes(PARTIAL_BUCKET)
    s3_server.clear(PARTIAL_BUCKET)


def test_partial_run_is_a_warning_and_a_successful_run_checks_in_ok(
    sentry_worker_env, collector, locked_cube, tmp_path
):
    env = dict(
        sentry_worker_env,
        CLOUDCUBE_URL=locked_cube.cloudcube_url(PARTIAL_BUCKET, "testcube"),
    )
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        partial = collector.wait_for(
            lambda: first_reported_run(collector, status=CleanupRun.Status.PARTIAL), BOOT_AND_RUN
        )
        assert partial is not None, worker.output()
        # Lift the policy: the next run deletes the two remaining old files.
        locked_cube.allow_deletes(PARTIAL_BUCKET)
        succeeded = collector.wait_for(
            lambda: first_reported_run(
                collector, status=CleanupRun.Status.SUCCEEDED, files_deleted=2
            ),
            EVENT_WAIT,
        )
        assert succeeded, worker.output()
    finally:
        worker.stop()

    # The partial run: one warning that counts the failed keys and shows them.
    [(warning, _)] = events_of(collector, partial)
    assert warning["level"] == "warning"
    message = warning["message"]
    assert f"run #{partial.pk} was partial: 2 of 5 expired files could not be deleted" in message
    assert "AccessDenied testcube/public/clips/locked/x.mp4" in message
    context = warning["contexts"]["cleanup_run"]
    assert context["run_id"] == partial.pk
    assert context["files_deleted"] == 3 and context["error_count"] == 2
    assert {e["key"] for e in context["errors"]} == {
        "testcube/public/clips/locked/x.mp4",
        "testcube/public/clips/locked/y.mp4",
    }
    assert {e["code"] for e in context["errors"]} == {"AccessDenied"}
    assert context["cube"] == "testcube" and context["bucket"] == PARTIAL_BUCKET
    assert warning["tags"]["cleanup.status"] == "partial"
    statuses = [c["status"] for c, _ in check_ins_of(collector, partial)]
    assert statuses == ["in_progress", "ok"]

    # The successful run: ok, and no event at all.
    assert [c["status"] for c, _ in check_ins_of(collector, succeeded)] == ["in_progress", "ok"]
    assert events_of(collector, succeeded) == []
    assert sorted(locked_cube.keys(PARTIAL_BUCKET)) == ["testcube/public/clips/new.mp4"]

    assert_every_finished_run_reported_once(collector)
    assert_no_secret_arrived(collector, env)


def test_gunicorn_worker_reports_an_unhandled_error_without_secrets(
    worker_env, collector, tmp_path
):
    """The Procfile's web line: a request that fails is an error event from a gunicorn worker."""
    port = free_port()
    env = dict(
        worker_env,
        SENTRY_DSN=collector.dsn,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        # The database cannot be opened: reading the request's session fails.
        DATABASE_URL=f"sqlite:///{tmp_path}/no-such-directory/db.sqlite3",
    )
    web = ProcfileProcess("web", env, tmp_path / "web.log").start()
    secret = env["DJANGO_SECRET_KEY"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/login/?X-Amz-Signature=deadbeefcafe&next={secret}",
        headers={
            "Authorization": f"Bearer {env['CLOUDCUBE_SECRET_ACCESS_KEY']}",
            "Cookie": f"sessionid={secret}",
        },
    )
    try:
        deadline = time.monotonic() + BOOT_AND_RUN
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(request, timeout=10)  # noqa: S310 - local test server
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                time.sleep(0.3)
        assert status == 500, web.output()
        events = collector.wait_for(collector.events, EVENT_WAIT)
        workers = children_of(web.pid)
    finally:
        web.stop()

    [(event, pid)] = events
    assert event["level"] == "error"
    assert event["exception"]["values"][-1]["type"] == "OperationalError"
    assert event["request"]["url"].endswith("/admin/login/")
    assert "cookies" not in event["request"]  # send_default_pii is off
    assert pid in workers  # a gunicorn worker, forked by the gunicorn master
    # The query string arrived, with the secret and the signature replaced.
    assert event["request"]["query_string"] == "X-Amz-Signature=[Filtered]&next=[Filtered]"
    assert_no_secret_arrived(collector, env)
