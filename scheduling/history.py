"""History retention: the run ledger is pruned, never emptied of what matters.

`prune(days)` deletes `JobRun` rows created more than `days` ago
(RUN_HISTORY_DAYS), with the rows that belong to them, in batches of
`BATCH` ids (memory stays flat however long the history). It never deletes,
per job (every job name in the ledger, registered or not):

* its last success, its last partial run and its last failure (the status
  lines, the dashboard and an operator at 02:05 ask "when did it last work?");
* its latest scheduled row (catch-up reads it: a job with no row is "new" and
  is not caught up, an interval's grid is anchored on it);
* any row inside the job's catch-up window (`Job.catch_up`), whatever
  RUN_HISTORY_DAYS says;
* a row that says `running` or that a lease points at (someone may still
  write it).

Rows that belong to a run (`follow_runs`: the cleanup's `CleanupRun`, linked by
`job_run`) go in the same transaction as their run, so none is left pointing at
nothing; such rows that never had a run are pruned by their own age. Tables
pruned by age alone (`prune_by_age`) lose only rows older than the retention:
the operators' audit trail (`JobAction`) and the cube measurements. An audit
row that names a pruned run (a Stop) stays while it is younger than the
retention, its `run` cleared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

from scheduling import registry
from scheduling.models import JobAction, JobLease, JobRun

logger = logging.getLogger(__name__)
Status = JobRun.Status

# Ids deleted per statement: small enough for SQLite's variable limit and a
# short lock, large enough that a year of minute runs is a few hundred batches.
BATCH = 1000
# Tables pruned by age alone (model label, datetime field).
AGED: list[tuple[str, str]] = [("scheduling.JobAction", "created_at")]


@dataclass(frozen=True)
class Follower:
    """A table whose rows belong to a JobRun: deleted with it."""

    label: str  # "viral_clips.CleanupRun"
    run_field: str  # its ForeignKey to JobRun
    age_field: str  # for its rows without a run

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.label)


_followers: list[Follower] = []


def follow_runs(label: str, *, run_field: str, age_field: str) -> None:
    """Declare a table whose rows are pruned with their JobRun (from the
    owning app's `ready()`, so scheduling/ never imports it)."""
    follower = Follower(label, run_field, age_field)
    if follower not in _followers:
        _followers.append(follower)


def prune_by_age(label: str, age_field: str) -> None:
    """Declare a table whose rows older than the retention are deleted (from
    the owning app's `ready()`)."""
    if (label, age_field) not in AGED:
        AGED.append((label, age_field))


# An operator's Stop order belongs to its run (a raw DELETE of the run would
# otherwise break its foreign key).
follow_runs("scheduling.RunStop", run_field="run", age_field="requested_at")


@dataclass
class PruneReport:
    cutoff: datetime
    runs_deleted: int = 0
    kept_old: int = 0  # rows older than the cutoff that a rule keeps
    followers_deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0

    def as_dict(self) -> dict:
        return {
            "status": "succeeded",
            "cutoff": self.cutoff.isoformat(),
            "runs_deleted": self.runs_deleted,
            "kept_old": self.kept_old,
            "followers_deleted": self.followers_deleted,
            "batches": self.batches,
        }


def kept_ids(job: str) -> set[int]:
    """The rows of `job` that are kept whatever their age (rules above)."""
    rows = JobRun.objects.filter(job=job)
    keep: set[int] = set()
    for status in (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED):
        last = rows.filter(status=status).order_by("-created_at", "-pk").values_list("pk").first()
        if last:
            keep.add(last[0])
    latest_slot = rows.filter(slot__isnull=False).order_by("-slot", "-pk").values_list("pk").first()
    if latest_slot:
        keep.add(latest_slot[0])
    keep.update(rows.filter(status=Status.RUNNING).values_list("pk", flat=True))
    keep.update(
        JobLease.objects.filter(run__job=job).exclude(run=None).values_list("run_id", flat=True)
    )
    return keep


def job_cutoff(job: str, cutoff: datetime, now: datetime) -> datetime:
    """The retention's cutoff, moved back to the start of the job's catch-up window."""
    try:
        catch_up = registry.get(job).catch_up
    except KeyError:
        return cutoff  # a job no longer declared: no window
    return min(cutoff, now - catch_up)


def prune(
    days: int,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    progress: Callable[[], None] | None = None,
) -> PruneReport:
    """Delete history older than `days` days (rules above). `progress` is
    called between batches (a job's `execution.progress`: renews its lease,
    stops at a shutdown; the next run simply goes on where this one stopped)."""
    now = now or timezone.now()
    report = PruneReport(cutoff=now - timedelta(days=days))
    report.followers_deleted = {f.label: 0 for f in _followers}
    for job in JobRun.objects.values_list("job", flat=True).distinct().order_by("job"):
        keep = kept_ids(job)
        old = JobRun.objects.filter(job=job, created_at__lt=job_cutoff(job, report.cutoff, now))
        last = 0
        while True:
            # Keyset, not "the first 1,000 again": PostgreSQL keeps deleted rows
            # as dead tuples until VACUUM, and each batch would walk them all.
            ids = list(
                old.exclude(pk__in=keep)
                .filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch]
            )
            if not ids:
                break
            last = ids[-1]
            with transaction.atomic():
                for follower in _followers:
                    deleted, _ = follower.model.objects.filter(
                        **{f"{follower.run_field}__in": ids}
                    ).delete()
                    report.followers_deleted[follower.label] += deleted
                report.runs_deleted += _delete_runs(ids)
            report.batches += 1
            if progress is not None:
                progress()
        report.kept_old += old.count()
    for follower in _followers:
        report.followers_deleted[follower.label] += _by_age(
            follower.model.objects.filter(**{f"{follower.run_field}__isnull": True}),
            follower.age_field,
            report,
            batch,
            progress,
        )
    for label, age_field in AGED:
        report.followers_deleted[label] = _by_age(
            apps.get_model(label).objects.all(), age_field, report, batch, progress
        )
    logger.info(
        "Run history pruned: %d runs older than %s deleted (%d old rows kept), %s",
        report.runs_deleted,
        report.cutoff.isoformat(),
        report.kept_old,
        report.followers_deleted,
    )
    return report


def _delete_runs(ids: list[int]) -> int:
    """One DELETE for the batch. Django's own delete() would load every row
    (its JSON state included) to find what points at it: 0.5 s a batch at half
    a million rows. What points at a run is known: the followers (deleted just
    before), a lease (never one of these rows; set free if it became one) and
    the audit trail (a Stop's `JobAction`: kept, pruned by its own age, its run
    link cleared here, in the batch's transaction)."""
    JobLease.objects.filter(run_id__in=ids).update(run=None)
    JobAction.objects.filter(run_id__in=ids).update(run=None)
    table = connection.ops.quote_name(JobRun._meta.db_table)
    column = connection.ops.quote_name(JobRun._meta.pk.column)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)  # noqa: S608
        return cursor.rowcount


def _by_age(rows, age_field: str, report: PruneReport, batch: int, progress) -> int:
    old = rows.filter(**{f"{age_field}__lt": report.cutoff})
    deleted, last = 0, 0
    while ids := list(old.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch]):
        last = ids[-1]
        deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
        report.batches += 1
        if progress is not None:
            progress()
    return deleted
