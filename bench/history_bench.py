"""Run history kept and pruned: a year of a minute schedule (run by hand).

    .venv/bin/python bench/history_bench.py [--runs 525600] [--prune-days 182]

For SQLite (a file) and, when one answers at 127.0.0.1:5432 (trust auth, user
postgres), PostgreSQL (a scratch database, dropped afterwards), in a child
process each:

1. seeds `--runs` JobRun rows of one job scheduled every minute, ending now
   (525,600 = one year), as the guard writes them (token, task id, dyno,
   timestamps), plus one CleanupRun a day linked to its run;
2. measures the rows and the bytes they take (SQLite: the file, and per table
   with its indexes from `dbstat`; PostgreSQL: pg_total_relation_size);
3. times `scheduling.history.prune` at the default RUN_HISTORY_DAYS (400:
   nothing to delete, the cost of the daily check) and at `--prune-days`
   (half of the rows go), with the process's RSS before it and its peak
   during it (VmHWM reset first: batches of 1,000 ids keep it flat);
4. measures again (a deleted row's space is reused by later inserts; SQLite
   gives it back only to VACUUM, PostgreSQL to VACUUM FULL).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOB = "bench-minute-job"
PG = "postgres://postgres@127.0.0.1:5432/"


def child_main(runs: int, prune_days: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from scheduling import history
    from scheduling.models import JobRun
    from viral_clips.models import CleanupRun

    def status_mb(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def reset_peak() -> None:
        # Linux: "5" resets VmHWM to the current RSS, so the peak is the prune's own.
        Path("/proc/self/clear_refs").write_text("5")

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.monotonic()
    batch: list[JobRun] = []
    for i in range(runs):
        slot = now - timedelta(minutes=runs - 1 - i)
        batch.append(
            JobRun(
                job=JOB,
                slot=slot,
                trigger="schedule",
                task_id=str(uuid.uuid4()),
                status="succeeded",
                token=uuid.uuid4().hex,
                dyno="worker.1",
                started_at=slot,
                finished_at=slot + timedelta(seconds=2),
                last_progress_at=slot + timedelta(seconds=1),
                lease_expires_at=slot + timedelta(seconds=122),
            )
        )
        if len(batch) == 10_000:
            JobRun.objects.bulk_create(batch)
            batch = []
    if batch:
        JobRun.objects.bulk_create(batch)
    # created_at is auto_now_add: set it to the slot, as if written then.
    JobRun.objects.update(created_at=django.db.models.F("slot"))
    daily = JobRun.objects.filter(slot__minute=0, slot__hour=2).values_list("pk", "slot")
    CleanupRun.objects.bulk_create(
        [
            CleanupRun(trigger="schedule", retention_days=5, status="succeeded", job_run_id=pk)
            for pk, _slot in daily
        ]
    )
    for pk, slot in daily:
        CleanupRun.objects.filter(job_run_id=pk).update(started_at=slot)
    seeded = time.monotonic() - started

    def sizes() -> dict:
        out = {"jobrun_rows": JobRun.objects.count(), "cleanuprun_rows": CleanupRun.objects.count()}
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA page_size")
                page = cursor.fetchone()[0]
                cursor.execute("PRAGMA page_count")
                out["file_bytes"] = cursor.fetchone()[0] * page
                cursor.execute("PRAGMA freelist_count")
                out["free_bytes"] = cursor.fetchone()[0] * page
                try:
                    cursor.execute(
                        "SELECT SUM(pgsize) FROM dbstat WHERE name = 'scheduling_jobrun'"
                        " OR name IN (SELECT name FROM sqlite_master"
                        " WHERE tbl_name = 'scheduling_jobrun' AND type = 'index')"
                    )
                    out["jobrun_bytes"] = cursor.fetchone()[0]
                except Exception:  # noqa: BLE001 - dbstat is a compile-time option
                    out["jobrun_bytes"] = None
            else:
                cursor.execute("SELECT pg_total_relation_size('scheduling_jobrun')")
                out["jobrun_bytes"] = cursor.fetchone()[0]
                cursor.execute("SELECT pg_total_relation_size('viral_clips_cleanuprun')")
                out["cleanuprun_bytes"] = cursor.fetchone()[0]
        return out

    before = sizes()
    t0 = time.monotonic()
    noop = history.prune(400, now=now)
    noop_seconds = time.monotonic() - t0
    gc.collect()
    reset_peak()
    rss_before = status_mb("VmRSS")
    t0 = time.monotonic()
    pruned = history.prune(prune_days, now=now)
    prune_seconds = time.monotonic() - t0
    peak = status_mb("VmHWM")
    after = sizes()
    print(
        json.dumps(
            {
                "vendor": connection.vendor,
                "runs": runs,
                "seed_seconds": round(seeded, 1),
                "before": before,
                "noop_prune_seconds": round(noop_seconds, 2),
                "noop_deleted": noop.runs_deleted,
                "prune_days": prune_days,
                "prune_seconds": round(prune_seconds, 1),
                "pruned_runs": pruned.runs_deleted,
                "pruned_cleanup_runs": pruned.followers_deleted,
                "batches": pruned.batches,
                "after": after,
                "rss_mb_before_prune": round(rss_before, 1),
                "peak_rss_mb_during_prune": round(peak, 1),
            }
        )
    )


def run_child(database_url: str, args) -> dict:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="1",
        DJANGO_LOG_LEVEL="WARNING",
        DATABASE_URL=database_url,
        CLOUDCUBE_ACCESS_KEY_ID="bench",
        CLOUDCUBE_SECRET_ACCESS_KEY="bench",
        REDIS_URL="redis://127.0.0.1:1/0",  # unused
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(args.runs), str(args.prune_days)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def postgres_up() -> bool:
    try:
        import psycopg

        psycopg.connect(PG + "postgres", connect_timeout=2).close()
        return True
    except Exception:  # noqa: BLE001 - no server: SQLite only
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=525_600)
    parser.add_argument("--prune-days", type=int, default=182)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--child", nargs=2, type=int)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-history-bench-"))
    if "sqlite" in args.backends:
        results.append(run_child(f"sqlite:///{workdir / 'history.sqlite3'}", args))
    if "postgresql" in args.backends and postgres_up():
        import psycopg

        name = f"koolclips_history_bench_{os.getpid()}"
        with psycopg.connect(PG + "postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            results.append(run_child(PG + name, args))
        finally:
            with psycopg.connect(PG + "postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
    for result in results:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
