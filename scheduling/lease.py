"""The lease: who may run an overlap group right now (scheduling.models.JobLease).

Taken with a conditional UPDATE (rows affected == 1), which means the same on
SQLite (no select_for_update) and PostgreSQL: free, lapsed, or held by the run
being taken over. Its holder is an execution's token (fencing).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from scheduling.models import JobLease, JobRun
from scheduling.registry import Job


def ensure(job: Job) -> None:
    """The group's lease row exists (one per group, created on first use)."""
    JobLease.objects.get_or_create(group=job.group)


def take(job: Job, token: str, run: JobRun | None, *, previous: str = "") -> bool:
    """Hold the group's lease for `token` if it is free, lapsed, or `previous`'s."""
    now = timezone.now()
    free = Q(holder="") | Q(expires_at__lt=now) | Q(expires_at=None)
    if previous:
        free |= Q(holder=previous)
    return (
        JobLease.objects.filter(group=job.group)
        .filter(free)
        .update(
            holder=token,
            run=run,
            acquired_at=now,
            expires_at=now + timedelta(seconds=job.lease_seconds),
        )
        == 1
    )


def link(job: Job, token: str, run: JobRun) -> None:
    """Point the lease `token` holds at its ledger row (the row is written after the take)."""
    JobLease.objects.filter(group=job.group, holder=token).update(run=run)


def extend(job: Job, token: str) -> bool:
    """Renew the lease `token` holds; False if it holds none."""
    expires = timezone.now() + timedelta(seconds=job.lease_seconds)
    return bool(JobLease.objects.filter(group=job.group, holder=token).update(expires_at=expires))


def free(job: Job, token: str) -> int:
    """Let go of the lease if `token` holds it."""
    return JobLease.objects.filter(group=job.group, holder=token).update(
        holder="", expires_at=None, run=None
    )


def holder(job: Job) -> str:
    return JobLease.objects.filter(group=job.group).values_list("holder", flat=True).first() or "?"
