"""`manage.py beat_status` shows what the scheduler holds, not what its own
environment says: a Procfile worker with CLEANUP_SCHEDULE=1m set only for the
worker (as an operator's `heroku config:set` reaches the dynos, not a one-off
shell), and beat_status run with the default environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import ROOT, ProcfileProcess

pytestmark = pytest.mark.processes


def beat_status(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "beat_status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def block(output: str, entry: str) -> str:
    """The lines beat_status prints for one entry."""
    return output.split(f"\n{entry} (", 1)[1].split("\n\n")[0]


def test_beat_status_shows_the_workers_schedule_not_its_own(worker_env, redis_client, tmp_path):
    default_env = {k: v for k, v in worker_env.items() if k != "CLEANUP_SCHEDULE"}
    worker_only = dict(default_env, CLEANUP_SCHEDULE="1m", DYNO="worker.1")
    worker = ProcfileProcess("worker", worker_only, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output("holding the scheduler lock", timeout=40), worker.output()
        shown = beat_status(default_env)
    finally:
        worker.stop()

    assert shown.returncode == 0, shown.stderr
    cleanup = block(shown.stdout, "scheduled-cloudcube-cleanup")
    assert "schedule: every 1 minute [1m]" in cleanup, shown.stdout
    assert "02:00" not in cleanup  # this shell's own default schedule
    assert "last run: never" in cleanup  # the ledger's word, not the entry's creation time
    assert "next run: " in cleanup and "(in " in cleanup
    assert "schedule: every Monday at 09:00 UTC" in block(shown.stdout, "weekly-report")

    stopped = beat_status(default_env)  # the worker released the lock
    assert stopped.returncode != 0
    assert "no beat is scheduling right now" in stopped.stdout
