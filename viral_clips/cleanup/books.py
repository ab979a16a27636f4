"""A cleanup run's records: its CleanupRun row, its counts, and the Clip rows
that follow their files.

Every write and read goes through `Books.retry` (`scheduling.db.db_retry`): a
connection blip is survived; a database that stays away raises
CleanupBookkeepingFailed, and the run ends interrupted rather than carrying on
with its books wrong.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models.functions import Collate
from django.utils import timezone

from scheduling.db import db_retry
from scheduling.models import JobRun
from viral_clips.cleanup.errors import CleanupBookkeepingFailed
from viral_clips.models import CleanupRun, Clip

logger = logging.getLogger(__name__)

T = TypeVar("T")

DB_CHUNK = 500  # keys per IN (...) query, under SQLite's variable limit
_RECONCILE_CHUNK = 1000  # candidate rows fetched per reconcile query
_UNFINISHED = (
    CleanupRun.Status.RUNNING,
    CleanupRun.Status.INTERRUPTED,
    CleanupRun.Status.ABANDONED,
)
_COUNT_FIELDS = (
    "objects_scanned",
    "bytes_scanned",
    "files_deleted",
    "bytes_freed",
    "clips_retained",
    "error_count",
    "rows_reconciled",
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


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def start_run(
    *,
    retention_days: int,
    dry_run: bool,
    trigger: str,
    task_id: str,
    slot: datetime | None,
    job_run: JobRun | None,
) -> CleanupRun:
    """The run's CleanupRun: a new one, or the unfinished one a redelivery resumes."""
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
        cube=settings.CLOUDCUBE.cube,
        task_id=task_id,
        scheduled_for=slot,
        host=settings.DYNO,
        job_run=job_run,
    )


class Books:
    """Every database write and read of one run, each surviving a connection blip."""

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

    def save(self, detail: str | None = None, *, final: bool = False) -> None:
        fields = self._copy_counts()
        if detail is not None:
            self.run.detail = detail[:2000]
            fields.append("detail")
        if final:  # an operator's Stop: this run is over, not waiting for a redelivery
            self.run.finished_at = timezone.now()
            fields.append("finished_at")
        self.retry(lambda: self.run.save(update_fields=fields), "its progress")

    def finish(self, detail: str) -> None:
        self.run.status = self.report.status
        self.run.finished_at = timezone.now()
        self._copy_counts()
        self.run.detail = detail[:2000]
        self.retry(self.run.save, "its end")

    def protected(self, names: list[str], cutoff: datetime) -> set[str]:
        """Which of these clip file names must stay: pinned, or created after `cutoff`.

        One query per chunk of up to DB_CHUNK names, never one a key. Plain SQL
        (through Django's connection): the ORM's preparation of 500 values costs
        about 10 ms a query, more than the query itself at a million keys."""
        found: set[str] = set()
        when = connection.ops.adapt_datetimefield_value(cutoff)
        table, _, file, pinned, created = _names()
        for chunk in chunks(names, _sql_chunk()):
            marks = ", ".join(["%s"] * len(chunk))
            # Quoted names and placeholders only: nothing from the data in the SQL.
            where = f"{file} IN ({marks}) AND ({pinned} = %s OR {created} >= %s)"
            sql = f"SELECT {file} FROM {table} WHERE {where}"  # noqa: S608
            found.update(
                row[0]
                for row in self.retry(
                    lambda sql=sql, chunk=chunk: _fetch(sql, [*chunk, True, when]),
                    "checking pinned clips",
                )
            )
        return found

    def forget_clips(self, names: list[str]) -> None:
        """Delete the unpinned Clip rows of files that were just deleted."""
        table, pk, file, pinned, _ = _names()
        for chunk in chunks(names, _sql_chunk()):
            marks = ", ".join(["%s"] * len(chunk))
            sql = f"SELECT {pk} FROM {table} WHERE {file} IN ({marks}) AND {pinned} = %s"  # noqa: S608
            pks = [
                row[0]
                for row in self.retry(
                    lambda sql=sql, chunk=chunk: _fetch(sql, [*chunk, False]),
                    "finding clip rows of deleted files",
                )
            ]
            if pks:
                self.retry(
                    lambda pks=pks: Clip.objects.filter(pk__in=pks, pinned=False).delete(),
                    "deleting clip rows of deleted files",
                )


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _sql_chunk() -> int:
    """Keys per plain-SQL IN (...): a whole batch, unless SQLite is older than 3.32
    (999 variables at most; Django's ORM assumes that limit everywhere)."""
    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
        return DB_CHUNK
    return 1000


def _names() -> tuple[str, str, str, str, str]:
    """Clip's table and its pk, file, pinned and created_at columns, quoted."""
    quote = connection.ops.quote_name
    meta = Clip._meta
    columns = (
        meta.pk.column,
        *(meta.get_field(f).column for f in ("file", "pinned", "created_at")),
    )
    return (quote(meta.db_table), *(quote(c) for c in columns))


class Reconciler:
    """Removes old unpinned Clip rows of one scope whose file was not listed.

    Memory stays at one page: S3 lists keys in UTF-8 byte order, so the pages
    cut the scope into consecutive ranges (previous page's last key, this
    page's last key]. For each page, the rows in its range (compared byte-wise,
    like S3) that are not among its keys have no file; after the last page the
    range beyond it is checked, and an empty scope means every row is orphaned.
    """

    def __init__(self, scope: str, storage: str, cutoff: datetime, books: Books):
        self.storage = storage
        self.name_prefix = scope[len(storage) :]
        self.cutoff = cutoff
        self.books = books
        self.after: str | None = None  # the last name of the previous page
        self._ahead: deque[tuple[int, str]] = deque()  # candidates read ahead, in order
        self._fetched: str | None = None  # the last candidate read so far
        self._exhausted = False  # no candidate after `_fetched`

    def listed(self, page: list[tuple]) -> None:
        """`page` as listed ((key, size, modified)...)."""
        if not page:
            return
        if self._exhausted and not self._ahead:
            # No candidate row left in this scope: nothing to match.
            self.after = max(page)[0][len(self.storage) :]
            return
        self.page([key for key, *_ in page])

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
        # Candidate rows are read ahead, a chunk at a time in byte order, and
        # matched against the pages as they come: a query per chunk of rows,
        # none at all once the scope has no rows left (not one a page).
        orphans: list[int] = []
        while True:
            if not self._ahead and not self._exhausted:
                cursor = self._fetched if self._fetched is not None else after
                rows = self.books.retry(
                    lambda cursor=cursor: self._candidates(cursor, None), "reconciling clip rows"
                )
                self._exhausted = len(rows) < _RECONCILE_CHUNK
                if rows:
                    self._fetched = rows[-1][1]
                self._ahead.extend(rows)
            while self._ahead and (upto is None or self._ahead[0][1] <= upto):
                pk, name = self._ahead.popleft()
                if name not in listed:
                    orphans.append(pk)
            if self._ahead or self._exhausted:
                break
        if orphans:
            self._remove(orphans)

    def _candidates(self, after: str | None, upto: str | None) -> list[tuple[int, str]]:
        rows = (
            Clip.objects.filter(pinned=False, created_at__lt=self.cutoff)
            .filter(file__startswith=self.name_prefix)
            .exclude(file="")
            .annotate(bytewise=bytewise("file"))
        )
        if after is not None:
            rows = rows.filter(bytewise__gt=after)
        if upto is not None:
            rows = rows.filter(bytewise__lte=upto)
        return list(rows.order_by("bytewise").values_list("pk", "file")[:_RECONCILE_CHUNK])

    def _remove(self, pks: list[int]) -> None:
        report = self.books.report
        if not report.dry_run:
            for chunk in chunks(pks, DB_CHUNK):
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


class LevelReconciler(Reconciler):
    """Removes old unpinned Clip rows directly under a split folder whose file is gone.

    A split folder's direct keys come in one Delimiter page (all of them); its
    sub-folders are reconciled by their own chains. The rows here are those in
    the gaps between the sub-folders' key ranges: directly under the folder, or
    in a sub-folder that no longer holds any key (so S3 did not return it).
    """

    def __init__(
        self,
        level_prefix: str,
        folders: list[str],
        storage: str,
        cutoff: datetime,
        books: Books,
        skip_upto: str | None = None,
    ):
        super().__init__(level_prefix, storage, cutoff, books)
        self.folders = [folder[len(storage) :] for folder in sorted(folders)]
        # Names up to here were reconciled with the scope's first page.
        self.skip_upto = skip_upto[len(storage) :] if skip_upto else None

    def level(self, keys: list[str]) -> None:
        listed = {key[len(self.storage) :] for key in keys}
        lo = self.name_prefix
        # Names under folder F are exactly those in [F, F[:-1] + "0"): "/" + 1 is "0".
        for folder in [*self.folders, None]:
            self._gap(lo, folder, listed)
            if folder is not None:
                lo = folder[:-1] + "0"

    def _gap(self, lo: str, hi: str | None, listed: set[str]) -> None:
        cursor = None
        while True:
            rows = self.books.retry(
                lambda cursor=cursor: self._gap_candidates(lo, hi, cursor), "reconciling clip rows"
            )
            orphans = [pk for pk, name in rows if name not in listed]
            if orphans:
                self._remove(orphans)
            if len(rows) < _RECONCILE_CHUNK:
                return
            cursor = rows[-1][1]

    def _gap_candidates(self, lo: str, hi: str | None, after: str | None):
        rows = (
            Clip.objects.filter(pinned=False, created_at__lt=self.cutoff)
            .filter(file__startswith=self.name_prefix)
            .exclude(file="")
            .annotate(bytewise=bytewise("file"))
            .filter(bytewise__gte=lo)
        )
        if hi is not None:
            rows = rows.filter(bytewise__lt=hi)
        if self.skip_upto is not None:
            rows = rows.filter(bytewise__gt=self.skip_upto)
        if after is not None:
            rows = rows.filter(bytewise__gt=after)
        return list(rows.order_by("bytewise").values_list("pk", "file")[:_RECONCILE_CHUNK])


def bytewise(field_name: str) -> Collate:
    """`field_name` compared byte by byte, as S3 orders keys (not by locale)."""
    collation = {"postgresql": "C", "mysql": "utf8mb4_bin"}.get(connection.vendor, "BINARY")
    return Collate(field_name, collation)


def mark_cleanup_runs_abandoned(sender=None, run_ids: list[int] = (), **kwargs) -> None:
    """`scheduling.ledger.runs_abandoned` receiver (connected in apps.py): the
    ledger found executions whose worker died, so their CleanupRun rows must not
    say `running` either (their redelivery sets them running again)."""
    CleanupRun.objects.filter(job_run_id__in=run_ids, status=CleanupRun.Status.RUNNING).update(
        status=CleanupRun.Status.ABANDONED,
        detail="its worker stopped renewing the lease; resumes on redelivery",
    )
