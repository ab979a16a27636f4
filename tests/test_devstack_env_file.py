"""`.devstack/env` (written by `make run` for `make manage`) is the owner's only and
holds what the stack set, not whatever DJANGO_*, CLOUDCUBE_* or SENTRY_* values
the developer's shell happens to export.

Real parts: `python -m devstack.run` (what `make run` runs) with its own ports
and state directory; the file is read as `make manage` reads it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.state import read_env_file
from tests.support.processes import venv_path_env
from tests.test_env_example import parse_dotenv

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.processes

# What a developer's shell may hold: production secrets, unrelated settings.
SHELL = {
    "DJANGO_SECRET_KEY": "production-secret-key-from-the-shell-0123456789",
    "CLOUDCUBE_SECRET_ACCESS_KEY": "production-cube-secret-from-the-shell",
    "CLOUDCUBE_ACCESS_KEY_ID": "AKIAPRODUCTIONFROMSHELL",
    "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "DJANGO_SOMETHING_ELSE": "unrelated-from-the-shell",
    # Nothing listens there: whatever the stack would send goes nowhere.
    "SENTRY_DSN": f"http://shellkey0123456789@127.0.0.1:{free_port()}/1",
    "EMAIL_HOST_PASSWORD": "smtp-password-from-the-shell",
    "HEALTH_TOKEN": "health-token-from-the-shell-0123456789abcdef",
    "CLEANUP_SCHEDULE": "3m",  # a setting the stack's worker runs with
}
STACK_SET = {
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
}


def test_the_env_file_is_owner_only_and_holds_only_what_the_stack_set(tmp_path):
    state = tmp_path / "devstack"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CLOUDCUBE_", "REDIS_", "DATABASE_", "CLEANUP_"))
        and k not in SHELL
    }
    env.update(
        SHELL,
        PORT=str(free_port()),
        DEVSTACK_REDIS_PORT=str(free_port()),
        DEVSTACK_S3_PORT=str(free_port()),
        DEVSTACK_DIR=str(state),
    )
    env_file = state / "env"
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
        deadline = time.monotonic() + 120
        while not env_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert env_file.exists(), log_path.read_text()[-3000:]
        mode = stat.S_IMODE(env_file.stat().st_mode)
        written = read_env_file(env_file)
        text = env_file.read_text()
        # `make env`: .env for `heroku local`, from this running stack.
        dotenv = tmp_path / "dotenv"
        made = subprocess.run(
            ["make", "-s", "env"],
            cwd=ROOT,
            env=venv_path_env(dict(env, DOTENV=str(dotenv))),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert mode == 0o600, oct(mode)  # before: 0o644
    assert set(written) == STACK_SET | {"CLEANUP_SCHEDULE"}, sorted(written)
    assert written["CLEANUP_SCHEDULE"] == "3m"
    # The stack's own credentials, never the shell's.
    assert written["DJANGO_SECRET_KEY"] == "insecure-local-development-key-not-for-production"
    assert written["CLOUDCUBE_SECRET_ACCESS_KEY"] == written["CLOUDCUBE_ACCESS_KEY_ID"] == "local"
    for name in SHELL:
        if name != "CLEANUP_SCHEDULE":
            assert SHELL[name] not in text, name
    assert "DJANGO_SOMETHING_ELSE" not in text and "EMAIL_" not in text

    assert made.returncode == 0, made.stdout + made.stderr
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    values = parse_dotenv(dotenv.read_text())
    # make run's services, with Redis database 1 for heroku local's own beat lock.
    assert values["REDIS_URL"] == written["REDIS_URL"].rsplit("/", 1)[0] + "/1"
    for name in ("DATABASE_URL", "CLOUDCUBE_URL", "DJANGO_DEBUG", "CLOUDCUBE_SECRET_ACCESS_KEY"):
        assert values[name] == written[name], name
    assert "DJANGO_SECRET_KEY" not in values  # debug mode needs none
    assert not any(
        SHELL[name] in dotenv.read_text() for name in SHELL if name != "CLEANUP_SCHEDULE"
    )
