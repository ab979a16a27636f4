"""The staff dashboard and its actions: who may see and press what, and what it shows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from devstack.ports import free_port
from scheduling.claim import claim
from tests.support.broker import queued_messages
from tests.support.jobs import CLEANUP, operators_group
from tests.support.runs import make_run
from viral_clips.cube_stats import refresh_cube_stats
from viral_clips.models import CleanupRun, Clip, CubeMeasurement
from viral_clips.run_now import PENDING_KEY

pytestmark = pytest.mark.django_db
MB = 1024 * 1024
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def services(cube, redis_client):
    """The dashboard reads Redis and the cube: both real, both empty."""
    return redis_client


@pytest.fixture
def staff(django_user_model):
    """An operator: staff, in a group holding the job permissions (docs/operations.md)."""
    user = django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)
    user.groups.add(operators_group())
    return user


@pytest.fixture
def bare_staff(django_user_model):
    """Staff with no permission at all: may look, may not act."""
    return django_user_model.objects.create_user("looker", password=PASSWORD, is_staff=True)


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("member", password=PASSWORD)


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def member_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


# --- permissions -------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(client, services):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"


def test_logged_in_non_staff_is_refused(member_client, services):
    assert member_client.get("/").status_code == 403


def test_inactive_staff_is_refused(staff, staff_client, services):
    staff.is_active = False
    staff.save()
    response = staff_client.get("/")  # the session no longer counts: back to login
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"


def test_staff_sees_the_dashboard(staff_client, services):
    response = staff_client.get("/")
    assert response.status_code == 200
    assert b"Cloudcube cleanup" in response.content


def test_anonymous_press_queues_nothing_and_goes_to_login(client, services):
    response = client.post("/run-now/", {"mode": "dry-run"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"
    assert queued_messages(services) == []


def test_non_staff_press_is_refused_and_queues_nothing(member_client, services):
    assert member_client.post("/run-now/", {"mode": "run"}).status_code == 403
    assert queued_messages(services) == []
    assert not services.exists(PENDING_KEY)


def test_actions_are_post_only(staff_client, services):
    assert staff_client.get("/run-now/", {"mode": "dry-run"}).status_code == 405
    assert staff_client.put("/run-now/").status_code == 405
    assert queued_messages(services) == []


def test_actions_need_the_csrf_token(staff, services):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post("/run-now/", {"mode": "dry-run"}).status_code == 403
    assert queued_messages(services) == []

    page = client.get("/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)[1].decode()
    response = client.post("/run-now/", {"mode": "dry-run", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert len(queued_messages(services)) == 1


def test_unknown_mode_is_a_bad_request(staff_client, services):
    assert staff_client.post("/run-now/", {"mode": "everything"}).status_code == 400
    assert staff_client.post("/run-now/").status_code == 400
    assert queued_messages(services) == []


# --- the buttons -------------------------------------------------------------


def test_run_now_and_dry_run_queue_the_task_with_trigger_manual(staff_client, services):
    # Run now deletes: it is queued once confirmed (see the confirmation tests below).
    response = staff_client.post(
        "/run-now/", {"mode": "run", "confirm": "1", "reason": "by hand"}, follow=True
    )
    assert response.redirect_chain == [("/", 302)]
    assert "Cleanup queued" in response.content.decode()
    [message] = queued_messages(services)
    assert (message["trigger"], message["dry_run"]) == ("manual", False)
    assert message["retention_days"] == settings.CLEANUP_RETENTION_DAYS


def test_a_second_press_says_so_instead_of_queueing(staff_client, services):
    staff_client.post("/run-now/", {"mode": "dry-run"})
    response = staff_client.post(
        "/run-now/", {"mode": "run", "confirm": "1", "reason": "by hand"}, follow=True
    )
    text = response.content.decode()
    assert "Cleanup not queued: A dry run was requested by operator and is queued" in text
    assert "It was not queued again." in text
    [message] = queued_messages(services)
    assert message["dry_run"] is True
    # While busy the page shows what is going on and refreshes itself.
    assert 'id="activity"' in text
    assert '<meta http-equiv="refresh" content="5">' in text


def test_a_press_while_a_run_is_in_progress_says_so(staff_client, services):
    execution = claim(
        CLEANUP,
        trigger="schedule",
        slot=timezone.now().replace(microsecond=0),
        task_id="scheduled-task",
    )  # as the task does; fmt: skip
    run = make_run(timezone.now() - timedelta(seconds=40), duration=None, task_id="scheduled-task",
                   status=CleanupRun.Status.RUNNING, job_run=execution.run)  # fmt: skip
    response = staff_client.post("/run-now/", {"mode": "dry-run"}, follow=True)
    text = response.content.decode()
    assert f"Dry run not queued: A cleanup (schedule) is running, run #{run.pk}" in text
    assert queued_messages(services) == []


def test_redis_down_press_says_so(staff_client, services, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    response = staff_client.post("/run-now/", {"mode": "dry-run"}, follow=True)
    text = response.content.decode()
    assert "Dry run not queued: Redis is unavailable (ConnectionError)." in text
    assert "hunter2" not in text


def test_run_now_asks_for_confirmation_and_queues_nothing_until_confirmed(staff, services):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    make_run(timezone.now() - timedelta(hours=3), dry_run=True, trigger="manual",
             files_deleted=6, bytes_freed=3 * MB)  # fmt: skip
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/").content)[1]
    response = client.post("/run-now/", {"mode": "run", "csrfmiddlewaretoken": token.decode()})
    assert response.status_code == 200  # a page asking, not a redirect
    text = response.content.decode()
    assert "Delete expired files now?" in text
    assert "would have deleted 6 files (3.0\xa0MB)" in text
    assert '<input type="hidden" name="confirm" value="1">' in text
    assert 'name="csrfmiddlewaretoken"' in text
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert queued_messages(services) == []
    assert not services.exists(PENDING_KEY)

    # Confirming needs the CSRF token like any action.
    assert (
        client.post("/run-now/", {"mode": "run", "confirm": "1", "reason": "by hand"}).status_code
        == 403
    )
    assert queued_messages(services) == []
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content)[1]
    confirmed = client.post(
        "/run-now/",
        {"mode": "run", "confirm": "1", "reason": "by hand", "csrfmiddlewaretoken": token.decode()},
    )
    assert confirmed.status_code == 302
    [message] = queued_messages(services)
    assert (message["trigger"], message["dry_run"]) == ("manual", False)


def test_a_dry_run_needs_no_confirmation(staff_client, services):
    response = staff_client.post("/run-now/", {"mode": "dry-run"})
    assert response.status_code == 302
    [message] = queued_messages(services)
    assert message["dry_run"] is True


def test_dry_runs_say_would_delete_and_real_runs_deleted(staff_client, services):
    now = timezone.now()
    dry = make_run(now - timedelta(hours=2), dry_run=True, trigger="manual", files_deleted=6,
                   bytes_freed=8 * MB, clips_retained=6006, objects_scanned=6012)  # fmt: skip
    real = make_run(now - timedelta(hours=1), files_deleted=4, bytes_freed=MB)
    text = staff_client.get("/").content.decode()
    dry_row = re.search(rf'<tr id="run-{dry.pk}".*?</tr>', text, re.S)[0]
    real_row = re.search(rf'<tr id="run-{real.pk}".*?</tr>', text, re.S)[0]
    assert 'would delete</span> <span class="files-deleted">6<' in dry_row
    assert 'would free</span> <span class="mb-freed">8.00 MB<' in dry_row
    assert "dry run: nothing deleted" in dry_row and ">Counted<" in dry_row
    assert "Succeeded" not in dry_row
    assert "would" not in real_row and ">Succeeded<" in real_row
    # What was "Retained clips" counts objects, and is called so.
    assert "Objects kept" in text and "Retained clips" not in text
    assert '<td class="num objects-kept">6006</td>' in dry_row
    assert "would delete 6 files" in text  # the chart's label for the dry run


def test_a_running_cleanup_shows_its_progress(staff_client, services):
    execution = claim(CLEANUP, trigger="manual", task_id="running-task")  # as the task does
    run = make_run(timezone.now() - timedelta(seconds=75), duration=None, task_id="running-task",
                   status=CleanupRun.Status.RUNNING, job_run=execution.run, objects_scanned=3000,
                   bytes_scanned=12 * MB, files_deleted=1000, bytes_freed=4 * MB)  # fmt: skip
    text = staff_client.get("/").content.decode()
    progress = re.search(r'<p id="progress">.*?</p>', text, re.S)[0]
    assert re.search(r'id="progress-scanned">3000</strong> objects \(12\.0\xa0MB\)', progress)
    assert re.search(r'deleted <strong id="progress-deleted">1000</strong> files', progress)
    elapsed = int(re.search(r'id="progress-elapsed">(\d+) s<', progress)[1])
    assert 75 <= elapsed < 90
    assert f"run #{run.pk}" in text
    assert '<meta http-equiv="refresh" content="5">' in text


def test_the_weekly_report_says_it_has_not_been_sent_yet(staff_client, services):
    text = staff_client.get("/").content.decode()
    report = re.search(r'<p class="muted" id="weekly-report">.*?</p>', text, re.S)[0]
    assert "every Monday at 09:00 UTC" in report and "Not sent yet." in report


def test_the_weekly_report_shows_its_last_run_from_the_ledger(staff_client, services):
    from scheduling.models import JobRun
    from tests.support.jobs import WEEKLY_REPORT

    sent = (timezone.now() - timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    # A delivery refused as a duplicate is not a run of the report.
    JobRun.objects.create(job=WEEKLY_REPORT.entry, slot=sent, trigger="schedule",
                          status=JobRun.Status.SKIPPED, detail="slot already ran")  # fmt: skip
    text = staff_client.get("/").content.decode()
    assert "Not sent yet." in text
    JobRun.objects.create(job=WEEKLY_REPORT.entry, slot=sent, trigger="schedule",
                          status=JobRun.Status.SUCCEEDED, started_at=sent,
                          finished_at=sent + timedelta(seconds=2))  # fmt: skip
    text = staff_client.get("/").content.decode()
    report = re.search(r'<p class="muted" id="weekly-report">.*?</p>', text, re.S)[0]
    assert f"Last sent {sent:%a %Y-%m-%d} 09:00 UTC" in report, report
    assert ": Succeeded" in report


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in response.content


# --- what the page shows ------------------------------------------------------


def test_dashboard_shows_schedule_runs_cube_and_chart(staff_client, services, cube):
    cube.put("testcube/public/clips/a.mp4", b"a" * (2 * MB))
    cube.put("testcube/public/clips/b.mp4", b"b" * (MB // 2))
    refresh_cube_stats()  # the scheduled measurement (the page itself never lists)
    now = timezone.now()
    ok = make_run(now - timedelta(days=1), files_deleted=12, bytes_freed=3 * MB,
                  clips_retained=7, bytes_scanned=9 * MB)  # fmt: skip
    failed = make_run(now - timedelta(hours=2), status=CleanupRun.Status.FAILED,
                      trigger=CleanupRun.Trigger.MANUAL, detail="EndpointConnectionError: boom",
                      bytes_scanned=6 * MB)  # fmt: skip
    partial = make_run(now - timedelta(hours=1), status=CleanupRun.Status.PARTIAL,
                       files_deleted=4, bytes_freed=MB, error_count=2,
                       detail="2 key(s) could not be deleted")  # fmt: skip

    response = staff_client.get("/")
    text = response.content.decode()

    assert "Every day at 02:00 UTC" in text
    assert "<code>0 2 * * *</code>" in text
    assert "retention 5 days" in text
    assert "every Monday at 09:00 UTC" in text  # the weekly report
    # No beat has written the schedule (no worker here): the schedule's next slot, said so.
    next_slot = (now + timedelta(days=1) if now.hour >= 2 else now).replace(
        hour=2, minute=0, second=0, microsecond=0
    )
    assert f"Next run: <strong>{next_slot:%a %Y-%m-%d} 02:00 UTC</strong>" in text
    assert "No beat has written the schedule to Redis yet" in text
    assert "No worker holds the beat lock: nothing is being scheduled." in text
    assert re.search(r'id="cube-size">2\.5\s+MB</span> in <span id="cube-objects">2<', text)
    assert re.search(
        r'id="cube-measured">Measured (just now|\d+ seconds? ago) by the scheduled'
        r" measurement \(listing took [\d.]+ s\); measured again every 6 hours",
        text,
    )
    for run in (ok, failed, partial):
        assert f'href="/admin/viral_clips/cleanuprun/{run.pk}/change/"' in text
    row = re.search(rf'<tr id="run-{ok.pk}".*?</tr>', text, re.S)[0]
    assert "Succeeded" in row and ">12<" in row and "3.00 MB" in row and ">7<" in row
    assert "12.0 s" in row
    assert "2: 2 key(s) could not be deleted" in text
    assert "EndpointConnectionError: boom" in text
    assert '<svg class="chart"' in text
    assert text.count('<g class="run"') == 3
    assert 'name="mode" value="dry-run"' in text and 'name="mode" value="run"' in text
    assert 'id="activity"' not in text and 'http-equiv="refresh"' not in text


def test_a_part_that_is_down_does_not_take_the_page_down(staff_client, services, monkeypatch):
    from config.cloudcube import parse_cloudcube_url

    monkeypatch.setattr(
        settings, "CLOUDCUBE", parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bkt/cube")
    )
    text = staff_client.get("/").content.decode()
    # Intended change (issue 13.2): the page never lists the cube, so an
    # unreachable cube costs it nothing; never measured, it says so.
    assert "Size unavailable" not in text
    assert "Never measured: the size appears after the first cleanup run" in text

    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    response = staff_client.get("/")
    assert response.status_code == 200
    assert "is unknown: Redis unavailable (ConnectionError)" in response.content.decode()


def test_the_dashboard_makes_no_s3_request(staff_client, services, cube, s3_server, settings):
    from config.cloudcube import parse_cloudcube_url
    from tests.settings import TEST_BUCKET, TEST_CUBE
    from tests.support.counting_proxy import CountingProxy

    for i in range(3):
        cube.put(f"testcube/public/clips/{i}.mp4", b"c" * 100)
    CubeMeasurement.objects.create(
        measured_at=timezone.now() - timedelta(hours=3, minutes=5),
        object_count=1_000_000,
        total_bytes=250 * 1024 * MB,
        cube=TEST_CUBE,
        seconds_to_measure=98.4,
    )
    with CountingProxy(s3_server.port) as proxy:
        # Every S3 request of this process now goes through the proxy.
        settings.CLOUDCUBE = parse_cloudcube_url(proxy.url(f"/{TEST_BUCKET}/{TEST_CUBE}"))
        text = staff_client.get("/").content.decode()
        assert proxy.requests() == []
        from viral_clips.cube_stats import measure_cube

        assert measure_cube().objects == 3  # the proxy does see a listing
        assert len(proxy.requests()) == 1
    assert re.search(r'id="cube-size">250\.0\s+GB</span> in <span id="cube-objects">1000000<', text)
    assert "Measured 3\xa0hours, 5\xa0minutes ago by the scheduled measurement" in text


# --- security --------------------------------------------------------------


def test_security_headers(staff_client, services):
    response = staff_client.get("/", secure=True)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no script at all
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert response.cookies == {} or all(c["secure"] for c in response.cookies.values())


def test_no_secret_or_signed_url_on_any_page(staff, staff_client, services, cube):
    cube.put("testcube/public/clips/seen.mp4", b"s" * 10)
    clip = Clip.objects.create(title="Seen", file="clips/seen.mp4", size_bytes=10)
    run = make_run(timezone.now(), status=CleanupRun.Status.FAILED,
                   detail="ClientError: An error occurred (AccessDenied)",
                   error_sample=[{"key": "testcube/public/x", "code": "AccessDenied",
                                  "message": "Access Denied"}])  # fmt: skip
    staff_client.post("/run-now/", {"mode": "dry-run"})
    staff.is_superuser = True
    staff.save()

    pages = {
        url: staff_client.get(url)
        for url in (
            "/",
            "/health/",
            "/admin/",
            "/admin/viral_clips/cleanuprun/",
            f"/admin/viral_clips/cleanuprun/{run.pk}/change/",
            "/admin/viral_clips/clip/",
            f"/admin/viral_clips/clip/{clip.pk}/change/",
        )
    }
    pages["login"] = Client().get("/admin/login/")
    secrets = [
        settings.SECRET_KEY,
        settings.CLOUDCUBE_SECRET_ACCESS_KEY,
        settings.CLOUDCUBE_ACCESS_KEY_ID,
        settings.REDIS_URL,
    ]
    signed = ["X-Amz-Signature", "X-Amz-Credential", "AWSAccessKeyId", "Signature="]
    for url, response in pages.items():
        assert response.status_code in (200, 503), url
        text = response.content.decode()
        for value in secrets + signed:
            assert value not in text, f"{value!r} appears on {url}"
    # The clip's public URL is there, plain.
    assert (
        "/testcube/public/clips/seen.mp4"
        in pages[f"/admin/viral_clips/clip/{clip.pk}/change/"].content.decode()
    )


def test_a_failed_login_does_not_say_which_part_was_wrong(staff, member, services):
    def attempt(username: str, password: str) -> str:
        response = Client().post(
            "/admin/login/?next=/", {"username": username, "password": password}
        )
        assert response.status_code == 200  # the form again, not logged in
        return re.search(r'<p class="errornote">\s*(.*?)\s*</p>', response.content.decode(), re.S)[
            1
        ]

    wrong_password = attempt("operator", "not-the-password")
    unknown_user = attempt("nobody-by-that-name", PASSWORD)
    not_staff = attempt("member", PASSWORD)
    assert wrong_password == unknown_user == not_staff
    assert "username and password" in wrong_password
    assert "nobody-by-that-name" not in unknown_user


def test_login_then_lands_on_the_dashboard(staff, services):
    client = Client()
    response = client.post(
        "/admin/login/?next=/", {"username": "operator", "password": PASSWORD, "next": "/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
