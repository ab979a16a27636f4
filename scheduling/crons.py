"""Sentry for the scheduled Cloudcube cleanup: its cron monitor and its inbox.

Cron monitor (slug ``scheduled-cloudcube-cleanup``, the beat entry's name):

* the beat process sends ``in_progress`` the moment it dispatches a scheduled
  run, with the monitor's config (see `cleanup_monitor_config`), from which
  Sentry creates or updates the monitor;
* the task sends ``ok`` or ``error`` under the same check-in id when it ends.
  The check-in id is the Celery task id, so a redelivered task completes the
  same check-in, and a check-in in Sentry names its CleanupRun (``task_id``).
* Sentry's servers raise a *missed* check-in when no run starts within the
  margin of a slot (no worker, a dead beat, a lock nobody took over) and a
  *timeout* when a started run has not ended within the maximum runtime (worker
  killed mid-run, a hung call): no process of ours has to be alive for that.

Inbox:

* a run that raises, or ends ``failed``, is one error event - the exception,
  captured by Sentry's Celery integration - carrying the run's context;
* a run that ends ``partial`` is one warning event saying how many keys could
  not be deleted and showing a few; its check-in is ``ok`` (it ran, on time);
* ``succeeded`` and ``skipped`` (a duplicate run) send no event; check-in ``ok``.

Manual runs (not dispatched by beat) get the same events but no check-ins.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import sentry_sdk
from celery.exceptions import Reject
from celery.signals import beat_init, before_task_publish
from django.conf import settings
from sentry_sdk.crons import MonitorStatus, capture_checkin

from scheduling.schedules import ParsedSchedule
from viral_clips.cleanup import CleanupInterrupted
from viral_clips.models import CleanupRun

logger = logging.getLogger(__name__)

CLEANUP_TASK = "viral_clips.tasks.scheduled_cloudcube_cleanup"
MONITOR_SLUG = "scheduled-cloudcube-cleanup"
# Message headers beat adds to a dispatched run; the task reads them back.
CHECK_IN_HEADER = "koolclips_check_in_id"
STARTED_HEADER = "koolclips_check_in_started_at"

# A run normally starts within seconds of its slot (beat wakes every few
# seconds). A SIGKILLed beat's lock expires in 25 s and a daily restart or
# deploy brings the worker back within a minute or two, and the slot then runs
# on takeover: 5 minutes covers those and still calls a late run late.
CHECKIN_MARGIN_MINUTES = 5
# bench/cleanup_bench.py here: 16 s for 20,000 objects (half expired) against
# the local S3 server, where listing dominates (a page of 1,000 keys per call).
# An hour is two orders of magnitude of headroom for a big cube and a slow S3,
# and still reports a hung run the same night.
MAX_RUNTIME_MINUTES = 60
# Every failed, missed or timed-out run opens (or re-opens) the monitor's issue.
FAILURE_ISSUE_THRESHOLD = 1
# One good run resolves it for hourly-or-rarer schedules; a run every few
# minutes must succeed three times in a row, so a flapping job does not resolve
# and re-open its issue every other minute.
RECOVERY_THRESHOLD_FREQUENT = 3
ERRORS_SHOWN = 5  # per-key errors put in a partial run's event (all are counted)


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


def cleanup_monitor_config(parsed: ParsedSchedule) -> dict:
    """Sentry monitor config for the cleanup, following CLEANUP_SCHEDULE (UTC).

    Margin and maximum runtime are capped by the schedule's period so that a
    late or hung run is reported before the next one is due.
    """
    period = schedule_period_minutes(parsed)
    margin = max(1, min(CHECKIN_MARGIN_MINUTES, period // 2))
    return {
        "schedule": sentry_schedule(parsed),
        "timezone": "UTC",
        "checkin_margin": margin,
        "max_runtime": max(1, min(MAX_RUNTIME_MINUTES, period - margin)),
        "failure_issue_threshold": FAILURE_ISSUE_THRESHOLD,
        "recovery_threshold": 1 if period >= 60 else RECOVERY_THRESHOLD_FREQUENT,
    }


# --- beat side: in_progress when a scheduled run is dispatched ---------------
_in_beat_process = False


@beat_init.connect
def _note_beat_process(**kwargs) -> None:
    # Only the process running beat dispatches scheduled runs; in a worker with
    # embedded beat that is the forked beat child, not the worker itself.
    global _in_beat_process
    _in_beat_process = True


@before_task_publish.connect
def start_scheduled_check_in(sender: str | None = None, headers: dict | None = None, **kwargs):
    """In the beat process: open the run's check-in and tell the task its id."""
    if not _in_beat_process or sender != CLEANUP_TASK or headers is None:
        return
    if not sentry_sdk.get_client().is_active():
        return
    check_in_id = _check_in_id(headers.get("id"))
    capture_checkin(
        monitor_slug=MONITOR_SLUG,
        check_in_id=check_in_id,
        status=MonitorStatus.IN_PROGRESS,
        monitor_config=cleanup_monitor_config(settings.CLEANUP_SCHEDULE),
    )
    headers[CHECK_IN_HEADER] = check_in_id
    headers[STARTED_HEADER] = time.time()


def _check_in_id(task_id: str | None) -> str:
    try:
        return uuid.UUID(str(task_id)).hex
    except ValueError:
        return uuid.uuid4().hex


# --- task side: close the check-in, describe the run -------------------------
def report_cleanup_to_sentry(run_task: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the cleanup task (under @shared_task, bind=True) to report to Sentry.

    The task stays as it is: it returns the run's report (a dict with `status`)
    or raises. Without Sentry this adds nothing.
    """

    @functools.wraps(run_task)
    def run(task, *args, **kwargs):
        if not sentry_sdk.get_client().is_active():
            return run_task(task, *args, **kwargs)
        request = task.request
        check_in_id, started_at = _scheduled_check_in(request)
        # On the task's scope: whatever this run reports carries it.
        context = _call_context(run_task, task, args, kwargs)
        sentry_sdk.set_context("cleanup_run", context)
        _set_tags("running", context["trigger"], context["cube"])
        try:
            result = run_task(task, *args, **kwargs)
        except (CleanupInterrupted, Reject):
            # Stopped between batches for a shutdown and re-queued: the
            # redelivered task (same id, so same check-in) resumes the run and
            # closes the check-in.
            raise
        except Exception:
            _set_tags(CleanupRun.Status.FAILED, context["trigger"], context["cube"])
            _describe_failed_run(request.id)
            _finish_check_in(check_in_id, started_at, MonitorStatus.ERROR)
            raise  # Sentry's Celery integration captures it: the one error event
        if isinstance(result, dict) and result.get("status") == CleanupRun.Status.PARTIAL:
            capture_partial_run(result)
        _finish_check_in(check_in_id, started_at, MonitorStatus.OK)
        return result

    # Celery checks call arguments against the signature it reads from here.
    run.__signature__ = inspect.signature(run_task)
    return run


def _scheduled_check_in(request) -> tuple[str | None, float | None]:
    headers = getattr(request, "headers", None) or {}
    check_in_id = headers.get(CHECK_IN_HEADER) or getattr(request, CHECK_IN_HEADER, None)
    started_at = headers.get(STARTED_HEADER) or getattr(request, STARTED_HEADER, None)
    try:
        started_at = float(started_at) if started_at is not None else None
    except (TypeError, ValueError):
        started_at = None
    return check_in_id, started_at


def _finish_check_in(check_in_id: str | None, started_at: float | None, status: str) -> None:
    if not check_in_id:
        return  # not dispatched by beat (a manual run): no monitor check-in
    capture_checkin(
        monitor_slug=MONITOR_SLUG,
        check_in_id=check_in_id,
        status=status,
        duration=time.time() - started_at if started_at else None,
        monitor_config=cleanup_monitor_config(settings.CLEANUP_SCHEDULE),
    )


def _call_context(run_task: Callable, task, args: tuple, kwargs: dict) -> dict:
    """What is known before the run starts: its arguments, the cube, the task id."""
    try:
        bound = inspect.signature(run_task).bind(task, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
    except TypeError:
        arguments = {}
    retention = arguments.get("retention_days")
    cube = settings.CLOUDCUBE
    return {
        "run_id": None,
        "task_id": task.request.id,
        "trigger": str(arguments.get("trigger", "")),
        "retention_days": settings.CLEANUP_RETENTION_DAYS if retention is None else retention,
        "dry_run": bool(arguments.get("dry_run", False)),
        "cube": cube.cube,
        "bucket": cube.bucket,
    }


def _describe_failed_run(task_id: str | None) -> None:
    """Put the failed run's record (counts so far, error) on the task's scope."""
    if not task_id:
        return
    try:
        run = CleanupRun.objects.filter(task_id=task_id).order_by("-pk").first()
    except Exception:  # noqa: BLE001 - the database may be what failed; report anyway
        logger.warning("Could not read the failed cleanup run for Sentry", exc_info=True)
        return
    if run is None:
        return  # failed before a run was recorded (e.g. invalid retention)
    sentry_sdk.set_context("cleanup_run", run_context(run))
    _set_tags(run.status, run.trigger, run.cube)


def run_context(run: CleanupRun) -> dict:
    """A CleanupRun as Sentry context: never a credential, only names and counts."""
    return {
        "run_id": run.pk,
        "task_id": run.task_id,
        "status": run.status,
        "trigger": run.trigger,
        "retention_days": run.retention_days,
        "dry_run": run.dry_run,
        "cube": run.cube,
        "bucket": settings.CLOUDCUBE.bucket,
        "host": run.host,
        "objects_scanned": run.objects_scanned,
        "files_deleted": run.files_deleted,
        "mb_freed": round(run.mb_freed, 2),
        "clips_retained": run.clips_retained,
        "error_count": run.error_count,
        "errors": list(run.error_sample or [])[:ERRORS_SHOWN],
        "detail": run.detail,
        "started_at": run.started_at.isoformat() if run.started_at else None,
    }


def capture_partial_run(report: dict) -> str | None:
    """One warning event for a run that deleted some files and failed on others."""
    errors = list(report.get("errors") or [])
    failed = int(report.get("error_count") or 0)
    attempted = failed + int(report.get("files_deleted") or 0)
    shown = ", ".join(f"{e.get('code')} {e.get('key')}" for e in errors[:3])
    more = "" if failed <= 3 else f" and {failed - 3} more"
    message = (
        f"Cloudcube cleanup run #{report.get('run_id')} was partial: {failed} of"
        f" {attempted} expired files could not be deleted ({shown}{more})"
    )
    context = {
        key: report.get(key)
        for key in (
            "run_id",
            "status",
            "trigger",
            "retention_days",
            "dry_run",
            "cube",
            "objects_scanned",
            "files_deleted",
            "clips_retained",
            "pinned_kept",
            "error_count",
        )
    }
    context["bucket"] = settings.CLOUDCUBE.bucket
    context["mb_freed"] = round(int(report.get("bytes_freed") or 0) / (1024 * 1024), 2)
    context["errors"] = errors[:ERRORS_SHOWN]
    with sentry_sdk.new_scope() as scope:
        scope.set_context("cleanup_run", context)
        scope.fingerprint = ["cloudcube-cleanup-partial", str(report.get("cube"))]
        _set_tags(CleanupRun.Status.PARTIAL, report.get("trigger"), report.get("cube"), scope=scope)
        return sentry_sdk.capture_message(message, level="warning")


def _set_tags(status: Any, trigger: Any, cube: Any, scope=None) -> None:
    target = scope or sentry_sdk.get_isolation_scope()
    target.set_tag("cleanup.status", str(status))
    target.set_tag("cleanup.trigger", str(trigger))
    target.set_tag("cleanup.cube", str(cube))
