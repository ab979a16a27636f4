"""History retention (scheduling/history.py): RUN_HISTORY_DAYS and the
`prune-run-history` job. Old rows go, in batches, with their CleanupRun; each
job's last success, last failure, latest slot, catch-up window and running rows
stay whatever their age."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling import history, registry
from scheduling.models import JobAction, JobLease, JobRun, RunStop
from scheduling.tasks import prune_run_history
from tests.support.runs import make_run
from viral_clips.models import CleanupRun, CubeMeasurement

Status = JobRun.Status
CLEANUP = "scheduled-cloudcube-cleanup"
REPORT = "weekly-report"


def ledger_row(job: str, age: timedelta, status: str, *, slot: bool = True, **fields) -> JobRun:
    now = timezone.now()
    when = (now - age).replace(microsecond=0)
    row = JobRun.objects.create(
        job=job,
        slot=when if slot else None,
        trigger=JobRun.Trigger.SCHEDULE if slot else JobRun.Trigger.MANUAL,
        status=status,
        **fields,
    )
    JobRun.objects.filter(pk=row.pk).update(created_at=when)
    return row


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.mark.django_db
def test_pruning_removes_old_rows_and_keeps_the_named_ones():
    # The cleanup: a long history, its last success and failure both old.
    gone = [ledger_row(CLEANUP, days(700 - i), Status.SUCCEEDED) for i in range(5)]
    gone += [ledger_row(CLEANUP, days(650 - i), Status.SKIPPED) for i in range(3)]
    gone.append(ledger_row(CLEANUP, days(480), Status.FAILED))
    last_failure = ledger_row(CLEANUP, days(470), Status.FAILED)
    last_success = ledger_row(CLEANUP, days(450), Status.SUCCEEDED)
    gone.append(ledger_row(CLEANUP, days(440), Status.INTERRUPTED))
    # An operator stopped it: the Stop order goes with its run.
    RunStop.objects.create(
        run=gone[-1], requested_at=gone[-1].created_at, requested_by="ops", reason="x"
    )
    still_running = ledger_row(CLEANUP, days(430), Status.RUNNING)
    recent = [ledger_row(CLEANUP, days(10 - i), Status.INTERRUPTED) for i in range(3)]
    # Their counters: deleted with their ledger rows, kept with them.
    gone_books = [make_run(r.created_at, job_run=r) for r in gone[:5]]
    kept_books = make_run(last_success.created_at, job_run=last_success)
    orphan_old = make_run(timezone.now() - days(500))  # written before the ledger
    orphan_new = make_run(timezone.now() - days(5))
    # The weekly report: nothing recent; its latest slot is what catch-up reads.
    gone.append(ledger_row(REPORT, days(420), Status.SKIPPED))
    latest_slot = ledger_row(REPORT, days(410), Status.SKIPPED)
    manual_old = ledger_row(REPORT, days(600), Status.INTERRUPTED, slot=False)
    gone.append(manual_old)
    # A row a lease points at (its holder may still write it).
    leased = ledger_row(REPORT, days(405), Status.ABANDONED, slot=False)
    JobLease.objects.create(group=REPORT, holder="", run=leased)

    # The audit trail and the cube measurements: by age alone.
    old_action = JobAction.objects.create(job=CLEANUP, action="pause", actor="ops", reason="old")
    JobAction.objects.filter(pk=old_action.pk).update(created_at=timezone.now() - days(401))
    young_action = JobAction.objects.create(job=CLEANUP, action="resume", actor="ops", reason="y")
    JobAction.objects.filter(pk=young_action.pk).update(created_at=timezone.now() - days(399))
    for age in (500, 10):
        CubeMeasurement.objects.create(
            measured_at=timezone.now() - days(age), object_count=1, total_bytes=1
        )

    report = history.prune(400, batch=2)

    kept = {last_failure, last_success, still_running, *recent, latest_slot, leased}
    assert set(JobRun.objects.all()) == kept
    assert not JobRun.objects.filter(pk__in=[r.pk for r in gone]).exists()
    assert report.runs_deleted == len(gone)
    assert report.kept_old == 5  # failure, success, running, latest slot, leased
    assert report.batches > len(gone) // 2  # two ids a batch
    assert set(CleanupRun.objects.all()) == {kept_books, orphan_new}
    assert not CleanupRun.objects.filter(pk__in=[b.pk for b in gone_books + [orphan_old]]).exists()
    assert report.followers_deleted == {
        "viral_clips.CleanupRun": len(gone_books) + 1,
        "scheduling.RunStop": 1,
        "scheduling.JobAction": 1,
        "viral_clips.CubeMeasurement": 1,
    }
    assert list(JobAction.objects.all()) == [young_action]
    assert CubeMeasurement.objects.get().measured_at > report.cutoff
    assert not RunStop.objects.exists()
    # Nothing left pointing at a deleted run.
    assert not CleanupRun.objects.filter(
        job_run__isnull=True, started_at__lt=report.cutoff
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_pruning_a_stopped_run_keeps_its_young_audit_row_with_the_run_cleared():
    # An operator stopped a run now older than the retention: the Stop wrote a
    # RunStop (goes with the run) and a JobAction pointing at the run. The
    # audit row is kept while younger than the retention, its run link cleared.
    # transaction=True: the prune's own transaction commits, so a foreign key
    # left pointing at a deleted run fails here (deferred checks run at COMMIT).
    ledger_row(CLEANUP, days(1), Status.SUCCEEDED)  # last success and slot
    stopped = [ledger_row(CLEANUP, days(450 - i), Status.INTERRUPTED) for i in range(2)]
    young, old = (
        JobAction.objects.create(job=CLEANUP, action="stop", actor="ops", reason=r, run=run)
        for r, run in (("young", stopped[0]), ("old", stopped[1]))
    )
    RunStop.objects.create(
        run=stopped[0], requested_at=stopped[0].created_at, requested_by="ops", reason="young"
    )
    JobAction.objects.filter(pk=young.pk).update(created_at=timezone.now() - days(399))
    JobAction.objects.filter(pk=old.pk).update(created_at=timezone.now() - days(401))

    report = history.prune(400, batch=1)

    assert report.runs_deleted == 2
    assert not JobRun.objects.filter(pk__in=[r.pk for r in stopped]).exists()
    assert not RunStop.objects.exists()
    kept = JobAction.objects.get()
    assert (kept.pk, kept.run_id, kept.reason) == (young.pk, None, "young")
    assert report.followers_deleted["scheduling.JobAction"] == 1
    # The next nightly prune has nothing left to trip on.
    assert history.prune(400).runs_deleted == 0


@pytest.mark.django_db
def test_rows_inside_the_catch_up_window_are_kept_whatever_the_retention():
    job = registry.get(CLEANUP)
    assert job.catch_up == timedelta(hours=23)
    inside = ledger_row(CLEANUP, timedelta(hours=20), Status.SKIPPED)
    outside = ledger_row(CLEANUP, timedelta(hours=30), Status.SKIPPED)
    ledger_row(CLEANUP, timedelta(hours=1), Status.SUCCEEDED)  # last success and slot

    history.prune(0)  # a retention of nothing at all

    assert JobRun.objects.filter(pk=inside.pk).exists()
    assert not JobRun.objects.filter(pk=outside.pk).exists()


@pytest.mark.django_db
def test_the_prune_job_runs_through_the_guard_and_the_ledger(settings):
    settings.RUN_HISTORY_DAYS = 400
    old = ledger_row(CLEANUP, days(500), Status.SKIPPED)
    ledger_row(CLEANUP, days(1), Status.SUCCEEDED)

    result = prune_run_history.apply(kwargs={"days": 400}).get()

    assert result["status"] == "succeeded" and result["runs_deleted"] == 1
    assert not JobRun.objects.filter(pk=old.pk).exists()
    own = JobRun.objects.get(job="prune-run-history")
    assert own.status == Status.SUCCEEDED
    job = registry.get("prune-run-history")
    assert job.beat_kwargs() == {"days": 400}
