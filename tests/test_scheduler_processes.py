"""One scheduler, always exactly one: real `celery worker --beat` processes from
the Procfile's line, a real redis-server, killed and restarted.

Timeouts are shortened through the environment (loop 1 s, lock 5 s, a cleanup
every 2 s) so the suite stays fast; bench/scheduler_bench.py measures the
production values (loop 5 s, lock 25 s).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from redbeat.decoder import RedBeatJSONEncoder

from devstack.procinfo import parent_of, wait_for
from devstack.redis_server import RedisServer
from scheduling import registry
from scheduling.models import JobRun
from tests.support.processes import ProcfileProcess, WorkerDynos
from viral_clips.models import CleanupRun

pytestmark = pytest.mark.processes

LOOP, LOCK, EVERY = 1, 5, 2
HOLDER_KEY = "koolclips:redbeat::holder"
ENTRY_KEY = "koolclips:redbeat:scheduled-cloudcube-cleanup"
LOCK_KEY = "koolclips:redbeat::lock"
SLACK = 4  # process start-up and a task's trip through the queue, on a loaded 2-core machine


@pytest.fixture
def start_worker(worker_env, own_redis, tmp_path, cube):
    dynos = WorkerDynos(
        dict(
            worker_env,
            BEAT_MAX_LOOP_INTERVAL=str(LOOP),
            REDBEAT_LOCK_TIMEOUT=str(LOCK),
            CELERY_WORKER_CONCURRENCY="1",
        ),
        tmp_path,
    )

    def start(schedule: str = f"{EVERY}s", redis: RedisServer | None = None) -> ProcfileProcess:
        return dynos.start(REDIS_URL=(redis or own_redis).url, CLEANUP_SCHEDULE=schedule)

    yield start
    dynos.stop_all()


def executed() -> list[CleanupRun]:
    return list(CleanupRun.objects.exclude(status=CleanupRun.Status.SKIPPED).order_by("pk"))


def assert_no_slot_ran_twice() -> None:
    slots = Counter(run.scheduled_for for run in executed())
    assert None not in slots, "a scheduled run without its slot"
    doubled = {slot: n for slot, n in slots.items() if n > 1}
    assert not doubled, f"slots run twice: {doubled}"


def holder_pid(redis: RedisServer) -> int | None:
    pid = redis.client().hget(HOLDER_KEY, "pid")
    return int(pid) if pid else None


def holding_worker(workers: list[ProcfileProcess], redis: RedisServer) -> ProcfileProcess:
    pid = wait_for(lambda: holder_pid(redis), 40)
    assert pid, "no beat took the lock"
    [holder] = [w for w in workers if w.pid == parent_of(pid)]
    return holder


def runs_after(moment: datetime) -> list[JobRun]:
    """Slots handled since `moment`, as the ledger records them (deferred and
    skipped ones included): a holder killed in the middle of a cleanup holds
    its lease for a while (CLEANUP_LEASE_SECONDS), and the new scheduler's
    slots are then recorded `deferred` - scheduled all the same."""
    return list(
        JobRun.objects.filter(job="scheduled-cloudcube-cleanup", created_at__gt=moment).order_by(
            "pk"
        )
    )


def test_three_workers_schedule_each_slot_exactly_once(start_worker, own_redis):
    workers = [start_worker() for _ in range(3)]
    holding_worker(workers, own_redis)
    assert wait_for(lambda: len(executed()) >= 1, 30), workers[0].output()
    first = executed()[0].started_at
    time.sleep(10)

    runs = executed()
    span = (runs[-1].started_at - first).total_seconds()
    # One scheduler: about one run per interval, not three.
    assert len(runs) <= span / EVERY + 2, [r.started_at for r in runs]
    assert len(runs) >= 4
    assert_no_slot_ran_twice()
    assert not CleanupRun.objects.filter(status=CleanupRun.Status.SKIPPED).exists()
    # Exactly one beat ever held the lock; the standbys never sent anything.
    senders = [w for w in workers if "Sending due task" in w.output()]
    assert len(senders) == 1


@pytest.mark.parametrize(
    ("how", "bound"),
    [
        # A crashed holder keeps its lock until it expires.
        ("SIGKILL", LOCK + LOOP + EVERY + SLACK),
        # A clean stop releases the lock at once: a standby's next attempt wins.
        ("SIGTERM", 2 + LOOP + EVERY + SLACK),
    ],
)
def test_a_standby_takes_over_when_the_holder_dies(start_worker, own_redis, how, bound):
    workers = [start_worker(), start_worker()]
    holder = holding_worker(workers, own_redis)
    [standby] = [w for w in workers if w is not holder]
    assert wait_for(lambda: len(executed()) >= 2, 30), holder.output()

    stopped_at = datetime.now(UTC)
    started = time.monotonic()
    if how == "SIGKILL":
        holder.kill_group()  # the whole dyno dies at once
    else:
        os.killpg(holder.pid, signal.SIGTERM)  # Heroku: SIGTERM to every process
    resumed = wait_for(lambda: runs_after(stopped_at + timedelta(seconds=0.5)), bound + 5)
    took = time.monotonic() - started
    assert resumed, standby.output()[-3000:]
    assert took <= bound, f"scheduling came back after {took:.1f} s (bound {bound} s)"
    assert resumed[0].dyno == ("worker.2" if holder is workers[0] else "worker.1")
    assert parent_of(holder_pid(own_redis)) == standby.pid
    time.sleep(EVERY * 2)
    assert_no_slot_ran_twice()


def test_a_killed_beat_child_is_restarted_inside_the_worker(start_worker, own_redis):
    worker = start_worker()
    beat_pid = holder_pid(own_redis) or wait_for(lambda: holder_pid(own_redis), 40)
    assert wait_for(lambda: len(executed()) >= 2, 30), worker.output()

    killed_at = datetime.now(UTC)
    started = time.monotonic()
    os.kill(beat_pid, signal.SIGKILL)
    # The new beat waits for the dead one's lock to expire, then schedules.
    resumed = wait_for(
        lambda: runs_after(killed_at + timedelta(seconds=0.5)), LOCK + LOOP + EVERY + SLACK + 5
    )
    took = time.monotonic() - started
    assert resumed, worker.output()[-3000:]
    assert took <= LOCK + LOOP + EVERY + SLACK, f"{took:.1f} s"
    assert worker.alive()
    new_pid = holder_pid(own_redis)
    assert new_pid and new_pid != beat_pid and parent_of(new_pid) == worker.pid
    assert "starting a new one" in worker.output()
    time.sleep(EVERY * 2)
    assert_no_slot_ran_twice()


def test_redis_restarted_empty_is_survived(start_worker, own_redis):
    worker = start_worker()
    assert wait_for(lambda: len(executed()) >= 2, 40), worker.output()

    own_redis.restart()  # comes back empty: no lock, no schedule
    restarted_at = datetime.now(UTC)
    started = time.monotonic()
    resumed = wait_for(
        lambda: runs_after(restarted_at + timedelta(seconds=0.5)), LOCK + LOOP + EVERY + SLACK + 10
    )
    took = time.monotonic() - started
    assert resumed, worker.output()[-4000:]
    assert took <= LOCK + LOOP + EVERY + SLACK, f"{took:.1f} s"
    assert worker.alive()
    # The schedule was re-created from settings.
    assert own_redis.client().exists(ENTRY_KEY)
    time.sleep(EVERY * 2)
    assert_no_slot_ran_twice()


def test_a_missed_cron_slot_runs_once_when_a_scheduler_returns(start_worker, own_redis):
    first = start_worker(schedule="* * * * *")
    wait_for(lambda: own_redis.client().exists(ENTRY_KEY), 40)
    first.stop()
    assert not own_redis.client().exists(LOCK_KEY)

    # No scheduler was alive for the last four slots: beat last sent it 4.5
    # minutes ago (RedBeat's own meta and due-time index, as a beat writes them).
    last_run = datetime.now(UTC) - timedelta(minutes=4, seconds=30)
    meta = json.dumps({"last_run_at": last_run, "total_run_count": 1}, cls=RedBeatJSONEncoder)
    client = own_redis.client()
    client.hset(ENTRY_KEY, "meta", meta)
    client.zadd(
        "koolclips:redbeat::schedule", {ENTRY_KEY: (last_run + timedelta(minutes=1)).timestamp()}
    )
    returned_at = datetime.now(UTC)

    second = start_worker(schedule="* * * * *")
    assert wait_for(lambda: executed(), 40), second.output()
    time.sleep(6)
    # The four missed slots run once, as the latest of them (issue 9: a slot
    # is the schedule's exact due time; catch-up sends the latest due slot),
    # at once - not at the next minute, and no backfill of the older ones.
    first = executed()[0]
    slots_run = [(r.scheduled_for, r.started_at) for r in executed()]
    assert first.scheduled_for.second == 0, slots_run
    assert returned_at - timedelta(minutes=1) < first.scheduled_for <= first.started_at, slots_run
    assert first.started_at - returned_at < timedelta(seconds=40), slots_run
    assert not [r for r in executed() if r.scheduled_for < first.scheduled_for], slots_run
    assert_no_slot_ran_twice()


def test_changed_schedule_leaves_no_stale_entry(start_worker, own_redis):
    client = own_redis.client()
    key = ENTRY_KEY
    worker = start_worker(schedule="0 2 * * *")
    assert wait_for(lambda: client.exists(key), 40), worker.output()
    worker.stop()
    assert b'"minute": "0"' in client.hget(key, "definition") or b"crontab" in client.hget(
        key, "definition"
    )

    worker = start_worker(schedule="15m")
    assert wait_for(lambda: b"interval" in (client.hget(key, "definition") or b""), 40)
    definition = client.hget(key, "definition").decode()
    assert "crontab" not in definition and "900" in definition
    # Exactly the configured entries are scheduled, nothing left over.

    configured = {f"koolclips:redbeat:{name}".encode() for name in registry.beat_entries()}
    assert set(client.zrange("koolclips:redbeat::schedule", 0, -1)) == configured
    assert ENTRY_KEY.encode() in configured
