"""Run now / Dry run from the dashboard, without ever queueing a duplicate.

A cleanup is "busy" from the moment someone presses a button until its task
has finished:

* queued (pressed, not finished): a Redis marker, set atomically with
  ``SET NX EX`` before the task is sent, so two presses in the same instant
  cannot both win. It names the task id and is removed by that task's
  ``task_postrun`` signal (success, failure or skip). It expires by itself
  after PENDING_TIMEOUT, so a lost message or a killed worker can never block
  the buttons for longer than that.
* running: the cleanup's lease in the database (scheduling.models.JobLease,
  read through scheduling.ledger.active_run), which every running cleanup
  holds, whatever its trigger, and which lapses by itself if its worker dies
  (CLEANUP_LEASE_SECONDS). A `running` row without a live lease belongs to a
  worker that died and blocks nothing.

Checking and sending are not one transaction with the scheduler: a scheduled
run can still start in the same second as a press. The task's guard then
refuses the later one (recorded ``skipped``); this module keeps the common
case — a second press, a double click, two operators — from queueing anything.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import redis
from django.utils import timezone

from scheduling import controls, ledger, registry
from scheduling.app_redis import app_redis
from viral_clips.cleanup import retention_or_default
from viral_clips.models import CleanupRun
from viral_clips.tasks import scheduled_cloudcube_cleanup

logger = logging.getLogger(__name__)

CLEANUP = scheduled_cloudcube_cleanup.job
PENDING_KEY = "koolclips:cleanup:run-now"
# Long enough for a queued task to reach a busy worker, short enough that a
# lost message blocks the buttons only briefly (then the task-level guard
# still stops a real duplicate).
PENDING_TIMEOUT = 600

# Delete the marker only if it still names this task (another press may own it).
_RELEASE_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['task_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class CleanupActivity:
    """A cleanup that is queued or running right now."""

    state: str  # "queued" or "running"
    since: datetime
    dry_run: bool
    trigger: str
    requested_by: str = ""
    run_id: int | None = None
    task_id: str = ""

    def describe(self) -> str:
        kind = "dry run" if self.dry_run else "cleanup"
        if self.state == "running":
            if self.run_id is None:
                return "A cleanup is starting"
            return f"A {kind} ({self.trigger}) is running, run #{self.run_id}"
        who = f" by {self.requested_by}" if self.requested_by else ""
        return f"A {kind} was requested{who} and is queued"


@dataclass(frozen=True)
class RunNowResult:
    queued: bool
    task_id: str = ""
    busy: CleanupActivity | None = None


def _pending(client: redis.Redis) -> CleanupActivity | None:
    raw = client.get(PENDING_KEY)
    if not raw:
        return None
    data = json.loads(raw)
    return CleanupActivity(
        state="queued",
        since=datetime.fromisoformat(data["requested_at"]),
        dry_run=bool(data["dry_run"]),
        trigger=CleanupRun.Trigger.MANUAL,
        requested_by=data.get("requested_by", ""),
        task_id=data["task_id"],
    )


def _running() -> CleanupActivity | None:
    """The cleanup holding the lease, with its CleanupRun row when it has one."""
    job_run = ledger.active_run(CLEANUP.group)
    if job_run is None:
        return None
    run = (
        CleanupRun.objects.filter(job_run_id=job_run.pk).order_by("-started_at").first()
        if job_run.pk
        else None
    )
    if run is None:  # admitted a moment ago: its row is being written
        return CleanupActivity(
            state="running",
            since=job_run.started_at or timezone.now(),
            dry_run=False,
            trigger="",
            task_id=job_run.task_id,
        )
    return CleanupActivity(
        state="running",
        since=run.started_at,
        dry_run=run.dry_run,
        trigger=run.trigger,
        run_id=run.pk,
        task_id=job_run.task_id,
    )


def current_activity() -> CleanupActivity | None:
    """The cleanup that is running, else the one queued from the dashboard, else None.

    Raises redis.RedisError when Redis cannot be asked.
    """
    running = _running()
    if running is not None:
        return running
    with app_redis() as client:
        return _pending(client)


def request_cleanup(
    *,
    dry_run: bool,
    requested_by: str,
    retention_days: object | None = None,
    reason: str = "",
) -> RunNowResult:
    """Queue the cleanup task with trigger `manual`, unless one is queued or running.

    `retention_days` (default CLEANUP_RETENTION_DAYS) is validated first
    (InvalidRetention). The press is audited (a JobAction) when it queues.
    Raises redis.RedisError when Redis (the marker and the broker) is down:
    nothing was queued then.
    """
    retention_days = retention_or_default(retention_days)
    # The dashboard and `jobs run` ask for a reason; older callers give none.
    reason = reason.strip() or "(no reason given)"
    task_id = str(uuid.uuid4())
    marker = json.dumps(
        {
            "task_id": task_id,
            "dry_run": dry_run,
            "requested_by": requested_by,
            "requested_at": timezone.now().isoformat(),
        }
    )
    running = _running()
    if running is not None:
        return RunNowResult(queued=False, busy=running)
    with app_redis() as client:
        if not client.set(PENDING_KEY, marker, nx=True, ex=PENDING_TIMEOUT):
            busy = _pending(client)
            if busy is None:  # it finished between SET and GET: say so rather than race again
                busy = CleanupActivity(
                    state="queued",
                    since=timezone.now(),
                    dry_run=dry_run,
                    trigger=CleanupRun.Trigger.MANUAL,
                )
            return RunNowResult(queued=False, busy=busy)

    try:
        scheduled_cloudcube_cleanup.apply_async(
            kwargs={
                "retention_days": retention_days,
                "dry_run": dry_run,
                "trigger": CleanupRun.Trigger.MANUAL,
            },
            task_id=task_id,
        )
    except Exception:
        release_pending(task_id)
        raise
    controls.record(
        CLEANUP,
        controls.Action.RUN,
        requested_by,
        reason,
        task_id=task_id,
        detail=f"{'dry run' if dry_run else 'cleanup'}, retention {retention_days} days",
    )
    logger.info(
        "Manual %s queued by %r (task %s, retention %s days)",
        "dry run" if dry_run else "cleanup",
        requested_by,
        task_id,
        retention_days,
    )
    return RunNowResult(queued=True, task_id=task_id)


def run_job_now(
    entry: str,
    *,
    actor: str,
    reason: str,
    dry_run: bool = False,
    retention_days: object | None = None,
) -> RunNowResult:
    """Run now for any job, through the same guard and ledger as a slot: the
    cleanup by `request_cleanup` (never queued twice), the others queued as is."""
    job = registry.get(entry)
    if job == CLEANUP:
        return request_cleanup(
            dry_run=dry_run, requested_by=actor, retention_days=retention_days, reason=reason
        )
    action = controls.queue_run(job, actor, reason)
    return RunNowResult(queued=True, task_id=action.task_id)


def release_pending(task_id: str) -> bool:
    """Remove the queued marker if it belongs to `task_id`. True if removed."""
    with app_redis() as client:
        return bool(client.eval(_RELEASE_SCRIPT, 1, PENDING_KEY, task_id))


def cleanup_finished(sender=None, task_id: str | None = None, **kwargs) -> None:
    """`task_postrun` receiver (apps.py), in the worker: a cleanup task ended
    (any outcome). Free the buttons.
    (The cube's size needs nothing: the finished run's row is its newest measurement.)"""
    if getattr(sender, "name", None) != CLEANUP.task:
        return
    if task_id:
        try:
            release_pending(task_id)
        except redis.RedisError as exc:
            # The marker expires by itself after PENDING_TIMEOUT.
            logger.warning("could not clear the run-now marker (%s)", type(exc).__name__)
