"""The execution guard: every registered job's run goes through `claim`.

Two facts, both in the database (Redis may forget anything):

* the slot claim: a `JobRun` row per (job, slot), unique unless `skipped`
  (scheduling/models.py) — "this slot executed";
* the lease: the overlap group's `JobLease` row, holder = the execution's
  token, renewed by `Execution.progress()` — "someone runs this right now".

Each execution gets a fresh token (fencing). The broker reuses the task id on
redelivery, so the task id cannot tell a redelivery of a live run from a
requeue after a shutdown; the lease can:

* a delivery of a slot whose row is final (succeeded/partial/failed) is
  recorded `skipped` ("already ran");
* a delivery of a slot whose run is live (row `running`, lease renewed) is
  recorded `skipped` ("refused: a live execution runs it");
* a row `running` whose lease lapsed is marked `abandoned` by whoever finds
  it; a row `abandoned`, `interrupted` or `deferred` is taken over by the next
  delivery with a conditional UPDATE on the old token (rows affected == 1), so
  two deliveries can never both take it; the job then resumes it;
* a new scheduled slot due while another run of its overlap group holds the
  lease is recorded `deferred` (overlap "defer") and the message is re-sent
  with a countdown until it can run, or recorded `skipped` (overlap "skip");
  a manual or command run is refused (`skipped`, with the reason).

Renewal is best effort: a database error while renewing is retried
(`db_retry`), then logged and survived. A run stops (`LeaseLost`) only when
another execution positively holds its job. Finishing and releasing never
raise: the run's own outcome (or a shutdown's `Reject`) always propagates.

Public API: `claim`, `Execution`, `Refusal`, `LeaseLost`, `Refused`,
`execution` (context manager for commands), `current_execution`,
`scheduled_job` (the task decorator), `slot_from_request`, `SLOT_HEADER`,
`TRIGGER_HEADER`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import Reject
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from scheduling import ledger, registry, shutdown
from scheduling.beat import SLOT_HEADER
from scheduling.db import db_retry
from scheduling.models import JobLease, JobRun
from scheduling.registry import OVERLAP_DEFER, Job

logger = logging.getLogger(__name__)

Status = JobRun.Status
Trigger = JobRun.Trigger
# Set by whoever sends a slot that beat did not send on time (catch-up): the
# ledger row's trigger. A message without it but with a slot is `schedule`.
TRIGGER_HEADER = "koolclips_trigger"
_CLAIM_ATTEMPTS = 4


class LeaseLost(Exception):
    """Another execution holds this job now: stop without writing anything more."""


class Refused(Exception):
    """Raised by `execution()` (commands) when the run may not start now."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.reason)
        self.refusal = refusal


@dataclass
class Refusal:
    """A delivery that does not run now: recorded `skipped` or `deferred`."""

    status: str  # Status.SKIPPED or Status.DEFERRED
    reason: str
    run: JobRun

    def as_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "job_run_id": self.run.pk}


@dataclass
class Execution:
    """One execution of a job: its ledger row, token and lease."""

    job: Job
    run: JobRun
    token: str
    resumed: bool = False
    _last_renewal: float = field(default_factory=time.monotonic)

    @property
    def slot(self) -> datetime | None:
        return self.run.slot

    @property
    def trigger(self) -> str:
        return self.run.trigger

    @property
    def task_id(self) -> str:
        return self.run.task_id

    @property
    def state(self) -> dict:
        """Checkpoints recorded by earlier attempts of this run (and this one)."""
        return dict(self.run.state or {})

    def should_stop(self) -> bool:
        """True once this process is asked to stop (a shutdown, a command's Ctrl-C)."""
        return shutdown.requested()

    # --- while running ------------------------------------------------------
    def progress(self, *_args: Any, **_kwargs: Any) -> None:
        """Call often (the cleanup: after every page). Renews the lease at most
        every quarter of `lease_seconds`; raises LeaseLost when another
        execution holds the job, StopRequested when this process is stopping."""
        if self.should_stop():
            raise shutdown.StopRequested(f"{self.job.entry}: stop requested")
        if time.monotonic() - self._last_renewal < self.job.lease_seconds / 4:
            return
        self.renew()

    def fence(self) -> None:
        """Before writing an outcome: raise LeaseLost unless this execution
        still holds its job (renewing the lease on the way)."""
        self.renew()

    def renew(self) -> None:
        """Extend the lease now. Database trouble is logged and survived."""
        try:
            db_retry(self._renew, what=f"{self.job.entry}: lease renewal")
        except LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort: the run goes on
            logger.warning(
                "%s: could not renew the lease (%s: %s); the run goes on",
                self.job.entry,
                type(exc).__name__,
                exc,
            )
        else:
            self._last_renewal = time.monotonic()

    def _renew(self) -> None:
        now = timezone.now()
        expires = now + timedelta(seconds=self.job.lease_seconds)
        held = JobLease.objects.filter(group=self.job.group, holder=self.token).update(
            expires_at=expires
        )
        if not held and not _take_lease(self.job, self.token, self.run, previous=""):
            holder = JobLease.objects.filter(group=self.job.group).values_list("holder", flat=True)
            raise LeaseLost(f"{self.job.group} is held by {next(iter(holder), '?')}")
        # `abandoned` may have been written while this run stalled: it is alive.
        rows = JobRun.objects.filter(pk=self.run.pk, token=self.token).update(
            last_progress_at=now, lease_expires_at=expires, status=Status.RUNNING
        )
        if not rows:
            raise LeaseLost(f"run #{self.run.pk} was taken over by another execution")

    def checkpoint(self, **values: Any) -> None:
        """Record job-specific progress (e.g. sent=True) under this execution's
        token; a redelivery that resumes the run reads it back from `state`."""
        state = {**self.state, **values}

        def write() -> int:
            return JobRun.objects.filter(pk=self.run.pk, token=self.token).update(
                state=state, last_progress_at=timezone.now()
            )

        if not db_retry(write, what=f"{self.job.entry}: checkpoint"):
            raise LeaseLost(f"run #{self.run.pk} was taken over by another execution")
        self.run.state = state

    # --- the end --------------------------------------------------------------
    def finish(self, status: str, detail: str = "") -> bool:
        """Record the outcome under this token (never raises). False if the run
        was taken over (the write is refused) or the database would not take it."""
        return self._end(status, detail)

    def interrupt(self, detail: str = "stopped for a shutdown; resumes on redelivery") -> bool:
        return self._end(Status.INTERRUPTED, detail)

    def _end(self, status: str, detail: str) -> bool:
        def write() -> int:
            return JobRun.objects.filter(pk=self.run.pk, token=self.token).update(
                status=status,
                finished_at=timezone.now(),
                detail=detail[:2000],
                lease_expires_at=None,
            )

        try:
            written = bool(db_retry(write, what=f"{self.job.entry}: run outcome"))
        except Exception:  # noqa: BLE001 - never mask the run's own outcome
            logger.exception(
                "%s: could not record run #%s as %s", self.job.entry, self.run.pk, status
            )
            return False
        if not written:
            logger.warning(
                "%s: run #%s was taken over; its %s outcome is not recorded",
                self.job.entry,
                self.run.pk,
                status,
            )
        else:
            self.run.status = status
        return written

    def release(self) -> None:
        """Free the lease if this execution holds it. Never raises."""

        def write() -> int:
            return JobLease.objects.filter(group=self.job.group, holder=self.token).update(
                holder="", expires_at=None, run=None
            )

        try:
            db_retry(write, what=f"{self.job.entry}: lease release")
        except Exception:  # noqa: BLE001 - it expires by itself after lease_seconds
            logger.warning(
                "%s: could not release the lease; it expires in %s s",
                self.job.entry,
                self.job.lease_seconds,
                exc_info=True,
            )


# --- claiming ---------------------------------------------------------------
def claim(
    job: Job, *, trigger: str, slot: datetime | None = None, task_id: str = ""
) -> Execution | Refusal:
    """Decide whether this delivery runs, and record it. See the module docstring."""
    if trigger not in Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; one of {Trigger.values}")
    for _ in range(_CLAIM_ATTEMPTS):
        # Concurrent deliveries race on the unique slot row and on the lease's
        # conditional UPDATE: the loser looks again and finds the winner.
        outcome = db_retry(
            lambda: _claim_once(job, trigger, slot, task_id), what=f"{job.entry}: claim"
        )
        if outcome is not None:
            return outcome
    raise RuntimeError(f"{job.entry}: could not claim {slot or task_id} (too much contention)")


def _claim_once(
    job: Job, trigger: str, slot: datetime | None, task_id: str
) -> Execution | Refusal | None:
    JobLease.objects.get_or_create(group=job.group)
    ledger.mark_abandoned(job.entry)
    existing = _existing_row(job, slot, task_id)
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


def _claim_new(job: Job, trigger: str, slot: datetime | None, task_id: str):
    token = uuid.uuid4().hex
    now = timezone.now()
    if _take_lease(job, token, None, previous=""):
        try:
            with transaction.atomic():
                run = JobRun.objects.create(
                    job=job.entry,
                    slot=slot,
                    trigger=trigger,
                    task_id=task_id,
                    status=Status.RUNNING,
                    token=token,
                    dyno=settings.DYNO,
                    started_at=now,
                    last_progress_at=now,
                    lease_expires_at=now + timedelta(seconds=job.lease_seconds),
                )
        except IntegrityError:
            _free_lease(job, token)
            return None  # another delivery of this slot won the row: look again
        JobLease.objects.filter(group=job.group, holder=token).update(run=run)
        return Execution(job, run, token)

    busy = _describe(ledger.active_run(job.group))
    if slot is not None and job.overlap == OVERLAP_DEFER:
        reason = f"deferred: {busy}; runs once it ends"
        try:
            with transaction.atomic():
                run = JobRun.objects.create(
                    job=job.entry,
                    slot=slot,
                    trigger=trigger,
                    task_id=task_id,
                    status=Status.DEFERRED,
                    token=token,
                    dyno=settings.DYNO,
                    detail=reason,
                )
        except IntegrityError:
            return None
        return Refusal(Status.DEFERRED, reason, run)
    return _skip(job, trigger, slot, task_id, f"refused: {busy}")


def _claim_existing(job: Job, row: JobRun, trigger: str, slot: datetime | None, task_id: str):
    what = f"slot {slot.isoformat()}" if slot else f"task {task_id}"
    if row.status in JobRun.FINAL:
        return _skip(
            job, trigger, slot, task_id, f"{what} already ran (run #{row.pk}, {row.status})"
        )
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
    if not _take_lease(job, token, None, previous=row.token):
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
        if row.status != Status.DEFERRED and row.status != Status.QUEUED
        else "",
    )
    if taken != 1:
        _free_lease(job, token)
        return None  # another delivery took it over first: look again
    JobLease.objects.filter(group=job.group, holder=token).update(run=row)
    row.refresh_from_db()
    resumed = row.attempt > 1 and row.detail.startswith("resumed")
    if resumed:
        logger.warning("%s: %s taken over and resumed (run #%s)", job.entry, what, row.pk)
    return Execution(job, row, token, resumed=resumed)


def _take_lease(job: Job, token: str, run: JobRun | None, *, previous: str) -> bool:
    """The conditional UPDATE: free, lapsed, or held by the run being taken over."""
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


def _free_lease(job: Job, token: str) -> None:
    JobLease.objects.filter(group=job.group, holder=token).update(holder="", expires_at=None)


def _skip(job: Job, trigger: str, slot: datetime | None, task_id: str, reason: str) -> Refusal:
    now = timezone.now()
    run = JobRun.objects.create(
        job=job.entry,
        slot=slot,
        trigger=trigger,
        task_id=task_id,
        status=Status.SKIPPED,
        dyno=settings.DYNO,
        detail=reason[:2000],
        finished_at=now,
    )
    logger.warning("%s: %s (ledger row #%s)", job.entry, reason, run.pk)
    return Refusal(Status.SKIPPED, reason, run)


def _describe(run: JobRun | None) -> str:
    if run is None:
        return "another run of this job's group is active"
    kind = f"{run.job} {run.trigger or ''}".strip()
    return f"another run is active ({kind}, run #{run.pk})" if run.pk else f"{kind} is starting"


# --- for commands -------------------------------------------------------------
@contextmanager
def execution(job: Job, *, trigger: str = Trigger.COMMAND) -> Iterator[Execution]:
    """Run a block as one guarded execution (management commands).

    Raises Refused when another run holds the job. The row ends `interrupted`
    on StopRequested / KeyboardInterrupt / SystemExit, `failed` on any other
    exception (re-raised), `succeeded` otherwise unless the block called
    `finish` itself. The lease is always released.
    """
    outcome = claim(job, trigger=trigger)
    if isinstance(outcome, Refusal):
        raise Refused(outcome)
    run = outcome
    try:
        yield run
    except (shutdown.StopRequested, KeyboardInterrupt, SystemExit) as exc:
        run.interrupt(f"interrupted ({type(exc).__name__}); not resumed")
        raise
    except BaseException as exc:
        run.finish(Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        if run.run.status == Status.RUNNING:
            run.finish(Status.SUCCEEDED)
    finally:
        run.release()


# --- the task decorator ---------------------------------------------------------
_current: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "koolclips_execution", default=None
)


def current_execution() -> Execution:
    """The guarded execution the calling task body runs as."""
    value = _current.get()
    if value is None:
        raise RuntimeError("not inside a @scheduled_job task")
    return value


def slot_from_request(request) -> datetime | None:
    """The beat slot this message was sent for (scheduling/beat.py), if any."""
    value = _header(request, SLOT_HEADER)
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def _header(request, name: str):
    headers = getattr(request, "headers", None) or {}
    return headers.get(name) or getattr(request, name, None)


def _trigger(request, slot: datetime | None, kwargs: dict) -> str:
    if slot is not None:
        return Trigger.CATCH_UP if _header(request, TRIGGER_HEADER) == "catch_up" else "schedule"
    given = str(kwargs.get("trigger") or "")
    # No slot: not sent by beat, whatever the kwargs say.
    return given if given in (Trigger.MANUAL, Trigger.COMMAND) else Trigger.MANUAL


def _final_status(result: Any) -> str:
    status = result.get("status") if isinstance(result, dict) else None
    return status if status in JobRun.FINAL else Status.SUCCEEDED


def scheduled_job(
    entry: str, *, sentry: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a registered job's task (under `@shared_task(bind=True,
    acks_late=True)`) with the guarantees: slot claim, lease, ledger row,
    shutdown handling and the Sentry cron check-ins (scheduling/crons.py).

    The body runs only when this delivery may run; it reads its execution
    with `current_execution()` (progress, should_stop, state, checkpoint, run).
    It returns a dict (its `status`, when one of succeeded/partial/failed,
    becomes the row's) or raises (the row is `failed`, the exception goes on
    to Celery and Sentry). Raising StopRequested re-queues the message.
    `sentry`: the Sentry decorator to wrap it in (default
    `crons.monitored(entry)`; a job adding its own context passes its own).
    """
    from scheduling import crons

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(body)
        def run(task, *args, **kwargs):
            job = registry.get(entry)
            if not job.ledger:
                return body(task, *args, **kwargs)
            request = task.request
            slot = slot_from_request(request)
            try:
                outcome = claim(
                    job,
                    trigger=_trigger(request, slot, kwargs),
                    slot=slot,
                    task_id=request.id or "",
                )
            except (OperationalError, InterfaceError) as exc:
                # The database (the ledger) is down even after db_retry: acking
                # this message would lose the slot. Send it again later.
                logger.warning("%s: cannot claim (%s); tried again later", job.entry, exc)
                _send_again(task, request, args, kwargs)
                return {"status": Status.DEFERRED, "reason": f"database unavailable: {exc}"}
            if isinstance(outcome, Refusal):
                if outcome.status == Status.DEFERRED:
                    _send_again(task, request, args, kwargs)
                return outcome.as_dict()
            reset = _current.set(outcome)
            try:
                with shutdown.stoppable():
                    result = body(task, *args, **kwargs)
            except shutdown.StopRequested as exc:
                outcome.interrupt()
                logger.warning("%s interrupted by shutdown; re-queued (%s)", job.entry, exc)
                raise Reject(str(exc), requeue=True) from exc
            except LeaseLost as exc:
                logger.warning("%s: stopped, another execution holds it (%s)", job.entry, exc)
                return {"status": Status.SKIPPED, "reason": f"superseded: {exc}"}
            except Exception as exc:
                outcome.finish(Status.FAILED, f"{type(exc).__name__}: {exc}")
                raise
            else:
                outcome.finish(_final_status(result), _detail(result))
                return result
            finally:
                outcome.release()
                _current.reset(reset)

        run.__signature__ = inspect.signature(body)
        run.koolclips_job = entry  # lets a test see every registered task is guarded
        wrapped = (sentry or crons.monitored(entry))(run)
        wrapped.koolclips_job = entry
        return wrapped

    return decorate


def _detail(result: Any) -> str:
    if isinstance(result, dict) and result.get("error_count"):
        return f"{result['error_count']} error(s)"
    return ""


def _send_again(task, request, args: tuple, kwargs: dict) -> None:
    """A deferred slot: the same message again (same task id, slot and check-in)
    after a countdown well below the visibility timeout, until it can run."""
    from scheduling.crons import CHECK_IN_HEADER, STARTED_HEADER

    headers = {
        name: _header(request, name)
        for name in (SLOT_HEADER, TRIGGER_HEADER, CHECK_IN_HEADER, STARTED_HEADER)
        if _header(request, name) is not None
    }
    task.apply_async(
        args=args,
        kwargs=kwargs,
        task_id=request.id,
        headers=headers,
        countdown=settings.SCHEDULING_DEFER_RETRY_SECONDS,
    )
