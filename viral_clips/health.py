"""Health checks for GET /health/: cheap, bounded in time, and truthful.

Cheap: the checks' result is computed at most once per HEALTH_CACHE_SECONDS for
all web dynos. It is kept in Redis (with a SET NX lock, so one request per
interval recomputes while the others wait for its answer) and in each
process's memory (so a flood never reaches Redis for every request, and while
Redis is down each process still computes at most once per interval).

Bounded: the checks run concurrently, each with short timeouts and no retries,
under one overall deadline (CHECK_DEADLINE): a black-holed dependency is
reported down on time instead of holding the request.

Truthful: besides the database, Redis and the cube, the scheduler must have
ticked recently and a worker must have executed the canary task recently
(scheduling/canary.py): a worker that stopped consuming while its beat still
ticks is down.

A check returns a dict of details (or None) and raises when its service does
not answer; a details dict with ``"ok": False`` marks it down without an
exception (the service answering, but stale).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing

import redis
from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from scheduling import registry
from scheduling.app_redis import quick_redis
from scheduling.canary import last_canary
from scheduling.status import job_status, read_lock
from viral_clips.models import CleanupRun
from viral_clips.s3 import cloudcube_client

logger = logging.getLogger(__name__)

RESULT_KEY = "koolclips:health:result"
LOCK_KEY = "koolclips:health:lock"
# Every check together answers within this; with the cache's own Redis calls
# (CACHE_TIMEOUT each, skipped once Redis failed) /health/ stays under 2 s.
CHECK_DEADLINE = 1.4
CHECK_TIMEOUT = 1.0  # per socket operation of one check (Redis, S3 connect/read)
CACHE_TIMEOUT = 0.25  # a healthy Redis answers in milliseconds


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    with closing(quick_redis(CHECK_TIMEOUT)) as client:
        client.ping()


def check_cloudcube() -> None:
    # Cube credentials are scoped to the cube's prefix: list one key under it
    # rather than HeadBucket, which a shared bucket may refuse.
    client = cloudcube_client(
        connect_timeout=CHECK_TIMEOUT, read_timeout=CHECK_TIMEOUT, max_attempts=1
    )
    client.list_objects_v2(
        Bucket=settings.CLOUDCUBE.bucket, Prefix=settings.CLOUDCUBE.prefix, MaxKeys=1
    )


def warm_up() -> None:
    """Load at boot what the first check would load inside its deadline: the
    S3 session's models (the first client costs ~100 ms of CPU, later ones ~4 ms)."""
    cloudcube_client(connect_timeout=CHECK_TIMEOUT, read_timeout=CHECK_TIMEOUT, max_attempts=1)


def job_lines() -> dict[str, dict]:
    """One line per registered job, from the registry and the run ledger only
    (no Redis call: the check must answer within its deadline)."""
    now = timezone.now()
    lines = {}
    for job in registry.jobs():
        status = job_status(job, now, stored=False)
        line: dict = {"schedule": status.schedule_words, "timezone": status.timezone}
        if status.next_run_at is not None:  # the same instant in UTC and on the job's clock
            line["next_run_at"] = status.next_run_at.isoformat()
            line["next_run_local"] = status.next_run_local.isoformat()
        if job.ledger:
            if status.ledger_error:
                raise DatabaseError(status.ledger_error)
            line["last_run_at"] = status.last_run_at.isoformat() if status.last_run_at else "never"
            line["last_status"] = status.last_status
        lines[job.entry] = line
    return lines


def check_scheduler() -> dict:
    """Down when no beat has ticked within HEALTH_SCHEDULER_MAX_AGE seconds.

    Beat ticks at least every BEAT_MAX_LOOP_INTERVAL while it holds the lock;
    a worker whose beat child died keeps running without it, and only this
    check notices. Read with this module's quick client, not RedBeat's (which
    has no timeouts of its own).
    """
    max_age = settings.HEALTH_SCHEDULER_MAX_AGE
    details: dict = {
        "last_tick_at": None,
        "seconds_since_tick": None,
        "max_age_seconds": max_age,
        "jobs": job_lines(),  # one line per registered job
    }
    with closing(quick_redis(CHECK_TIMEOUT)) as client:
        lock = read_lock(client)
    if lock.last_tick_at is None:
        # Never ticked, or the holder's record expired with its lock.
        return {"ok": False, "error": "no scheduler tick on record", **details}
    age = max(0.0, (timezone.now() - lock.last_tick_at).total_seconds())
    details.update(last_tick_at=lock.last_tick_at.isoformat(), seconds_since_tick=round(age, 1))
    if age > max_age:
        return {"ok": False, "error": f"no scheduler tick in the last {max_age} s", **details}
    return details


def check_worker() -> dict:
    """Down when no worker executed the canary task within HEALTH_CANARY_MAX_AGE seconds."""
    max_age = settings.HEALTH_CANARY_MAX_AGE
    details: dict = {"seconds_since_canary": None, "max_age_seconds": max_age}
    with closing(quick_redis(CHECK_TIMEOUT)) as client:
        ran = last_canary(client)
    if ran is None:
        return {"ok": False, "error": "no worker has run the canary task", **details}
    age = max(0.0, time.time() - ran)
    details["seconds_since_canary"] = round(age, 1)
    if age > max_age:
        return {
            "ok": False,
            "error": f"no worker ran the canary in the last {max_age} s",
            **details,
        }
    return details


CHECKS: dict[str, Callable[[], dict | None]] = {
    "database": check_database,
    "redis": check_redis,
    "cloudcube": check_cloudcube,
    "scheduler": check_scheduler,
    "worker": check_worker,
}


def last_cleanup() -> dict | None:
    """The most recent cleanup that ran (skipped duplicates aside): status and age."""
    run = (
        CleanupRun.objects.exclude(status=CleanupRun.Status.SKIPPED).order_by("-started_at").first()
    )
    if run is None:
        return None
    return {
        "id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "age_seconds": round((timezone.now() - run.started_at).total_seconds()),
    }


def _run_one(check: Callable[[], dict | None]) -> dict:
    try:
        details = check() or {}
    except Exception as exc:  # noqa: BLE001 - any failure is "down"
        # The exception's type only: messages can carry hosts or URLs.
        return {"ok": False, "error": type(exc).__name__}
    finally:
        connections.close_all()  # this thread's own database connection
    return {"ok": details.pop("ok", True), **details}


def compute_health() -> dict:
    """Run every check now, concurrently, within CHECK_DEADLINE seconds."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health-check")
    futures = {name: pool.submit(_run_one, check) for name, check in CHECKS.items()}
    done, _ = wait(futures.values(), timeout=CHECK_DEADLINE)
    # A check still blocked ends on its own socket timeout; nobody waits for it.
    pool.shutdown(wait=False, cancel_futures=True)
    checks = {
        name: future.result()
        if future in done
        else {"ok": False, "error": f"no answer within {CHECK_DEADLINE} s"}
        for name, future in futures.items()
    }
    result: dict = {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "last_cleanup": None,
        "checked_at": time.time(),
    }
    if checks["database"]["ok"]:
        try:
            result["last_cleanup"] = last_cleanup()
        except Exception as exc:  # noqa: BLE001 - informational; the database check decides
            result["last_cleanup"] = {"error": type(exc).__name__}
    return result


# The last result this process saw, and a lock so that one thread at a time
# fetches or computes it (the others then read it from memory).
_memory: dict | None = None
_memory_lock = threading.Lock()


def health_status() -> dict:
    """The checks' result, at most HEALTH_CACHE_SECONDS old."""
    global _memory
    ttl = settings.HEALTH_CACHE_SECONDS
    if ttl <= 0:
        return compute_health()
    with _memory_lock:
        if _memory is not None and time.time() - _memory["checked_at"] < ttl:
            return _memory
        _memory = _shared_result(ttl)
        return _memory


def forget_cached_health() -> None:
    """Drop this process's copy (tests; the shared one expires by itself)."""
    global _memory
    with _memory_lock:
        _memory = None


def _shared_result(ttl: float) -> dict:
    """The result all dynos share in Redis, computed here when nobody else is."""
    client = quick_redis(CACHE_TIMEOUT)
    try:
        return _shared_result_from(client, ttl)
    finally:
        client.close()


def _shared_result_from(client: redis.Redis, ttl: float) -> dict:
    ttl_ms = max(1, int(ttl * 1000))
    try:
        raw = client.get(RESULT_KEY)
        if raw:
            return json.loads(raw)
        won = client.set(LOCK_KEY, uuid.uuid4().hex, nx=True, px=ttl_ms)
        if not won:
            # Another process is computing: its answer comes within the deadline.
            give_up = time.monotonic() + CHECK_DEADLINE + 0.2
            while time.monotonic() < give_up:
                time.sleep(0.05)
                raw = client.get(RESULT_KEY)
                if raw:
                    return json.loads(raw)
            logger.warning("health: no shared result appeared in time; computing here")
    except redis.RedisError:
        # Redis is slow or down (the redis check says so): compute without it,
        # and keep the answer in this process's memory only.
        return compute_health()
    result = compute_health()
    try:
        client.set(RESULT_KEY, json.dumps(result), px=ttl_ms)
    except redis.RedisError:
        pass  # the next interval computes again
    return result


def run_checks() -> tuple[bool, dict[str, dict], dict]:
    """(all ok, per-check results, extra information) as /health/ shows them."""
    result = health_status()
    extra = {
        "last_cleanup": result["last_cleanup"],
        "checked_seconds_ago": round(max(0.0, time.time() - result["checked_at"]), 1),
    }
    return result["ok"], result["checks"], extra
