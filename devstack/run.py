"""`make run`: the whole stack on this machine, with production's own Procfile lines.

Starts a real redis-server (6379, or another port when taken), a local S3
server with the bucket and cube, SQLite, migrations, demo data, then the
Procfile's `web` (gunicorn on http://127.0.0.1:8000) and `worker` (celery
worker with embedded RedBeat beat). Ctrl-C stops everything it started.

One `make run` owns `.devstack/` at a time (devstack/state.py): a second one,
or one whose web port is taken, refuses before it touches anything. While it
runs, `.devstack/env` lets `make manage ARGS=...` reach this stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devstack.lifetime import die_with_parent
from devstack.ports import free_port, port_in_use
from devstack.procfile import procfile_command
from devstack.redis_server import RedisServer
from devstack.s3_server import LocalS3Server
from devstack.state import StackBusy, StackLock, state_dir, write_env_file

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "koolclips-local"
CUBE = "localcube"
WEB_PORT = int(os.environ.get("PORT", "8000"))
LOCAL_CREDENTIALS = {
    "DJANGO_SECRET_KEY": "insecure-local-development-key-not-for-production",
    "CLOUDCUBE_ACCESS_KEY_ID": "local",
    "CLOUDCUBE_SECRET_ACCESS_KEY": "local",
}


def log(message: str) -> None:
    print(f"devstack | {message}", flush=True)


def pick_port(preferred: int) -> int:
    return preferred if not port_in_use(preferred) else free_port()


def stream(name: str, proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        sys.stdout.write(f"{name:<8}| {line.decode(errors='replace')}")
        sys.stdout.flush()


def taken_ports() -> list[str]:
    """The ports this stack must have and cannot: the web port, and the Redis
    and S3 ports when asked for explicitly (the defaults fall back to a free one)."""
    wanted = [("PORT", str(WEB_PORT))]
    for name in ("DEVSTACK_REDIS_PORT", "DEVSTACK_S3_PORT"):
        if os.environ.get(name):
            wanted.append((name, os.environ[name]))
    return [f"{name}={port}" for name, port in wanted if port_in_use(int(port))]


def main() -> int:
    state = state_dir()
    # Everything that can refuse comes first: nothing is deleted or started yet.
    try:
        lock = StackLock(state).acquire()
    except StackBusy as exc:
        log(f"refusing to start: {exc}")
        return 2
    taken = taken_ports()
    if taken:
        log(
            f"refusing to start: already in use: {', '.join(taken)} (another stack or server?);"
            " stop it or pick other ports (e.g. PORT=8001 make run)"
        )
        lock.release()
        return 2
    try:
        return run_stack(state)
    finally:
        (state / "env").unlink(missing_ok=True)
        lock.release()


def run_stack(state: Path) -> int:
    redis_server = RedisServer(port=pick_port(int(os.environ.get("DEVSTACK_REDIS_PORT") or "6379")))
    redis_server.start()
    log(f"redis-server {redis_server.binary} on port {redis_server.port}")
    s3 = LocalS3Server(port=pick_port(int(os.environ.get("DEVSTACK_S3_PORT") or "9000")))
    try:
        return serve(state, redis_server, s3.start())
    finally:
        # Also when a step fails (a migration, a port): leave no redis-server behind.
        s3.stop()
        redis_server.stop()


def serve(state: Path, redis_server: RedisServer, s3: LocalS3Server) -> int:
    s3.create_bucket(BUCKET)
    # As on Cloudcube: <cube>/public/ is readable by anyone, the rest is private.
    s3.make_public(BUCKET, CUBE)
    log(f"local S3 server (moto) on {s3.endpoint_url}, bucket {BUCKET}, cube {CUBE}")

    env = dict(os.environ)
    if "DATABASE_URL" not in env:
        # The local S3 server keeps nothing between runs, so neither does the
        # local database: every `make run` starts from the same clean slate.
        (state / "local.sqlite3").unlink(missing_ok=True)
        env["DATABASE_URL"] = f"sqlite:///{state / 'local.sqlite3'}"
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
    # The weekly report goes to the console backend locally: give it an address.
    env.setdefault("DJANGO_ADMIN_EMAILS", "admin@localhost")
    # The stack's own, whatever the shell holds: a real key or cube secret
    # exported in the developer's shell never reaches the local stack or
    # .devstack/env (the cube is the local S3 server anyway).
    env.update(LOCAL_CREDENTIALS)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        REDIS_URL=redis_server.url,
        CLOUDCUBE_URL=s3.cloudcube_url(BUCKET, CUBE),
        PORT=str(WEB_PORT),
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{WEB_PORT}",
        PYTHONUNBUFFERED="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    os.environ.update(env)

    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model

    created = seed_demo(s3)
    log(f"demo data: {created} clips created" if created else "demo data already present")
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@localhost", "admin")
        log("created local superuser admin / admin")

    children: list[tuple[str, subprocess.Popen]] = []
    for name in ("web", "worker"):
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command(name)}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Even if this script is killed outright, web and worker stop too.
            preexec_fn=die_with_parent(),
        )
        threading.Thread(target=stream, args=(name, proc), daemon=True).start()
        children.append((name, proc))
    env_file = write_env_file(state, env)
    log(
        f"web on http://127.0.0.1:{WEB_PORT}/ (dashboard: /, admin: /admin/, health: /health/);"
        " Ctrl-C stops all"
    )
    where = f"DEVSTACK_DIR={state} " if os.environ.get("DEVSTACK_DIR") else ""
    log(
        f'any manage.py command against this stack: {where}make manage ARGS="beat_status"'
        f" (its environment is in {env_file})"
    )

    stopping = threading.Event()

    def request_stop(signum, frame) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping.is_set():
        for name, proc in children:
            if proc.poll() is not None:
                log(f"{name} exited with {proc.returncode}; stopping the stack")
                exit_code = proc.returncode or 1
                stopping.set()
        stopping.wait(0.5)

    log("stopping web and worker")
    for _, proc in children:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for _, proc in children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    s3.stop()
    redis_server.stop()
    log("stopped")
    return exit_code


def seed_demo(s3: LocalS3Server) -> int:
    from devstack.demo_data import seed_demo_data

    return seed_demo_data(s3, BUCKET, CUBE)


if __name__ == "__main__":
    sys.exit(main())
