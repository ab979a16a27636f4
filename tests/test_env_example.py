"""`.env.example` (for `heroku local`) is read by the settings' own readers and points
at the services `make run` starts: its redis-server, local S3 server and cube, and
its SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from config.env import Env
from devstack import run
from devstack.s3_server import LocalS3Server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
LINE = re.compile(r"(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>[^\s'\"#]*)")


def parse_dotenv(text: str) -> dict[str, str]:
    """NAME=value lines and comments: the subset of .env that the Heroku CLI and every
    other dotenv reader agree on (no quotes, no spaces, no expansion)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.fullmatch(line)
        assert match, f".env.example line {number} is not plain NAME=value: {line!r}"
        values[match["name"]] = match["value"]
    return values


@pytest.mark.processes
def test_the_settings_load_from_env_example_alone_and_point_at_make_runs_stack():
    values = parse_dotenv(EXAMPLE.read_text())
    # The same readers as config/settings.py, with no error.
    env = Env(values)
    assert env.bool("DJANGO_DEBUG", False) is True
    redis_url = env.url("REDIS_URL", "", schemes=("redis", "rediss"))
    assert env.errors == []
    redis = urlsplit(redis_url)
    assert (redis.hostname, redis.port, redis.path) == ("127.0.0.1", 6379, "/1")
    assert values["CLOUDCUBE_URL"] == LocalS3Server(port=9000).cloudcube_url(run.BUCKET, run.CUBE)
    assert values["DATABASE_URL"] == "sqlite:///.devstack/local.sqlite3"

    # And the whole settings module, in a process that has nothing but these values.
    probe = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "print(json.dumps({'debug': s.DEBUG, 'db': str(s.DATABASES['default']['NAME']),"
        " 'engine': s.DATABASES['default']['ENGINE'], 'redis': s.REDIS_URL,"
        " 'broker': s.CELERY_BROKER_URL, 'bucket': s.CLOUDCUBE.bucket,"
        " 'cube': s.CLOUDCUBE.cube, 'endpoint': s.CLOUDCUBE.endpoint_url}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **values},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "debug": True,
        "db": ".devstack/local.sqlite3",
        "engine": "django.db.backends.sqlite3",
        "redis": "redis://127.0.0.1:6379/1",
        "broker": "redis://127.0.0.1:6379/1",
        "bucket": run.BUCKET,
        "cube": run.CUBE,
        "endpoint": "http://127.0.0.1:9000",
    }
    # make run's own SQLite file, in its default state directory.
    assert ROOT / loaded["db"] == ROOT / ".devstack" / "local.sqlite3"


def test_a_real_env_file_is_never_committed():
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
