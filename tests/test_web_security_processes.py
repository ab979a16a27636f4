"""The web surface through the Procfile's own lines (issue 18): HEAD /health/ from
gunicorn, the debug page of a DJANGO_DEBUG=1 web process, the release phase
refusing debug mode on a dyno, and login throttling behind Heroku's router.

Real parts: the Procfile's `web` line (gunicorn) and `release` line
(`manage.py migrate`), the suite's database, redis-server and local S3 server;
requests go over TCP from this process.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.procfile import procfile_command
from devstack.procinfo import wait_for
from tests.support.processes import ProcfileProcess, start_web, venv_path_env

pytestmark = pytest.mark.processes
ROOT = Path(__file__).resolve().parent.parent
HEALTH_TOKEN = "token-for-the-process-test-0123456789abcdef"


def raw_request(port: int, request: bytes) -> bytes:
    """Everything the server sends for one request, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_gunicorn_answers_head_health_with_headers_only_and_never_logs_the_token(
    worker_env, redis_client, cube, tmp_path
):
    web, port = start_web(dict(worker_env, HEALTH_TOKEN=HEALTH_TOKEN), tmp_path / "web.log")
    try:
        head = raw_request(
            port,
            b"HEAD /health/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + f"Authorization: Bearer {HEALTH_TOKEN}\r\n\r\n".encode(),
        )
        get = raw_request(
            port, b"GET /health/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
    finally:
        web.stop()
    head_headers, _, head_body = head.partition(b"\r\n\r\n")
    get_headers, _, get_body = get.partition(b"\r\n\r\n")
    # Before: "HTTP/1.1 405 Method Not Allowed". Now GET's status (503: no worker here).
    assert head_headers.startswith(b"HTTP/1.1 503 "), head_headers
    assert get_headers.startswith(b"HTTP/1.1 503 ")
    assert head_body == b""
    assert b"content-type: application/json" in head_headers.lower()
    assert b'"checks"' in get_body
    log = web.output()
    assert "HEAD /health/" in log  # the access log line, with no header in it
    assert HEALTH_TOKEN not in log


REDIS_PASSWORD = "redis-password-4c3b2a1f0e9d"
DB_PASSWORD = "db-password-9a8b7c6d5e4f"


def test_a_debug_web_process_shows_no_credential_on_its_debug_page(
    worker_env, redis_server, tmp_path
):
    """The issue's probe: DJANGO_DEBUG=1, a foreign Host header, the 400 debug page."""
    port = free_port()
    env = dict(
        worker_env,
        DJANGO_DEBUG="1",
        # A Redis that wants a password, as Heroku's does (the page is served before any
        # Redis call, so nothing needs to answer on it).
        REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        DATABASE_URL=f"postgres://koolclips:{DB_PASSWORD}@127.0.0.1:{free_port()}/koolclips",
        SENTRY_DSN="",
        PORT=str(port),
        WEB_CONCURRENCY="1",
    )
    web = ProcfileProcess("web", env, tmp_path / "web.log").start()
    try:

        def debug_page() -> bytes | None:
            try:
                return raw_request(
                    port,
                    b"GET /health/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
                )
            except OSError:
                return None

        assert wait_for(lambda: debug_page() is not None, timeout=60, step=0.3), web.output()
        page = debug_page().decode(errors="replace")
    finally:
        web.stop()
    assert page.startswith("HTTP/1.1 400 "), page[:300]
    assert "DisallowedHost" in page and "CELERY_BROKER_URL" in page  # the debug page
    for secret in (REDIS_PASSWORD, DB_PASSWORD):
        assert secret not in page
    for setting in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_REDBEAT_REDIS_URL"):
        assert re.search(setting + r".{0,200}redis://\*{8}@127\.0\.0\.1", page, re.S), setting


def run_release(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The Procfile's release line, as Heroku's release phase runs it."""
    return subprocess.run(
        ["bash", "-c", procfile_command("release")],
        cwd=ROOT,
        env=venv_path_env(env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_release_phase_refuses_debug_mode_on_a_dyno_unless_told_to(worker_env):
    env = dict(worker_env, DJANGO_DEBUG="1", SENTRY_DSN="")
    env.pop("DYNO", None)
    refused = run_release(dict(env, DYNO="release.4821"))
    assert refused.returncode == 78, refused.stdout + refused.stderr
    assert "koolclips: configuration error: DJANGO_DEBUG is on on a Heroku dyno" in refused.stderr
    assert "DJANGO_ALLOW_DEBUG_ON_DYNO=1" in refused.stderr
    assert "Traceback" not in refused.stderr
    # The web line refuses too (gunicorn's master checks the settings before it forks).
    web = subprocess.run(
        ["bash", "-c", f"exec {procfile_command('web')}"],
        cwd=ROOT,
        env=venv_path_env(dict(env, DYNO="web.1", PORT=str(free_port()))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode == 78 and "DJANGO_DEBUG is on on a Heroku dyno" in web.stderr

    allowed = run_release(dict(env, DYNO="release.4822", DJANGO_ALLOW_DEBUG_ON_DYNO="1"))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    local = run_release(env)  # no DYNO: `make run`, `heroku local`
    assert local.returncode == 0, local.stdout + local.stderr
    production = run_release(dict(env, DYNO="release.4823", DJANGO_DEBUG="0"))
    assert production.returncode == 0, production.stdout + production.stderr


class Browser:
    """A login client over HTTP that keeps its own cookies (the app's are Secure)."""

    def __init__(self, port: int, forwarded_for: str):
        self.base = f"http://127.0.0.1:{port}"
        self.forwarded_for = forwarded_for
        self.cookies: dict[str, str] = {}

    def request(self, path: str, data: dict | None = None) -> tuple[int, str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)  # noqa: S310 - local
        request.add_header("X-Forwarded-For", self.forwarded_for)
        if self.cookies:
            request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request, timeout=20)
        except urllib.error.HTTPError as exc:
            response = exc
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response.status, response.headers.get("Location", ""), response.read().decode()

    def log_in(self, username: str, password: str) -> tuple[int, str]:
        status, location, form = self.request("/admin/login/")
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert found, (status, location, form[:500])
        token = found[1]
        status, location, text = self.request(
            "/admin/login/?next=/admin/",
            {
                "csrfmiddlewaretoken": token,
                "username": username,
                "password": password,
                "next": "/admin/",
            },
        )
        return status, location or text


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_behind_herokus_router_a_lockout_follows_the_address_it_appended(
    worker_env, redis_client, cube, tmp_path, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@localhost", "right-pw-123456")
    # On a dyno: the router appends the address that connected to it. The test settings
    # (the production ones, with plain static files and the suite's password hasher)
    # so that the login page renders without collectstatic.
    env = dict(worker_env, DYNO="web.1", DJANGO_SETTINGS_MODULE="tests.settings")
    web, port = start_web(env, tmp_path / "web.log")
    try:
        # An attacker at 203.0.113.50 makes up a first X-Forwarded-For entry each time.
        for i in range(5):
            attacker = Browser(port, f"10.0.0.{i}, 203.0.113.50")
            status, _ = attacker.log_in(f"guess{i}", "wrong")
            assert status in (200, 429)
        attacker = Browser(port, "10.9.9.9, 203.0.113.50")
        assert attacker.log_in("admin", "right-pw-123456")[0] == 429
        # The operator at 198.51.100.4, naming the attacker's address first, is not locked out.
        operator = Browser(port, "203.0.113.50, 198.51.100.4")
        assert operator.log_in("admin", "right-pw-123456") == (302, "/admin/")

        lifted = subprocess.run(
            [sys.executable, "manage.py", "axes_reset_ip", "203.0.113.50"],
            cwd=ROOT,
            env=venv_path_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert lifted.returncode == 0, lifted.stdout + lifted.stderr
        assert Browser(port, "203.0.113.50").log_in("admin", "right-pw-123456") == (302, "/admin/")
    finally:
        web.stop()
