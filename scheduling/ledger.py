"""Questions asked of the run ledger (scheduling.models.JobRun): for catch-up,
beat_status, the dashboard and /health/. Writes belong to scheduling/claim.py
and scheduling/execution.py, except `mark_abandoned`, the one transition anyone
may make.

Public API (stable: add, don't rename): `slot_recorded`, `slot_executed`,
`last_run`, `active_run`, `latest_slot_rows`, `resumable_rows`, `last_outcome`,
`mark_abandoned`, `lapsed`, `runs_abandoned` (signal).
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from scheduling.models import JobLease, JobRun

Status = JobRun.Status

# Sent with `run_ids` (JobRun pks) after `mark_abandoned` changed them, so a
# job's own records (the cleanup's CleanupRun) can say so too.
runs_abandoned = Signal()


def slot_recorded(job: str, slot: datetime) -> bool:
    """Whether the ledger has any row for this slot (executed, running,
    deferred, or skipped by the job's overlap policy): catch-up must not
    dispatch it again."""
    return JobRun.objects.filter(job=job, slot=slot).exists()


def slot_executed(job: str, slot: datetime) -> bool:
    """Whether the slot has its one non-skipped row (it ran, runs, or waits to)."""
    return JobRun.objects.filter(job=job, slot=slot).exclude(status=Status.SKIPPED).exists()


def last_run(job: str, *, scheduled_only: bool = False) -> JobRun | None:
    """The job's latest execution (skipped deliveries left out), newest first."""
    runs = JobRun.objects.filter(job=job).exclude(status=Status.SKIPPED)
    if scheduled_only:
        runs = runs.filter(slot__isnull=False)
    return runs.order_by("-created_at", "-pk").first()


def active_run(group: str) -> JobRun | None:
    """The run holding the overlap group's lease right now (lease not lapsed), or None."""
    now = timezone.now()
    lease = (
        JobLease.objects.filter(group=group, expires_at__gte=now)
        .exclude(holder="")
        .select_related("run")
        .first()
    )
    if lease is None:
        return None
    if lease.run is not None and lease.run.token == lease.holder:
        return lease.run
    # Taken a moment ago, its row not linked yet: still a fact that it runs.
    return JobRun.objects.filter(token=lease.holder).first() or JobRun(
        job=group, status=Status.RUNNING, token=lease.holder, started_at=lease.acquired_at
    )


def latest_slot_rows(job: str, n: int = 10) -> list[JobRun]:
    """The job's `n` latest scheduled rows (any status), newest slot first."""
    return list(JobRun.objects.filter(job=job, slot__isnull=False).order_by("-slot", "-pk")[:n])


def lapsed(now: datetime | None = None) -> Q:
    """Rows that say `running` but whose lease ran out: nobody renews them."""
    now = now or timezone.now()
    return Q(status=Status.RUNNING) & (Q(lease_expires_at__lt=now) | Q(lease_expires_at=None))


def mark_abandoned(job: str | None = None, now: datetime | None = None) -> int:
    """Mark `running` rows with a lapsed lease `abandoned` (by whoever finds
    them: the guard, the status code). Their redelivery still resumes them.
    Returns how many rows changed."""
    now = now or timezone.now()
    rows = JobRun.objects.filter(lapsed(now))
    if job is not None:
        rows = rows.filter(job=job)
    ids = list(rows.values_list("pk", flat=True)[:100])
    if not ids:
        return 0
    changed = (
        JobRun.objects.filter(pk__in=ids)
        .filter(lapsed(now))
        .update(
            status=Status.ABANDONED,
            detail="lease lapsed without renewal (worker died or hung); resumes on redelivery",
        )
    )
    if changed:
        runs_abandoned.send(sender=JobRun, run_ids=ids)
    return changed


def resumable_rows(job: str, since: datetime) -> list[JobRun]:
    """Scheduled rows from `since` on that are claimed but not done (deferred,
    interrupted, abandoned, queued): their message may have vanished with
    Redis, so catch-up should send each slot again (the guard resumes it)."""
    return list(
        JobRun.objects.filter(job=job, slot__gte=since, status__in=JobRun.RESUMABLE).order_by(
            "slot"
        )
    )


def last_outcome(job: str) -> str | None:
    """The status of the job's latest scheduled run that has ended (for status lines)."""
    ended = (*JobRun.FINAL, Status.INTERRUPTED, Status.ABANDONED)
    return (
        JobRun.objects.filter(job=job, slot__isnull=False, status__in=ended)
        .order_by("-slot", "-pk")
        .values_list("status", flat=True)
        .first()
    )
