"""gunicorn's configuration for the web line (`--config python:config.gunicorn`).

A bad setting must stop the web process with one readable line and a non-zero
exit. Each gunicorn worker loads Django's settings itself, after the fork (so
Sentry starts in every worker, see config/sentry.py); config/wsgi.py exits
with gunicorn's "App failed to load" code on a configuration error. But with
two workers failing at once, gunicorn 27's master meets the second failure
while it is already halting and dies with its own traceback. So the master
checks the settings first, in a short-lived interpreter of its own (about a
second at boot), and stops before it forks any worker. The master itself never
imports the settings: a Sentry client started before the fork would lose its
sending thread in every worker.
"""

from __future__ import annotations

import os
import subprocess
import sys

_CHECK = (
    "import django\n"
    "from config.env import exit_on_configuration_error\n"
    "with exit_on_configuration_error():\n"
    "    import config.settings\n"
)


def check_settings() -> None:
    """Exit the master with the settings' message and exit code when they are wrong.

    Only a configuration error stops it here: any other failure is left to the
    workers, which show its traceback.
    """
    from config.env import EXIT_CONFIG

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Importing the settings starts Sentry; the check sends nothing.
    env["SENTRY_DSN"] = ""
    result = subprocess.run(
        [sys.executable, "-c", _CHECK],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == EXIT_CONFIG:
        sys.stderr.write(result.stderr)
        sys.stderr.flush()
        raise SystemExit(EXIT_CONFIG)


if os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings") == "config.settings":
    check_settings()
