"""One execution of a job: its ledger row, its token, its lease.

An execution is what a delivery becomes once `scheduling.claim` admits it.
Every write it makes is `UPDATE … WHERE token = <its token>`: a stale holder's
write changes nothing, so it can never clobber the execution that took over.
Renewal is best effort: a database error while renewing is retried, then
logged and survived; the run stops (`LeaseLost`) only when another execution
positively holds its job. Finishing and releasing never raise.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from scheduling import controls, lease, shutdown
from scheduling.db import db_retry
from scheduling.models import JobRun
from scheduling.registry import Job

logger = logging.getLogger(__name__)

Status = JobRun.Status


class LeaseLost(Exception):
    """Another execution holds this job now: stop without writing anything more."""


@dataclass
class Execution:
    """One execution of a job. The cleanup's RunContext (progress, should_stop,
    fence, run) is a facet of it."""

    job: Job
    run: JobRun
    token: str
    resumed: bool = False
    _last_renewal: float = field(default_factory=time.monotonic)
    _stop: controls.StopWatch | None = None

    def __post_init__(self) -> None:
        self._stop = controls.StopWatch(self.run.pk)

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
        """True once this process is asked to stop (a shutdown, a command's
        Ctrl-C) or an operator stopped this run (read at most once a second)."""
        return shutdown.requested() or self._stop.stopped()

    def stop_order(self):
        """The operator's stop order for this run (scheduling.models.RunStop), or None."""
        return self._stop.confirmed()

    def stop_detail(self) -> str | None:
        """How the run ends when an operator stopped it; None for a shutdown."""
        order = self.stop_order()
        return order.describe() if order is not None else None

    # --- while running ------------------------------------------------------
    def progress(self, *_args: Any, **_kwargs: Any) -> None:
        """Call often (the cleanup: after every page). Renews the lease at most
        every quarter of the job's lease; raises LeaseLost when another
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
        if not lease.extend(self.job, self.token) and not lease.take(
            self.job, self.token, self.run
        ):
            raise LeaseLost(f"{self.job.group} is held by {lease.holder(self.job)}")
        # `abandoned` may have been written while this run stalled: it is alive.
        rows = JobRun.objects.filter(pk=self.run.pk, token=self.token).update(
            last_progress_at=now,
            lease_expires_at=now + timedelta(seconds=self.job.lease_seconds),
            status=Status.RUNNING,
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
        try:
            db_retry(lambda: lease.free(self.job, self.token), what=f"{self.job.entry}: release")
        except Exception:  # noqa: BLE001 - it expires by itself after lease_seconds
            logger.warning(
                "%s: could not release the lease; it expires in %s s",
                self.job.entry,
                self.job.lease_seconds,
                exc_info=True,
            )


_current: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "koolclips_execution", default=None
)


def current_execution() -> Execution:
    """The guarded execution the calling task body runs as."""
    value = _current.get()
    if value is None:
        raise RuntimeError("not inside a @periodic_job task")
    return value


def running_as(execution: Execution) -> contextvars.Token:
    """Make `execution` the current one; pass the result to `done_running`."""
    return _current.set(execution)


def done_running(token: contextvars.Token) -> None:
    _current.reset(token)
