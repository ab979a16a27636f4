"""Scheduler failover times and Redis connections, with production timings (run by hand).

    .venv/bin/python bench/scheduler_bench.py

Real redis-server, the local S3 server and the Procfile's own `worker` and
`web` lines, with the production loop (5 s) and lock (25 s); only the cleanup
schedule is short (CLEANUP_SCHEDULE=2s) so that "scheduling resumed" can be
seen. For each way of losing the scheduler it prints how long until another
beat held the lock and until the next cleanup was sent:

- crash: the holding worker dyno SIGKILLed (process group), a standby present;
- graceful: the holding dyno SIGTERMed (Heroku's stop), a standby present;
- beat child killed: one worker, its embedded beat child SIGKILLed;
- Redis restarted: one worker, redis-server killed and started again empty.

Then the Redis connections held by `web` (gunicorn, WEB_CONCURRENCY=2) and by
worker dynos at idle and during a cleanup (CLIENT LIST), against the 20 that
Heroku Redis mini allows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.lifetime import die_with_parent  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.procfile import procfile_command  # noqa: E402
from devstack.procinfo import parent_of, wait_for  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402
from devstack.s3_server import LocalS3Server  # noqa: E402

HOLDER = "koolclips:redbeat::holder"
BUCKET, CUBE = "sched-bucket", "schedcube"


class Dyno:
    def __init__(self, name: str, env: dict, log: Path):
        self.name = name
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command(name.split('.')[0])}"],
            cwd=ROOT,
            env=dict(env, DYNO=name),
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )

    def kill(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.proc.wait()


def holder_pid(redis) -> int | None:
    try:
        pid = redis.client().hget(HOLDER, "pid")
    except Exception:  # noqa: BLE001 - Redis may be restarting
        return None
    return int(pid) if pid else None


def wait(predicate, timeout: float, step: float = 0.1):
    return wait_for(predicate, timeout, step) or None


def runs_since(moment: datetime) -> int:
    from viral_clips.models import CleanupRun

    return CleanupRun.objects.filter(started_at__gt=moment).count()


def measure(label: str, redis, action, old_pid: int) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=0.3)
    started = time.monotonic()
    action()
    got_lock = wait(lambda: (p := holder_pid(redis)) and p != old_pid, 90)
    lock_s = time.monotonic() - started if got_lock else float("nan")
    sent = wait(lambda: runs_since(moment), 90)
    sent_s = time.monotonic() - started if sent else float("nan")
    print(f"{label:<22} lock taken over after {lock_s:5.1f} s, next cleanup after {sent_s:5.1f} s")


def client_count(redis) -> int:
    # Every connection but the one asking.
    return len(redis.client().client_list()) - 1


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-sched-"))
    redis = RedisServer().start()
    s3 = LocalS3Server().start()
    s3.create_bucket(BUCKET)
    web_port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-" + "y" * 40,
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{workdir / 'sched.sqlite3'}",
        REDIS_URL=redis.url,
        CLOUDCUBE_URL=s3.cloudcube_url(BUCKET, CUBE),
        CLOUDCUBE_ACCESS_KEY_ID="bench",
        CLOUDCUBE_SECRET_ACCESS_KEY="bench",
        CLEANUP_SCHEDULE="2s",
        PORT=str(web_port),
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{web_port}",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    for name in (
        "BEAT_MAX_LOOP_INTERVAL",
        "REDBEAT_LOCK_TIMEOUT",
        "CELERY_WORKER_CONCURRENCY",
        "WEB_CONCURRENCY",
    ):
        env.pop(name, None)  # production values
    # This process reads the run records: the same settings as the dynos.
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    import django

    django.setup()
    dynos: list[Dyno] = []
    try:
        print("failover with loop 5 s, lock 25 s (production values):")
        a, b = Dyno("worker.1", env, workdir / "w1.log"), Dyno("worker.2", env, workdir / "w2.log")
        dynos += [a, b]
        pid = wait(lambda: holder_pid(redis), 60)
        holder = a if parent_of(pid) == a.proc.pid else b
        wait(lambda: runs_since(datetime.now(UTC) - timedelta(minutes=5)), 60)
        measure("crash (SIGKILL)", redis, lambda: holder.kill(signal.SIGKILL), pid)

        c = Dyno("worker.3", env, workdir / "w3.log")
        dynos.append(c)
        time.sleep(8)  # the new dyno is up and waiting as a standby
        pid = holder_pid(redis)
        holder = [d for d in dynos if d.proc.poll() is None and d.proc.pid == parent_of(pid)][0]
        measure("graceful (SIGTERM)", redis, lambda: holder.kill(signal.SIGTERM), pid)
        holder.proc.wait(30)

        [single] = [d for d in dynos if d.proc.poll() is None]
        pid = holder_pid(redis)
        measure("beat child killed", redis, lambda: os.kill(pid, signal.SIGKILL), pid)

        pid = holder_pid(redis)
        measure("Redis restarted empty", redis, lambda: redis.restart(), pid)

        print("\nRedis connections (Heroku Redis mini allows 20):")
        s3.clear(BUCKET)
        web = Dyno("web.1", env, workdir / "web.log")
        dynos.append(web)
        wait(lambda: _get(f"http://127.0.0.1:{web_port}/health/"), 60)
        for _ in range(20):
            _get(f"http://127.0.0.1:{web_port}/health/")
        time.sleep(6)
        idle_one = client_count(redis)
        print(f"  web + 1 worker dyno, idle:          {idle_one}")

        # A cleanup that takes a while: 20,000 objects, half expired.
        old = datetime.now(UTC) - timedelta(days=9)
        for i in range(20_000):
            s3.put(BUCKET, f"{CUBE}/public/clips/{i:06d}.mp4", b"x", old if i % 2 else None)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], client_count(redis))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        moment = datetime.now(UTC)
        sampler.start()
        from viral_clips.models import CleanupRun

        wait(
            lambda: CleanupRun.objects.filter(started_at__gt=moment, files_deleted__gt=0).exists(),
            120,
            0.5,
        )
        done.set()
        sampler.join()
        print(f"  web + 1 worker dyno, during cleanup: {peak[0]} (peak)")

        second = Dyno("worker.4", env, workdir / "w4.log")
        dynos.append(second)
        time.sleep(10)
        print(f"  web + 2 worker dynos, idle:         {client_count(redis)}")
    finally:
        for dyno in dynos:
            dyno.stop()
        s3.stop()
        redis.stop()


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
            return response.status in (200, 503)
    except OSError:
        return False


if __name__ == "__main__":
    main()
