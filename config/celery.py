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
        sender.add_periodic_task(
            registry.schedule(job).celery_schedule,
            signature(job.task, kwargs=job.beat_kwargs()),
            name=job.entry,
        )
