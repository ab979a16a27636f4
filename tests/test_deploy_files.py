"""The Procfile and app.json say what Heroku needs."""

import json
import re
from pathlib import Path

from devstack.procfile import procfile_commands

ROOT = Path(__file__).resolve().parent.parent


def test_procfile_has_exactly_release_web_worker():
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert len(lines) == 3
    commands = procfile_commands()
    assert list(commands) == ["release", "web", "worker"]
    assert "migrate" in commands["release"]
    assert commands["web"].startswith("gunicorn config.wsgi")
    # gunicorn's master checks the settings before it forks (config/gunicorn.py).
    assert "--config python:config.gunicorn" in commands["web"]
    worker = commands["worker"]
    assert worker.startswith("celery -A config worker --beat")
    # Concurrency and scheduler have one source, the settings: a flag on the
    # command line would be a second one (and `--concurrency two` would be
    # rejected by celery's CLI without naming CELERY_WORKER_CONCURRENCY).
    assert "--concurrency" not in worker and " -c " not in worker
    assert "--scheduler" not in worker and " -S " not in worker
    from django.conf import settings
    from redbeat import RedBeatScheduler

    from scheduling.beat import KoolclipsScheduler

    # RedBeat's scheduler, extended (scheduling/beat.py), from CELERY_BEAT_SCHEDULER.
    assert settings.CELERY_BEAT_SCHEDULER == "scheduling.beat.KoolclipsScheduler"
    assert issubclass(KoolclipsScheduler, RedBeatScheduler)
    assert settings.CELERY_WORKER_CONCURRENCY == 2


def test_app_json_provisions_everything():
    app = json.loads((ROOT / "app.json").read_text())
    plans = {a["plan"].split(":")[0] for a in app["addons"]}
    assert plans == {"heroku-redis", "heroku-postgresql", "cloudcube"}
    assert app["formation"]["web"]["quantity"] == 1
    assert app["formation"]["worker"]["quantity"] == 1
    assert app["formation"]["worker"]["size"] != "eco"
    assert app["env"]["DJANGO_SECRET_KEY"]["generator"] == "secret"
    for name, spec in app["env"].items():
        assert spec.get("description"), f"{name} has no description"
    assert "manage.py preflight" in app["scripts"]["postdeploy"]


def test_every_setting_variable_is_documented():
    settings_text = (ROOT / "config" / "settings.py").read_text()
    # The configuration table moved from the README to docs/configuration.md (issue 12).
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    app = json.loads((ROOT / "app.json").read_text())
    used = set(re.findall(r'env\.\w+\(\s*"([A-Z0-9_]+)"', settings_text))
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CLOUDCUBE_URL"} <= used
    for name in used:
        assert f"`{name}`" in configuration, f"{name} missing from docs/configuration.md's table"
    for name in ("DJANGO_SECRET_KEY", "CLEANUP_SCHEDULE", "CLEANUP_RETENTION_DAYS", "SENTRY_DSN"):
        assert name in app["env"]
