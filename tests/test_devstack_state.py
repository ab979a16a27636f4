"""devstack/state.py: `.devstack/env` is safe to source from a shell, and the lock
keeps a second `make run` (another process) out while the first holds it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.state import StackBusy, StackLock, read_env_file, stack_running, write_env_file

HOLD_LOCK = """
import sys, time
from pathlib import Path
from devstack.state import StackLock
StackLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.processes
def test_the_env_file_round_trips_through_a_shell(tmp_path):
    env = {
        "DATABASE_URL": "sqlite:////tmp/a b/local.sqlite3",
        "REDIS_URL": "redis://127.0.0.1:6380/0",
        "DJANGO_SECRET_KEY": 'it\'s $HOME `date` "quoted"',
        "CLEANUP_SCHEDULE": "0 2 * * *",
        "PATH": "/not/for/manage",  # not a setting: left out
        "PORT": "8000",
    }
    path = write_env_file(tmp_path, env)
    expected = {k: v for k, v in env.items() if k not in ("PATH", "PORT")}
    assert read_env_file(path) == expected
    names = " ".join(expected)
    script = f'set -a; . "{path}"; set +a; for n in {names}; do printf "%s\\0" "${{!n}}"; done'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split("\0")[:-1] == list(expected.values())


@pytest.mark.processes
def test_a_second_process_cannot_take_the_lock_until_the_first_is_gone(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert stack_running(tmp_path)
        with pytest.raises(StackBusy, match=rf"pid {holder.pid}\)"):
            StackLock(tmp_path).acquire()
    finally:
        holder.kill()  # however it dies, the kernel drops its lock
        holder.wait()
    assert not stack_running(tmp_path)
    lock = StackLock(tmp_path).acquire()
    assert stack_running(tmp_path)
    lock.release()
