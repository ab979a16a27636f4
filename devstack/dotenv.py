"""`make env`: write `.env` for `heroku local` from the running `make run`.

`.env.example` assumes make run's default ports (Redis 6379, S3 9000); when make
run had to pick others, this writes the ones it picked, read from
`.devstack/env`. The worker that `heroku local` starts uses Redis database 1 of
make run's redis-server, so it takes a beat lock of its own instead of
standing by behind make run's worker. Written with mode 0600 (to $DOTENV when
set); an existing file is left alone unless FORCE=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from devstack.state import ENV_FILE_MODE, ROOT, read_env_file, stack_running, state_dir

# What the web and worker lines need from the stack (its URLs and local values).
NAMES = (
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DATABASE_URL",
    "REDIS_URL",
    "CLOUDCUBE_URL",
    "CLOUDCUBE_ACCESS_KEY_ID",
    "CLOUDCUBE_SECRET_ACCESS_KEY",
    "DJANGO_ADMIN_EMAILS",
)
HEROKU_LOCAL_REDIS_DB = 1


def dotenv_lines(stack: dict[str, str]) -> list[str]:
    """`.env` lines (plain NAME=value, as every dotenv reader takes them) for `heroku local`."""
    values = {name: stack[name] for name in NAMES if name in stack}
    if "REDIS_URL" in values:
        values["REDIS_URL"] = (
            urlsplit(values["REDIS_URL"])._replace(path=f"/{HEROKU_LOCAL_REDIS_DB}").geturl()
        )
    values["PYTHONUNBUFFERED"] = "1"
    lines = ["# Written by `make env` from the running `make run`, for `heroku local`."]
    for name, value in values.items():
        if any(c.isspace() or c in "'\"#$\\`" for c in value):
            raise ValueError(f"{name} cannot be written as a plain .env value: {value!r}")
        lines.append(f"{name}={value}")
    return lines


def write_dotenv(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ENV_FILE_MODE)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    os.chmod(tmp, ENV_FILE_MODE)
    tmp.replace(path)


def main() -> int:
    directory = state_dir()
    env_file = directory / "env"
    if not stack_running(directory) or not env_file.exists():
        print("make env: no local stack is running: start `make run` first.", file=sys.stderr)
        return 2
    target = Path(os.environ.get("DOTENV") or ROOT / ".env")
    if target.exists() and os.environ.get("FORCE") != "1":
        print(f"make env: {target} exists; left as it is (FORCE=1 make env replaces it).")
        return 0
    write_dotenv(target, dotenv_lines(read_env_file(env_file)))
    print(f"make env: wrote {target} (mode 0600) for `heroku local`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
