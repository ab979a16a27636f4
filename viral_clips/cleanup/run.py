"""One cleanup run, from its record to its outcome.

`run_cleanup` lists every scope a page at a time, hands expired keys to the
delete pipeline, reconciles Clip rows, and records the run. Whoever runs it
(the task's guarded execution, the command, a test) passes a `RunContext`:
progress (renews the job's lease), should_stop, fence, and the ledger row.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from scheduling.db import db_retry
from scheduling.execution import LeaseLost
from scheduling.models import JobRun
from scheduling.shutdown import StopRequested
from viral_clips import s3
from viral_clips.cleanup.books import (
    Books,
    CleanupReport,
    LevelReconciler,
    Reconciler,
    start_run,
)
from viral_clips.cleanup.errors import (
    CleanupBookkeepingFailed,
    InvalidRetention,
)
from viral_clips.cleanup.pipeline import DeletePipeline
from viral_clips.cleanup.scope import (
    Listed,
    ParallelListing,
    cleanup_scopes,
    plan_listing,
    split_depth,
    storage_prefix,
)
from viral_clips.models import CleanupRun

logger = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 3650  # beyond ten years is a typo, not a policy


class RunContext(Protocol):
    """What a run needs from whoever runs it; scheduling's `Execution` is one."""

    run: JobRun | None  # the ledger row this run belongs to (None: not guarded)

    @property
    def task_id(self) -> str: ...

    def progress(self, scanned: int, deleted: int) -> None: ...

    def should_stop(self) -> bool: ...

    def fence(self) -> None:
        """Raise LeaseLost if another execution took this run over."""


@dataclass
class Standalone:
    """A run outside the guard (the Django shell, a benchmark): no ledger row,
    never told to stop. A `task_id` still resumes that task's unfinished run."""

    task_id: str = ""
    run: JobRun | None = None

    def progress(self, scanned: int, deleted: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def fence(self) -> None:
        pass


def validate_retention_days(value: object) -> int:
    """A whole number of days, at least 1: a misconfiguration must not wipe the cube."""
    if isinstance(value, bool):
        raise InvalidRetention(f"retention_days must be a whole number of days, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise InvalidRetention(f"retention_days must be a whole number of days, got {value!r}")
    if value < 1:
        raise InvalidRetention(
            f"retention_days must be at least 1 (got {value}); 0 or less would delete every file"
        )
    if value > MAX_RETENTION_DAYS:
        raise InvalidRetention(f"retention_days must be at most {MAX_RETENTION_DAYS} (got {value})")
    return value


def default_retention_days() -> int:
    """CLEANUP_RETENTION_DAYS: the retention of every run that is not given one."""
    return validate_retention_days(settings.CLEANUP_RETENTION_DAYS)


def retention_or_default(value: object | None) -> int:
    """`value` validated, or the default retention when it is None."""
    return default_retention_days() if value is None else validate_retention_days(value)


def run_cleanup(
    retention_days: object,
    *,
    dry_run: bool = False,
    trigger: str = CleanupRun.Trigger.SCHEDULE,
    context: RunContext | None = None,
) -> CleanupReport:
    """Delete (or, in a dry run, count) the scopes' expired files and record the run.

    Raises InvalidRetention before anything is listed or recorded. When the
    context asks to stop, nothing new is sent, the batches in flight finish
    and are counted, and CleanupInterrupted is raised. Any other exception
    marks the run `failed` and is re-raised.
    """
    retention_days = validate_retention_days(retention_days)
    if trigger not in CleanupRun.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; one of {CleanupRun.Trigger.values}")
    context = context or Standalone()
    scopes = cleanup_scopes()
    client = s3.cloudcube_client(compact_listing=True)
    cube = settings.CLOUDCUBE
    job_run = context.run
    run = db_retry(
        lambda: start_run(
            retention_days=retention_days,
            dry_run=dry_run,
            trigger=trigger,
            task_id=context.task_id,
            slot=job_run.slot if job_run is not None else None,
            job_run=job_run,
        ),
        what="starting the cleanup run record",
    )
    report = CleanupReport(
        run_id=run.pk,
        status=CleanupRun.Status.RUNNING,
        trigger=trigger,
        retention_days=retention_days,
        dry_run=dry_run,
        cube=cube.cube,
        # A resumed run keeps what its first attempt deleted: those keys are
        # gone and the new listing will not see them again.
        objects_scanned=run.files_deleted,
        bytes_scanned=run.bytes_freed,
        files_deleted=run.files_deleted,
        bytes_freed=run.bytes_freed,
        rows_reconciled=run.rows_reconciled,
        scopes=[scope[len(cube.prefix) :] for scope in scopes],
    )
    cutoff = timezone.now() - timedelta(days=retention_days)
    books = Books(run, report)
    pipeline = DeletePipeline(
        client=client,
        bucket=cube.bucket,
        dry_run=dry_run,
        cutoff=cutoff,
        books=books,
        window=settings.CLEANUP_DELETES_IN_FLIGHT,
        rate=settings.CLEANUP_DELETE_RATE,
        concurrency=settings.CLEANUP_DELETE_CONCURRENCY,
        progress=context.progress,
        should_stop=context.should_stop,
    )
    try:
        with pipeline:
            try:
                _scan(client, cube.bucket, scopes, cutoff, pipeline, books, context)
                pipeline.flush()
            finally:
                # Every batch sent is accounted for, whatever happened next.
                pipeline.drain()
                report.delete_throttles = pipeline.throttles
        context.fence()
    except LeaseLost:
        raise  # another execution runs this CleanupRun now: leave it to it
    except StopRequested as exc:
        run.status = CleanupRun.Status.INTERRUPTED
        detail = "interrupted between batches; resumes on redelivery"
        # An operator's Stop (scheduling/controls.py) says who, and is final.
        stopped = getattr(context, "stop_detail", None)
        stopped = stopped() if stopped is not None else None
        if stopped:
            detail = f"interrupted between batches, {stopped}"
        elif isinstance(exc, CleanupBookkeepingFailed):
            detail = f"{exc}; resumes on redelivery"
        try:
            books.save(detail=detail, final=bool(stopped))
        except CleanupBookkeepingFailed:
            logger.warning("Cloudcube cleanup run #%s: could not save its counts", run.pk)
        raise
    except Exception as exc:
        report.status = CleanupRun.Status.FAILED
        books.finish(detail=f"{type(exc).__name__}: {exc}")
        raise

    if report.error_count == 0:
        report.status = CleanupRun.Status.SUCCEEDED
    elif report.files_deleted > 0:
        report.status = CleanupRun.Status.PARTIAL
    else:
        report.status = CleanupRun.Status.FAILED
    detail = f"{report.error_count} key(s) could not be deleted" if report.error_count else ""
    books.finish(detail=detail)
    return report


def _scan(
    client,
    bucket: str,
    scopes: list[str],
    cutoff: datetime,
    pipeline: DeletePipeline,
    books: Books,
    context: RunContext,
) -> None:
    """List every scope (its folders in parallel), queueing expired keys and reconciling rows."""
    report = books.report
    sp = storage_prefix()
    concurrency = settings.CLEANUP_LIST_CONCURRENCY

    def take(page: list[Listed], wait: bool = True) -> None:
        report.objects_scanned += len(page)
        report.bytes_scanned += sum(size for _, size, _ in page)
        expired = [(key, size) for key, size, modified in page if modified < cutoff]
        report.clips_retained += len(page) - len(expired)
        pipeline.add(expired, wait=wait)
        context.progress(report.objects_scanned, report.files_deleted)
        pipeline.check_stop()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cleanup-list") as pool:
        for scope in scopes:
            reconciles = scope.startswith(sp)
            depth = split_depth(scope) if concurrency > 1 else 0
            plan = plan_listing(client, bucket, scope, depth=depth, pool=pool)
            first = Reconciler(scope, sp, cutoff, books) if reconciles else None
            if first is not None:
                first.page([key for key, _, _ in plan.first])
                if plan.complete:
                    first.finish()
            take(plan.first)
            for level in plan.levels:
                if reconciles:
                    LevelReconciler(
                        level.prefix, level.folders, sp, cutoff, books, skip_upto=plan.after
                    ).level([key for key, _, _ in level.direct])
                take(level.direct)
            chains: dict[str, Reconciler | None] = {}
            for chain, after in plan.chains:
                chains[chain] = Reconciler(chain, sp, cutoff, books) if reconciles else None
                if chains[chain] is not None:
                    chains[chain].after = after[len(sp) :] if after else None
            listing = ParallelListing(client, bucket, plan.chains, pool, concurrency)
            # A chain whose folder's deletes lag is held back; the others go on.
            pages = listing.pages(hold=pipeline.backlogged, idle=pipeline.idle)
            pipeline.wake = listing.wake
            try:
                for chain, page in pages:
                    reconciler = chains[chain]
                    if page is None:
                        if reconciler is not None:
                            reconciler.finish()
                        continue
                    if reconciler is not None:
                        reconciler.listed(page)
                    take(page, wait=False)
            finally:
                pipeline.wake = None
                pages.close()
