"""The Cloudcube cleanup: delete clip files older than the retention period.

Safe: only the cleanup's scopes are listed (`cleanup_scopes()`): the clips'
upload folder, derived from `Clip.file` (its storage location plus the static
part of `upload_to`: ``<cube>/public/clips/``), plus the cube-relative
folders in CLEANUP_PREFIXES. Nothing else in the cube is listed for deletion;
a sibling cube ``<cube>2/`` never is. A pinned clip's file, a file younger
than the retention period and the file of a clip created within it are never
deleted: protection is checked for exactly the keys of a DeleteObjects batch
right before that batch is sent, not when its page was listed.
Fast and flat in memory: ListObjectsV2 pages of 1,000 keys are streamed, one
scope at a time, and expired keys are deleted with DeleteObjects in batches of
up to 1,000 (S3's limits) by a few threads while the listing goes on. At most
`CLEANUP_DELETES_IN_FLIGHT` batches are in flight, plus one being filled; a
SlowDown answer halves that window, which then grows back one batch at a time.
Honest: every run is a CleanupRun row, written at the start and completed at
the end, also when the run fails; per-key delete errors are counted and
sampled. Bookkeeping writes survive a database blip (`scheduling.db.db_retry`);
when the database stays away the run ends interrupted and is re-queued.
Clip rows follow their files: they are deleted after their files, and every
run reconciles, removing old unpinned rows whose file is no longer listed.

Threads: only DeleteObjects runs on the pool's threads (boto3 clients are
thread-safe). Every database query stays on the calling thread, so there is
one connection, db_retry can replace it, and nothing leaks per thread. The
protection query for a batch runs once a delete slot is free, immediately
before the batch is handed to a thread that sends it at once: the gap between
the check and the request is a thread hand-off, not a page listing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Q
from django.db.models.functions import Collate
from django.utils import timezone

from scheduling.db import db_retry
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
WOULD_DELETE_SAMPLE_SIZE = 50  # keys a dry run shows it would delete (all are counted)
_DB_CHUNK = 500  # keys per IN (...) query, under SQLite's variable limit
_RECONCILE_CHUNK = 1000  # candidate rows fetched per reconcile query
# Error codes (and HTTP 503) meaning "send fewer requests".
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"}
)

T = TypeVar("T")


class InvalidRetention(ValueError):
    """retention_days is not a whole number between 1 and MAX_RETENTION_DAYS."""


class CleanupInterrupted(StopRequested):
    """The run stopped between batches because the worker is shutting down.

    Its CleanupRun (and ledger row) say `interrupted`; a redelivered task
    resumes it (listing again is idempotent: deleted keys are simply gone).
    """

    def __init__(self, run_id: int, message: str | None = None):
        super().__init__(message or f"cleanup run {run_id} interrupted between batches")
        self.run_id = run_id


class CleanupBookkeepingFailed(CleanupInterrupted):
    """The database could not record the run, even on fresh connections.

    Raised instead of carrying on unrecorded: the task re-queues it like a
    shutdown, and the redelivery (or the next run) finishes the work. Files
    already deleted stay deleted; rows left behind are reconciled next time.
    """

    def __init__(self, run_id: int, what: str, cause: BaseException):
        super().__init__(
            run_id,
            f"cleanup run {run_id} could not record {what}"
            f" ({type(cause).__name__}: {cause}); interrupted",
        )


@dataclass
class CleanupReport:
    run_id: int
    status: str
    trigger: str
    retention_days: int
    dry_run: bool
    cube: str
    objects_scanned: int = 0
    bytes_scanned: int = 0  # the scopes' size when the run started
    files_deleted: int = 0  # in a dry run: files a real run would delete
    bytes_freed: int = 0
    clips_retained: int = 0  # objects kept: recent, pinned or their clip recent
    pinned_kept: int = 0  # expired but kept: pinned, or their clip is recent
    error_count: int = 0
    rows_reconciled: int = 0  # Clip rows removed because their file was gone
    errors: list[dict] = field(default_factory=list)  # a sample, see error_count
    scopes: list[str] = field(default_factory=list)  # cube-relative, see cleanup_scopes()
    delete_throttles: int = 0  # SlowDown/503 answers to DeleteObjects (each halved the window)
    would_delete: list[str] = field(default_factory=list)  # a dry run's sample of keys

    @property
    def mb_freed(self) -> float:
        return self.bytes_freed / (1024 * 1024)

    @property
    def recent_kept(self) -> int:
        """Objects kept because they are younger than the retention period."""
        return self.clips_retained - self.pinned_kept

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


# --- scope --------------------------------------------------------------------
def storage_prefix() -> str:
    """Key prefix of the clips' storage: a Clip's key is this + `Clip.file.name`."""
    location = Clip._meta.get_field("file").storage.location.strip("/")
    return f"{location}/" if location else ""


def upload_prefix() -> str:
    """The static leading folder of `Clip.file`'s upload_to ("clips/%Y/%m/" -> "clips/")."""
    upload_to = Clip._meta.get_field("file").upload_to
    if callable(upload_to):
        raise ImproperlyConfigured(
            "Clip.file's upload_to is a callable: the cleanup cannot derive the clips' folder"
        )
    static = str(upload_to).split("%", 1)[0]
    return static[: static.rfind("/") + 1]


def cleanup_scopes() -> list[str]:
    """Full key prefixes the cleanup lists and may delete under, sorted.

    The clips' upload folder plus CLEANUP_PREFIXES, each inside the cube; a
    prefix inside another one is dropped so that no key is listed twice.
    """
    cube_prefix = settings.CLOUDCUBE.prefix
    scopes = [storage_prefix() + upload_prefix()]
    scopes += [cube_prefix + p for p in getattr(settings, "CLEANUP_PREFIXES", ())]
    for scope in scopes:
        if not scope.startswith(cube_prefix) or scope == cube_prefix:
            raise ImproperlyConfigured(
                f"cleanup scope {scope!r} is not a folder inside the cube {cube_prefix!r}"
            )
    kept: list[str] = []
    for scope in sorted(set(scopes)):
        # Sorted, a containing prefix comes right before what it contains.
        if not (kept and scope.startswith(kept[-1])):
            kept.append(scope)
    return kept


def cleanup_scope_labels() -> list[str]:
    """The scopes relative to the cube ("public/clips/"), for people to read."""
    cube_prefix = settings.CLOUDCUBE.prefix
    return [scope[len(cube_prefix) :] for scope in cleanup_scopes()]


# --- the run --------------------------------------------------------------------
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
    max_in_flight: int | None = None,
    before_batch: Callable[[list[str]], None] | None = None,
    job_run: JobRun | None = None,
    fence: Callable[[], None] | None = None,
) -> CleanupReport:
    """Delete (or, in a dry run, count) the scopes' expired files and record the run.

    Raises InvalidRetention before anything is listed or recorded. Any other
    exception marks the run `failed` and is re-raised. `progress(scanned,
    deleted)` is called after every page and every finished batch;
    `should_stop()` is checked after every page and every batch sent: when it
    answers True nothing new is sent, the batches in flight finish and are
    counted, and CleanupInterrupted is raised. `max_in_flight` overrides
    CLEANUP_DELETES_IN_FLIGHT; `before_batch(keys)` is called with each
    batch's keys once it is formed, before it waits for a slot (a test hook).
    `job_run`: the ledger row this run belongs to (a resumed execution finds
    its CleanupRun through it). `fence()` is called before the outcome is
    written and raises LeaseLost when another execution took the run over.
    """
    retention_days = validate_retention_days(retention_days)
    if trigger not in CleanupRun.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; one of {CleanupRun.Trigger.values}")
    scopes = cleanup_scopes()
    if client is None:
        from viral_clips.s3 import cloudcube_client

        client = cloudcube_client()

    cube = settings.CLOUDCUBE
    run = db_retry(
        lambda: _start_run(
            retention_days, dry_run, trigger, task_id, scheduled_for, cube.cube, job_run
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
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    books = _Books(run, report)
    pipeline = _DeletePipeline(
        client=client,
        bucket=cube.bucket,
        dry_run=dry_run,
        cutoff=cutoff,
        books=books,
        window=DeleteWindow(max_in_flight or settings.CLEANUP_DELETES_IN_FLIGHT),
        progress=progress,
        should_stop=should_stop,
        before_batch=before_batch,
    )
    try:
        with pipeline:
            try:
                _scan(client, cube.bucket, scopes, cutoff, pipeline, books, progress)
                pipeline.flush()
            finally:
                # Every batch sent is accounted for, whatever happened next.
                pipeline.drain()
                report.delete_throttles = pipeline.window.throttles
        if fence:
            fence()
    except LeaseLost:
        raise  # another execution runs this CleanupRun now: leave it to it
    except StopRequested as exc:
        run.status = CleanupRun.Status.INTERRUPTED
        detail = "interrupted between batches; resumes on redelivery"
        if isinstance(exc, CleanupBookkeepingFailed):
            detail = f"{exc}; resumes on redelivery"
        try:
            books.save(detail=detail)
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
    pipeline: _DeletePipeline,
    books: _Books,
    progress: Callable[[int, int], None] | None,
) -> None:
    """List every scope a page at a time, queueing expired keys and reconciling rows."""
    report = books.report
    sp = storage_prefix()
    for scope in scopes:
        reconciler = _Reconciler(scope, sp, cutoff, books) if scope.startswith(sp) else None
        for page in _list_pages(client, bucket, scope):
            report.objects_scanned += len(page)
            report.bytes_scanned += sum(size for _, size, _ in page)
            expired = [(key, size) for key, size, modified in page if modified < cutoff]
            report.clips_retained += len(page) - len(expired)
            if reconciler is not None:
                reconciler.page([key for key, _, _ in page])
            pipeline.add(expired)
            if progress:
                progress(report.objects_scanned, report.files_deleted)
            pipeline.check_stop()
        if reconciler is not None:
            reconciler.finish()


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
    """Yield one scope's objects a page at a time as (key, size, last_modified)."""
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
            # must not make us touch what is outside the scope.
            if obj["Key"].startswith(prefix)
        ]


# --- bookkeeping ----------------------------------------------------------------
_COUNT_FIELDS = (
    "objects_scanned",
    "bytes_scanned",
    "files_deleted",
    "bytes_freed",
    "clips_retained",
    "error_count",
    "rows_reconciled",
)


class _Books:
    """Every database write and read of a run, each surviving a connection blip.

    A write that still fails after db_retry raises CleanupBookkeepingFailed:
    the run ends interrupted rather than carrying on with books gone wrong.
    """

    def __init__(self, run: CleanupRun, report: CleanupReport):
        self.run = run
        self.report = report

    def retry(self, work: Callable[[], T], what: str) -> T:
        try:
            return db_retry(work, what=f"cleanup run #{self.run.pk}: {what}")
        except (OperationalError, InterfaceError) as exc:  # the connection, not a bug
            raise CleanupBookkeepingFailed(self.run.pk, what, exc) from exc

    def _copy_counts(self) -> list[str]:
        for name in _COUNT_FIELDS:
            setattr(self.run, name, getattr(self.report, name))
        self.run.error_sample = self.report.errors
        self.run.would_delete_sample = self.report.would_delete
        return [*_COUNT_FIELDS, "error_sample", "would_delete_sample", "status"]

    def save(self, detail: str | None = None) -> None:
        fields = self._copy_counts()
        if detail is not None:
            self.run.detail = detail[:2000]
            fields.append("detail")
        self.retry(lambda: self.run.save(update_fields=fields), "its progress")

    def finish(self, detail: str) -> None:
        self.run.status = self.report.status
        self.run.finished_at = timezone.now()
        self._copy_counts()
        self.run.detail = detail[:2000]
        self.retry(self.run.save, "its end")


class _Reconciler:
    """Removes old unpinned Clip rows of one scope whose file was not listed.

    Memory stays at one page: S3 lists keys in UTF-8 byte order, so the pages
    cut the scope into consecutive ranges (previous page's last key, this
    page's last key]. For each page, the rows in its range (compared byte-wise,
    like S3) that are not among its keys have no file; after the last page the
    range beyond it is checked, and an empty scope means every row is orphaned.
    """

    def __init__(self, scope: str, storage: str, cutoff: datetime, books: _Books):
        self.storage = storage
        self.name_prefix = scope[len(storage) :]
        self.cutoff = cutoff
        self.books = books
        self.after: str | None = None  # the last name of the previous page

    def page(self, keys: list[str]) -> None:
        if not keys:
            return
        names = [key[len(self.storage) :] for key in keys]
        last = max(names)
        self._reconcile(self.after, last, set(names))
        self.after = last

    def finish(self) -> None:
        self._reconcile(self.after, None, set())

    def _reconcile(self, after: str | None, upto: str | None, listed: set[str]) -> None:
        cursor = after
        while True:
            rows = self.books.retry(
                lambda cursor=cursor: self._candidates(cursor, upto), "reconciling clip rows"
            )
            orphans = [pk for pk, name in rows if name not in listed]
            if orphans:
                self._remove(orphans)
            if len(rows) < _RECONCILE_CHUNK:
                return
            cursor = rows[-1][1]

    def _candidates(self, after: str | None, upto: str | None) -> list[tuple[int, str]]:
        rows = (
            Clip.objects.filter(pinned=False, created_at__lt=self.cutoff)
            .filter(file__startswith=self.name_prefix)
            .exclude(file="")
            .annotate(bytewise=_bytewise("file"))
        )
        if after is not None:
            rows = rows.filter(bytewise__gt=after)
        if upto is not None:
            rows = rows.filter(bytewise__lte=upto)
        return list(rows.order_by("bytewise").values_list("pk", "file")[:_RECONCILE_CHUNK])

    def _remove(self, pks: list[int]) -> None:
        report = self.books.report
        if not report.dry_run:
            for chunk in _chunks(pks, _DB_CHUNK):
                self.books.retry(
                    lambda chunk=chunk: Clip.objects.filter(pk__in=chunk, pinned=False).delete(),
                    "removing clip rows whose file is gone",
                )
        report.rows_reconciled += len(pks)
        logger.warning(
            "Cloudcube cleanup run #%s: %s %d clip row(s) whose file is no longer in the cube",
            report.run_id,
            "would remove" if report.dry_run else "removed",
            len(pks),
        )


def _bytewise(field_name: str) -> Collate:
    """`field_name` compared byte by byte, as S3 orders keys (not by locale)."""
    collation = {"postgresql": "C", "mysql": "utf8mb4_bin"}.get(connection.vendor, "BINARY")
    return Collate(field_name, collation)


# --- deleting -------------------------------------------------------------------
class DeleteWindow:
    """How many DeleteObjects may be in flight: AIMD, as TCP does.

    A throttling answer (SlowDown, 503) halves the window; every `limit`
    batches that finish without one add one slot back, up to the maximum.
    """

    def __init__(self, maximum: int):
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.throttles = 0
        self._credit = 0
        self._lock = threading.Lock()

    def throttled(self) -> None:
        with self._lock:
            self.throttles += 1
            self.limit = max(1, self.limit // 2)
            self._credit = 0

    def succeeded(self) -> None:
        with self._lock:
            if self.limit >= self.maximum:
                return
            self._credit += 1
            if self._credit >= self.limit:
                self.limit += 1
                self._credit = 0


@dataclass
class _InFlight:
    batch: list[tuple[str, int]]
    future: Future


class _DeletePipeline:
    """Turns expired keys into DeleteObjects batches, a few in flight at once.

    Only the calling thread touches the database: it checks protection for a
    batch once a slot is free, hands the batch to a pool thread that sends it,
    and, when it finishes, counts it, deletes its Clip rows and saves progress.
    Holds at most one batch being filled plus `window.maximum` in flight.
    """

    def __init__(
        self,
        *,
        client,
        bucket: str,
        dry_run: bool,
        cutoff: datetime,
        books: _Books,
        window: DeleteWindow,
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
        before_batch: Callable[[list[str]], None] | None,
    ):
        self.client = client
        self.bucket = bucket
        self.dry_run = dry_run
        self.cutoff = cutoff
        self.books = books
        self.report = books.report
        self.window = window
        self.progress = progress
        self.should_stop = should_stop
        self.before_batch = before_batch
        self.storage = storage_prefix()
        self.pending: list[tuple[str, int]] = []
        self.in_flight: list[_InFlight] = []
        self.stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._handler_id = f"koolclips-cleanup-throttle-{id(self)}"

    def __enter__(self) -> _DeletePipeline:
        if not self.dry_run:
            self._pool = ThreadPoolExecutor(
                max_workers=self.window.maximum, thread_name_prefix="cleanup-delete"
            )
            # botocore retries SlowDown itself; this only tells the window.
            self.client.meta.events.register(
                "needs-retry.s3.DeleteObjects", self._on_attempt, unique_id=self._handler_id
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self.client.meta.events.unregister(
                "needs-retry.s3.DeleteObjects", unique_id=self._handler_id
            )

    # -- the calling thread ------------------------------------------------
    def add(self, expired: list[tuple[str, int]]) -> None:
        self.pending.extend(expired)
        while len(self.pending) >= S3_MAX_KEYS_PER_DELETE:
            batch = self.pending[:S3_MAX_KEYS_PER_DELETE]
            del self.pending[:S3_MAX_KEYS_PER_DELETE]
            self._send(batch)
        self._reap(block=False)

    def flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            self._send(batch)

    def check_stop(self) -> None:
        if self.stopping or (self.should_stop is not None and self.should_stop()):
            self.stopping = True
            raise CleanupInterrupted(self.report.run_id)

    def drain(self) -> None:
        """Wait for every batch in flight and account for it, even when
        accounting one raises (a stop request from the progress callback):
        every batch sent is counted before the first such error is raised."""
        failure: BaseException | None = None
        while self.in_flight:
            try:
                self._reap(block=True)
            except Exception as exc:  # noqa: BLE001 - re-raised once all are counted
                failure = failure or exc
        if failure is not None:
            raise failure

    def _send(self, batch: list[tuple[str, int]]) -> None:
        if self.before_batch is not None:
            self.before_batch([key for key, _ in batch])
        while len(self.in_flight) >= self.window.limit:
            self._reap(block=True)
        # Protection right before the request: a clip pinned while its key
        # waited in `pending` or for a slot keeps its file.
        batch = self._drop_protected(batch)
        if batch:
            if self.dry_run:
                self._account(batch, [])
            else:
                future = self._pool.submit(self._delete, batch)
                self.in_flight.append(_InFlight(batch, future))
        self.check_stop()

    def _reap(self, block: bool) -> None:
        if not self.in_flight:
            return
        if block:
            wait([item.future for item in self.in_flight], return_when=FIRST_COMPLETED)
        failure: BaseException | None = None
        for item in [item for item in self.in_flight if item.future.done()]:
            # Out of the window first: a batch is accounted for at most once,
            # and one whose accounting fails does not block the others.
            self.in_flight.remove(item)
            try:
                errors, throttled = item.future.result()
                if not throttled:
                    self.window.succeeded()
                self._account(item.batch, errors)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
                failure = failure or exc
        if failure is not None:
            raise failure

    def _drop_protected(self, batch: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Remove keys whose clip is pinned or was created within the retention period.

        One query per chunk of up to 500 keys (at most two a batch), never one a key.
        """
        sp = self.storage
        names = [key[len(sp) :] for key, _ in batch if key.startswith(sp)]
        protected: set[str] = set()
        for chunk in _chunks(names, _DB_CHUNK):
            protected.update(
                self.books.retry(
                    lambda chunk=chunk: list(
                        Clip.objects.filter(file__in=chunk)
                        .filter(Q(pinned=True) | Q(created_at__gte=self.cutoff))
                        .values_list("file", flat=True)
                    ),
                    "checking pinned clips",
                )
            )
        if not protected:
            return batch
        kept = [
            (key, size)
            for key, size in batch
            if not (key.startswith(sp) and key[len(sp) :] in protected)
        ]
        self.report.pinned_kept += len(batch) - len(kept)
        self.report.clips_retained += len(batch) - len(kept)
        return kept

    def _account(self, batch: list[tuple[str, int]], errors: list[dict]) -> None:
        report = self.report
        sizes = dict(batch)
        failed = {error.get("Key") for error in errors}
        report.error_count += len(errors)
        for error in errors[: max(0, ERROR_SAMPLE_SIZE - len(report.errors))]:
            report.errors.append(
                {
                    "key": error.get("Key"),
                    "code": error.get("Code"),
                    "message": error.get("Message"),
                }
            )
        deleted = [key for key in sizes if key not in failed]
        report.files_deleted += len(deleted)
        report.bytes_freed += sum(sizes[key] for key in deleted)
        if self.dry_run:
            room = max(0, WOULD_DELETE_SAMPLE_SIZE - len(report.would_delete))
            report.would_delete.extend(key for key, _ in batch[:room])
        if errors:
            logger.warning(
                "Cloudcube cleanup: %d of %d keys in a batch could not be deleted (first: %r %r)",
                len(errors),
                len(batch),
                errors[0].get("Code"),
                errors[0].get("Key"),
            )
        if not self.dry_run:
            # The admin must never list a clip whose file is gone: after the
            # files, their rows. A failure here leaves rows that the next
            # run's reconcile removes.
            sp = self.storage
            names = [key[len(sp) :] for key in deleted if key.startswith(sp)]
            for chunk in _chunks(names, _DB_CHUNK):
                self.books.retry(
                    lambda chunk=chunk: Clip.objects.filter(file__in=chunk, pinned=False).delete(),
                    "deleting clip rows of deleted files",
                )
        self.books.save()
        if self.progress:
            self.progress(report.objects_scanned, report.files_deleted)

    # -- pool threads ---------------------------------------------------------
    def _delete(self, batch: list[tuple[str, int]]) -> tuple[list[dict], bool]:
        """One DeleteObjects request; no database here. Returns (errors, throttled)."""
        keys = [key for key, _ in batch]
        throttles_before = self.window.throttles
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
            errors = response.get("Errors", [])
        except (ClientError, BotoCoreError) as exc:
            # The whole request failed even after botocore's retries: every key
            # in it is an error, and the next batch still gets its chance.
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            if str(code) in _THROTTLE_CODES:
                self.window.throttled()
            errors = [{"Key": key, "Code": code, "Message": str(exc)} for key in keys]
        return errors, self.window.throttles != throttles_before

    def _on_attempt(self, response=None, **kwargs) -> None:
        """botocore's needs-retry event, once per attempt: note throttling answers."""
        if not response:
            return
        http, parsed = response
        code = str((parsed or {}).get("Error", {}).get("Code", ""))
        if code in _THROTTLE_CODES or getattr(http, "status_code", 0) == 503:
            self.window.throttled()


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
