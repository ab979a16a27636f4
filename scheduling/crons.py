"""Sentry cron monitors for every registered job with `monitor=True`.

Monitor slug = the job's beat entry name; its config follows the job's
schedule setting and its registry settings (`monitor_config`).

* The beat process opens the check-in (``in_progress``, with the monitor's
  config, from which Sentry creates or updates the monitor) the moment it
  dispatches a slot (`start_scheduled_check_in`); the check-in id travels in
  the message's headers (scheduling/headers.py).
* The task closes it ``ok`` or ``error`` when it ends (`monitored`, which the
  guard wraps every job in). A redelivery has the same task id and completes
  the same check-in. A run re-queued for a shutdown and a `deferred` slot leave
  it open: the delivery that finally runs closes it. A refused delivery
  (`skipped`) closes it ``ok``: the slot was handled.
* Sentry's servers raise a *missed* check-in when no run starts within the
  margin of a slot and a *timeout* when a started run has not ended within the
  maximum runtime: no process of ours has to be alive for that.

A job adds its own context and events through `Hooks` (the cleanup:
viral_clips/monitoring.py). Runs not dispatched by beat carry no check-in id:
no check-ins, the same events.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sentry_sdk
from celery.exceptions import Reject
from sentry_sdk.crons import MonitorStatus, capture_checkin

from scheduling import headers as message_headers
from scheduling import registry
from scheduling.registry import Job
from scheduling.schedules import ParsedSchedule
from scheduling.shutdown import StopRequested

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """A job's own Sentry additions (all optional, called only when Sentry is on):
    `before(body, task, args, kwargs)` puts the job's context on the scope,
    `on_error(task)` runs before the exception is reported, `on_result(result)`
    may send a warning."""

    before: Callable[..., None] | None = None
    on_error: Callable[[Any], None] | None = None
    on_result: Callable[[Any], None] | None = None


NO_HOOKS = Hooks()


def sentry_schedule(parsed: ParsedSchedule) -> dict:
    """The monitor's schedule in Sentry's terms.

    Sentry intervals count whole minutes at least (there is no seconds unit), so
    an interval is rounded *up* to whole minutes: "30s" is monitored as every
    minute, "90s" as every 2 minutes. Runs then check in at least as often as
    Sentry expects, so a missed run is still caught; never a false "missed".
    """
    if parsed.kind == "crontab":
        return {"type": "crontab", "value": parsed.raw}
    minutes = max(1, math.ceil((parsed.interval_seconds or 0) / 60))
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            return {"type": "interval", "value": minutes // size, "unit": unit}
    raise AssertionError("unreachable: every whole number of minutes divides by 1")


def schedule_period_minutes(parsed: ParsedSchedule) -> int:
    """The shortest gap between two runs, in whole minutes (at least 1).

    For cron, from the times of day alone: day-of-week/month fields only make
    gaps longer, so this never overestimates.
    """
    if parsed.kind == "interval":
        return max(1, math.ceil((parsed.interval_seconds or 0) / 60))
    cron = parsed.celery_schedule
    times = sorted(hour * 60 + minute for hour in cron.hour for minute in cron.minute)
    if len(times) < 2:
        return 1440
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + 1440 - times[-1])
    return max(1, min(gaps))


def monitor_config(job: Job, parsed: ParsedSchedule | None = None) -> dict:
    """Sentry monitor config for `job` (its schedule from settings unless given).

    Margin and maximum runtime come from the registry, capped by the schedule's
    period so that a late or hung run is reported before the next one is due.
    One good run resolves the issue for hourly-or-rarer schedules; a frequent
    job must succeed `recovery_threshold_frequent` times in a row, so a
    flapping job does not resolve and re-open its issue every other minute.
    """
    parsed = parsed or job.schedule()
    period = schedule_period_minutes(parsed)
    margin = max(1, min(job.checkin_margin_minutes, period // 2))
    return {
        "schedule": sentry_schedule(parsed),
        # The cron's fields are wall-clock times there (scheduling/zoned.py).
        "timezone": parsed.timezone,
        "checkin_margin": margin,
        "max_runtime": max(1, min(job.max_runtime_minutes, period - margin)),
        "failure_issue_threshold": job.failure_issue_threshold,
        "recovery_threshold": job.recovery_threshold
        if period >= 60
        else job.recovery_threshold_frequent,
    }


# --- beat side: in_progress when a scheduled run is dispatched ---------------
_in_beat_process = False


def note_beat_process(**kwargs) -> None:
    """`beat_init` receiver: only the process running beat dispatches scheduled
    runs; in a worker with embedded beat that is the forked beat child."""
    global _in_beat_process
    _in_beat_process = True


def start_scheduled_check_in(sender: str | None = None, headers: dict | None = None, **kwargs):
    """`before_task_publish` receiver, in the beat process: open the run's
    check-in and tell the task its id."""
    if not _in_beat_process or headers is None or headers.get(message_headers.CHECK_IN):
        return
    job = registry.for_task(sender)
    if job is None or not job.monitor or not sentry_sdk.get_client().is_active():
        return
    check_in_id = _check_in_id(headers.get("id"))
    capture_checkin(
        monitor_slug=job.entry,
        check_in_id=check_in_id,
        status=MonitorStatus.IN_PROGRESS,
        monitor_config=monitor_config(job),
    )
    message_headers.open_check_in(headers, check_in_id, time.time())


def _check_in_id(task_id: str | None) -> str:
    try:
        return uuid.UUID(str(task_id)).hex
    except ValueError:
        return uuid.uuid4().hex


# --- task side: close the check-in --------------------------------------------
def monitored(
    job: Job, hooks: Hooks = NO_HOOKS
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a bound task function to close its slot's check-in (and run
    the job's Sentry hooks)."""

    def decorate(run_task: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(run_task)
        def run(task, *args, **kwargs):
            if not sentry_sdk.get_client().is_active():
                return run_task(task, *args, **kwargs)
            check_in_id, started_at = message_headers.check_in(task.request)
            if not job.monitor:
                check_in_id = None
            if hooks.before is not None:
                hooks.before(run_task, task, args, kwargs)
            try:
                result = run_task(task, *args, **kwargs)
            except (StopRequested, Reject):
                # Re-queued for a shutdown: the redelivery (same id, same
                # check-in) resumes the run and closes the check-in.
                raise
            except Exception:
                if hooks.on_error is not None:
                    hooks.on_error(task)
                _finish_check_in(job, check_in_id, started_at, MonitorStatus.ERROR)
                raise  # Sentry's Celery integration captures it: the one error event
            if isinstance(result, dict) and result.get("status") == "deferred":
                return result  # runs later under the same check-in
            if hooks.on_result is not None:
                hooks.on_result(result)
            _finish_check_in(job, check_in_id, started_at, MonitorStatus.OK)
            return result

        # Celery checks call arguments against the signature it reads from here.
        run.__signature__ = inspect.signature(run_task)
        return run

    return decorate


def _finish_check_in(job: Job, check_in_id: str | None, started_at: float | None, status: str):
    if not check_in_id:
        return  # not dispatched by beat (a manual run): no monitor check-in
    try:
        capture_checkin(
            monitor_slug=job.entry,
            check_in_id=check_in_id,
            status=status,
            duration=time.time() - started_at if started_at else None,
            monitor_config=monitor_config(job),
        )
    except Exception:  # noqa: BLE001 - reporting must never change the run's outcome
        logger.warning("%s: could not send the cron check-in", job.entry, exc_info=True)
