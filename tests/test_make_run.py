"""`make run`'s stack (devstack/run.py) end to end: health, beat, cleanup, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devstack.ports import free_port
from tests.support.processes import venv_path_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.processes


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (this sandbox's init may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def test_make_run_serves_health_schedules_cleans_and_stops_cleanly(tmp_path):
    web_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CLOUDCUBE_", "REDIS_", "DATABASE_", "CLEANUP_"))
    }
    env.update(
        PORT=str(web_port),
        DEVSTACK_REDIS_PORT=str(free_port()),
        DEVSTACK_S3_PORT=str(free_port()),
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
        CLEANUP_SCHEDULE="3s",
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.run"],
            cwd=ROOT,
            env=venv_path_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health/", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, log_path.read_text()
        assert body["status"] == "ok"

        # Beat holds the lock, schedules, and the first cleanup finds the
        # back-dated demo files: 7 are older than 5 days, 1 of them pinned.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log_path.read_text()
            if "Scheduled cleanup completed" in text:
                break
            time.sleep(0.5)
        text = log_path.read_text()
        assert "beat: Acquired lock" in text
        assert "Sending due task scheduled-cloudcube-cleanup" in text
        # Issue 10: the demo's old private scratch file (scratch/transcode.bin)
        # is outside the cleanup's scope now and stays: 5 files, not 6.
        assert (
            "Scheduled cleanup completed: Deleted 5 files (8.25 MB), retained 6 recent clips"
            in text
        ), text[-3000:]
        started = descendants(proc.pid)
        assert len(started) >= 4  # web master + workers, celery worker + children

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        time.sleep(0.5)
        alive = {pid: command(pid) for pid in started if running(pid)}
        assert not alive, f"left running: {alive}"
        assert "devstack | stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            # web and worker run in sessions of their own: stop each group.
            for pid in descendants(proc.pid) | {proc.pid}:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            proc.wait()
