"""Soak: N worker dynos from the Procfile under random faults for M minutes,
then the run ledger checked (run by hand: `make soak SOAK_WORKERS=3 SOAK_MINUTES=5`).

Real redis-server, the local S3 server (a small cube, kept topped up with
expired clips), SQLite (or DATABASE_URL's PostgreSQL) and the Procfile's own
`worker` line, with short schedules: the cleanup every 5 s, the weekly report
every 3 s (mailed to a file per message), loop 1 s, lock 5 s. Faults, one at a
time, every few seconds, on a random dyno:

- crash: the dyno's process group SIGKILLed, started again a moment later;
- stop: SIGTERM to every process of the dyno (Heroku's stop), started again;
- freeze: SIGSTOP for a few seconds (longer than the lock, sometimes), SIGCONT;
- redis: redis-server restarted with its data after 1-4 s down.

Then every dyno is stopped and the ledger is read:

- slots executed twice: ledger rows per (job, slot) that are not `skipped`
  (the unique constraint makes this 0 by construction), cleanup runs per slot,
  and report mails per slot (the X-Koolclips-Slot header): the side effects;
- gaps: the longest time between two consecutive slots that the ledger saw
  handled (executed, deferred or skipped with a reason), against the takeover
  bound lock + loop + interval (+2 s for a message's trip and start-up);
- how the executions ended, and how many of each fault were injected.

The exit status is 1 when a slot was executed twice or a gap exceeded its bound.
"""

from __future__ import annotations

import email
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.lifetime import die_with_parent  # noqa: E402
from devstack.procfile import procfile_command  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402
from devstack.s3_server import LocalS3Server  # noqa: E402

BUCKET, CUBE = "soak-bucket", "soakcube"
LOOP, LOCK = 1, 5
EVERY = {"scheduled-cloudcube-cleanup": 5, "weekly-report": 3}
SLACK = 2


class Dyno:
    def __init__(self, name: str, env: dict, log: Path):
        self.name, self.env, self.log = name, env, log
        self.proc: subprocess.Popen | None = None
        self.frozen = False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command('worker')}"],
            cwd=ROOT,
            env=dict(self.env, DYNO=self.name),
            stdout=open(self.log, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


def main() -> int:
    workers = int(os.environ.get("SOAK_WORKERS", "3"))
    minutes = float(os.environ.get("SOAK_MINUTES", "5"))
    rng = random.Random(int(os.environ.get("SOAK_SEED", str(int(time.time())))))
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-soak-"))
    mail_dir = workdir / "mail"
    mail_dir.mkdir()
    redis = RedisServer().start()
    s3 = LocalS3Server().start()
    s3.create_bucket(BUCKET)
    database_url = os.environ.get("SOAK_DATABASE_URL") or f"sqlite:///{workdir / 'soak.sqlite3'}"
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="soak-only-secret-" + "z" * 40,
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_ADMIN_EMAILS="ops@example.com",
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        DJANGO_EMAIL_FILE_PATH=str(mail_dir),
        DATABASE_URL=database_url,
        REDIS_URL=redis.url,
        CLOUDCUBE_URL=s3.cloudcube_url(BUCKET, CUBE),
        CLOUDCUBE_ACCESS_KEY_ID="soak",
        CLOUDCUBE_SECRET_ACCESS_KEY="soak",
        CLEANUP_SCHEDULE=f"{EVERY['scheduled-cloudcube-cleanup']}s",
        WEEKLY_REPORT_SCHEDULE=f"{EVERY['weekly-report']}s",
        BEAT_MAX_LOOP_INTERVAL=str(LOOP),
        REDBEAT_LOCK_TIMEOUT=str(LOCK),
        REDIS_SOCKET_TIMEOUT="1",
        CLEANUP_LEASE_SECONDS="10",
        SCHEDULING_DEFER_RETRY_SECONDS="2",
        CELERY_WORKER_CONCURRENCY="2",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    import django

    django.setup()

    def top_up() -> None:  # a small cube with something to delete on every run
        old = datetime.now(UTC) - timedelta(days=9)
        for i in range(20):
            s3.put(BUCKET, f"{CUBE}/public/clips/{time.time_ns()}-{i}.mp4", b"x", old)

    dynos = [Dyno(f"worker.{i + 1}", env, workdir / f"worker-{i + 1}.log") for i in range(workers)]
    faults: Counter = Counter()
    print(f"soak: {workers} worker dynos for {minutes:g} min; logs in {workdir}", flush=True)
    started_at = datetime.now(UTC)
    try:
        for dyno in dynos:
            dyno.start()
        time.sleep(10)
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            top_up()
            time.sleep(rng.uniform(3, 8))
            kind = rng.choice(["crash", "stop", "freeze", "redis"])
            dyno = rng.choice(dynos)
            faults[kind] += 1
            if kind == "crash":
                dyno.kill(signal.SIGKILL)
                dyno.wait(10)
                time.sleep(rng.uniform(0.5, 3))
                dyno.start()
            elif kind == "stop":
                dyno.kill(signal.SIGTERM)
                if not dyno.wait(30):  # Heroku's SIGKILL, 30 s later
                    faults["stop-needed-sigkill"] += 1
                    dyno.kill(signal.SIGKILL)
                    dyno.wait(10)
                dyno.start()
            elif kind == "freeze":
                dyno.kill(signal.SIGSTOP)
                time.sleep(rng.uniform(2, 2 * LOCK))
                dyno.kill(signal.SIGCONT)
            else:
                redis.restart(downtime=rng.uniform(1, 4), keep_data=True)
            for other in dynos:  # a dyno that died on its own is restarted too
                if not other.alive():
                    faults["found-dead"] += 1
                    other.start()
        time.sleep(15)  # quiet: the last slots run
        ended_at = datetime.now(UTC)
    finally:
        for dyno in dynos:
            dyno.kill(signal.SIGCONT)
            dyno.kill(signal.SIGTERM)
        for dyno in dynos:
            if dyno.proc is not None and not dyno.wait(30):
                dyno.kill(signal.SIGKILL)
                dyno.wait(10)
        s3.stop()
        redis.stop()
    return report(started_at, ended_at, faults, mail_dir, workdir)


def report(started_at, ended_at, faults: Counter, mail_dir: Path, workdir: Path) -> int:
    from scheduling.models import JobRun
    from viral_clips.models import CleanupRun

    failed = False
    print(f"\nfaults injected: {dict(faults)}")
    mails = Counter()
    for path in mail_dir.iterdir():
        for chunk in path.read_text(errors="replace").split("\n" + "-" * 79 + "\n"):
            slot = email.message_from_string(chunk.strip()).get("X-Koolclips-Slot")
            if slot:
                mails[datetime.fromisoformat(slot)] += 1
    for job, every in EVERY.items():
        rows = list(JobRun.objects.filter(job=job, slot__isnull=False).order_by("slot"))
        by_status = Counter(r.status for r in rows)
        executed = Counter(r.slot for r in rows if r.status != JobRun.Status.SKIPPED)
        doubled = {s: n for s, n in executed.items() if n > 1}
        handled = sorted({r.slot for r in rows})
        gaps = [(b - a).total_seconds() for a, b in zip(handled, handled[1:], strict=False)]
        worst = max(gaps, default=float("nan"))
        bound = LOCK + LOOP + every + SLACK
        expected = (ended_at - started_at).total_seconds() / every
        print(f"\n{job} (every {every} s):")
        print(f"  slots handled {len(handled)} (about {expected:.0f} fell due)")
        print(f"  rows by status {dict(by_status)}")
        print(f"  executed {len(executed)}, executed twice {len(doubled)}")
        print(f"  longest gap between handled slots {worst:.1f} s (bound {bound} s)")
        if job == "scheduled-cloudcube-cleanup":
            runs = Counter(
                CleanupRun.objects.exclude(status=CleanupRun.Status.SKIPPED)
                .exclude(scheduled_for=None)
                .values_list("scheduled_for", flat=True)
            )
            twice = {s: n for s, n in runs.items() if n > 1}
            print(f"  cleanup runs {sum(runs.values())}, slots with two cleanup runs {len(twice)}")
            failed |= bool(twice)
        else:
            twice = {s: n for s, n in mails.items() if n > 1}
            print(f"  report mails {sum(mails.values())}, slots mailed twice {len(twice)}")
            failed |= bool(twice)
        failed |= bool(doubled) or not (worst <= bound)
    print(f"\n{'FAILED' if failed else 'OK'} (logs in {workdir})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
