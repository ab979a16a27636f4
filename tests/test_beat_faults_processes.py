"""Beat through Redis faults, with real `celery worker --beat` processes from the
Procfile's line and a real redis-server: black-holed (a TCP proxy between the
workers and Redis that stops forwarding) and restarted with its data.

Timings are shortened through the environment (loop 1 s, Redis socket timeout
1 s, a cleanup every 2 s); the lock is 5 s for the black hole (it must lapse)
and 15 s for the restart (a 5 s outage must fit in it).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from devstack.procinfo import parent_of, wait_for
from tests.support.processes import ProcfileProcess, WorkerDynos
from tests.support.tcp_proxy import BlackholeProxy
from viral_clips.models import CleanupRun

pytestmark = pytest.mark.processes

LOOP, EVERY = 1, 2
HOLDER_KEY = "koolclips:redbeat::holder"
LOCK_KEY = "koolclips:redbeat::lock"
ENTRY_KEY = "koolclips:redbeat:scheduled-cloudcube-cleanup"
# Process start-up and a message's trip through the queue on a loaded 2-core
# machine shared with other test runs.
SLACK = 5


@pytest.fixture
def start_worker(worker_env, tmp_path, cube):
    dynos = WorkerDynos(
        dict(
            worker_env,
            CLEANUP_SCHEDULE=f"{EVERY}s",
            BEAT_MAX_LOOP_INTERVAL=str(LOOP),
            REDIS_SOCKET_TIMEOUT="1",
            # kombu re-checks a silent BRPOP connection after this long: the
            # consumers come back soon after the black hole ends.
            REDIS_HEALTH_CHECK_INTERVAL="2",
            CELERY_WORKER_CONCURRENCY="1",
        ),
        tmp_path,
    )

    def start(redis_url: str, lock: int) -> ProcfileProcess:
        return dynos.start(REDIS_URL=redis_url, REDBEAT_LOCK_TIMEOUT=str(lock))

    yield start
    dynos.stop_all()


def assert_no_slot_ran_twice() -> None:
    runs = CleanupRun.objects.exclude(status=CleanupRun.Status.SKIPPED)
    slots = Counter(run.scheduled_for for run in runs)
    assert None not in slots, "a scheduled run without its slot"
    doubled = {slot: n for slot, n in slots.items() if n > 1}
    assert not doubled, f"slots run twice: {doubled}"


def holder_pid(client) -> int | None:
    pid = client.hget(HOLDER_KEY, "pid")
    return int(pid) if pid else None


def last_sent(client) -> bytes | None:
    """RedBeat's record of the entry's last dispatch (its `meta` field)."""
    return client.hget(ENTRY_KEY, "meta")


def test_black_holed_redis_is_survived_and_a_beat_schedules_again(start_worker, own_redis):
    lock = 5
    proxy = BlackholeProxy(own_redis.port).start()
    url = f"redis://{proxy.url_host_port}/0"
    client = own_redis.client()  # straight to Redis, past the proxy
    try:
        workers = [start_worker(url, lock), start_worker(url, lock)]
        assert wait_for(lambda: holder_pid(client), 40), workers[0].output()[-3000:]
        assert wait_for(lambda: CleanupRun.objects.count() >= 2, 40), workers[0].output()[-3000:]

        proxy.blackhole()
        time.sleep(lock + 4)  # longer than the lock: it lapses in Redis
        assert not client.exists(LOCK_KEY), "the lock outlived the black hole"
        before = last_sent(client)
        restored_at = datetime.now(UTC)
        proxy.restore()
        started = time.monotonic()

        bound = lock + LOOP + EVERY + SLACK
        # A beat holds the lock again and sends the next slot.
        assert wait_for(lambda: client.exists(LOCK_KEY) and last_sent(client) != before, bound), (
            workers[0].output()[-3000:] + workers[1].output()[-3000:]
        )
        took = time.monotonic() - started
        assert took <= bound, f"scheduling came back {took:.1f} s after Redis answered"
        pid = holder_pid(client) or wait_for(lambda: holder_pid(client), 5)
        assert parent_of(pid) in {w.pid for w in workers}
        assert all(w.alive() for w in workers)
        # ... and its slots run (the consumers reconnect too), once each.
        assert wait_for(
            lambda: CleanupRun.objects.filter(started_at__gt=restored_at).count() >= 2, 40
        ), workers[0].output()[-3000:]
        time.sleep(EVERY * 2)
        assert_no_slot_ran_twice()
    finally:
        proxy.restore()
        proxy.stop()


def test_a_redis_restart_shorter_than_the_lock_keeps_the_holder(start_worker, own_redis):
    lock = 15
    worker = start_worker(own_redis.url, lock)
    client = own_redis.client()
    pid = wait_for(lambda: holder_pid(client), 40)
    assert pid, worker.output()[-3000:]
    assert wait_for(lambda: CleanupRun.objects.count() >= 2, 40), worker.output()[-3000:]
    token = client.get(LOCK_KEY)

    own_redis.restart(downtime=5, keep_data=True)
    restarted_at = datetime.now(UTC)
    assert wait_for(
        lambda: CleanupRun.objects.filter(started_at__gt=restarted_at).count() >= 2, 30
    ), worker.output()[-3000:]

    # The same beat still holds the same lock: it was never given up.
    assert client.get(LOCK_KEY) == token
    assert holder_pid(client) == pid
    assert worker.output().count("starting a new one") == 0, worker.output()[-3000:]
    assert "lost the scheduler lock" not in worker.output()
    time.sleep(EVERY * 2)
    assert_no_slot_ran_twice()


def test_a_frozen_beat_is_replaced_once_its_lock_lapses(start_worker, own_redis):
    # Alive but not ticking (SIGSTOP: as stuck as a call that never returns):
    # the worker's supervisor sees a live child, so only the heartbeat tells.
    lock = 5
    worker = start_worker(own_redis.url, lock)
    client = own_redis.client()
    pid = wait_for(lambda: holder_pid(client), 40)
    assert pid, worker.output()[-3000:]
    assert wait_for(lambda: CleanupRun.objects.count() >= 2, 40), worker.output()[-3000:]

    os.kill(pid, signal.SIGSTOP)
    frozen_at = datetime.now(UTC)
    started = time.monotonic()
    # Supervisor: stamp older than the lock (5 s) + its 1 s check + restart
    # back-off (1 s); then the new beat's next attempt (loop) and a slot.
    bound = lock + 1 + 1 + LOOP + EVERY + SLACK
    resumed = wait_for(
        lambda: CleanupRun.objects.filter(started_at__gt=frozen_at).exists(), bound + 10
    )
    took = time.monotonic() - started
    assert resumed, worker.output()[-3000:]
    assert took <= bound, f"scheduling came back {took:.1f} s after the beat froze"
    new_pid = holder_pid(client)
    assert new_pid and new_pid != pid and parent_of(new_pid) == worker.pid
    assert "hung; killing it and starting a new one" in worker.output()
    time.sleep(EVERY * 2)
    assert_no_slot_ran_twice()
