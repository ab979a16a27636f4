"""Heroku Redis as the app meets it: TLS only, a self-signed certificate, a
password, CONFIG refused. The Procfile's worker (beat included) and web line,
`beat_status` and `preflight` all work against `rediss://:<password>@host:port`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import redis

from devstack.ports import free_port
from devstack.redis_server import RedisServer
from tests.support.processes import ROOT, ProcfileProcess, venv_path_env

pytestmark = pytest.mark.processes

PASSWORD = "heroku-like-redis-password-5f1c9a"
EXPIRED_KEY = "testcube/public/clips/expired.mp4"


@pytest.fixture
def heroku_redis():
    server = RedisServer(
        tls=True, password=PASSWORD, extra_args=["--rename-command", "CONFIG", ""]
    ).start()
    yield server
    server.stop()


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=90,
    )


def get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local http
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_worker_web_beat_status_and_preflight_over_tls(worker_env, cube, heroku_redis, tmp_path):
    assert heroku_redis.url.startswith(f"rediss://:{PASSWORD}@127.0.0.1:")
    # TLS only: nothing answers in plain text on that port, and CONFIG is refused.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=heroku_redis.port, password=PASSWORD, socket_timeout=2).ping()
    client = heroku_redis.client()
    with pytest.raises(redis.ResponseError):
        client.config_get("maxmemory-policy")

    cube.put(EXPIRED_KEY, b"old clip", age=timedelta(days=30))
    env = dict(worker_env, REDIS_URL=heroku_redis.url, CLEANUP_SCHEDULE="2s")
    web_port = free_port()
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    web = ProcfileProcess(
        "web", dict(env, PORT=str(web_port), WEB_CONCURRENCY="1"), tmp_path / "web.log"
    ).start()
    try:
        assert worker.wait_for_output("beat: Acquired lock", timeout=60), worker.output()
        assert client.exists("koolclips:redbeat::lock")
        # A scheduled cleanup ran, for real, through the TLS broker.
        assert worker.wait_for_output("Scheduled cleanup completed", timeout=60), worker.output()
        assert EXPIRED_KEY not in cube.keys()

        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            status = get_status(f"http://127.0.0.1:{web_port}/health/")
            time.sleep(0.5)
        assert status == 200, web.output()

        result = manage(env, "beat_status", "--json")
        assert result.returncode == 0, result.stderr
        beat = json.loads(result.stdout)
        assert beat["lock_held"] is True
        assert beat["holder"]["pid"]
        assert {e["name"] for e in beat["entries"]} >= {"scheduled-cloudcube-cleanup"}

        result = manage(env, "preflight", "--json")
        checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
        for name in ("database", "redis", "redis_eviction", "redis_connections", "scheduler"):
            assert checks[name]["ok"], checks[name]
        assert checks["redis"]["details"]["tls"] is True
        # Read from INFO memory, since CONFIG is refused (as on Heroku).
        assert checks["redis_eviction"]["details"]["policy"] == "noeviction"
        assert PASSWORD not in result.stdout + result.stderr
    finally:
        web.stop()
        worker.stop()
    assert "Traceback" not in worker.output()
    assert not client.exists("koolclips:redbeat::lock")
