"""A bad setting stops every entry point at once, readably, and deletes nothing.

Real processes: `manage.py` (the release phase's migrate and the cleanup
command), the Procfile's worker line and its web line, each started with one
bad value against the test's database, Redis and cube (an expired clip file
seeded in it). Each must exit non-zero within seconds, name the variable,
print no traceback, and leave the expired file where it is.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest

from devstack.ports import free_port
from tests.support.processes import ROOT, ProcfileProcess, venv_path_env

pytestmark = pytest.mark.processes

EXPIRED_KEY = "testcube/public/clips/expired.mp4"
EXIT_WITHIN = 30  # seconds; a healthy start takes one or two on this machine

# (variable, bad value, words the message must contain). The first entries of
# each group are the cases from issue 11.
BAD_VALUES = [
    # retention
    ("CLEANUP_RETENTION_DAYS", "five", "from 1 to 3650 days"),
    ("CLEANUP_RETENTION_DAYS", "1.5", "from 1 to 3650 days"),
    ("CLEANUP_RETENTION_DAYS", "", "is empty"),
    ("CLEANUP_RETENTION_DAYS", "0", "from 1 to 3650 days"),
    ("CLEANUP_RETENTION_DAYS", "99999", "from 1 to 3650 days"),
    # schedules: every parser failure, not only ValueError
    ("CLEANUP_SCHEDULE", "0 2 * * 1,", "not a valid cron expression"),
    ("CLEANUP_SCHEDULE", "0,, * * * *", "not a valid cron expression"),
    ("CLEANUP_SCHEDULE", "- 2 * * *", "not a valid cron expression"),
    ("CLEANUP_SCHEDULE", "99999999999999d", "at most 3650 days"),
    ("WEEKLY_REPORT_SCHEDULE", "mondays at nine", "is not valid"),
    # intervals and TTLs, and the lock against the loop
    ("CLEANUP_RUN_GUARD_TTL_SECONDS", "0", "from 1 to 86400"),
    ("BEAT_MAX_LOOP_INTERVAL", "0", "from 1 to 300"),
    ("REDBEAT_LOCK_TIMEOUT", "9", "at least twice BEAT_MAX_LOOP_INTERVAL"),
    ("HEALTH_SCHEDULER_MAX_AGE", "0", "at least 1"),
    ("HEALTH_CACHE_SECONDS", "-1", "from 0 to 60"),
    # rates
    ("SENTRY_TRACES_SAMPLE_RATE", "half", "from 0.0 to 1.0"),
    ("SENTRY_TRACES_SAMPLE_RATE", "1.5", "from 0.0 to 1.0"),
    # concurrency
    ("CELERY_WORKER_CONCURRENCY", "two", "whole number"),
    ("CELERY_WORKER_CONCURRENCY", "0", "from 1 to 32"),
    ("WEB_CONCURRENCY", "two", "whole number"),
    # ports
    ("EMAIL_PORT", "smtp", "from 1 to 65535"),
    ("EMAIL_PORT", "70000", "from 1 to 65535"),
    # booleans
    ("DJANGO_DEBUG", "yes please", "true/false"),
    ("EMAIL_USE_TLS", "enabled", "true/false"),
    # URLs and secrets
    ("CLOUDCUBE_URL", "cloud-cube.s3.amazonaws.com/abc", "must start with http"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("DATABASE_URL", "mysql://u@h/db", "postgres://"),
    ("DJANGO_SECRET_KEY", "", "DJANGO_SECRET_KEY is not set"),
    ("SENTRY_DSN", "not-a-dsn", "Sentry DSN"),
    ("DJANGO_LOG_LEVEL", "loud", "one of DEBUG, INFO"),
]

# One or two per group for the long-running lines (each is a real start-up).
WORKER_CASES = [
    ("CLEANUP_RETENTION_DAYS", "five"),
    ("CLEANUP_RETENTION_DAYS", "0"),
    ("CLEANUP_SCHEDULE", "0 2 * * 1,"),
    ("CLEANUP_SCHEDULE", "99999999999999d"),
    ("CLEANUP_RUN_GUARD_TTL_SECONDS", "0"),
    ("BEAT_MAX_LOOP_INTERVAL", "0"),
    ("SENTRY_TRACES_SAMPLE_RATE", "half"),
    ("CELERY_WORKER_CONCURRENCY", "two"),
    ("EMAIL_PORT", "smtp"),
    ("DJANGO_DEBUG", "yes please"),
]
WEB_CASES = [
    ("CLEANUP_RETENTION_DAYS", "five"),
    ("CLEANUP_SCHEDULE", "- 2 * * *"),
    ("REDBEAT_LOCK_TIMEOUT", "9"),
    ("SENTRY_TRACES_SAMPLE_RATE", "half"),
    ("EMAIL_USE_TLS", "enabled"),
]


@pytest.fixture
def seeded_env(worker_env, cube, redis_client):
    """The test stack's environment, an expired clip file in the cube, and a
    2 s schedule: a worker that started anyway would run a cleanup at once."""
    cube.put(EXPIRED_KEY, b"old clip", age=timedelta(days=30))
    return dict(worker_env, CLEANUP_SCHEDULE="2s")


def _case_id(case) -> str:
    name, value = case[0], case[1]
    return f"{name}={value!r}"


def run_manage(env: dict, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN + 30,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def run_procfile_line(name: str, env: dict, tmp_path) -> tuple[int | None, str, float]:
    """Start a Procfile line; its exit code (None: still running after
    EXIT_WITHIN seconds, then killed), its output and how long it took."""
    process = ProcfileProcess(name, env, tmp_path / f"{name}.log").start()
    started = time.monotonic()
    try:
        code = process.process.wait(EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - started
    process.stop(timeout=5)
    return code, process.output(), elapsed


def assert_refused(code, output: str, elapsed: float, name: str, words: str | None = None):
    assert code is not None, f"still running after {EXIT_WITHIN} s:\n{output[-3000:]}"
    assert code != 0, output
    assert elapsed < EXIT_WITHIN
    assert "koolclips: configuration error: " in output, output[-3000:]
    assert name in output
    if words:
        assert words in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(("name", "value", "words"), BAD_VALUES, ids=map(_case_id, BAD_VALUES))
def test_manage_py_cleanup_refuses_bad_value(seeded_env, cube, name, value, words):
    code, output, elapsed = run_manage(dict(seeded_env, **{name: value}), "cloudcube_cleanup")
    assert_refused(code, output, elapsed, name, words)
    assert EXPIRED_KEY in cube.keys()


@pytest.mark.parametrize(("name", "value"), WORKER_CASES[:4], ids=map(_case_id, WORKER_CASES[:4]))
def test_release_phase_migrate_refuses_bad_value(seeded_env, name, value):
    code, output, elapsed = run_manage(dict(seeded_env, **{name: value}), "migrate", "--noinput")
    assert_refused(code, output, elapsed, name)


@pytest.mark.parametrize(("name", "value"), WORKER_CASES, ids=map(_case_id, WORKER_CASES))
def test_procfile_worker_refuses_bad_value(seeded_env, cube, redis_client, tmp_path, name, value):
    code, output, elapsed = run_procfile_line("worker", dict(seeded_env, **{name: value}), tmp_path)
    assert_refused(code, output, elapsed, name)
    assert EXPIRED_KEY in cube.keys()
    # It never got as far as the scheduler.
    assert not redis_client.exists("koolclips:redbeat::lock")


@pytest.mark.parametrize(("name", "value"), WEB_CASES, ids=map(_case_id, WEB_CASES))
def test_procfile_web_refuses_bad_value(seeded_env, tmp_path, name, value):
    env = dict(seeded_env, PORT=str(free_port()), **{name: value})
    code, output, elapsed = run_procfile_line("web", env, tmp_path)
    assert_refused(code, output, elapsed, name)


def test_every_error_is_reported_at_once(seeded_env, cube, tmp_path):
    bad = {"CLEANUP_RETENTION_DAYS": "five", "SENTRY_TRACES_SAMPLE_RATE": "half"}
    code, output, elapsed = run_manage(dict(seeded_env, **bad), "cloudcube_cleanup")
    assert_refused(code, output, elapsed, "CLEANUP_RETENTION_DAYS")
    assert "2 settings are wrong" in output
    assert "CLEANUP_RETENTION_DAYS='five'" in output
    assert "SENTRY_TRACES_SAMPLE_RATE='half'" in output

    code, output, elapsed = run_procfile_line("worker", dict(seeded_env, **bad), tmp_path)
    assert_refused(code, output, elapsed, "CLEANUP_RETENTION_DAYS")
    assert "SENTRY_TRACES_SAMPLE_RATE='half'" in output
    assert EXPIRED_KEY in cube.keys()


def test_secret_values_never_appear_in_the_message(seeded_env):
    env = dict(
        seeded_env,
        REDIS_URL="rediss://:hunter2-secret-password@ec2-1-2-3-4.compute-1.amazonaws.com:notaport",
        SENTRY_DSN="https://0123456789abcdef0123@o1.ingest.sentry.io/not-a-project",
    )
    code, output, elapsed = run_manage(env, "migrate", "--noinput")
    assert_refused(code, output, elapsed, "REDIS_URL")
    assert "SENTRY_DSN" in output
    assert "hunter2-secret-password" not in output
    assert "0123456789abcdef0123" not in output


def test_a_programming_error_still_shows_its_traceback(seeded_env, tmp_path):
    # Not a configuration error: an exception inside a command keeps its traceback.
    code, output, _ = run_manage(seeded_env, "shell", "-c", "raise RuntimeError('boom')")
    assert code != 0
    assert "Traceback" in output and "RuntimeError: boom" in output
    assert "configuration error" not in output


def test_a_gunicorn_worker_that_meets_a_bad_setting_stops_the_master(seeded_env):
    # Without the master's check (config/gunicorn.py), config/wsgi.py itself
    # exits with gunicorn's "App failed to load" code: the master stops instead
    # of booting a new worker for ever.
    env = dict(seeded_env, CLEANUP_RETENTION_DAYS="five")
    started = time.monotonic()
    result = subprocess.run(
        ["gunicorn", "config.wsgi", "--workers", "1", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN + 30,
    )
    output = result.stdout + result.stderr
    assert_refused(result.returncode, output, time.monotonic() - started, "CLEANUP_RETENTION_DAYS")
    assert result.returncode == 4
    assert "App failed to load" in output
