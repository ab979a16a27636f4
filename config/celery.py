"""The Celery app and its beat schedule.

The worker dyno runs `celery -A config worker --beat`: beat is embedded, and
RedBeat's Redis lock makes sure only one beat schedules however many worker
dynos run. Settings prefixed CELERY_ in config/settings.py configure it.
"""

from __future__ import annotations

import os

from celery import Celery, signature

from config.env import install_excepthook
from scheduling.supervisor import BeatSupervisor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# `celery -A config worker` with a bad setting: one line and exit 1, no traceback.
install_excepthook()

app = Celery("koolclips")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Restart the embedded beat inside the worker whenever it dies.
app.steps["worker"].add(BeatSupervisor)


@app.on_after_configure.connect
def register_beat_entries(sender: Celery, **kwargs) -> None:
    """Static beat entries, one per registered job (scheduling/registry.py);
    RedBeat syncs them into Redis when beat starts.

    Runs once Django's settings are loaded (config/__init__.py imports this
    module while settings may still be importing).
    """
    from django.conf import settings

    from scheduling import registry

    # RedBeat looks its settings up without the CELERY_ namespace, and falls
    # back to the broker's (with a deprecation warning) when it cannot see them.
    for name in dir(settings):
        if name.startswith("CELERY_REDBEAT_"):
            sender.conf[name.removeprefix("CELERY_").lower()] = getattr(settings, name)

    # Schedules, kwargs and names come from the jobs' declarations (viral_clips/jobs.py).
    for job in registry.jobs():
        parsed = registry.schedule(job)
        options = {}
        if job.expires_with_period and parsed.interval_seconds:
            options["expires"] = parsed.interval_seconds
        sender.add_periodic_task(
            parsed.celery_schedule,
            signature(job.task, kwargs=job.beat_kwargs()),
            name=job.entry,
            **options,
        )
