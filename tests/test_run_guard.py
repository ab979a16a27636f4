"""The execution guard (scheduling/guard.py), in-process: every delivery of a job
is claimed against the database ledger, never against Redis keys.

Rewritten for issue 9: the old Redis guard let a redelivery with the same task
id run again beside the original; the intent (no slot twice, no overlap) stays.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from celery.exceptions import Reject
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from devstack.ports import free_port
from scheduling import execution, guard, headers, ledger
from scheduling.claim import Refusal, claim
from scheduling.execution import Execution, LeaseLost
from scheduling.headers import SLOT as SLOT_HEADER
from scheduling.models import JobLease, JobRun
from scheduling.shutdown import StopRequested
from tests.support.cleanup import run_cleanup
from tests.support.jobs import CLEANUP, WEEKLY_REPORT
from tests.support.processes import ProcfileProcess
from viral_clips.cleanup import CleanupInterrupted
from viral_clips.models import CleanupRun
from viral_clips.tasks import scheduled_cloudcube_cleanup

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
OLD = timedelta(days=9)


def run_task(task_id: str | None = None, slot: datetime | None = SLOT, **kwargs) -> dict:
    headers = {SLOT_HEADER: slot.isoformat()} if slot else {}
    return scheduled_cloudcube_cleanup.apply(
        kwargs=kwargs, task_id=task_id or str(uuid.uuid4()), headers=headers
    ).get()


def lapse(execution: Execution) -> None:
    """As if its worker died: nobody renewed the lease for longer than lease_seconds."""
    past = timezone.now() - timedelta(seconds=1)
    JobLease.objects.filter(holder=execution.token).update(expires_at=past)
    JobRun.objects.filter(pk=execution.run.pk).update(lease_expires_at=past)


def rows(job: str = CLEANUP.entry) -> list[tuple[str, str]]:
    return [(r.status, r.detail) for r in JobRun.objects.filter(job=job).order_by("pk")]


def test_a_slot_runs_once_and_every_later_delivery_is_recorded_skipped(cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    task_id = str(uuid.uuid4())
    first = run_task(task_id)
    again = run_task(task_id)  # a redelivery: same task id
    other = run_task()  # a duplicate send: another task id, same slot

    assert first["status"] == "succeeded" and first["files_deleted"] == 1
    assert again["status"] == other["status"] == "skipped"
    assert "already ran" in again["reason"] and "already ran" in other["reason"]
    statuses = [s for s, _ in rows()]
    assert statuses == ["succeeded", "skipped", "skipped"]
    assert JobRun.objects.filter(slot=SLOT).exclude(status="skipped").count() == 1
    assert CleanupRun.objects.count() == 1  # one execution, one set of counters
    assert CleanupRun.objects.get().job_run == JobRun.objects.get(status="succeeded")
    # The next slot is a new one.
    assert run_task(slot=SLOT + timedelta(days=1))["status"] == "succeeded"


def test_the_database_refuses_a_second_execution_row_for_a_slot(db):
    from django.db import IntegrityError, transaction

    JobRun.objects.create(job="j", slot=SLOT, trigger="schedule", status="succeeded")
    JobRun.objects.create(job="j", slot=SLOT, trigger="schedule", status="skipped")
    with pytest.raises(IntegrityError), transaction.atomic():
        JobRun.objects.create(job="j", slot=SLOT, trigger="schedule", status="running")
    # Manual runs (no slot) are many.
    JobRun.objects.create(job="j", trigger="manual", status="running")
    JobRun.objects.create(job="j", trigger="manual", status="running")


def test_a_live_duplicate_is_refused_and_recorded(cube, redis_client):
    holder = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    assert isinstance(holder, Execution)

    refused = run_task("t-1")  # the broker redelivered it while it runs

    assert refused["status"] == "skipped"
    assert "live execution" in refused["reason"]
    assert CleanupRun.objects.count() == 0  # the duplicate never started the cleanup
    holder.progress()
    assert holder.finish("succeeded") is True
    holder.release()
    assert [s for s, _ in rows()] == ["succeeded", "skipped"]


def test_a_lapsed_lease_is_marked_abandoned_and_taken_over_by_the_redelivery(db):
    first = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    lapse(first)
    assert ledger.mark_abandoned() == 1
    assert JobRun.objects.get().status == "abandoned"
    assert ledger.active_run(CLEANUP.group) is None  # nothing runs it: the buttons work

    second = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")

    assert isinstance(second, Execution) and second.resumed
    assert second.run.pk == first.run.pk  # the same row, resumed
    assert (second.run.status, second.run.attempt) == ("running", 2)
    assert second.token != first.token
    assert ledger.active_run(CLEANUP.group).pk == first.run.pk


def test_fencing_a_stale_execution_cannot_write_once_taken_over(db):
    first = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    lapse(first)
    second = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")

    # The first worker was only frozen; it wakes up and tries to go on.
    with pytest.raises(LeaseLost):
        first.renew()
    with pytest.raises(LeaseLost):
        first.checkpoint(sent=True)
    assert first.finish("succeeded") is False
    first.release()  # releases nothing: the lease is the second's

    run = JobRun.objects.get(pk=second.run.pk)
    assert (run.status, run.token, run.state) == ("running", second.token, {})
    assert JobLease.objects.get(group=CLEANUP.group).holder == second.token
    second.checkpoint(sent=True)
    assert second.finish("succeeded")
    assert JobRun.objects.get(pk=run.pk).state == {"sent": True}


def test_two_deliveries_racing_for_an_abandoned_run_only_one_takes_it(db):
    first = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    lapse(first)
    a = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    b = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    assert isinstance(a, Execution)
    assert isinstance(b, Refusal) and b.status == "skipped"


def test_a_slot_due_during_a_dry_run_is_deferred_re_sent_and_run_after_it(cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    dry_run = claim(CLEANUP, trigger="manual", task_id="press")
    task_id = str(uuid.uuid4())

    deferred = run_task(task_id)

    assert deferred["status"] == "deferred"
    row = JobRun.objects.get(slot=SLOT)
    assert row.status == "deferred" and "runs once it ends" in row.detail
    # The same message again, with a countdown, so the slot is never lost.
    [raw] = [json.loads(m) for m in redis_client.lrange("celery", 0, -1)]
    assert raw["headers"]["id"] == task_id
    assert raw["headers"][SLOT_HEADER] == SLOT.isoformat()
    assert raw["headers"]["eta"] is not None
    # Still busy when it comes back: still deferred, no new row.
    assert run_task(task_id)["status"] == "deferred"
    assert JobRun.objects.filter(slot=SLOT).count() == 1
    assert cube.keys() == ["testcube/public/clips/old.mp4"]

    dry_run.finish("succeeded")
    dry_run.release()
    done = run_task(task_id)

    assert done["status"] == "succeeded" and done["files_deleted"] == 1
    row.refresh_from_db()
    assert (row.status, row.attempt, row.trigger) == ("succeeded", 2, "schedule")
    assert cube.keys() == []


def test_a_weekly_report_slot_during_another_report_is_skipped_not_deferred(db):
    holder = claim(WEEKLY_REPORT, trigger="schedule", slot=SLOT, task_id="a")
    later = claim(WEEKLY_REPORT, trigger="schedule", slot=SLOT + timedelta(days=7), task_id="b")
    assert isinstance(later, Refusal) and later.status == "skipped"
    assert ledger.slot_recorded(WEEKLY_REPORT.entry, SLOT + timedelta(days=7))
    holder.release()


def test_a_manual_run_while_a_cleanup_runs_is_refused(cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    holder = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")

    result = run_task(slot=None, trigger="manual")

    assert result["status"] == "skipped"
    assert (
        f"another run is active (scheduled-cloudcube-cleanup schedule, run #{holder.run.pk})"
        in (result["reason"])
    )
    assert cube.keys() == ["testcube/public/clips/old.mp4"]
    # The lease is the other run's: a refused run leaves it alone.
    assert JobLease.objects.get(group=CLEANUP.group).holder == holder.token


def test_the_lease_is_freed_after_a_run_and_lapses_if_never_freed(cube, redis_client):
    run_task(slot=None, trigger="manual")
    assert ledger.active_run(CLEANUP.group) is None
    holder = claim(CLEANUP, trigger="manual", task_id="x")
    assert ledger.active_run(CLEANUP.group).pk == holder.run.pk
    lapse(holder)
    assert ledger.active_run(CLEANUP.group) is None


def test_renewal_survives_a_database_error(db, monkeypatch, caplog):
    holder = claim(CLEANUP, trigger="manual", task_id="x")

    def broken() -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(holder, "_renew", broken)
    monkeypatch.setattr("scheduling.db.BACKOFF_SECONDS", 0)
    holder.renew()  # logged, not raised
    assert "could not renew the lease" in caplog.text


def test_a_cleanup_survives_redis_being_unreachable(cube, monkeypatch):
    """Nothing in a run asks Redis: the old guard's refresh failed the run."""
    for i in range(1500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run_task()
    assert result["status"] == "succeeded" and result["files_deleted"] == 1500


def test_release_never_masks_the_runs_outcome(cube, redis_client, monkeypatch):
    """Shutting down: the row ends interrupted and Reject(requeue) propagates even
    when the database will not take the release."""
    cube.put("testcube/public/clips/old.mp4", age=OLD)

    def broken(write, **kwargs):
        raise OperationalError("database unavailable")

    def stop_now(*args, **kwargs):
        monkeypatch.setattr(execution, "db_retry", broken)  # from here on, every write fails
        raise StopRequested("stop")

    monkeypatch.setattr("viral_clips.tasks.run_cleanup", stop_now)
    outcome = scheduled_cloudcube_cleanup.apply(
        task_id=str(uuid.uuid4()), headers={SLOT_HEADER: SLOT.isoformat()}
    )
    assert isinstance(outcome.result, Reject) and outcome.result.requeue


def test_shutdown_records_interrupted_and_frees_the_lease_for_the_redelivery(cube, redis_client):
    for i in range(2500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    import scheduling.shutdown as shutdown

    task_id = str(uuid.uuid4())
    shutdown._requested.set()
    try:
        outcome = scheduled_cloudcube_cleanup.apply(
            task_id=task_id, headers={SLOT_HEADER: SLOT.isoformat()}
        )
    finally:
        shutdown._requested.clear()
    assert isinstance(outcome.result, Reject)
    row = JobRun.objects.get()
    assert row.status == "interrupted"
    assert CleanupRun.objects.get().status == "interrupted"
    assert ledger.active_run(CLEANUP.group) is None

    assert run_task(task_id)["status"] == "succeeded"
    assert CleanupRun.objects.get().files_deleted == 2500
    assert JobRun.objects.get().attempt == 2


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

    # After a clean stop the lock is free: the command says so, and fails
    # (non-zero exit: issue 9, beat_status tells scripts nothing schedules).
    time.sleep(0.5)
    out = StringIO()
    with pytest.raises(CommandError, match="no scheduler holds the beat lock"):
        call_command("beat_status", stdout=out)
    assert "no beat is scheduling right now" in out.getvalue()


def test_the_ledger_answers_catch_up_and_status_questions(db):
    day = timedelta(days=1)
    done = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="a")
    done.finish("partial")
    done.release()
    stopped = claim(CLEANUP, trigger="schedule", slot=SLOT + day, task_id="b")
    stopped.interrupt()
    stopped.release()
    claim(CLEANUP, trigger="schedule", slot=SLOT + day, task_id="c")  # redelivery: takes it
    JobRun.objects.create(job=CLEANUP.entry, slot=SLOT + 2 * day, trigger="schedule",
                          status="skipped", detail="overlap")  # fmt: skip

    assert ledger.slot_recorded(CLEANUP.entry, SLOT)
    assert ledger.slot_recorded(CLEANUP.entry, SLOT + 2 * day)  # skipped still counts as handled
    assert not ledger.slot_executed(CLEANUP.entry, SLOT + 2 * day)
    assert not ledger.slot_recorded(CLEANUP.entry, SLOT + 3 * day)
    assert ledger.last_outcome(CLEANUP.entry) == "partial"  # the running one has not ended
    assert ledger.last_run(CLEANUP.entry).slot == SLOT + day
    assert [r.slot for r in ledger.latest_slot_rows(CLEANUP.entry, 2)] == [
        SLOT + 2 * day,
        SLOT + day,
    ]
    assert ledger.active_run(CLEANUP.group).slot == SLOT + day
    assert ledger.resumable_rows(CLEANUP.entry, since=SLOT) == []
    JobRun.objects.filter(slot=SLOT + day).update(status="interrupted")
    assert [r.slot for r in ledger.resumable_rows(CLEANUP.entry, since=SLOT)] == [SLOT + day]


def test_a_delivery_that_cannot_reach_the_ledger_is_sent_again_not_lost(
    db, redis_client, monkeypatch
):
    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(guard, "claim", down)
    result = run_task("t-9")
    assert result["status"] == "deferred" and "database unavailable" in result["reason"]
    [raw] = [json.loads(m) for m in redis_client.lrange("celery", 0, -1)]
    assert raw["headers"]["id"] == "t-9" and raw["headers"][SLOT_HEADER] == SLOT.isoformat()


def test_a_catch_up_send_is_recorded_as_such(cube, redis_client):
    sent = {SLOT_HEADER: SLOT.isoformat(), headers.TRIGGER: "catch_up"}
    result = scheduled_cloudcube_cleanup.apply(task_id=str(uuid.uuid4()), headers=sent).get()
    assert result["status"] == "succeeded"
    assert JobRun.objects.get().trigger == "catch_up"
    assert CleanupRun.objects.get().trigger == "schedule"


def test_a_dead_workers_cleanup_is_marked_abandoned_and_resumed_by_its_redelivery(
    cube, redis_client
):
    for i in range(2500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    first = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t-1")
    with pytest.raises(CleanupInterrupted):  # one batch deleted, then the worker "dies"
        run_cleanup(5, task_id="t-1", job_run=first.run, should_stop=lambda: True)
    CleanupRun.objects.update(status="running")  # SIGKILL: nothing recorded the stop
    lapse(first)

    assert ledger.mark_abandoned() == 1  # whoever looks first (status, the next claim)
    assert CleanupRun.objects.get().status == "abandoned"  # not `running` either

    assert run_task("t-1")["status"] == "succeeded"  # the broker's redelivery
    [run] = CleanupRun.objects.all()  # the same CleanupRun, resumed
    assert (run.status, run.files_deleted) == ("succeeded", 2500)
    assert JobRun.objects.get().attempt == 2
    assert cube.keys() == []
