"""The guard: the life of one delivery of a job, from message to ledger row.

    message -> headers (slot? catch-up?) -> claim
      claim -> Refusal skipped                 -> acked
      claim -> Refusal deferred                -> sent again later, acked
      claim -> Execution -> body returns       -> finish(its status)
                         -> body raises        -> finish(failed), raised on
                         -> StopRequested      -> interrupt(), re-queued
                            (an operator's Stop -> interrupt("stopped by …"), acked)
                         -> LeaseLost          -> nothing more written
      an Execution always releases its lease at the end.

`guarded(job)` wraps a task body in that life (scheduling/periodic.py applies
it to every job); `execution(job)` gives a management command the same life
for a block of code. The claim's rules are scheduling/claim.py's, the run
states scheduling/models.py's.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError

from scheduling import headers, shutdown
from scheduling.claim import Refusal, claim
from scheduling.execution import Execution, LeaseLost, done_running, running_as
from scheduling.models import JobRun
from scheduling.registry import Job

logger = logging.getLogger(__name__)

Status = JobRun.Status
Trigger = JobRun.Trigger


class Refused(Exception):
    """Raised by `execution()` (commands) when the run may not start now."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.reason)
        self.refusal = refusal


def guarded(job: Job) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a bound task function (`run(task, *args, **kwargs)`) in the life of
    one delivery. The body runs only when this delivery may run; it reads its
    execution with `current_execution()`. It returns a dict (its `status`, when
    one of succeeded/partial/failed, becomes the row's) or raises."""

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(body)
        def run(task, *args, **kwargs):
            request = task.request
            slot = headers.slot(request)
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
            current = running_as(outcome)
            try:
                with shutdown.stoppable():
                    result = body(task, *args, **kwargs)
            except shutdown.StopRequested as exc:
                stopped = outcome.stop_detail()
                if stopped is not None:
                    # An operator's Stop: ended for good, the message is acked
                    # (and claim refuses any redelivery of this row).
                    outcome.interrupt(stopped)
                    logger.warning("%s: run #%s %s", job.entry, outcome.run.pk, stopped)
                    return {
                        "status": Status.INTERRUPTED,
                        "reason": stopped,
                        "job_run_id": outcome.run.pk,
                    }
                outcome.interrupt()
                logger.warning("%s interrupted by shutdown; re-queued (%s)", job.entry, exc)
                raise shutdown.ShutdownRequeue(str(exc)) from exc
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
                done_running(current)

        run.__signature__ = inspect.signature(body)
        return run

    return decorate


def _trigger(request, slot, kwargs: dict) -> str:
    if slot is not None:
        return Trigger.CATCH_UP if headers.is_catch_up(request) else Trigger.SCHEDULE
    given = str(kwargs.get("trigger") or "")
    # No slot: not sent by a scheduler, whatever the kwargs say.
    return given if given in (Trigger.MANUAL, Trigger.COMMAND) else Trigger.MANUAL


def _final_status(result: Any) -> str:
    status = result.get("status") if isinstance(result, dict) else None
    return status if status in JobRun.FINAL else Status.SUCCEEDED


def _detail(result: Any) -> str:
    if isinstance(result, dict) and result.get("error_count"):
        return f"{result['error_count']} error(s)"
    return ""


def _send_again(task, request, args: tuple, kwargs: dict) -> None:
    """A deferred slot: the same message again (same task id, slot and check-in)
    after a countdown well below the visibility timeout, until it can run."""
    task.apply_async(
        args=args,
        kwargs=kwargs,
        task_id=request.id,
        headers=headers.carried(request),
        countdown=settings.SCHEDULING_DEFER_RETRY_SECONDS,
    )


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
        run.interrupt(run.stop_detail() or f"interrupted ({type(exc).__name__}); not resumed")
        raise
    except BaseException as exc:
        run.finish(Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        if run.run.status == Status.RUNNING:
            run.finish(Status.SUCCEEDED)
    finally:
        run.release()
