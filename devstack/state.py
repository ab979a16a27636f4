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

from config.env import is_secret_name

ROOT = Path(__file__).resolve().parent.parent

# What `make run` itself sets for its processes (devstack/run.py): the services'
# URLs and the local stack's own credentials and defaults. `.devstack/env`
# holds these, and the developer's non-secret schedule and cleanup settings the
# stack was started with (ENV_PREFIXES), so that a `make manage` command sees
# the same schedule, retention and key prefix as the stack's worker. Nothing
# else from the developer's shell: no other DJANGO_*, CLOUDCUBE_*, SENTRY_* or
# EMAIL_* value, and no variable whose name says it is a secret.
ENV_NAMES = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "REDIS_URL",
    "CLOUDCUBE_URL",
    "CLOUDCUBE_ACCESS_KEY_ID",
    "CLOUDCUBE_SECRET_ACCESS_KEY",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_ADMIN_EMAILS",
)
ENV_PREFIXES = (
    "CLEANUP_",
    "WEEKLY_REPORT_",
    "REDBEAT_",
    "BEAT_",
    "HEALTH_",
    "CUBE_STATS_",
)
# Owner only: it holds the stack's database URL and keys.
ENV_FILE_MODE = 0o600


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
        if name in ENV_NAMES or (name.startswith(ENV_PREFIXES) and not is_secret_name(name))
    }


def write_env_file(directory: Path, env: dict[str, str]) -> Path:
    """`<state>/env`, mode 0600: `export NAME=value` lines, safe to `source` from a shell."""
    path = directory / "env"
    lines = ["# Written by `make run` for `make manage`; removed when the stack stops."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in stack_env(env).items()]
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # Created with its mode, never readable by others even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ENV_FILE_MODE)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    os.chmod(tmp, ENV_FILE_MODE)  # whatever the umask took away, nothing it added
    tmp.replace(path)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env
