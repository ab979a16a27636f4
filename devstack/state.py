""".devstack/: the local stack's state, owned by one `make run` at a time.

`make run` holds an exclusive flock on `.devstack/lock` for its whole life (the
kernel drops it when the process dies, however it dies), and writes
`.devstack/env`: the environment a `manage.py` command needs to talk to the
running stack. `make manage` and `make clean` ask the same lock.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What a manage.py command needs to reach the running stack's services, and
# the settings that shape what it does (the schedule, retention, key prefix...).
ENV_NAMES = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "CLOUDCUBE_URL")
ENV_PREFIXES = (
    "DJANGO_",
    "CLOUDCUBE_",
    "CLEANUP_",
    "WEEKLY_REPORT_",
    "REDBEAT_",
    "BEAT_",
    "HEALTH_",
    "CUBE_STATS_",
    "SENTRY_",
    "EMAIL_",
)


class StackBusy(RuntimeError):
    """Another `make run` owns this state directory."""


def state_dir() -> Path:
    """`.devstack/` in the checkout, or $DEVSTACK_DIR (tests use their own)."""
    return Path(os.environ.get("DEVSTACK_DIR") or ROOT / ".devstack")


class StackLock:
    """An exclusive, non-blocking flock on `<state>/lock`, held until release()."""

    def __init__(self, directory: Path):
        self.path = directory / "lock"
        self._fd: int | None = None

    def acquire(self) -> StackLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StackBusy(
                f"another `make run` (pid {owner}) owns {self.path.parent}/: stop it first"
                " (Ctrl-C in its terminal), or run this one with DEVSTACK_DIR=<another dir>"
                " and other ports"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def stack_running(directory: Path) -> bool:
    """True while some `make run` holds the lock of `directory`."""
    path = directory / "lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def stack_env(env: dict[str, str]) -> dict[str, str]:
    """The part of the stack's environment a manage.py command needs."""
    return {
        name: value
        for name, value in sorted(env.items())
        if name in ENV_NAMES or name.startswith(ENV_PREFIXES)
    }


def write_env_file(directory: Path, env: dict[str, str]) -> Path:
    """`<state>/env`: `export NAME=value` lines, safe to `source` from a shell."""
    path = directory / "env"
    lines = ["# Written by `make run` for `make manage`; removed when the stack stops."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in stack_env(env).items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env
