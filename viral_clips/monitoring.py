"""Sentry for the Cloudcube cleanup, on top of its cron monitor (scheduling/crons.py).

* a run that raises, or ends ``failed``, is one error event - the exception,
  captured by Sentry's Celery integration - carrying the run's context;
* a run that ends ``partial`` is one warning event saying how many keys could
  not be deleted and showing a few; its check-in is ``ok`` (it ran, on time);
* ``succeeded`` and refused deliveries (``skipped``) send no event.

No credential ever goes into the context: only names and counts.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import sentry_sdk
from django.conf import settings

from scheduling.crons import Hooks
from viral_clips.cleanup import retention_or_default
from viral_clips.models import CleanupRun

logger = logging.getLogger(__name__)

ERRORS_SHOWN = 5  # per-key errors put in a partial run's event (all are counted)


def _before(run_task: Callable, task, args: tuple, kwargs: dict) -> None:
    # On the task's scope: whatever this run reports carries it.
    context = _call_context(run_task, task, args, kwargs)
    sentry_sdk.set_context("cleanup_run", context)
    _set_tags("running", context["trigger"], context["cube"])


def _on_error(task) -> None:
    _describe_failed_run(task.request.id)


def _on_result(result: Any) -> None:
    if isinstance(result, dict) and result.get("status") == CleanupRun.Status.PARTIAL:
        capture_partial_run(result)


# The cleanup's context and events, on top of the check-ins every monitored job gets.
CLEANUP_SENTRY = Hooks(before=_before, on_error=_on_error, on_result=_on_result)


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
        "retention_days": _retention(retention),
        "dry_run": bool(arguments.get("dry_run", False)),
        "cube": cube.cube,
        "bucket": cube.bucket,
    }


def _retention(value: Any) -> Any:
    try:
        return retention_or_default(value)
    except ValueError:
        return value  # the run refuses it; the event says what it was given


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
