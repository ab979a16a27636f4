"""WSGI entry point for gunicorn (`web:` in the Procfile)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from config.env import exit_on_configuration_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# A bad setting: one line on stderr, then exit 4, gunicorn's "App failed to
# load" code, on which its master stops (for any other exit code a failed
# worker is restarted for ever).
GUNICORN_APP_LOAD_ERROR = 4
with exit_on_configuration_error(GUNICORN_APP_LOAD_ERROR):
    application = get_wsgi_application()

# Each worker loads its URLconf and the S3 models before it takes a request,
# not inside the first /health/'s deadline (viral_clips/health.py).
from viral_clips.health import warm_up  # noqa: E402 - needs the apps loaded above

get_resolver().url_patterns  # noqa: B018 - imports the views
warm_up()
