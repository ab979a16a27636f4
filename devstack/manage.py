"""`make manage ARGS="beat_status"`: any manage.py command against the running `make run`.

Reads `.devstack/env` (written by `make run`) and runs `manage.py ARGS` with it,
so the command talks to the stack's own database, redis-server and S3 server.
Refuses, saying so, when no stack is running.
"""

from __future__ import annotations

import os
import sys

from devstack.state import ROOT, read_env_file, stack_running, state_dir


def main(argv: list[str]) -> int:
    directory = state_dir()
    env_file = directory / "env"
    if not stack_running(directory) or not env_file.exists():
        print(
            f"No local stack is running ({directory}/ has no live `make run`): start one with"
            " `make run` in another terminal, then run this again.",
            file=sys.stderr,
        )
        return 2
    if not argv:
        argv = ["help"]
    env = {**os.environ, **read_env_file(env_file)}
    os.chdir(ROOT)
    os.execve(sys.executable, [sys.executable, "manage.py", *argv], env)  # noqa: S606
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
