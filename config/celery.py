"""The Celery app and its beat schedule.

The worker dyno runs `celery -A config worker --beat`: beat is embedded, and
RedBeat's Redis lock makes sure only one beat schedules however many worker
dynos run. Settings prefixed CELERY_ in config/settings.py configure it.
"""

from __future__ import annotations

import os

from celery import Celery, signature

from scheduling.supervisor import BeatSupervisor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("koolclips")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Restart the embedded beat inside the worker whenever it dies.
app.steps["worker"].add(BeatSupervisor)

CLEANUP_ENTRY = "scheduled-cloudcube-cleanup"
WEEKLY_REPORT_ENTRY = "weekly-report"
# --- to move into the job registry at merge ---
CANARY_ENTRY = "worker-canary"  # scheduling/canary.py
CUBE_STATS_ENTRY = "refresh-cube-stats"  # viral_clips/cube_stats.py


@app.on_after_configure.connect
def register_beat_entries(sender: Celery, **kwargs) -> None:
    """Static beat entries; RedBeat syncs them into Redis when beat starts.

    Runs once Django's settings are loaded (config/__init__.py imports this
    module while settings may still be importing).
    """
    from django.conf import settings

    # RedBeat looks its settings up without the CELERY_ namespace, and falls
    # back to the broker's (with a deprecation warning) when it cannot see them.
    for name in dir(settings):
        if name.startswith("CELERY_REDBEAT_"):
            sender.conf[name.removeprefix("CELERY_").lower()] = getattr(settings, name)

    # Schedule and retention come from CLEANUP_SCHEDULE / CLEANUP_RETENTION_DAYS.
    sender.add_periodic_task(
        settings.CLEANUP_SCHEDULE.celery_schedule,
        signature(
            "viral_clips.tasks.scheduled_cloudcube_cleanup",
            kwargs={"retention_days": settings.CLEANUP_RETENTION_DAYS},
        ),
        name=CLEANUP_ENTRY,
    )
    # Monday 09:00 UTC by default (WEEKLY_REPORT_SCHEDULE).
    sender.add_periodic_task(
        settings.WEEKLY_REPORT_SCHEDULE.celery_schedule,
        signature("viral_clips.tasks.send_weekly_report"),
        name=WEEKLY_REPORT_ENTRY,
    )

    # --- to move into the job registry at merge ---
    # The worker canary (scheduling/canary.py): bookkeeping, not a job. In the
    # registry: ledger=False, monitor=False (no run record, no Sentry check-in).
    # Each message expires after one interval: a stopped worker finds no backlog.
    sender.add_periodic_task(
        float(settings.HEALTH_CANARY_INTERVAL),
        signature("scheduling.tasks.canary"),
        name=CANARY_ENTRY,
        expires=settings.HEALTH_CANARY_INTERVAL,
    )
    # The cube's size for the dashboard and the weekly report (viral_clips/cube_stats.py),
    # every CUBE_STATS_INTERVAL seconds. In the registry: ledger=True, monitor=False.
    sender.add_periodic_task(
        float(settings.CUBE_STATS_INTERVAL),
        signature("viral_clips.tasks.refresh_cube_stats"),
        name=CUBE_STATS_ENTRY,
    )
    # --- end of the block to move ---
