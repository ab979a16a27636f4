"""Test settings: the real config.settings, fed the environment a test run needs.

Ports for the test's own redis-server and local S3 server are reserved here,
before Django reads the environment; tests/conftest.py starts both servers on
them. Celery processes started by tests inherit the same environment.

Under pytest-xdist each worker (PYTEST_XDIST_WORKER=gw0, gw1, ...) is a test
run of its own: its own ports, so its own redis-server and S3 server, its own
SQLite file or PostgreSQL database, static root and temporary directory. The
workers inherit the controller's environment, so the ports are reserved again
unless they were reserved for this very worker (KOOLCLIPS_TEST_PORTS_FOR); the
processes a test starts inherit the worker's and keep them.
"""

import os
import tempfile

from devstack.ports import free_port

TEST_BUCKET = "koolclips-test"
TEST_CUBE = "testcube"

_DEFAULTS = {
    "DJANGO_SECRET_KEY": "test-secret-key-3f9a1c7e-never-leaves",
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "DJANGO_LOG_LEVEL": "WARNING",
    "CLOUDCUBE_ACCESS_KEY_ID": "AKIATESTACCESSKEY0001",
    "CLOUDCUBE_SECRET_ACCESS_KEY": "test-cloudcube-secret-9d8e7f6a5b4c",
    "SENTRY_DSN": "",
}
for _name, _value in _DEFAULTS.items():
    os.environ.setdefault(_name, _value)

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

# Our own servers, on ports reserved now (the suite never touches 6379).
if os.environ.get("KOOLCLIPS_TEST_PORTS_FOR") != WORKER:
    os.environ["KOOLCLIPS_TEST_PORTS_FOR"] = WORKER
    os.environ["KOOLCLIPS_TEST_REDIS_PORT"] = str(free_port())
    os.environ["KOOLCLIPS_TEST_S3_PORT"] = str(free_port())
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{os.environ['KOOLCLIPS_TEST_REDIS_PORT']}/0"
os.environ["CLOUDCUBE_URL"] = (
    f"http://127.0.0.1:{os.environ['KOOLCLIPS_TEST_S3_PORT']}/{TEST_BUCKET}/{TEST_CUBE}"
)

from config.settings import *  # noqa: E402,F403

# On SQLite the test database is a file, so the celery processes that tests
# start can share it; with DATABASE_URL set to PostgreSQL, Django's test_ DB.
# Names carry the pid so that concurrent runs on one machine never share one
# (and pytest-django adds the xdist worker's name, e.g. _gw0).
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"koolclips-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_koolclips_{os.getpid()}"}  # noqa: F405

STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = os.path.join(tempfile.gettempdir(), f"koolclips-test-static-{WORKER}")
os.makedirs(STATIC_ROOT, exist_ok=True)

# The job tests/support/example_job.py declares, as a developer adds one.
from scheduling.schedules import parse_schedule  # noqa: E402

EXAMPLE_JOB_SCHEDULE = parse_schedule("*/15 * * * *", "EXAMPLE_JOB_SCHEDULE")
EXAMPLE_JOB_GREETING = "hello from the settings"
