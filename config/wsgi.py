"""WSGI entry point for gunicorn (`web:` in the Procfile)."""

import os

from django.core.wsgi import get_wsgi_application

from config.env import exit_on_configuration_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# A bad setting: one line on stderr, then exit 4, gunicorn's "App failed to
# load" code, on which its master stops (for any other exit code a failed
# worker is restarted for ever).
GUNICORN_APP_LOAD_ERROR = 4
with exit_on_configuration_error(GUNICORN_APP_LOAD_ERROR):
    application = get_wsgi_application()
