"""The clips app's scheduled jobs: declared once, here (see docs/scheduling.md).

Beat entries, the execution guard, Sentry monitors and status lines all derive
from these declarations (scheduling/registry.py). Entry and task names must
never change: Redis entries, queued messages and Sentry monitors use them.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from scheduling.registry import OVERLAP_DEFER, OVERLAP_SKIP, Job, register


def _cleanup_kwargs() -> dict:
    return {"retention_days": settings.CLEANUP_RETENTION_DAYS}


CLEANUP = register(
    Job(
        entry="scheduled-cloudcube-cleanup",
        task="viral_clips.tasks.scheduled_cloudcube_cleanup",
        schedule_setting="CLEANUP_SCHEDULE",
        kwargs=_cleanup_kwargs,
        # A dry run or a manual press still going at 02:00 must not cost the
        # night's cleanup: the slot waits for it and then runs.
        overlap=OVERLAP_DEFER,
        # A daily job: yesterday's slot is still worth running today, the one
        # before it is superseded by the next run anyway.
        catch_up=timedelta(hours=23),
        # A run normally starts within seconds of its slot; a takeover or a
        # deploy brings it within a minute or two: 5 minutes still calls a late
        # run late.
        checkin_margin_minutes=5,
        # bench/cleanup_bench.py: 16 s for 20,000 objects against the local S3
        # server. An hour is two orders of magnitude of headroom and still
        # reports a hung run the same night.
        max_runtime_minutes=60,
        # Renewed after every listed page (well under a second on S3).
        lease_seconds=settings.CLEANUP_LEASE_SECONDS,
        description="Delete clip files older than CLEANUP_RETENTION_DAYS from the cube",
    )
)

WEEKLY_REPORT = register(
    Job(
        entry="weekly-report",
        task="viral_clips.tasks.send_weekly_report",
        schedule_setting="WEEKLY_REPORT_SCHEDULE",
        # Two reports for one week are noise; a report running when the next
        # falls due (every few seconds in tests) just lets that slot go.
        overlap=OVERLAP_SKIP,
        # A Monday report missed while no worker ran still goes out that day.
        catch_up=timedelta(hours=12),
        checkin_margin_minutes=15,
        # Building it lists the cube once (seconds) and sends one mail.
        max_runtime_minutes=15,
        lease_seconds=60,
        description="Mail ADMINS the week's cleanup runs and the cube's size",
    )
)

CUBE_STATS = register(
    Job(
        entry="refresh-cube-stats",
        task="viral_clips.tasks.refresh_cube_stats",
        schedule_setting="CUBE_STATS_SCHEDULE",
        # A measurement is superseded by the next one: a late one is worthless.
        overlap=OVERLAP_SKIP,
        # It only feeds the dashboard's and the report's size: no Sentry monitor.
        monitor=False,
        lease_seconds=300,
        description="Measure the cube's size and object count (CUBE_STATS_INTERVAL)",
    )
)
