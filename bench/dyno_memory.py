"""Memory of each dyno's process tree at idle, against Heroku's 512 MB quota.

    .venv/bin/python bench/dyno_memory.py [--settle 20]

Starts a real redis-server and the local S3 server, then the Procfile's own
`worker` line (celery worker, its pool children and the embedded beat child,
at the default concurrency) and `web` line (gunicorn master and its workers),
waits for them to settle and sums PSS (proportional set size: shared pages
split between the processes sharing them) over each process tree.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUOTA_MB = 512


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cmdline(pid: int) -> str:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return raw[:90]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settle", type=float, default=20, help="seconds to wait at idle")
    args = parser.parse_args()

    from devstack.procfile import procfile_command
    from devstack.redis_server import RedisServer
    from devstack.s3_server import LocalS3Server

    redis_server = RedisServer().start()
    s3 = LocalS3Server().start()
    s3.create_bucket("mem-bucket")
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-mem-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        DJANGO_SECURE_SSL_REDIRECT="0",
        DATABASE_URL=f"sqlite:///{workdir / 'mem.sqlite3'}",
        REDIS_URL=redis_server.url,
        CLOUDCUBE_URL=s3.cloudcube_url("mem-bucket", "memcube"),
        CLOUDCUBE_ACCESS_KEY_ID="bench",
        CLOUDCUBE_SECRET_ACCESS_KEY="bench",
        PORT="0",
        GUNICORN_CMD_ARGS="--bind 127.0.0.1:0",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    env.pop("CELERY_WORKER_CONCURRENCY", None)
    env.pop("WEB_CONCURRENCY", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)

    procs = {}
    for name in ("worker", "web"):
        procs[name] = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command(name)}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    time.sleep(args.settle)
    try:
        for name, proc in procs.items():
            pids = tree(proc.pid)
            total = 0.0
            print(f"{name} dyno (default concurrency):")
            for pid in pids:
                try:
                    mb = pss_mb(pid)
                except OSError:
                    continue
                total += mb
                print(f"  {pid:>7} {mb:7.1f} MB  {cmdline(pid)}")
            print(
                f"  total PSS {total:.1f} MB over {len(pids)} processes ="
                f" {total / QUOTA_MB:.0%} of the {QUOTA_MB} MB quota"
            )
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(30)
        s3.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
