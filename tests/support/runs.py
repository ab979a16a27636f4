"""CleanupRun rows as the cleanup writes them, at chosen times (started_at is auto_now_add)."""

from __future__ import annotations

from datetime import datetime, timedelta

from viral_clips.models import CleanupRun


def make_run(
    started_at: datetime, duration: timedelta | None = timedelta(seconds=12), **fields
) -> CleanupRun:
    fields.setdefault("trigger", CleanupRun.Trigger.SCHEDULE)
    fields.setdefault("retention_days", 5)
    fields.setdefault("status", CleanupRun.Status.SUCCEEDED)
    run = CleanupRun.objects.create(**fields)
    finished_at = started_at + duration if duration is not None else None
    CleanupRun.objects.filter(pk=run.pk).update(started_at=started_at, finished_at=finished_at)
    run.refresh_from_db()
    return run
