"""The operator's hands on every job: pause, resume, stop, run now, audited.

* **Pause** is a row in the database (`JobPause`), read by the claim of every
  scheduled or catch-up delivery: a paused slot is recorded `skipped` with the
  reason `paused: …` (and its Sentry check-in closed `ok`, docs/sentry.md). It
  takes effect on the next slot, on every dyno, with no restart. Manual runs
  (Run now, `jobs run`, the shell) still run: they are explicit and audited.
* **Resume** lets the next slot run. Slots that fell while the job was paused
  are never caught up (`resumed_at` bounds catch-up).
* **Stop** writes a `RunStop` for the job's running execution; the execution
  reads it at most once a second and stops at its next safe point (the
  cleanup: after the batches in flight). The run ends `interrupted`, "stopped by
  …", and no redelivery or catch-up resumes it.
* Every action, and every Run now, is a `JobAction` row: who, when, why.
* A job outside the run ledger (`Job.ledger` False: the worker canary) has
  none of these: no claim reads its pause, no execution its stop order, and a
  run by hand would skip the guard. Each action refuses it (`NotControllable`)
  and the dashboard and `jobs list` offer it none.

Permissions (`scheduling.<name>`): PERM_RUN, PERM_PAUSE (pause and resume),
PERM_STOP; superusers hold all, everyone else only when granted.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.utils import timezone

from scheduling import ledger
from scheduling.models import JobAction, JobPause, JobRun, RunStop
from scheduling.registry import Job

PERM_RUN = "scheduling.run_job"
PERM_PAUSE = "scheduling.pause_job"
PERM_STOP = "scheduling.stop_job"
# How often a running execution asks the database whether it was stopped.
STOP_CHECK_SECONDS = 1.0

Action = JobAction.Action


class ControlError(ValueError):
    """The action cannot be done (no reason given, nothing running, …)."""


class NotControllable(ControlError):
    """The job has no controls: it runs outside the run ledger."""


NO_CONTROLS = (
    "no pause, resume, stop or run now for this job: it runs outside the run ledger"
    " (ledger=False), where those take effect"
)


def controllable(job: Job) -> bool:
    """Whether pause, resume, stop and run now can reach the job."""
    return job.ledger


def require_controls(job: Job) -> None:
    if not controllable(job):
        raise NotControllable(NO_CONTROLS)


@dataclass(frozen=True)
class PauseState:
    paused: bool
    since: datetime | None = None
    by: str = ""
    reason: str = ""

    def describe(self) -> str:
        return f"paused (by {self.by} since {self.since:%Y-%m-%d %H:%M:%S} UTC: {self.reason})"


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ControlError("a reason is required (it goes in the audit trail)")
    return reason[:2000]


def pause_state(entry: str) -> PauseState:
    row = JobPause.objects.filter(job=entry).first()
    if row is None or not row.paused:
        return PauseState(paused=False)
    return PauseState(paused=True, since=row.changed_at, by=row.changed_by, reason=row.reason)


def paused_entries() -> dict[str, PauseState]:
    return {
        row.job: PauseState(True, row.changed_at, row.changed_by, row.reason)
        for row in JobPause.objects.filter(paused=True)
    }


def resumed_at(entry: str) -> datetime | None:
    """When the job was last resumed (slots before it are never caught up)."""
    return JobPause.objects.filter(job=entry).values_list("resumed_at", flat=True).first()


def record(
    job: Job, action: str, actor: str, reason: str, *, run=None, task_id="", detail=""
) -> JobAction:
    return JobAction.objects.create(
        job=job.entry,
        action=action,
        actor=actor[:150],
        reason=_reason(reason),
        run=run,
        task_id=task_id,
        detail=detail[:2000],
    )


def pause(job: Job, actor: str, reason: str) -> JobAction:
    require_controls(job)
    reason = _reason(reason)
    now = timezone.now()
    with transaction.atomic():
        JobPause.objects.update_or_create(
            job=job.entry,
            defaults={"paused": True, "changed_at": now, "changed_by": actor, "reason": reason},
        )
        return record(job, Action.PAUSE, actor, reason)


def resume(job: Job, actor: str, reason: str) -> JobAction:
    """Unpause: the next slot runs; the slots missed while paused are not caught up."""
    require_controls(job)
    reason = _reason(reason)
    now = timezone.now()
    with transaction.atomic():
        JobPause.objects.update_or_create(
            job=job.entry,
            defaults={
                "paused": False,
                "changed_at": now,
                "changed_by": actor,
                "reason": reason,
                "resumed_at": now,
            },
        )
        return record(
            job,
            Action.RESUME,
            actor,
            reason,
            detail="slots missed while paused are not caught up; the next slot runs",
        )


def running_run(job: Job) -> JobRun | None:
    """The job's execution that holds its lease now, if it is this job's."""
    run = ledger.active_run(job.group)
    if run is None or not run.pk or run.job != job.entry or run.status != JobRun.Status.RUNNING:
        return None
    return run


def stop(job: Job, actor: str, reason: str) -> JobAction:
    """Order the job's running execution to stop. ControlError if none runs."""
    require_controls(job)
    reason = _reason(reason)
    run = running_run(job)
    if run is None:
        raise ControlError(f"{job.entry}: nothing is running")
    with transaction.atomic():
        RunStop.objects.get_or_create(
            run=run,
            defaults={"requested_at": timezone.now(), "requested_by": actor, "reason": reason},
        )
        return record(job, Action.STOP, actor, reason, run=run)


def stop_order(run_id: int | None) -> RunStop | None:
    if run_id is None:
        return None
    return RunStop.objects.filter(run_id=run_id).first()


class StopWatch:
    """An execution's view of its stop order: asks the database at most once
    every STOP_CHECK_SECONDS, and remembers a stop once seen."""

    def __init__(self, run_id: int | None):
        self.run_id = run_id
        self.order: RunStop | None = None
        self._checked = 0.0

    def stopped(self) -> bool:
        if self.order is not None:
            return True
        now = time.monotonic()
        if now - self._checked < STOP_CHECK_SECONDS:
            return False
        self._checked = now
        try:
            self.order = stop_order(self.run_id)
        except Exception:  # noqa: BLE001 - a database hiccup must not stop a run
            return False
        return self.order is not None

    def confirmed(self) -> RunStop | None:
        """The stop order, asked now (after a stop, to tell it from a shutdown)."""
        if self.order is None:
            try:
                self.order = stop_order(self.run_id)
            except Exception:  # noqa: BLE001
                return None
        return self.order


def queue_run(job: Job, actor: str, reason: str, kwargs: dict | None = None) -> JobAction:
    """Run now: send the job's task (no slot: the guard records it `manual`,
    refuses it while another run of its group is active) and audit it."""
    require_controls(job)
    reason = _reason(reason)
    task_id = str(uuid.uuid4())
    current_app.send_task(job.task, kwargs=kwargs or {}, task_id=task_id)
    detail = ", ".join(f"{k}={v}" for k, v in sorted((kwargs or {}).items()) if k != "trigger")
    return record(job, Action.RUN, actor, reason, task_id=task_id, detail=detail)
