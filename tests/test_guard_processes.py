"""The execution guard against real faults: Procfile worker processes, a real
redis-server (restarted, redelivering), the local S3 server over HTTP, the
test database (PostgreSQL when DATABASE_URL is set).

Each test fails on the code before the ledger (see the issue-9 note for how).
"""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.latency_proxy import S3LatencyProxy
from devstack.procinfo import parent_of, wait_for
from devstack.redis_server import RedisServer
from scheduling.headers import SLOT as SLOT_HEADER
from scheduling.models import JobLease, JobRun
from tests.support.jobs import CLEANUP, WEEKLY_REPORT
from tests.support.processes import ROOT, ProcfileProcess, WorkerDynos, venv_path_env
from viral_clips.models import CleanupRun

pytestmark = pytest.mark.processes

OLD = timedelta(days=30)
CLEANUP_TASK = "viral_clips.tasks.scheduled_cloudcube_cleanup"


@pytest.fixture
def start_worker(worker_env, own_redis, tmp_path):
    dynos = WorkerDynos(
        dict(
            worker_env,
            REDIS_URL=own_redis.url,
            CLEANUP_SCHEDULE="1h",  # no scheduled run unless the test sends one
            WEEKLY_REPORT_SCHEDULE="0 9 * * 1",
        ),
        tmp_path,
    )

    def start(**overrides: str) -> ProcfileProcess:
        worker = dynos.start(**overrides)
        assert worker.wait_for_output("ready", timeout=60), worker.output()
        return worker

    yield start
    dynos.stop_all()


@pytest.fixture
def far_cube(s3_server, cube) -> str:
    """CLOUDCUBE_URL of the test's cube behind a proxy with a far S3's latency
    (1.5 s a list page, 1 s a 1,000-key DeleteObjects). A run then lasts many
    seconds on a few thousand objects while the worker waits rather than
    computes: tens of thousands at full speed cost the machine ~0.7 s of CPU a
    page (moto's listing, botocore's parsing), which the parallel suite pays
    in every other test's time."""
    proxy = S3LatencyProxy(s3_server.port, list_ms=1500, delete_ms_per_1000=1000).start()
    yield proxy.cloudcube_url(cube.bucket, cube.name)
    proxy.stop()


def seed(cube, expired: int, fresh: int = 3) -> None:
    """Back-dated objects straight into the S3 server's backend (fast), listed
    by the worker over HTTP like any other."""
    when = datetime.now(UTC) - OLD
    cube.server.put_many(
        cube.bucket,
        ((f"testcube/public/clips/{i:06d}.mp4", b"x", when) for i in range(expired)),
    )
    for i in range(fresh):
        cube.put(f"testcube/public/new/{i}.mp4", b"n", age=timedelta(days=1))


def send_slot(redis: RedisServer, slot: datetime, **kwargs) -> str:
    """What beat sends for a slot: the task, its kwargs, the slot header."""
    from config.celery import app

    task_id = str(uuid.uuid4())
    with app.connection_for_write(redis.url) as conn:
        app.send_task(
            CLEANUP_TASK,
            kwargs={"retention_days": 5, **kwargs},
            task_id=task_id,
            headers={SLOT_HEADER: slot.isoformat()},
            connection=conn,
        )
    return task_id


def send_manual(redis: RedisServer, **kwargs) -> str:
    from config.celery import app

    task_id = str(uuid.uuid4())
    with app.connection_for_write(redis.url) as conn:
        app.send_task(
            CLEANUP_TASK,
            kwargs={"retention_days": 5, "trigger": "manual", **kwargs},
            task_id=task_id,
            connection=conn,
        )
    return task_id


def slot_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_a_run_longer_than_the_visibility_timeout_executes_once(
    start_worker, own_redis, cube, far_cube
):
    seed(cube, 6_000)
    worker = start_worker(
        CLOUDCUBE_URL=far_cube,
        CELERY_VISIBILITY_TIMEOUT="3",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        SCHEDULING_DEFER_RETRY_SECONDS="1",
        CELERY_WORKER_CONCURRENCY="2",
    )
    slot = slot_now()
    send_slot(own_redis, slot)

    done = wait_for(lambda: JobRun.objects.filter(slot=slot, status__in=JobRun.FINAL).first(), 240)
    assert done is not None, worker.output()[-4000:]
    time.sleep(2)  # any late redelivery still gets recorded

    assert done.status == "succeeded" and done.attempt == 1
    [run] = CleanupRun.objects.all()  # one execution, one set of counters
    assert (run.status, run.files_deleted, run.job_run_id) == ("succeeded", 6_000, done.pk)
    assert run.duration_seconds > 3, "the run must outlast the visibility timeout"
    refused = JobRun.objects.filter(slot=slot, status="skipped")
    assert refused.exists(), "the broker did not redeliver: the test proves nothing"
    assert all("live execution" in r.detail or "already ran" in r.detail for r in refused), [
        r.detail for r in refused
    ]
    assert sorted(cube.keys()) == [f"testcube/public/new/{i}.mp4" for i in range(3)]


def test_redis_restarted_mid_cleanup_the_run_still_succeeds(
    start_worker, own_redis, cube, far_cube
):
    seed(cube, 10_000)  # 8 pages (12 s) still to list when Redis goes down for 5 s
    worker = start_worker(CLOUDCUBE_URL=far_cube)
    send_manual(own_redis)
    running = wait_for(lambda: CleanupRun.objects.filter(files_deleted__gte=2000).first(), 120)
    assert running is not None, worker.output()[-4000:]

    own_redis.restart(downtime=5, keep_data=True)

    done = wait_for(
        lambda: (
            CleanupRun.objects.filter(pk=running.pk, status__in=["succeeded", "failed"])
            .exclude(status="running")
            .first()
        ),
        240,
    )
    assert done is not None, worker.output()[-4000:]
    assert done.status == "succeeded", (done.status, done.detail)
    assert done.files_deleted == 10_000
    assert sorted(cube.keys()) == [f"testcube/public/new/{i}.mp4" for i in range(3)]
    executions = JobRun.objects.filter(job=CLEANUP.entry).exclude(status="skipped")
    assert [r.status for r in executions] == ["succeeded"]


def test_a_slot_due_during_a_dry_run_runs_after_it(start_worker, own_redis, cube, far_cube):
    seed(cube, 6_000)  # a 9 s listing
    worker = start_worker(
        CLOUDCUBE_URL=far_cube, CELERY_WORKER_CONCURRENCY="2", SCHEDULING_DEFER_RETRY_SECONDS="2"
    )
    send_manual(own_redis, dry_run=True)
    dry = wait_for(
        lambda: CleanupRun.objects.filter(dry_run=True, objects_scanned__gt=0).first(), 120
    )
    assert dry is not None, worker.output()[-4000:]

    slot = slot_now()
    send_slot(own_redis, slot)  # 02:00 strikes while the dry run lists the cube
    deferred = wait_for(lambda: JobRun.objects.filter(slot=slot, status="deferred").first(), 30)
    assert deferred is not None, worker.output()[-4000:]
    dry.refresh_from_db()
    assert dry.status == "running", "the dry run ended before the slot was due"

    done = wait_for(lambda: JobRun.objects.filter(slot=slot, status__in=JobRun.FINAL).first(), 240)
    assert done is not None, worker.output()[-4000:]
    dry.refresh_from_db()
    real = CleanupRun.objects.get(job_run=done)
    assert (dry.status, dry.files_deleted) == ("succeeded", 6_000)  # counted, not deleted
    assert (done.status, real.status, real.files_deleted) == ("succeeded", "succeeded", 6_000)
    assert real.started_at >= dry.finished_at  # after it, never beside it
    assert JobRun.objects.filter(slot=slot).exclude(status="skipped").count() == 1
    assert sorted(cube.keys()) == [f"testcube/public/new/{i}.mp4" for i in range(3)]


def run_command(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "cloudcube_cleanup", *args],
        cwd=ROOT,
        env=venv_path_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_command_is_refused_beside_a_scheduled_run_and_sigint_ends_it_interrupted(
    start_worker, own_redis, cube, worker_env, far_cube
):
    seed(cube, 8_000)  # 12 s of listing: the refused command starts well inside it
    env = dict(worker_env, REDIS_URL=own_redis.url, CLOUDCUBE_URL=far_cube)

    # Ctrl-C (or `heroku run` losing its terminal) in the middle of a run.
    command = run_command(env)
    row = wait_for(
        lambda: CleanupRun.objects.filter(trigger="command", files_deleted__gt=0).first(), 120
    )
    assert row is not None, command.communicate(timeout=5)[0] if command.poll() else ""
    command.send_signal(signal.SIGINT)
    output, _ = command.communicate(timeout=60)
    assert command.returncode == 130, output
    assert "interrupted" in output
    row.refresh_from_db()
    ledger_row = row.job_run
    assert (row.status, ledger_row.status) == ("interrupted", "interrupted"), output
    assert ledger_row.finished_at is not None
    assert JobLease.objects.get(group=CLEANUP.group).holder == ""

    # A scheduled run is going: the command is refused and touches nothing.
    worker = start_worker(CLOUDCUBE_URL=far_cube)
    slot = slot_now()
    send_slot(own_redis, slot)
    assert wait_for(
        lambda: CleanupRun.objects.filter(job_run__slot=slot, files_deleted__gt=0).exists(), 120
    ), worker.output()[-4000:]
    refused = run_command(env)
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode == 3, output
    assert "not started: refused: another run is active" in output
    assert JobRun.objects.filter(trigger="command").count() == 2  # the refusal is recorded
    assert not CleanupRun.objects.filter(trigger="command").exclude(pk=row.pk).exists()


# --- the weekly report across takeovers ---------------------------------------
HOLDER_KEY = "koolclips:redbeat::holder"


def mails(directory: Path) -> list[email.message.Message]:
    found = []
    for path in sorted(directory.glob("*.log")):
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                found.append(email.message_from_string(chunk.strip()))
    return found


def holding_worker(workers: list[ProcfileProcess], redis: RedisServer) -> ProcfileProcess:
    pid = wait_for(lambda: redis.client().hget(HOLDER_KEY, "pid"), 40)
    assert pid, "no beat took the lock"
    [holder] = [w for w in workers if w.pid == parent_of(int(pid))]
    return holder


def test_three_dynos_killed_and_stopped_never_mail_one_slot_twice(
    start_worker, own_redis, cube, tmp_path
):
    outbox = tmp_path / "mail"
    outbox.mkdir()
    env = dict(
        WEEKLY_REPORT_SCHEDULE="2s",
        DJANGO_ADMIN_EMAILS="ops@example.com",
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        DJANGO_EMAIL_FILE_PATH=str(outbox),
        BEAT_MAX_LOOP_INTERVAL="1",
        REDBEAT_LOCK_TIMEOUT="5",
        CELERY_WORKER_CONCURRENCY="1",
    )
    workers = [start_worker(**env) for _ in range(3)]
    assert wait_for(lambda: len(mails(outbox)) >= 3, 60), workers[0].output()[-3000:]

    # A dyno killed while it sends a report holds the job's lease until it lapses
    # (60 s, its declaration): slots meanwhile are refused, so the mails resume
    # within the lease plus a takeover and three slots.
    resumed = WEEKLY_REPORT.lease_seconds + 30
    holding_worker(workers, own_redis).kill_group()  # the whole dyno dies at once
    before = len(mails(outbox))
    assert wait_for(lambda: len(mails(outbox)) >= before + 3, resumed)
    os.killpg(holding_worker(workers, own_redis).pid, signal.SIGTERM)  # Heroku's stop
    before = len(mails(outbox))
    assert wait_for(lambda: len(mails(outbox)) >= before + 3, resumed)
    time.sleep(3)

    slots = Counter(m["X-Koolclips-Slot"] for m in mails(outbox))
    assert None not in slots
    assert {s: n for s, n in slots.items() if n > 1} == {}, "a slot mailed twice"
    executed = JobRun.objects.filter(job="weekly-report").exclude(status="skipped")
    sent = {r.slot.isoformat() for r in executed if r.state.get("sent")}
    assert set(slots) == sent  # every mail is a ledger fact, and the other way round
    assert len(slots) >= 9
