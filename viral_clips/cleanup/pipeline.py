"""Expired keys to DeleteObjects requests, a few in flight while listing goes on.

At most CLEANUP_DELETES_IN_FLIGHT batches of up to 1,000 keys (S3's limit) are
in flight, plus one being filled; a SlowDown answer halves that window, which
then grows back one batch at a time (`DeleteWindow`).

Threads: only DeleteObjects runs on the pool's threads (boto3 clients are
thread-safe). Every database query stays on the calling thread, so there is one
connection, db_retry can replace it, and nothing leaks per thread. Protection
for a batch is checked once a delete slot is free, immediately before the batch
is handed to a thread that sends it at once: the gap between the check and the
request is a thread hand-off, not a page listing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from viral_clips.cleanup.books import Books
from viral_clips.cleanup.errors import CleanupInterrupted
from viral_clips.cleanup.scope import storage_prefix

logger = logging.getLogger(__name__)

S3_MAX_KEYS_PER_DELETE = 1000  # DeleteObjects accepts at most this many keys
ERROR_SAMPLE_SIZE = 20  # per-key errors kept in the run record (all are counted)
WOULD_DELETE_SAMPLE_SIZE = 50  # keys a dry run shows it would delete (all are counted)
# Error codes (and HTTP 503) meaning "send fewer requests".
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"}
)

# (key, size) of an expired object waiting to be deleted.
Expired = tuple[str, int]


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
    batch: list[Expired]
    future: Future


class DeletePipeline:
    """Holds at most one batch being filled plus `window.maximum` in flight.

    The calling thread checks protection for a batch once a slot is free,
    hands it to a pool thread that sends it, and, when it finishes, counts it,
    deletes its Clip rows and saves progress. `batch_formed(keys)` is called
    for each batch once it is formed, before it waits for a slot (an extension
    point: a test pins a clip there).
    """

    def __init__(
        self,
        *,
        client,
        bucket: str,
        dry_run: bool,
        cutoff: datetime,
        books: Books,
        window: DeleteWindow,
        progress: Callable[[int, int], None],
        should_stop: Callable[[], bool],
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
        self.storage = storage_prefix()
        self.pending: list[Expired] = []
        self.in_flight: list[_InFlight] = []
        self.stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._handler_id = f"koolclips-cleanup-throttle-{id(self)}"

    def __enter__(self) -> DeletePipeline:
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
    def add(self, expired: list[Expired]) -> None:
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
        if self.stopping or self.should_stop():
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

    def batch_formed(self, keys: list[str]) -> None:
        """Called with each batch's keys before it waits for a delete slot."""

    def _send(self, batch: list[Expired]) -> None:
        self.batch_formed([key for key, _ in batch])
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

    def _drop_protected(self, batch: list[Expired]) -> list[Expired]:
        """Remove keys whose clip is pinned or was created within the retention period."""
        sp = self.storage
        names = [key[len(sp) :] for key, _ in batch if key.startswith(sp)]
        protected = self.books.protected(names, self.cutoff) if names else set()
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

    def _account(self, batch: list[Expired], errors: list[dict]) -> None:
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
            self.books.forget_clips([key[len(sp) :] for key in deleted if key.startswith(sp)])
        self.books.save()
        self.progress(report.objects_scanned, report.files_deleted)

    # -- pool threads ---------------------------------------------------------
    def _delete(self, batch: list[Expired]) -> tuple[list[dict], bool]:
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
