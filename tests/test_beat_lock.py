"""KoolclipsScheduler's lock handling against a real redis-server, through a TCP
proxy that black-holes traffic (tests/support/tcp_proxy.py).

Each test drives the scheduler's tick() directly, in this process, with a
Celery app of its own (loop 1 s, socket timeout 1 s, so one call through the
black hole takes about 2 s with redis-py's one retry).
"""

from __future__ import annotations

import time

import pytest
from celery import Celery
from django.conf import settings
from redbeat.schedulers import get_redis
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError, RedisError
from redis.retry import Retry

from devstack.redis_server import RedisServer
from scheduling.beat import RETRY_AFTER, KoolclipsScheduler
from tests.support.tcp_proxy import BlackholeProxy

LOOP = 1
SOCKET_TIMEOUT = 1.0
LOCK_KEY = "t:redbeat::lock"


@pytest.fixture
def redis_behind_proxy():
    with RedisServer() as server:
        proxy = BlackholeProxy(server.port).start()
        try:
            yield server, proxy
        finally:
            proxy.restore()
            proxy.stop()


def make_scheduler(port: int, lock_timeout: int) -> KoolclipsScheduler:
    app = Celery("beat-lock-test", set_as_current=False)
    app.conf.update(
        broker_url=f"redis://127.0.0.1:{port}/0",
        redbeat_redis_url=f"redis://127.0.0.1:{port}/0",
        redbeat_key_prefix="t:redbeat:",
        redbeat_lock_timeout=lock_timeout,
        redbeat_redis_options={
            **settings.CELERY_REDBEAT_REDIS_OPTIONS,
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 1),
        },
        beat_max_loop_interval=LOOP,
        beat_schedule={},
        result_expires=None,
    )
    return KoolclipsScheduler(app=app, max_interval=LOOP)


@pytest.mark.processes
def test_a_blip_shorter_than_the_lock_is_ridden_out(redis_behind_proxy):
    server, proxy = redis_behind_proxy
    scheduler = make_scheduler(proxy.port, lock_timeout=12)
    scheduler.tick()
    token = server.client().get(LOCK_KEY)
    assert token, "the first tick takes the lock"

    proxy.blackhole()
    started = time.monotonic()
    for _ in range(2):  # two failed ticks: about 4 s of the lock's 12
        assert scheduler.tick() == RETRY_AFTER
    assert time.monotonic() - started < 12 - scheduler.safety_margin()
    proxy.restore()

    scheduler.tick()  # renews the same lock
    assert server.client().get(LOCK_KEY) == token
    assert server.client().pttl(LOCK_KEY) > 11_000
    assert scheduler.lock is not None and scheduler.lock.owned()


@pytest.mark.processes
def test_beat_gives_up_only_when_the_lock_may_have_lapsed(redis_behind_proxy):
    server, proxy = redis_behind_proxy
    scheduler = make_scheduler(proxy.port, lock_timeout=8)
    renewed = time.monotonic()
    scheduler.tick()
    proxy.blackhole()
    retried = 0
    with pytest.raises(RedisError):
        for _ in range(10):
            scheduler.tick()
            retried += 1
    # It retried while the lock had time left, and stopped before the lock
    # could expire in Redis: no second beat can have started meanwhile.
    assert retried >= 1
    assert time.monotonic() - renewed < 8
    assert server.client().pttl(LOCK_KEY) > 0
    assert scheduler.lock is None  # never released: not known to be ours


@pytest.mark.processes
def test_a_lock_owned_by_another_beat_stops_this_one(redis_behind_proxy):
    server, proxy = redis_behind_proxy
    scheduler = make_scheduler(proxy.port, lock_timeout=12)
    scheduler.tick()
    server.client().set(LOCK_KEY, "someone-else", px=12_000)
    with pytest.raises(LockNotOwnedError):
        scheduler.tick()
    assert server.client().get(LOCK_KEY) == b"someone-else"


@pytest.mark.processes
def test_redis_down_at_start_is_waited_out_not_scheduled_without_the_lock():
    server = RedisServer()  # not started yet: connections are refused
    scheduler = make_scheduler(server.port, lock_timeout=12)  # needs no Redis
    assert scheduler.tick() == RETRY_AFTER
    assert scheduler.lock is None
    server.start()
    try:
        scheduler.tick()
        assert scheduler.lock is not None and scheduler.lock.owned()
        assert server.client().exists("t:redbeat::holder")
    finally:
        scheduler.close()
        get_redis(scheduler.app).close()
        server.stop()
    assert not server.process  # stopped
