"""`manage.py preflight` against the test stack: a real worker from the Procfile,
redis-server, the local S3 server, the Sentry collector and a local SMTP server.

All ✓ first; then each fault turns exactly its own line ✗, with a fix, while
every other line stays ✓.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from devstack.ports import free_port
from tests.settings import TEST_BUCKET
from tests.support.processes import ROOT, ProcfileProcess, venv_path_env
from tests.support.sentry_collector import SentryCollector
from tests.support.smtp_server import SMTPServer

pytestmark = pytest.mark.processes

ADMIN = "ops@example.com"


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def collector():
    with SentryCollector() as server:
        yield server


@pytest.fixture
def stack_env(worker_env, redis_client, cube, smtp, collector) -> dict[str, str]:
    return dict(
        worker_env,
        CLEANUP_SCHEDULE="1h",
        SENTRY_DSN=collector.dsn,
        DJANGO_ADMIN_EMAILS=ADMIN,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
        EMAIL_USE_TLS="0",
    )


def preflight(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "preflight", *args],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=90,
    )


def preflight_json(env: dict, *args: str) -> tuple[int, dict[str, dict]]:
    result = preflight(env, "--json", *args)
    data = json.loads(result.stdout)
    assert data["ok"] is (result.returncode == 0), result.stdout
    return result.returncode, {c["name"]: c for c in data["checks"]}


def failed(checks: dict[str, dict]) -> set[str]:
    return {name for name, check in checks.items() if not check["ok"]}


EXPECTED_LINES = {
    "database",
    "migrations",
    "redis",
    "redis_eviction",
    "redis_connections",
    "cloudcube_list",
    "cloudcube_write_delete",
    "scheduler",
    # One line per registered job.
    "schedule:scheduled-cloudcube-cleanup",
    "schedule:weekly-report",
    "schedule:refresh-cube-stats",
    "schedule:worker-canary",
    "schedule:prune-run-history",
    "sentry",
    "mail_admins",
    "smtp",
}


@pytest.fixture
def worker(stack_env, tmp_path):
    process = ProcfileProcess("worker", stack_env, tmp_path / "worker.log").start()
    try:
        assert process.wait_for_output("beat: holding the scheduler lock", timeout=60), (
            process.output()
        )
        yield process
    finally:
        process.stop()


def test_all_green_then_each_fault_turns_exactly_its_line_red(
    stack_env, worker, redis_client, cube, s3_server
):
    keys_before = cube.keys()
    code, checks = preflight_json(stack_env)
    assert set(checks) == EXPECTED_LINES
    assert failed(checks) == set(), json.dumps(checks, indent=2)
    assert code == 0
    for check in checks.values():
        assert set(check) == {"name", "ok", "summary", "fix", "details"}
    assert checks["redis_eviction"]["details"]["policy"] == "noeviction"
    assert checks["redis_connections"]["details"]["limit"] == 20
    assert 0 < checks["redis_connections"]["details"]["connected_clients"] < 20
    assert checks["scheduler"]["details"]["lock_held"] is True
    assert checks["scheduler"]["details"]["holder"]["pid"]
    assert checks["schedule:scheduled-cloudcube-cleanup"]["details"]["schedule"] == "1h"
    # The probe was written and removed again; nothing else in the cube changed.
    assert checks["cloudcube_write_delete"]["details"]["probe_key"].startswith(
        "testcube/koolclips-preflight/"
    )
    assert cube.keys() == keys_before

    # The text form: a checklist, exit 0.
    text = preflight(stack_env)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "✓ database: reachable" in text.stdout
    assert "✗" not in text.stdout
    assert f"All {len(EXPECTED_LINES)} checks passed." in text.stdout

    # Redis that evicts keys under memory pressure.
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        code, checks = preflight_json(stack_env)
        text = preflight(stack_env)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert code == 1
    assert failed(checks) == {"redis_eviction"}
    assert "allkeys-lru" in checks["redis_eviction"]["summary"]
    assert "heroku redis:maxmemory" in checks["redis_eviction"]["fix"]
    assert "--policy noeviction" in checks["redis_eviction"]["fix"]
    assert text.returncode == 1
    assert "✗ redis_eviction: maxmemory-policy is allkeys-lru" in text.stdout
    assert "    fix: heroku redis:maxmemory <addon> --policy noeviction" in text.stdout
    assert f"1 of {len(EXPECTED_LINES)} checks failed." in text.stdout

    # A bucket policy that denies DeleteObject in the cube.
    s3_server.deny_deletes(TEST_BUCKET, ["testcube/*"])
    try:
        code, checks = preflight_json(stack_env)
    finally:
        s3_server.allow_deletes(TEST_BUCKET)
    assert code == 1
    assert failed(checks) == {"cloudcube_write_delete"}
    line = checks["cloudcube_write_delete"]
    assert "cannot delete in the cube (AccessDenied)" in line["summary"]
    assert "s3:DeleteObject" in line["fix"]
    # It could not be removed: the report says so, and names it.
    assert line["details"]["probe_left_behind"] is True
    assert line["details"]["probe_key"] in line["summary"]
    assert cube.keys() == sorted([*keys_before, line["details"]["probe_key"]])

    # The wrong SMTP port.
    code, checks = preflight_json(dict(stack_env, EMAIL_PORT=str(free_port())))
    assert code == 1
    assert failed(checks) == {"smtp"}
    assert "failed at connect" in checks["smtp"]["summary"]
    assert "EMAIL_PORT" in checks["smtp"]["fix"]

    # No worker: nothing holds the scheduler lock (and waiting for one does not help).
    worker.stop()
    started = time.monotonic()
    code, checks = preflight_json(stack_env, "--wait", "3")
    assert time.monotonic() - started >= 3
    assert code == 1
    assert failed(checks) == {"scheduler"}
    assert "no scheduler holds the lock" in checks["scheduler"]["summary"]
    assert "heroku ps:scale worker=1" in checks["scheduler"]["fix"]


def test_test_event_and_test_mail_are_sent_only_when_asked(stack_env, collector, smtp):
    code, checks = preflight_json(stack_env)
    assert "sentry_test_event" not in checks and "mail_test" not in checks
    assert collector.events() == []
    assert smtp.messages == []

    result = preflight(stack_env, "--json", "--send-test-event", "--send-test-mail")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    event_id = checks["sentry_test_event"]["details"]["event_id"]
    assert checks["sentry_test_event"]["ok"] and event_id in checks["sentry_test_event"]["summary"]
    events = collector.wait_for(collector.events, timeout=10)
    assert [e["event_id"] for e, _ in events] == [event_id]
    assert checks["mail_test"]["ok"]
    assert [m.recipients for m in smtp.messages] == [[f"<{ADMIN}>"]]
    assert b"koolclips preflight: test mail" in smtp.messages[0].data


def test_a_refused_sentry_key_and_missing_admins_are_red(stack_env, collector):
    env = dict(stack_env, SENTRY_DSN=collector.dsn.replace("/4242", "/999"))
    env.pop("DJANGO_ADMIN_EMAILS")
    code, checks = preflight_json(env)
    assert code == 1
    assert not checks["sentry"]["ok"] and "HTTP 404" in checks["sentry"]["summary"]
    assert not checks["mail_admins"]["ok"]
    assert "DJANGO_ADMIN_EMAILS" in checks["mail_admins"]["fix"]
    assert checks["smtp"]["ok"]
