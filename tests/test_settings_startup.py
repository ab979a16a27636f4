"""Start-up refuses bad configuration with a message that says what is wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DJANGO_SECRET_KEY": "x" * 60 + "-production-like-secret-value",
    "DJANGO_ALLOWED_HOSTS": "koolclips.herokuapp.com",
    "DATABASE_URL": "sqlite:////tmp/koolclips-startup-check.sqlite3",
    "REDIS_URL": "rediss://:p4ssw0rd@ec2-1-2-3-4.compute-1.amazonaws.com:6380",
    "CLOUDCUBE_URL": "https://cloud-cube-us2.s3.amazonaws.com/abc123",
    "CLOUDCUBE_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "CLOUDCUBE_SECRET_ACCESS_KEY": "secretexample",
}


def run_manage(env_overrides: dict[str, str | None], *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CLOUDCUBE_", "CLEANUP_", "SENTRY_"))
    }
    env.update(PRODUCTION_ENV)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.processes
def test_production_settings_pass_check_deploy():
    result = run_manage({}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.processes
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        (
            {"CLOUDCUBE_URL": "cloud-cube.s3.amazonaws.com/abc"},
            "CLOUDCUBE_URL must start with http",
        ),
        ({"CLOUDCUBE_URL": None}, "CLOUDCUBE_URL is empty"),
        ({"CLOUDCUBE_SECRET_ACCESS_KEY": None}, "CLOUDCUBE_SECRET_ACCESS_KEY must be set"),
        (
            {"CLEANUP_SCHEDULE": "every day at two"},
            "CLEANUP_SCHEDULE='every day at two' is not valid",
        ),
        ({"CLEANUP_SCHEDULE": "0 26 * * *"}, "not a valid cron expression"),
        (
            {"WEEKLY_REPORT_SCHEDULE": "mondays at nine"},
            "WEEKLY_REPORT_SCHEDULE='mondays at nine' is not valid",
        ),
        ({"HEALTH_CACHE_SECONDS": "five"}, "HEALTH_CACHE_SECONDS='five' is not valid"),
        ({"HEALTH_CACHE_SECONDS": "600"}, "HEALTH_CACHE_SECONDS='600' is not valid"),
        ({"HEALTH_CANARY_INTERVAL": "0"}, "HEALTH_CANARY_INTERVAL='0' is not valid"),
        # The canary must run at least every minute.
        ({"HEALTH_CANARY_INTERVAL": "120"}, "from 1 to 60 seconds"),
        ({"CUBE_STATS_INTERVAL": "10"}, "CUBE_STATS_INTERVAL='10' is not valid"),
        (
            {"WEEKLY_REPORT_TIMEZONE": "Europe/Berln"},
            "WEEKLY_REPORT_TIMEZONE='Europe/Berln' is not valid; expected an IANA time zone",
        ),
        ({"CLEANUP_TIMEZONE": "CEST"}, "CLEANUP_TIMEZONE='CEST' is not valid"),
        ({"RUN_HISTORY_DAYS": "3"}, "RUN_HISTORY_DAYS='3' is not valid"),
        ({"RUN_HISTORY_DAYS": "forever"}, "RUN_HISTORY_DAYS='forever' is not valid"),
    ],
)
def test_bad_configuration_stops_start_up(overrides, message):
    result = run_manage(overrides, "check")
    assert result.returncode != 0
    # One readable line, no traceback (it used to be ImproperlyConfigured's).
    assert result.stderr.startswith("koolclips: configuration error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.processes
def test_rediss_url_gets_cert_none_for_heroku_redis():
    code = (
        "import ssl; from django.conf import settings as s;"
        "assert s.CELERY_BROKER_USE_SSL == {'ssl_cert_reqs': ssl.CERT_NONE};"
        "assert s.CELERY_REDBEAT_REDIS_USE_SSL == {'ssl_cert_reqs': ssl.CERT_NONE};"
        "print('ok')"
    )
    result = run_manage({}, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok"
