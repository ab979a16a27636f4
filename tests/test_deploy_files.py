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
    worker = commands["worker"]
    assert worker.startswith("celery -A config worker --beat")
    # RedBeat's scheduler, extended (config/beat.py).
    assert "--scheduler config.beat.KoolclipsScheduler" in worker
    from redbeat import RedBeatScheduler

    from config.beat import KoolclipsScheduler

    assert issubclass(KoolclipsScheduler, RedBeatScheduler)
    assert re.search(r"--concurrency \$\{CELERY_WORKER_CONCURRENCY:-2\}", worker)


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
    assert "postdeploy" in app["scripts"]


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
