"""The Celery app.

The worker dyno runs `celery -A config worker --beat`: beat is embedded, and
RedBeat's Redis lock makes sure only one beat schedules however many worker
dynos run. Settings prefixed CELERY_ in config/settings.py configure it; the
beat entries come from the job registry (scheduling/registry.py).
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

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
def _redbeat_settings(sender: Celery, **kwargs) -> None:
    """RedBeat looks its settings up without the CELERY_ namespace, and falls
    back to the broker's (with a deprecation warning) when it cannot see them."""
    for name in dir(settings):
        if name.startswith("CELERY_REDBEAT_"):
            sender.conf[name.removeprefix("CELERY_").lower()] = getattr(settings, name)
