"""The Cloudcube cleanup: delete clip files older than the retention period.

Safe: only keys under ``<cube>/`` (with the slash, so a sibling cube ``<cube>2/``
is never listed), never a pinned clip's file, never a file younger than the
retention period or belonging to a clip created within it.
Fast and flat in memory: ListObjectsV2 pages of 1,000 keys are streamed, and
expired keys are deleted with DeleteObjects in batches of up to 1,000 (S3's
limits), so at most one page and one batch are held at a time.
Honest: every run is a CleanupRun row, written at the start and completed at
the end, also when the run fails; per-key delete errors are counted and sampled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from scheduling.guard import Execution, LeaseLost
from scheduling.ledger import runs_abandoned
from scheduling.models import JobRun
from scheduling.shutdown import StopRequested
from viral_clips.models import CleanupRun, Clip

logger = logging.getLogger(__name__)

S3_MAX_KEYS_PER_PAGE = 1000  # ListObjectsV2 returns at most this many keys a page
S3_MAX_KEYS_PER_DELETE = 1000  # DeleteObjects accepts at most this many keys
MAX_RETENTION_DAYS = 3650  # beyond ten years is a typo, not a policy
ERROR_SAMPLE_SIZE = 20  # per-key errors kept in the run record (all are counted)
_DB_CHUNK = 500  # keys per IN (...) query, under SQLite's variable limit


class InvalidRetention(ValueError):
    """retention_days is not a whole number between 1 and MAX_RETENTION_DAYS."""


class CleanupInterrupted(StopRequested):
    """The run stopped between batches because the worker is shutting down.

    Its CleanupRun (and ledger row) say `interrupted`; a redelivered task
    resumes it (listing again is idempotent: deleted keys are simply gone).
    """

    def __init__(self, run_id: int):
        super().__init__(f"cleanup run {run_id} interrupted between batches")
        self.run_id = run_id


@dataclass
class CleanupReport:
    run_id: int
    status: str
    trigger: str
    retention_days: int
    dry_run: bool
    cube: str
    objects_scanned: int = 0
    bytes_scanned: int = 0  # the cube's size when the run started
    files_deleted: int = 0  # in a dry run: files a real run would delete
    bytes_freed: int = 0
    clips_retained: int = 0
    pinned_kept: int = 0
    error_count: int = 0
    errors: list[dict] = field(default_factory=list)  # a sample, see error_count

    @property
    def mb_freed(self) -> float:
        return self.bytes_freed / (1024 * 1024)

    def as_dict(self) -> dict:
        return asdict(self)


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


def run_cleanup(
    retention_days: object,
    dry_run: bool = False,
    trigger: str = CleanupRun.Trigger.SCHEDULE,
    *,
    task_id: str = "",
    scheduled_for: datetime | None = None,
    client=None,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    job_run: JobRun | None = None,
    fence: Callable[[], None] | None = None,
) -> CleanupReport:
    """Delete (or, in a dry run, count) the cube's expired files and record the run.

    Raises InvalidRetention before anything is listed or recorded. Any other
    exception marks the run `failed` and is re-raised. `progress(scanned,
    deleted)` is called after every page; `should_stop()` is checked between
    batches and raises CleanupInterrupted when it answers True. `job_run`:
    the ledger row this run belongs to (a resumed execution finds its
    CleanupRun through it). `fence()` is called before the outcome is written
    and raises LeaseLost when another execution took the run over.
    """
    retention_days = validate_retention_days(retention_days)
    if trigger not in CleanupRun.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; one of {CleanupRun.Trigger.values}")
    if client is None:
        from viral_clips.s3 import cloudcube_client

        client = cloudcube_client()

    cube = settings.CLOUDCUBE
    run = _start_run(retention_days, dry_run, trigger, task_id, scheduled_for, cube.cube, job_run)
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
    )
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    try:
        pending: list[tuple[str, int]] = []
        for page in _list_pages(client, cube.bucket, cube.prefix):
            report.objects_scanned += len(page)
            report.bytes_scanned += sum(size for _, size, _ in page)
            expired = [(key, size) for key, size, modified in page if modified < cutoff]
            deletable = _drop_protected(expired, cube.public_prefix, cutoff)
            report.pinned_kept += len(expired) - len(deletable)
            report.clips_retained += len(page) - len(deletable)
            pending.extend(deletable)
            while len(pending) >= S3_MAX_KEYS_PER_DELETE:
                batch = pending[:S3_MAX_KEYS_PER_DELETE]
                del pending[:S3_MAX_KEYS_PER_DELETE]
                _delete_batch(client, cube.bucket, cube.public_prefix, batch, dry_run, report)
                _checkpoint(run, report, should_stop)
            if progress:
                progress(report.objects_scanned, report.files_deleted)
        if pending:
            _delete_batch(client, cube.bucket, cube.public_prefix, pending, dry_run, report)
            if progress:
                progress(report.objects_scanned, report.files_deleted)
        if fence:
            fence()
    except LeaseLost:
        raise  # another execution runs this CleanupRun now: leave it to it
    except StopRequested:
        run.status = CleanupRun.Status.INTERRUPTED
        _save_counts(run, report, detail="interrupted between batches; resumes on redelivery")
        raise
    except Exception as exc:
        report.status = CleanupRun.Status.FAILED
        _finish_run(run, report, detail=f"{type(exc).__name__}: {exc}")
        raise

    if report.error_count == 0:
        report.status = CleanupRun.Status.SUCCEEDED
    elif report.files_deleted > 0:
        report.status = CleanupRun.Status.PARTIAL
    else:
        report.status = CleanupRun.Status.FAILED
    detail = f"{report.error_count} key(s) could not be deleted" if report.error_count else ""
    _finish_run(run, report, detail=detail)
    return report


def run_guarded_cleanup(
    execution: Execution, retention_days: object, *, dry_run: bool, trigger: str
) -> CleanupReport:
    """The cleanup as its task runs it: the guarded execution's progress
    (lease renewal), stop flag and ledger row wired in."""
    return run_cleanup(
        retention_days,
        dry_run=dry_run,
        trigger=trigger,
        task_id=execution.run.task_id,
        scheduled_for=execution.slot,
        should_stop=execution.should_stop,
        progress=execution.progress,
        job_run=execution.run,
        fence=execution.renew,
    )


def _start_run(
    retention_days: int,
    dry_run: bool,
    trigger: str,
    task_id: str,
    scheduled_for: datetime | None,
    cube: str,
    job_run: JobRun | None = None,
) -> CleanupRun:
    resumed = None
    if job_run is not None:
        # A redelivery that took the ledger row over resumes its CleanupRun.
        resumed = CleanupRun.objects.filter(job_run=job_run).order_by("-pk").first()
    elif task_id:
        # Without a ledger row (called directly): the same task id resumes
        # its own unfinished run instead of leaving a half-recorded one behind.
        resumed = (
            CleanupRun.objects.filter(task_id=task_id, status__in=_UNFINISHED)
            .order_by("-pk")
            .first()
        )
    if resumed is not None:
        if resumed.status != CleanupRun.Status.RUNNING:
            resumed.status = CleanupRun.Status.RUNNING
            resumed.save(update_fields=["status"])
        return resumed
    return CleanupRun.objects.create(
        trigger=trigger,
        retention_days=retention_days,
        dry_run=dry_run,
        cube=cube,
        task_id=task_id,
        scheduled_for=scheduled_for,
        host=settings.DYNO,
        job_run=job_run,
    )


_UNFINISHED = (
    CleanupRun.Status.RUNNING,
    CleanupRun.Status.INTERRUPTED,
    CleanupRun.Status.ABANDONED,
)


def _list_pages(client, bucket: str, prefix: str) -> Iterator[list[tuple[str, int, datetime]]]:
    """Yield the cube's objects a page at a time as (key, size, last_modified)."""
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=bucket,
        Prefix=prefix,
        PaginationConfig={"PageSize": S3_MAX_KEYS_PER_PAGE},
    )
    for page in pages:
        yield [
            (obj["Key"], obj.get("Size", 0), obj["LastModified"])
            for obj in page.get("Contents", ())
            # The prefix already guarantees this; a server that ignores it
            # must not make us touch another customer's keys.
            if obj["Key"].startswith(prefix)
        ]


def _drop_protected(
    expired: list[tuple[str, int]], public_prefix: str, cutoff: datetime
) -> list[tuple[str, int]]:
    """Remove keys whose clip is pinned or was created within the retention period.

    One query per chunk of up to 500 keys (so at most two a page), never one a key.
    """
    names = [key[len(public_prefix) :] for key, _ in expired if key.startswith(public_prefix)]
    protected: set[str] = set()
    for chunk in _chunks(names, _DB_CHUNK):
        protected.update(
            Clip.objects.filter(file__in=chunk)
            .filter(Q(pinned=True) | Q(created_at__gte=cutoff))
            .values_list("file", flat=True)
        )
    if not protected:
        return expired
    return [
        (key, size)
        for key, size in expired
        if not (key.startswith(public_prefix) and key[len(public_prefix) :] in protected)
    ]


def _delete_batch(
    client,
    bucket: str,
    public_prefix: str,
    batch: list[tuple[str, int]],
    dry_run: bool,
    report: CleanupReport,
) -> None:
    sizes = dict(batch)
    if dry_run:
        report.files_deleted += len(batch)
        report.bytes_freed += sum(sizes.values())
        return
    try:
        response = client.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": key} for key in sizes], "Quiet": True},
        )
        errors = response.get("Errors", [])
    except (ClientError, BotoCoreError) as exc:
        # The whole request failed even after botocore's retries: every key in
        # it is an error, and the next batch still gets its chance.
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        errors = [{"Key": key, "Code": code, "Message": str(exc)} for key in sizes]
    failed = {error["Key"] for error in errors}
    report.error_count += len(errors)
    for error in errors[: max(0, ERROR_SAMPLE_SIZE - len(report.errors))]:
        report.errors.append(
            {"key": error.get("Key"), "code": error.get("Code"), "message": error.get("Message")}
        )
    deleted = [key for key in sizes if key not in failed]
    report.files_deleted += len(deleted)
    report.bytes_freed += sum(sizes[key] for key in deleted)
    # The admin must never list a clip whose file is gone: remove those rows.
    names = [key[len(public_prefix) :] for key in deleted if key.startswith(public_prefix)]
    for chunk in _chunks(names, _DB_CHUNK):
        Clip.objects.filter(file__in=chunk, pinned=False).delete()
    if errors:
        logger.warning(
            "Cloudcube cleanup: %d of %d keys in a batch could not be deleted (first: %s %s)",
            len(errors),
            len(batch),
            errors[0].get("Code"),
            errors[0].get("Key"),
        )


def _checkpoint(
    run: CleanupRun, report: CleanupReport, should_stop: Callable[[], bool] | None
) -> None:
    """Between batches: save progress, and stop cleanly if the worker is shutting down."""
    _save_counts(run, report)
    if should_stop is not None and should_stop():
        raise CleanupInterrupted(run.pk)


_COUNT_FIELDS = (
    "objects_scanned",
    "bytes_scanned",
    "files_deleted",
    "bytes_freed",
    "clips_retained",
    "error_count",
)


def _save_counts(run: CleanupRun, report: CleanupReport, detail: str | None = None) -> None:
    for name in _COUNT_FIELDS:
        setattr(run, name, getattr(report, name))
    run.error_sample = report.errors
    fields = [*_COUNT_FIELDS, "error_sample", "status"]
    if detail is not None:
        run.detail = detail
        fields.append("detail")
    run.save(update_fields=fields)


def _finish_run(run: CleanupRun, report: CleanupReport, detail: str) -> None:
    run.status = report.status
    run.finished_at = timezone.now()
    for name in _COUNT_FIELDS:
        setattr(run, name, getattr(report, name))
    run.error_sample = report.errors
    run.detail = detail[:2000]
    run.save()


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _mark_cleanup_runs_abandoned(sender=None, run_ids: list[int] = (), **kwargs) -> None:
    """The ledger found executions whose worker died: their CleanupRun rows
    must not say `running` either (their redelivery sets them running again)."""
    CleanupRun.objects.filter(job_run_id__in=run_ids, status=CleanupRun.Status.RUNNING).update(
        status=CleanupRun.Status.ABANDONED,
        detail="its worker stopped renewing the lease; resumes on redelivery",
    )


runs_abandoned.connect(_mark_cleanup_runs_abandoned, dispatch_uid="koolclips-cleanup-abandoned")
