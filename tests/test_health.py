import json
import time

import pytest
from django.conf import settings

from devstack.ports import free_port
from tests.support.processes import ProcfileProcess


@pytest.fixture
def live_services(db, redis_server, cube):
    return cube


@pytest.mark.processes
def test_health_ok_when_everything_answers(
    client, live_services, worker_env, tmp_path, django_user_model
):
    # Staff see the details (anonymous callers only up/down per part: test_web_security.py).
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))
    # "Everything" includes a scheduler: the Procfile's worker, with its beat.
    worker = ProcfileProcess("worker", worker_env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output("beat: Acquired lock", timeout=40), worker.output()
        deadline = time.monotonic() + 20
        while (response := client.get("/health/")).status_code != 200:
            assert time.monotonic() < deadline, response.json()
            time.sleep(0.25)
    finally:
        worker.stop()
    body = response.json()
    assert body["status"] == "ok"
    scheduler = body["checks"].pop("scheduler")
    # The worker executed the canary task (sent at its start, then by beat).
    worker_check = body["checks"].pop("worker")
    assert worker_check["ok"] is True
    assert worker_check["seconds_since_canary"] <= settings.HEALTH_CANARY_MAX_AGE
    assert body["checks"] == {
        "database": {"ok": True},
        "redis": {"ok": True},
        "cloudcube": {"ok": True},
    }
    assert scheduler["ok"] is True
    assert scheduler["seconds_since_tick"] <= settings.HEALTH_SCHEDULER_MAX_AGE
    assert body["last_cleanup"] is None  # no cleanup has run yet


def test_health_503_when_redis_is_down(client, live_services, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"] == {"ok": True}
    assert "hunter2" not in response.content.decode()


def test_health_503_when_cloudcube_is_down(client, live_services, monkeypatch):
    from config.cloudcube import parse_cloudcube_url

    monkeypatch.setattr(
        settings, "CLOUDCUBE", parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bucket/cube")
    )
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["cloudcube"]["ok"] is False


def test_health_never_shows_secrets(client, live_services):
    text = client.get("/health/").content.decode()
    for secret in (
        settings.SECRET_KEY,
        settings.CLOUDCUBE_SECRET_ACCESS_KEY,
        settings.CLOUDCUBE_ACCESS_KEY_ID,
        settings.REDIS_URL,
    ):
        assert secret not in text
    json.loads(text)


def test_health_rejects_post(client, live_services):
    assert client.post("/health/").status_code == 405


def test_health_503_within_2_s_when_the_cube_is_black_holed(
    client, live_services, s3_server, monkeypatch
):
    import time

    from config.cloudcube import parse_cloudcube_url
    from tests.support.tcp_proxy import BlackholeProxy

    proxy = BlackholeProxy(s3_server.port).start()
    proxy.blackhole()  # connections are accepted, nothing comes back
    try:
        cube_url = f"http://{proxy.url_host_port}/bucket/testcube"
        monkeypatch.setattr(settings, "CLOUDCUBE", parse_cloudcube_url(cube_url))
        started = time.monotonic()
        response = client.get("/health/")
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert took < 2.0, took
    assert response.status_code == 503
    assert response.json()["checks"]["cloudcube"]["ok"] is False
    assert response.json()["checks"]["database"] == {"ok": True}
