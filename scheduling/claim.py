"""Whether a delivery runs: a new execution, a resumed one, or a refusal.

The slot claim is a `JobRun` row per (job, slot), unique unless `skipped`
(scheduling/models.py, where the run states are described); the lease says
who runs the overlap group now (scheduling/lease.py). Concurrent deliveries
race on the unique row and on the lease's conditional UPDATE: the loser looks
again and finds the winner, so a slot never executes twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from scheduling import controls, lease, ledger
from scheduling.db import db_retry
from scheduling.execution import Execution
from scheduling.models import JobRun
from scheduling.registry import OVERLAP_DEFER, Job

logger = logging.getLogger(__name__)

Status = JobRun.Status
Trigger = JobRun.Trigger
_ATTEMPTS = 4


@dataclass
class Refusal:
    """A delivery that does not run now: recorded `skipped` or `deferred`."""

    status: str  # Status.SKIPPED or Status.DEFERRED
    reason: str
    run: JobRun

    def as_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "job_run_id": self.run.pk}


def claim(
    job: Job, *, trigger: str, slot: datetime | None = None, task_id: str = ""
) -> Execution | Refusal:
    """Decide whether this delivery runs, and record it.

    * a slot whose row is final is refused `skipped` ("already ran"), as is one
      whose run is live (row `running`, lease renewed);
    * a row `abandoned`, `interrupted`, `deferred` or `queued` is taken over
      (a new token, `attempt` + 1) and resumed;
    * a new scheduled slot due while its overlap group is busy is `deferred`
      (overlap "defer") or `skipped` (overlap "skip"); a manual or command run
      is refused then;
    * a scheduled or catch-up slot of a paused job is `skipped` ("paused (…)");
      a row an operator stopped is never taken over (scheduling/controls.py).
    """
    if trigger not in Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; one of {Trigger.values}")
    for _ in range(_ATTEMPTS):
        outcome = db_retry(
            lambda: _claim_once(job, trigger, slot, task_id), what=f"{job.entry}: claim"
        )
        if outcome is not None:
            return outcome
    raise RuntimeError(f"{job.entry}: could not claim {slot or task_id} (too much contention)")


def _claim_once(
    job: Job, trigger: str, slot: datetime | None, task_id: str
) -> Execution | Refusal | None:
    lease.ensure(job)
    ledger.mark_abandoned(job.entry)
    existing = _existing_row(job, slot, task_id)
    if slot is not None and trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
        paused = controls.pause_state(job.entry)
        if paused.paused and (existing is None or existing.status in JobRun.RESUMABLE):
            return _skip_paused(job, trigger, slot, task_id, existing, paused.describe())
    if existing is None:
        return _claim_new(job, trigger, slot, task_id)
    return _claim_existing(job, existing, trigger, slot, task_id)


def _existing_row(job: Job, slot: datetime | None, task_id: str) -> JobRun | None:
    rows = JobRun.objects.filter(job=job.entry).exclude(status=Status.SKIPPED)
    if slot is not None:
        return rows.filter(slot=slot).first()
    if task_id:
        # A manual run's redelivery (same task id): resume it, never run it twice.
        return rows.filter(slot=None, task_id=task_id).order_by("-pk").first()
    return None  # a command run: always a new execution


def _new_row(job: Job, status: str, trigger: str, slot, task_id: str, token: str, **extra):
    """Insert the slot's one non-skipped row; None if another delivery won it."""
    try:
        with transaction.atomic():
            return JobRun.objects.create(
                job=job.entry,
                slot=slot,
                trigger=trigger,
                task_id=task_id,
                status=status,
                token=token,
                dyno=settings.DYNO,
                **extra,
            )
    except IntegrityError:
        return None


def _claim_new(job: Job, trigger: str, slot: datetime | None, task_id: str):
    token = uuid.uuid4().hex
    now = timezone.now()
    if lease.take(job, token, None):
        run = _new_row(
            job,
            Status.RUNNING,
            trigger,
            slot,
            task_id,
            token,
            started_at=now,
            last_progress_at=now,
            lease_expires_at=now + timedelta(seconds=job.lease_seconds),
        )
        if run is None:
            lease.free(job, token)
            return None  # another delivery of this slot won the row: look again
        lease.link(job, token, run)
        return Execution(job, run, token)

    busy = _describe(ledger.active_run(job.group))
    if slot is not None and job.overlap == OVERLAP_DEFER:
        reason = f"deferred: {busy}; runs once it ends"
        run = _new_row(job, Status.DEFERRED, trigger, slot, task_id, token, detail=reason)
        return None if run is None else Refusal(Status.DEFERRED, reason, run)
    return _skip(job, trigger, slot, task_id, f"refused: {busy}")


def _claim_existing(job: Job, row: JobRun, trigger: str, slot: datetime | None, task_id: str):
    what = f"slot {slot.isoformat()}" if slot else f"task {task_id}"
    if row.status in JobRun.FINAL:
        return _skip(
            job, trigger, slot, task_id, f"{what} already ran (run #{row.pk}, {row.status})"
        )
    if row.status == Status.INTERRUPTED and (order := controls.stop_order(row.pk)):
        return _skip(job, trigger, slot, task_id, f"{what} (run #{row.pk}) was {order.describe()}")
    if row.status == Status.RUNNING:
        return _skip(
            job,
            trigger,
            slot,
            task_id,
            f"refused: {what} is being run by a live execution"
            f" (run #{row.pk}, attempt {row.attempt}, {row.dyno or 'unknown dyno'})",
        )
    # queued / deferred / interrupted / abandoned: this delivery takes it over.
    token = uuid.uuid4().hex
    if not lease.take(job, token, None, previous=row.token):
        busy = _describe(ledger.active_run(job.group))
        if slot is not None and job.overlap == OVERLAP_DEFER:
            reason = f"deferred: {busy}; runs once it ends"
            JobRun.objects.filter(pk=row.pk, token=row.token).update(
                status=Status.DEFERRED, detail=reason
            )
            row.refresh_from_db()
            return Refusal(Status.DEFERRED, reason, row)
        return _skip(job, trigger, slot, task_id, f"refused: {busy}")
    now = timezone.now()
    taken = JobRun.objects.filter(pk=row.pk, token=row.token, status=row.status).update(
        token=token,
        attempt=F("attempt") + 1,
        status=Status.RUNNING,
        task_id=task_id or row.task_id,
        dyno=settings.DYNO,
        started_at=row.started_at or now,
        last_progress_at=now,
        lease_expires_at=now + timedelta(seconds=job.lease_seconds),
        detail=f"resumed after {row.status} (attempt {row.attempt + 1})"
        if row.status not in (Status.DEFERRED, Status.QUEUED)
        else "",
    )
    if taken != 1:
        lease.free(job, token)
        return None  # another delivery took it over first: look again
    lease.link(job, token, row)
    row.refresh_from_db()
    resumed = row.attempt > 1 and row.detail.startswith("resumed")
    if resumed:
        logger.warning("%s: %s taken over and resumed (run #%s)", job.entry, what, row.pk)
    return Execution(job, row, token, resumed=resumed)


def _skip(job: Job, trigger: str, slot: datetime | None, task_id: str, reason: str) -> Refusal:
    run = JobRun.objects.create(
        job=job.entry,
        slot=slot,
        trigger=trigger,
        task_id=task_id,
        status=Status.SKIPPED,
        dyno=settings.DYNO,
        detail=reason[:2000],
        finished_at=timezone.now(),
    )
    logger.warning("%s: %s (ledger row #%s)", job.entry, reason, run.pk)
    return Refusal(Status.SKIPPED, reason, run)


def _skip_paused(
    job: Job, trigger: str, slot: datetime, task_id: str, row: JobRun | None, reason: str
) -> Refusal | None:
    """A slot of a paused job: recorded `skipped` with the reason `paused (…)`.
    A row of it still waiting (deferred, interrupted, …) becomes that skipped
    row, so that nothing resumes it after the pause."""
    if row is None:
        return _skip(job, trigger, slot, task_id, reason)
    changed = JobRun.objects.filter(pk=row.pk, token=row.token, status=row.status).update(
        status=Status.SKIPPED, detail=reason[:2000], finished_at=timezone.now(), token=""
    )
    if changed != 1:
        return None  # taken over meanwhile: look again
    row.refresh_from_db()
    logger.warning("%s: %s (ledger row #%s)", job.entry, reason, row.pk)
    return Refusal(Status.SKIPPED, reason, row)


def _describe(run: JobRun | None) -> str:
    if run is None:
        return "another run of this job's group is active"
    kind = f"{run.job} {run.trigger or ''}".strip()
    return f"another run is active ({kind}, run #{run.pk})" if run.pk else f"{kind} is starting"
