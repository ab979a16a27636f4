"""The task and the management command: thin doors to the same cleanup service."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from scheduling import headers
from tests.support.processes import ProcfileProcess
from viral_clips.models import CleanupRun
from viral_clips.tasks import CleanupFailed, scheduled_cloudcube_cleanup

ROOT = Path(__file__).resolve().parent.parent
OLD = timedelta(days=30)
NEW = timedelta(days=1)
MB = 1024 * 1024


@pytest.mark.django_db
def test_task_logs_the_exact_start_and_completion_lines(cube, caplog, settings, redis_client):
    settings.CLEANUP_RETENTION_DAYS = 5
    cube.put("testcube/public/clips/a.mp4", b"a" * (MB // 2), age=OLD)
    cube.put("testcube/public/clips/b.mp4", b"b" * MB, age=OLD)
    cube.put("testcube/public/clips/c.mp4", b"c", age=NEW)

    # A scheduled run is one beat sent: its message carries the slot.
    slot = datetime.now(UTC).replace(microsecond=0)
    with caplog.at_level(logging.INFO, logger="viral_clips.tasks"):
        result = scheduled_cloudcube_cleanup.apply(headers=headers.for_slot(slot)).get()

    messages = [r.getMessage() for r in caplog.records if r.name == "viral_clips.tasks"]
    assert messages == [
        "Starting scheduled Cloudcube cleanup (retention: 5 days)",
        "Scheduled cleanup completed: Deleted 2 files (1.50 MB), retained 1 recent clips",
    ]
    assert result["status"] == "succeeded"
    assert cube.keys() == ["testcube/public/clips/c.mp4"]
    run = CleanupRun.objects.get()
    assert (run.trigger, run.retention_days, run.dry_run) == ("schedule", 5, False)


@pytest.mark.django_db
def test_a_manual_run_logs_as_manual_and_counts_only_recent_clips_as_recent(
    cube, caplog, settings, redis_client
):
    from viral_clips.models import Clip

    settings.CLEANUP_RETENTION_DAYS = 5
    cube.put("testcube/public/clips/old.mp4", b"o" * MB, age=OLD)
    cube.put("testcube/public/clips/pinned.mp4", b"p", age=OLD)
    cube.put("testcube/public/clips/new.mp4", b"n", age=NEW)
    Clip.objects.create(title="Pinned", file="clips/pinned.mp4", size_bytes=1, pinned=True)

    with caplog.at_level(logging.INFO, logger="viral_clips.tasks"):
        scheduled_cloudcube_cleanup.apply(kwargs={"trigger": "manual", "dry_run": True}).get()

    messages = [r.getMessage() for r in caplog.records if r.name == "viral_clips.tasks"]
    assert messages == [
        "Starting manual Cloudcube cleanup (retention: 5 days)",
        # The month-old pinned clip is kept, but it is not a "recent" clip.
        "Manual cleanup completed: Would delete 1 files (1.00 MB), retained 1 recent clips",
        "Kept 1 expired files of pinned or recent clips",
    ]


@pytest.mark.django_db
def test_the_seed_shell_habit_is_recorded_as_manual(cube, redis_client):
    """`scheduled_cloudcube_cleanup.delay(retention_days=5)` from a Django shell:
    no slot, so manual, in the ledger and in the cleanup's own record."""
    cube.put("testcube/public/clips/a.mp4", age=OLD)
    assert scheduled_cloudcube_cleanup.apply(kwargs={"retention_days": 5}).get()["status"] == (
        "succeeded"
    )
    run = CleanupRun.objects.get()
    assert (run.trigger, run.retention_days, run.job_run.trigger) == ("manual", 5, "manual")
    assert cube.keys() == []


@pytest.mark.django_db
def test_task_raises_when_the_run_failed(cube, s3_server, redis_client):
    key = cube.put("testcube/public/clips/a.mp4", age=OLD)
    with s3_server.refuse_deletes([key], cube.bucket):
        outcome = scheduled_cloudcube_cleanup.apply(kwargs={"retention_days": 5})
    assert isinstance(outcome.result, CleanupFailed)
    assert CleanupRun.objects.get().status == "failed"


@pytest.mark.django_db
def test_task_refuses_bad_retention_and_deletes_nothing(cube, redis_client):
    cube.put("testcube/public/clips/a.mp4", age=OLD)
    outcome = scheduled_cloudcube_cleanup.apply(kwargs={"retention_days": 0})
    assert "at least 1" in str(outcome.result)
    assert cube.keys() == ["testcube/public/clips/a.mp4"]


@pytest.mark.django_db
def test_command_summary_dry_run_and_real_run(cube, capsys):
    cube.put("testcube/public/clips/a.mp4", b"a" * MB, age=OLD)
    cube.put("testcube/public/clips/b.mp4", b"b", age=NEW)

    call_command("cloudcube_cleanup", "--dry-run", "--retention-days", "5")
    out = capsys.readouterr().out
    assert "Dry run: Would delete 1 files (1.00 MB), retained 1 recent clips" in out
    assert len(cube.keys()) == 2

    call_command("cloudcube_cleanup", "--retention-days", "5")
    out = capsys.readouterr().out
    assert "Deleted 1 files (1.00 MB), retained 1 recent clips" in out
    assert "Status: succeeded" in out
    assert cube.keys() == ["testcube/public/clips/b.mp4"]
    assert list(CleanupRun.objects.values_list("trigger", "dry_run")) == [
        ("command", False),
        ("command", True),
    ]


@pytest.mark.django_db
def test_command_exit_status_reflects_partial_and_failed_runs(cube, s3_server, capsys):
    keys = [cube.put(f"testcube/public/clips/{i}.mp4", age=OLD) for i in range(3)]
    with s3_server.refuse_deletes(keys[:1], cube.bucket), pytest.raises(CommandError) as partial:
        call_command("cloudcube_cleanup")
    assert partial.value.returncode == 2
    assert "could not delete 'testcube/public/clips/0.mp4': AccessDenied" in capsys.readouterr().err

    with s3_server.refuse_deletes(keys[:1], cube.bucket), pytest.raises(CommandError) as failed:
        call_command("cloudcube_cleanup")
    assert failed.value.returncode == 1


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["0", "-3", "100000"])
def test_command_refuses_bad_retention(cube, value):
    cube.put("testcube/public/clips/a.mp4", age=OLD)
    with pytest.raises(CommandError, match="retention_days must be"):
        call_command("cloudcube_cleanup", "--retention-days", value)
    assert cube.keys() == ["testcube/public/clips/a.mp4"]
    assert not CleanupRun.objects.exists()


@pytest.mark.processes
def test_command_shows_a_progress_bar_on_a_terminal(worker_env, cube):
    for i in range(1500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    leader, follower = pty.openpty()
    # A terminal has a size; tqdm draws nothing in zero columns.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "cloudcube_cleanup", "--dry-run"],
        cwd=ROOT,
        env=worker_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    terminal = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
        elif proc.poll() is not None:
            break
    stdout = proc.communicate(timeout=30)[0].decode()
    os.close(leader)
    assert proc.returncode == 0, stdout + terminal.decode(errors="replace")
    text = terminal.decode(errors="replace")
    assert "Scanning cube" in text and "1500" in text and "objects" in text
    assert "Would delete 1500 files" in stdout
    # Not on a pipe: stdout got the summary only.
    assert "Scanning cube" not in stdout


@pytest.mark.processes
def test_the_procfile_worker_runs_the_scheduled_cleanup(worker_env, redis_client, cube, tmp_path):
    cube.put("testcube/public/clips/old.mp4", b"o" * MB, age=OLD)
    cube.put("testcube/public/clips/new.mp4", b"n", age=NEW)
    env = dict(worker_env, CLEANUP_SCHEDULE="2s", CLEANUP_RETENTION_DAYS="5")
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output(
            "Scheduled cleanup completed: Deleted 1 files (1.00 MB), retained 1 recent clips",
            timeout=60,
        ), worker.output()
    finally:
        worker.stop()
    assert "Starting scheduled Cloudcube cleanup (retention: 5 days)" in worker.output()
    assert cube.keys() == ["testcube/public/clips/new.mp4"]
    assert CleanupRun.objects.filter(trigger="schedule", files_deleted=1).exists()
