"""/health/ against real processes: cheap under a flood, on time when Redis is
black-holed, and down when the worker stops executing while its beat ticks.

Real parts: the Procfile's `web` line (gunicorn) and `worker` line (celery with
embedded beat), the suite's redis-server and local S3 server; Redis is
black-holed by a TCP proxy that stops forwarding (tests/support/tcp_proxy.py)
and S3 requests are counted on the wire by an HTTP proxy in front of the S3
server (tests/support/counting_proxy.py).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.procinfo import wait_for
from tests.settings import TEST_BUCKET, TEST_CUBE
from tests.support.broker import queued_messages
from tests.support.counting_proxy import CountingProxy
from tests.support.flood import get_health
from tests.support.processes import ProcfileProcess, start_web
from tests.support.tcp_proxy import BlackholeProxy

pytestmark = pytest.mark.processes

# The flood comes from a process of its own (the script says why).
FLOOD = Path(__file__).parent / "support" / "flood.py"


def test_a_flood_of_200_requests_costs_at_most_one_s3_call_per_cache_interval(
    worker_env, redis_client, cube, s3_server, tmp_path
):
    interval = 5
    with CountingProxy(s3_server.port) as s3_proxy:
        env = dict(
            worker_env,
            HEALTH_CACHE_SECONDS=str(interval),
            CLOUDCUBE_URL=s3_proxy.url(f"/{TEST_BUCKET}/{TEST_CUBE}"),
        )
        web, port = start_web(env, tmp_path / "web.log", workers=2)
        try:
            out = subprocess.run(
                [sys.executable, str(FLOOD), str(port), "200", "30"],
                capture_output=True,
                text=True,
                timeout=90,
                check=True,
            ).stdout
            flood = json.loads(out)
            answers, started, took = flood["answers"], flood["started"], flood["took"]
            s3_calls = s3_proxy.requests(since=started)
        finally:
            web.stop()

    assert len(answers) == 200
    # Every answer is a real health report, and it did reach S3.
    cloudcube = [body["checks"]["cloudcube"] for _, body, _ in answers]
    assert all(check == {"ok": True} for check in cloudcube), cloudcube[:3]
    assert all(status in (200, 503) for status, _, _ in answers)
    budget = math.floor(took / interval) + 1
    assert 1 <= len(s3_calls) <= budget, (len(s3_calls), took, s3_calls[:5])


def test_503_within_2_s_while_redis_is_black_holed(worker_env, redis_client, cube, tmp_path):
    proxy = BlackholeProxy(redis_client.connection_pool.connection_kwargs["port"]).start()
    env = dict(
        worker_env,
        HEALTH_CACHE_SECONDS="1",
        REDIS_URL=f"redis://{proxy.url_host_port}/0",
    )
    web, port = start_web(env, tmp_path / "web.log", workers=2)
    try:
        status, body, _ = get_health(port)
        assert body["checks"]["redis"] == {"ok": True}, body  # through the proxy

        proxy.blackhole()
        time.sleep(1.2)  # the cached answer from before has expired
        answers = [get_health(port) for _ in range(4)]
    finally:
        web.stop()
        proxy.stop()

    for status, body, seconds in answers:
        assert seconds < 2.0, (seconds, body)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["database"] == {"ok": True}
        assert body["checks"]["cloudcube"] == {"ok": True}


def beat_child_pid(redis_client) -> int | None:
    raw = redis_client.hget("koolclips:redbeat::holder", "pid")
    return int(raw) if raw else None


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


def test_503_within_two_canary_periods_when_the_worker_stops_executing_while_beat_ticks(
    client, worker_env, redis_client, cube, tmp_path, settings, django_user_model
):
    """The consumer is stopped by SIGSTOPping the worker's pool children only.

    Remote control is off (no `cancel_consumer`). With the pool frozen the main
    process takes its prefetch (2 messages) and then consumes nothing more,
    while its embedded beat child keeps ticking and sending: from outside, the
    known failure exactly - tasks pile up in the broker, beat looks alive.
    """
    period, loop, cache = 2, 1, 1
    settings.HEALTH_CANARY_INTERVAL = period
    settings.HEALTH_CANARY_MAX_AGE = 2 * period + loop  # as settings.py derives it
    settings.HEALTH_SCHEDULER_MAX_AGE = 3 * loop
    settings.HEALTH_CACHE_SECONDS = cache
    env = dict(
        worker_env,
        HEALTH_CANARY_INTERVAL=str(period),
        BEAT_MAX_LOOP_INTERVAL=str(loop),
        REDBEAT_LOCK_TIMEOUT="4",
    )

    # Staff see the checks' details (errors), anonymous callers only up/down.
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))

    def health() -> tuple[int, dict]:
        response = client.get("/health/")
        return response.status_code, response.json()

    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    frozen: set[int] = set()
    try:
        assert wait_for(lambda: health()[0] == 200, timeout=60, step=0.25), (
            health(),
            worker.output()[-3000:],
        )
        beat = beat_child_pid(redis_client)
        assert beat in children_of(worker.pid)
        frozen = children_of(worker.pid) - {beat}
        assert len(frozen) == 2, frozen  # --concurrency 2

        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        assert wait_for(lambda: health()[0] == 503, timeout=4 * period + 10, step=0.2)
        waited = time.monotonic() - stopped
        status, body = health()
        # Within two canary periods (plus one beat loop, the cache and polling).
        assert waited <= 2 * period + loop + cache + 1, waited
        assert body["checks"]["worker"]["ok"] is False
        assert body["checks"]["worker"]["error"].startswith("no worker ran the canary")
        # Beat still ticks and still sends: the canaries wait in the broker.
        assert body["checks"]["scheduler"]["ok"] is True
        assert wait_for(
            lambda: any(
                m["task"] == "scheduling.tasks.canary" for m in queued_messages(redis_client)
            ),
            timeout=2 * period,
        )

        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen = set()
        assert wait_for(lambda: health()[0] == 200, timeout=2 * period + loop + cache + 5)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        worker.stop()
