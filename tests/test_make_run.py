"""`make run`'s stack (devstack/run.py) end to end: health, beat, cleanup, a second
`make run` refused without harm, `make manage` against it, public clip files, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
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


def table_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("viral_clips_clip", "viral_clips_cleanuprun", "auth_user")
        }


def anonymous_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def second_make_run(env: dict[str, str], tmp_path: Path, name: str):
    """Start another `make run`; it must give up on its own, quickly."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "devstack.run"],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=5,  # on the old code it was still migrating, seeding, starting
    )
    (tmp_path / f"{name}.log").write_text(result.stdout + result.stderr)
    return result, time.monotonic() - started


def make_manage(env: dict[str, str], args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "manage", f"ARGS={args}"],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_run_serves_health_schedules_cleans_and_stops_cleanly(tmp_path):
    web_port = free_port()
    s3_port = free_port()
    state = tmp_path / "devstack"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CLOUDCUBE_", "REDIS_", "DATABASE_", "CLEANUP_"))
    }
    env.update(
        PORT=str(web_port),
        DEVSTACK_REDIS_PORT=str(free_port()),
        DEVSTACK_S3_PORT=str(s3_port),
        # Its own .devstack/ (lock, env, the default SQLite file), not the checkout's.
        DEVSTACK_DIR=str(state),
        CLEANUP_SCHEDULE="3s",
    )
    database = state / "local.sqlite3"
    stray_db = ROOT / "db.sqlite3"
    stray_before = stray_db.exists()
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
        # 12 objects: 5 deleted (the demo's old private scratch file,
        # scratch/transcode.bin, is outside the cleanup's scope and stays); kept are
        # 5 recent clips and 1 pinned 7-day-old clip, which is not "recent".
        assert (
            "Scheduled cleanup completed: Deleted 5 files (8.25 MB), retained 5 recent clips"
            in text
        ), text[-3000:]
        assert f'DEVSTACK_DIR={state} make manage ARGS="beat_status"' in text
        started = descendants(proc.pid)

        # A public clip file answers an anonymous GET, as on Cloudcube.
        public = f"http://127.0.0.1:{s3_port}/koolclips-local/localcube/public/clips/demo/"
        assert anonymous_get(public + "00-skateboarding-dog.mp4") == 200

        # A second `make run` on the same .devstack/ refuses at once, harming nothing.
        before = table_counts(database)
        assert before["viral_clips_clip"] >= 4 and before["viral_clips_cleanuprun"] >= 1
        second, seconds = second_make_run(env, tmp_path, "second")
        assert second.returncode != 0, second.stdout
        assert seconds < 5
        assert "another `make run`" in second.stdout and str(proc.pid) in second.stdout
        after = table_counts(database)
        assert after["viral_clips_clip"] == before["viral_clips_clip"]
        assert after["viral_clips_cleanuprun"] >= before["viral_clips_cleanuprun"]
        assert after["auth_user"] == before["auth_user"] == 1
        assert anonymous_get(public + "00-skateboarding-dog.mp4") == 200
        # One with a .devstack/ of its own but the same web port refuses too.
        other_state = tmp_path / "other-devstack"
        third, seconds = second_make_run(
            dict(env, DEVSTACK_DIR=str(other_state)), tmp_path, "third"
        )
        assert third.returncode != 0 and seconds < 5, third.stdout
        assert f"already in use: PORT={web_port}" in third.stdout
        assert not (other_state / "local.sqlite3").exists()
        assert (state / "env").exists()  # the first stack's, untouched
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health/", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"

        # `make manage` runs a command against this stack, with no setup at all.
        # CLEANUP_SCHEDULE=3s: a scheduled cleanup may be running right now, and
        # the command then refuses by design ("another run is active"); it is
        # started again once that run is over.
        deadline = time.monotonic() + 60
        dry = make_manage(env, "cloudcube_cleanup --dry-run")
        while "another run is active" in dry.stdout + dry.stderr and time.monotonic() < deadline:
            time.sleep(0.5)
            dry = make_manage(env, "cloudcube_cleanup --dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "Dry run: Would delete 0 files" in dry.stdout
        assert "cube 'localcube'" in dry.stdout
        assert table_counts(database)["viral_clips_cleanuprun"] > after["viral_clips_cleanuprun"]
        assert stray_db.exists() == stray_before  # no stray db.sqlite3
        status = make_manage(env, "beat_status")
        assert "scheduled-cloudcube-cleanup" in status.stdout, status.stdout + status.stderr
        assert "Traceback" not in status.stderr
        assert len(started) >= 4  # web master + workers, celery worker + children

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        time.sleep(0.5)
        alive = {pid: command(pid) for pid in started if running(pid)}
        assert not alive, f"left running: {alive}"
        assert "devstack | stopped" in log_path.read_text()
        assert not (state / "env").exists()  # nothing to point at a stopped stack
        refused = make_manage(env, "beat_status")
        assert refused.returncode != 0 and "No local stack is running" in refused.stderr
    finally:
        if proc.poll() is None:
            # web and worker run in sessions of their own: stop each group.
            for pid in descendants(proc.pid) | {proc.pid}:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            proc.wait()
