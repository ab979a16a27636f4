"""Expired keys to DeleteObjects requests, paced per prefix partition, while listing goes on.

S3 allows about 3,500 deletes a second per partitioned prefix and counts each
key of a DeleteObjects (docs/benchmarks.md#the-s3-model). So expired keys are
grouped by their folder (the partition), cut into batches of up to 1,000 keys
(S3's limit) of one folder, and each folder's batches are sent at
CLEANUP_DELETE_RATE keys a second (`Pacer`, a token bucket), at most
CLEANUP_DELETES_IN_FLIGHT at once per folder and CLEANUP_DELETE_CONCURRENCY in
all. A SlowDown answer halves that folder's rate and window (AIMD, as TCP
does; both grow back with each batch that goes through) and puts the batch
back at the head of its folder's queue after a jittered backoff: botocore is
told not to retry throttling itself (its retry budget would turn a SlowDown
storm into failed keys and a `partial` run), so a throttled key is never
given up, only delayed. The leftovers of every folder (under 1,000 each) are
sent together once listing ends, so the batches are ceil(E/1000) plus re-sends.

Threads: only DeleteObjects runs on the pool's threads (boto3 clients are
thread-safe). Every database query stays on the calling thread, so there is one
connection, db_retry can replace it, and nothing leaks per thread. Protection
for a batch is checked once a delete slot is free, immediately before the batch
is handed to a thread that sends it at once: the gap between the check and the
request is a thread hand-off, not a page listing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from viral_clips.cleanup.books import Books
from viral_clips.cleanup.errors import CleanupInterrupted
from viral_clips.cleanup.scope import storage_prefix
from viral_clips.s3 import KeyObjects, delete_objects_param, pack_keys

logger = logging.getLogger(__name__)

S3_MAX_KEYS_PER_DELETE = 1000  # DeleteObjects accepts at most this many keys
ERROR_SAMPLE_SIZE = 20  # per-key errors kept in the run record (all are counted)
WOULD_DELETE_SAMPLE_SIZE = 50  # keys a dry run shows it would delete (all are counted)
# Error codes (and HTTP 503) meaning "send fewer requests".
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"}
)

READY_PER_PARTITION = 1  # formed batches a folder may hold before listing waits
SAVE_INTERVAL = 0.5  # seconds between progress saves of the run's counts
MAX_BACKOFF = 5.0  # seconds, after consecutive SlowDown answers for one folder

# (key, size) of an expired object, as listing hands it over.
Expired = tuple[str, int]


def partition(key: str) -> str:
    """The prefix partition a key's delete counts against: its folder."""
    return key[: key.rfind("/") + 1]


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


class Pacer:
    """One folder's deletes: a token bucket of keys a second (AIMD on its rate) and a window."""

    def __init__(self, rate: float, window: int, clock: Callable[[], float] = time.monotonic):
        self.max_rate = self.rate = float(rate)
        self.clock = clock
        # Two batches: a turn taken late (the calling thread was reading a page)
        # is caught up instead of lost; the rate still bounds the average, and a
        # burst stays under S3's second of it.
        self.capacity = float(2 * S3_MAX_KEYS_PER_DELETE)
        self.tokens = self.capacity
        self.updated = clock()
        self.window = DeleteWindow(window)
        self.in_flight = 0
        self.not_before = 0.0
        self.throttle_streak = 0

    def ready_at(self, cost: int) -> float:
        """When `cost` keys may be sent (now or later), ignoring the window."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        at = now if self.tokens >= cost else now + (cost - self.tokens) / self.rate
        return max(at, self.not_before)

    def take(self, cost: int) -> None:
        self.tokens -= cost
        self.in_flight += 1

    def throttled(self) -> None:
        self.in_flight -= 1
        self.window.throttled()
        self.rate = max(self.max_rate / 8, self.rate / 2)
        self.throttle_streak += 1
        backoff = min(MAX_BACKOFF, 0.05 * 2**self.throttle_streak)
        self.not_before = self.clock() + backoff * random.uniform(0.5, 1.0)  # noqa: S311

    def succeeded(self) -> None:
        self.in_flight -= 1
        self.window.succeeded()
        self.throttle_streak = 0
        self.rate = min(self.max_rate, self.rate + self.max_rate / 10)


def _sizes() -> array:
    return array("q")


@dataclass
class _Batch:
    # The keys packed into one string (s3.KeyObjects) and their sizes side by
    # side, not a (key, size) tuple a key: the tens of thousands of keys
    # waiting or in flight cost a third of the memory.
    packed: KeyObjects | list[str]
    sizes: array
    costs: Counter = field(default_factory=Counter)  # keys per partition

    @classmethod
    def of(cls, keys: list[str], sizes: array, folder: str | None = None) -> _Batch:
        costs = Counter({folder: len(keys)}) if folder else Counter(map(partition, keys))
        return cls(pack_keys(keys), sizes, costs)

    @property
    def keys(self) -> list[str]:
        return list(self.packed)


@dataclass
class _InFlight:
    batch: _Batch
    future: Future


class DeletePipeline:
    """Expired keys, grouped by folder, to paced DeleteObjects on a pool's threads.

    The calling thread checks protection for a batch right before it hands it
    to a pool thread that sends it at once, and, when it finishes, counts it,
    deletes its Clip rows and saves progress (or, if throttled, queues it
    again). `batch_formed(keys)` is called for each batch once it is formed,
    before it waits for its turn (an extension point: a test pins a clip there).
    """

    def __init__(
        self,
        *,
        client,
        bucket: str,
        dry_run: bool,
        cutoff: datetime,
        books: Books,
        window: int,
        rate: float,
        concurrency: int,
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
        self.rate = rate
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.should_stop = should_stop
        self.storage = storage_prefix()
        self.pending: dict[str, tuple[list[str], array]] = {}  # per folder, under 1,000 keys
        self.ready: dict[str, deque[_Batch]] = {}  # per folder, formed, waiting for their turn
        self.pacers: dict[str, Pacer] = {}
        self.in_flight: list[_InFlight] = []
        self.throttles = 0  # SlowDown answers received (each batch re-sent)
        self._saved = float("-inf")
        self.stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._handler_id = f"koolclips-cleanup-throttle-{id(self)}"
        self.wake: Callable[[], None] | None = None  # called from a pool thread when a batch ends

    def __enter__(self) -> DeletePipeline:
        if not self.dry_run:
            self._pool = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="cleanup-delete"
            )
            # Throttling comes back to us instead of botocore's retry budget.
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
    def add(self, expired: list[Expired], wait: bool = True) -> None:
        """Queue expired keys; with `wait`, return only once no folder has more
        than READY_PER_PARTITION batches formed (without, the caller holds back
        the listing of the folders that do: `backlogged`)."""
        folder, keys, sizes = None, [], _sizes()
        for key, size in expired:
            # A page's keys mostly share a folder: find it again only when it changes.
            if folder is None or not key.startswith(folder) or "/" in key[len(folder) :]:
                folder = partition(key)
                keys, sizes = self.pending.setdefault(folder, ([], _sizes()))
            keys.append(key)
            sizes.append(size)
            if len(keys) >= S3_MAX_KEYS_PER_DELETE:
                self._form(folder, keys, sizes)
                keys, sizes = self.pending[folder] = ([], _sizes())
        self._pump(block=False)
        # Listing waits while a folder has enough batches formed: memory stays flat.
        while wait and any(len(q) > READY_PER_PARTITION for q in self.ready.values()):
            self._pump(block=True)

    def backlogged(self, prefix: str) -> bool:
        """Whether a folder under `prefix` has more than READY_PER_PARTITION batches
        formed: its listing must wait for its deletes."""
        return any(
            len(waiting) > READY_PER_PARTITION
            for folder, waiting in self.ready.items()
            if folder.startswith(prefix)
        )

    def idle(self) -> float | None:
        """Account for finished batches and send what may go; how long until
        something else may go without a batch finishing (None: only then)."""
        self._reap(block=False)
        next_at = self._dispatch()
        return None if next_at is None else max(0.0, next_at - time.monotonic())

    def flush(self) -> None:
        """Send the leftovers (folders' remainders together) and everything queued, to the end."""
        # The leftovers queue behind their first folder's full batches and go
        # as soon as their folders' pacing lets them: not after every full
        # batch has come back (that was one more round trip at the end).
        keys, sizes = [], _sizes()
        for folder in sorted(self.pending):
            keys += self.pending[folder][0]
            sizes += self.pending[folder][1]
        self.pending.clear()
        for start in range(0, len(keys), S3_MAX_KEYS_PER_DELETE):
            end = start + S3_MAX_KEYS_PER_DELETE
            self._form(partition(keys[start]), keys[start:end], sizes[start:end], mixed=True)
        while self.in_flight or any(self.ready.values()):
            self._pump(block=True)

    def check_stop(self) -> None:
        if self.stopping or self.should_stop():
            self.stopping = True
            raise CleanupInterrupted(self.report.run_id)

    def drain(self) -> None:
        """Wait for every batch in flight and account for it, even when
        accounting one raises (a stop request from the progress callback):
        every batch sent is counted before the first such error is raised.
        Batches not sent (or throttled) stay in S3 for the next run."""
        failure: BaseException | None = None
        while self.in_flight:
            try:
                self._reap(block=True)
            except Exception as exc:  # noqa: BLE001 - re-raised once all are counted
                failure = failure or exc
        if failure is not None:
            raise failure

    def batch_formed(self, keys: list[str]) -> None:
        """Called with each batch's keys before it waits for its turn."""

    def _form(self, folder: str, keys: list[str], sizes: array, mixed: bool = False) -> None:
        self.batch_formed(keys)
        batch = _Batch.of(keys, sizes, None if mixed else folder)
        self.ready.setdefault(folder, deque()).append(batch)

    def _pacer(self, folder: str) -> Pacer:
        pacer = self.pacers.get(folder)
        if pacer is None:
            pacer = self.pacers[folder] = Pacer(self.rate, self.window)
        return pacer

    def _pump(self, block: bool) -> None:
        """Reap finished batches, send every batch whose folder's turn it is; with
        `block`, first wait for a batch to finish or the next turn."""
        self._reap(block=False)
        next_at = self._dispatch()
        if block and (self.in_flight or next_at is not None):
            timeout = None if next_at is None else max(0.0, next_at - time.monotonic())
            if self.in_flight:
                self._reap(block=True, timeout=timeout)
            else:
                time.sleep(timeout)
            self._dispatch()

    def _dispatch(self) -> float | None:
        """Send what may go now; the earliest time something else may (None: only after a reap)."""
        next_at: float | None = None
        for waiting in self.ready.values():
            while waiting and self.dry_run:
                self._send(waiting.popleft(), [])
            while waiting and len(self.in_flight) < self.concurrency:
                batch = waiting[0]
                pacers = [(self._pacer(f), n) for f, n in batch.costs.items()]
                if any(p.in_flight >= p.window.limit for p, _ in pacers):
                    break  # after a reap
                at = max(p.ready_at(n) for p, n in pacers)
                if at > time.monotonic():
                    next_at = at if next_at is None else min(next_at, at)
                    break
                waiting.popleft()
                self._send(batch, pacers)
        return next_at

    def _send(self, batch: _Batch, pacers: list[tuple[Pacer, int]]) -> None:
        # Protection right before the request: a clip pinned while its key
        # waited in `pending` or for its turn keeps its file.
        batch = self._drop_protected(batch)
        if len(batch.packed):
            if self.dry_run:
                self._account(batch, [])
            else:
                for pacer, cost in pacers:
                    pacer.take(cost)
                future = self._pool.submit(self._delete, batch.packed)
                future.add_done_callback(self._woken)
                self.in_flight.append(_InFlight(batch, future))
        self.check_stop()

    def _reap(self, block: bool, timeout: float | None = None) -> None:
        if not self.in_flight:
            return
        if block:
            wait(
                [item.future for item in self.in_flight],
                timeout=timeout,
                return_when=FIRST_COMPLETED,
            )
        failure: BaseException | None = None
        for item in [item for item in self.in_flight if item.future.done()]:
            # Out of the window first: a batch is accounted for at most once,
            # and one whose accounting fails does not block the others.
            self.in_flight.remove(item)
            try:
                errors, throttled = item.future.result()
                pacers = [self._pacer(folder) for folder in item.batch.costs]
                if throttled:
                    self.throttles += 1
                    for pacer in pacers:
                        pacer.throttled()
                    # Not an error: the same keys go again, first in their folder.
                    folder = partition(item.batch.keys[0])
                    self.ready.setdefault(folder, deque()).appendleft(item.batch)
                    continue
                for pacer in pacers:
                    pacer.succeeded()
                self._account(item.batch, errors)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
                failure = failure or exc
        if failure is not None:
            raise failure

    def _drop_protected(self, batch: _Batch) -> _Batch:
        """Remove keys whose clip is pinned or was created within the retention period."""
        sp = self.storage
        keys = batch.keys
        names = [key[len(sp) :] for key in keys if key.startswith(sp)]
        protected = self.books.protected(names, self.cutoff) if names else set()
        if not protected:
            return batch
        keep = [
            i
            for i, key in enumerate(keys)
            if not (key.startswith(sp) and key[len(sp) :] in protected)
        ]
        dropped = len(keys) - len(keep)
        self.report.pinned_kept += dropped
        self.report.clips_retained += dropped
        kept = [keys[i] for i in keep]
        sizes = array("q", (batch.sizes[i] for i in keep))
        return _Batch(pack_keys(kept), sizes, batch.costs)  # none kept: []

    def _account(self, batch: _Batch, errors: list[dict]) -> None:
        report = self.report
        failed = {error.get("Key") for error in errors}
        keys = batch.keys
        report.error_count += len(errors)
        for error in errors[: max(0, ERROR_SAMPLE_SIZE - len(report.errors))]:
            report.errors.append(
                {
                    "key": error.get("Key"),
                    "code": error.get("Code"),
                    "message": error.get("Message"),
                }
            )
        if failed:
            both = zip(keys, batch.sizes, strict=True)
            pairs = [(key, size) for key, size in both if key not in failed]
            deleted = [key for key, _ in pairs]
            report.bytes_freed += sum(n for _, n in pairs)
        else:
            deleted = keys
            report.bytes_freed += sum(batch.sizes)
        report.files_deleted += len(deleted)
        if self.dry_run:
            room = max(0, WOULD_DELETE_SAMPLE_SIZE - len(report.would_delete))
            report.would_delete.extend(keys[:room])
        if errors:
            logger.warning(
                "Cloudcube cleanup: %d of %d keys in a batch could not be deleted (first: %r %r)",
                len(errors),
                len(keys),
                errors[0].get("Code"),
                errors[0].get("Key"),
            )
        if not self.dry_run:
            # The admin must never list a clip whose file is gone: after the
            # files, their rows. A failure here leaves rows that the next
            # run's reconcile removes.
            sp = self.storage
            self.books.forget_clips([key[len(sp) :] for key in deleted if key.startswith(sp)])
        # Progress is saved at most every SAVE_INTERVAL (a commit each; at tens
        # of batches a second they were the run's bottleneck) and always when the
        # run ends or stops (run.py): a killed worker loses at most that much count.
        now = time.monotonic()
        if now - self._saved >= SAVE_INTERVAL:
            self._saved = now
            self.books.save()
        self.progress(report.objects_scanned, report.files_deleted)

    def _woken(self, _future: Future) -> None:
        """A batch ended (on its pool thread): wake the listing, if one waits."""
        wake = self.wake  # None once listing ended: the drain waits on the futures
        if wake is not None:
            wake()

    # -- pool threads ---------------------------------------------------------
    def _delete(self, keys: KeyObjects | list[str]) -> tuple[list[dict], bool]:
        """One DeleteObjects request; no database here. Returns (errors, throttled)."""
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": delete_objects_param(self.client, keys), "Quiet": True},
            )
            return response.get("Errors", []), False
        except (ClientError, BotoCoreError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if str(code) in _THROTTLE_CODES or status == 503:
                return [], True  # sent again by the calling thread
            # The whole request failed even after botocore's retries: every key
            # in it is an error, and the next batch still gets its chance.
            return [{"Key": key, "Code": code, "Message": str(exc)} for key in keys], False

    def _on_attempt(self, response=None, **kwargs) -> bool | None:
        """botocore's needs-retry event, once per attempt: a throttling answer is not
        retried by botocore (False stops its handler) but comes back to `_delete`."""
        if not response:
            return None
        http, parsed = response
        code = str((parsed or {}).get("Error", {}).get("Code", ""))
        if code in _THROTTLE_CODES or getattr(http, "status_code", 0) == 503:
            return False
        return None
