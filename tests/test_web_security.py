"""The web surface against a hostile or careless user (issue 18): /health/ for
monitors, runs nobody deletes, admin filters that cannot break the page, uploads
that cannot publish a page, names that cannot lie, log lines that cannot be
forged, and debug pages without the credentials inside URLs.

Real parts: the suite's database, redis-server and local S3 server (anonymous
GETs go over HTTP to it, as a browser's would); Django's test client for the
pages. tests/test_web_security_processes.py runs the Procfile's lines.
"""

from __future__ import annotations

import logging
import re
import sys
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.contrib import admin as django_admin
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from scheduling.models import JobAction, JobRun
from tests.support.media import mp4_bytes, png_bytes
from tests.support.runs import make_run
from viral_clips.cleanup import run_cleanup
from viral_clips.models import CleanupRun, Clip

pytestmark = pytest.mark.django_db

HEALTH_TOKEN = "health-token-for-tests-0123456789abcdefXYZ"
# Bidi controls and invisible characters that must never reach a page raw.
HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\u200e\u200f\u061c\u2060\ufeff]")
RTL = "\u202e"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@localhost", "pw-12345678")


@pytest.fixture
def admin(superuser) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_client(django_user_model) -> Client:
    user = django_user_model.objects.create_user("ops", password="pw-ops-1234", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def public_cube(cube, s3_server):
    """The test cube with <cube>/public/ readable by anyone, as on Cloudcube."""
    grant = f"PublicRead-{cube.name}"
    if not any(s.get("Sid") == grant for s in s3_server._standing.get(cube.bucket, [])):
        s3_server.make_public(cube.bucket, cube.name)
    return cube


def anonymous_get(url: str):
    """(status, headers (case-insensitive), body) of a GET without credentials."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local server
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


# --- 1. HEAD /health/ -----------------------------------------------------------


def test_head_health_answers_like_get_without_a_body(client, cube, redis_client):
    get = client.get("/health/")
    head = client.head("/health/")
    # Before: 405 (require_GET). Now the same status as GET: 503 here, no scheduler runs.
    assert head.status_code == get.status_code == 503
    assert head["Content-Type"] == "application/json"
    assert head.content == b""
    assert int(head["Content-Length"]) == len(get.content)
    assert "no-cache" in head["Cache-Control"]
    assert client.post("/health/").status_code == 405  # still no other method


# --- 2. Runs are an audit trail -------------------------------------------------


def test_nobody_deletes_a_cleanup_run_by_hand_not_even_a_superuser(admin):
    run = make_run(timezone.now())
    page = f"/admin/viral_clips/cleanuprun/{run.pk}/delete/"
    assert admin.get(page).status_code == 403
    assert admin.post(page, {"post": "yes"}).status_code == 403
    listing = admin.get("/admin/viral_clips/cleanuprun/")
    assert listing.status_code == 200
    assert b"delete_selected" not in listing.content
    assert b"/delete/" not in admin.get(f"/admin/viral_clips/cleanuprun/{run.pk}/change/").content
    bulk = admin.post(
        "/admin/viral_clips/cleanuprun/",
        {"action": "delete_selected", "_selected_action": [run.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert CleanupRun.objects.filter(pk=run.pk).exists()


# The audit trail: cleanup runs, the job actions and the run ledger. Registered in
# the admin, each refuses delete; not registered (the ledger), its pages are 404.
AUDIT_RECORDS = [CleanupRun, JobAction, JobRun]


def an_audit_record(model):
    if model is CleanupRun:
        return make_run(timezone.now())
    if model is JobAction:
        return JobAction.objects.create(
            job="scheduled-cloudcube-cleanup", action="pause", actor="ops", reason="audit"
        )
    return JobRun.objects.create(
        job="scheduled-cloudcube-cleanup", trigger="manual", status="succeeded"
    )


@pytest.mark.parametrize("model", AUDIT_RECORDS, ids=lambda m: m._meta.label)
def test_no_audit_record_is_deleted_by_hand_not_even_by_a_superuser(admin, model):
    record = an_audit_record(model)
    listing = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    delete = f"{listing}{record.pk}/delete/"
    if not django_admin.site.is_registered(model):
        for response in (
            admin.get(listing),
            admin.get(delete),
            admin.post(delete, {"post": "yes"}),
            admin.post(listing, {"action": "delete_selected", "_selected_action": [record.pk]}),
        ):
            assert response.status_code == 404
    else:
        assert admin.get(delete).status_code == 403
        assert admin.post(delete, {"post": "yes"}).status_code == 403
        page = admin.get(listing)
        assert page.status_code == 200
        assert b"delete_selected" not in page.content
        admin.post(
            listing, {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"}
        )
    assert model.objects.filter(pk=record.pk).exists()


# --- 3. Admin filters ---------------------------------------------------------------

# Each of these answered 500 before (the first five are the issue's own).
BROKEN_BEFORE = [
    "/admin/viral_clips/cleanuprun/?started_at__year=99999999999999",
    "/admin/viral_clips/clip/?file__regex=(",
    "/admin/viral_clips/clip/?title__regex=[",
    "/admin/viral_clips/cleanuprun/?would_delete_sample__contains=x",
    "/admin/viral_clips/clip/?created_at__year=2026&created_at__month=99999999999999999999",
    "/admin/viral_clips/clip/?created_at__year=2026&created_at__month=1&created_at__day=99999999999999",
    "/admin/viral_clips/clip/?created_at__month=99999999999999999999999",
    "/admin/viral_clips/clip/?created_at__day=99999999999999999999999",
    "/admin/viral_clips/cleanuprun/?started_at__year=9999",
    "/admin/viral_clips/cleanuprun/?started_at__year=9999&started_at__month=12",
    "/admin/viral_clips/cleanuprun/?started_at__year=9999&started_at__month=12&started_at__day=31",
    "/admin/viral_clips/cleanuprun/?error_sample__contains=x",
    "/admin/viral_clips/cleanuprun/?detail__iregex=(a",
    "/admin/viral_clips/clip/?size_bytes=99999999999999999999999",
    "/admin/viral_clips/clip/?id__in=1,99999999999999999999999",
    "/admin/auth/user/?username__regex=(",
    "/admin/auth/user/?groups__id__exact=99999999999999999999999",
]
# Refused outright: not a filter the admin declares (regex lookups above all).
UNDECLARED = [
    "/admin/viral_clips/clip/?file__regex=(",
    "/admin/viral_clips/clip/?title__regex=[",
    "/admin/viral_clips/clip/?title__iregex=.*",
    "/admin/viral_clips/clip/?title__contains=a",
    "/admin/viral_clips/cleanuprun/?would_delete_sample__contains=x",
    "/admin/viral_clips/cleanuprun/?detail__regex=(a|aa)*b",
    "/admin/viral_clips/clip/?size_bytes__gt=1",
    "/admin/auth/user/?password__startswith=pbkdf2",
    "/admin/axes/accessattempt/?post_data__regex=(",
    "/admin/auth/user/?username__regex=(",
    "/admin/viral_clips/clip/?pinned__exact=1&nonsense=1",
    "/admin/viral_clips/clip/?pinned__exact=%00",
    "/admin/viral_clips/clip/?q=a%00b",
]
# Declared filters with values that cannot fit: the admin's usual "invalid lookup" redirect.
UNFIT = [
    "/admin/viral_clips/cleanuprun/?started_at__year=99999999999999",
    "/admin/viral_clips/cleanuprun/?started_at__year=0",
    "/admin/viral_clips/cleanuprun/?started_at__year=-1",
    "/admin/viral_clips/cleanuprun/?started_at__year=%D9%A1%D9%A2",  # Arabic-Indic digits
    "/admin/viral_clips/cleanuprun/?started_at__year=9999",
    "/admin/viral_clips/cleanuprun/?started_at__year=2026&started_at__month=13",
    "/admin/viral_clips/clip/?created_at__year=2026&created_at__month=99999999999999999999",
    "/admin/viral_clips/clip/?created_at__year=2026&created_at__month=1&created_at__day=32",
    "/admin/viral_clips/clip/?created_at__year=2026&created_at__day=3",
    "/admin/viral_clips/clip/?created_at__month=99999999999999999999999",
    "/admin/viral_clips/clip/?created_at__day=1",
    "/admin/viral_clips/clip/?created_at__gte=99999-01-01",
    "/admin/viral_clips/clip/?pinned__exact=maybe",
    "/admin/auth/user/?groups__id__exact=99999999999999999999999",
    "/admin/auth/user/?groups__id__exact=abc",
]


def test_no_admin_filter_makes_a_500(admin):
    Clip.objects.create(title="A clip", file="clips/a.mp4", size_bytes=5)
    make_run(timezone.now())
    answers = {
        url: admin.get(url).status_code for url in sorted(set(BROKEN_BEFORE + UNDECLARED + UNFIT))
    }
    assert {url: code for url, code in answers.items() if code >= 500} == {}


@pytest.mark.parametrize("url", UNDECLARED)
def test_a_filter_the_admin_does_not_declare_is_a_400(admin, url):
    assert admin.get(url).status_code == 400


@pytest.mark.parametrize("url", UNFIT)
def test_a_declared_filter_with_a_value_that_cannot_fit_gets_the_invalid_lookup_page(admin, url):
    response = admin.get(url)
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_the_declared_filters_search_ordering_and_pages_still_work(admin):
    Clip.objects.create(title="Pinned one", file="clips/p.mp4", pinned=True)
    Clip.objects.create(title="Loose one", file="clips/l.mp4")
    make_run(timezone.now() - timedelta(days=400), status=CleanupRun.Status.FAILED)
    year = timezone.now().year
    ok = [
        "/admin/viral_clips/clip/?pinned__exact=1",
        f"/admin/viral_clips/clip/?created_at__year={year}",
        f"/admin/viral_clips/clip/?created_at__year={year}&created_at__month=1&created_at__day=31",
        "/admin/viral_clips/clip/?created_at__gte=2020-01-01+00%3A00%3A00%2B00%3A00",
        "/admin/viral_clips/clip/?q=loose&o=-1.2&p=1&_facets=1",
        "/admin/viral_clips/clip/?all=",
        "/admin/viral_clips/cleanuprun/?status__exact=failed&trigger__exact=schedule",
        "/admin/viral_clips/cleanuprun/?dry_run__exact=0",
        f"/admin/viral_clips/cleanuprun/?started_at__year={year - 1}",
        "/admin/auth/user/?is_staff__exact=1&q=root",
        f"/admin/axes/accessattempt/?locked_out=yes&attempt_time__year={year}",
    ]
    for url in ok:
        assert admin.get(url).status_code == 200, url
    pinned = admin.get("/admin/viral_clips/clip/?pinned__exact=1").content.decode()
    assert "Pinned one" in pinned and "Loose one" not in pinned
    failed = admin.get("/admin/viral_clips/cleanuprun/?status__exact=failed").content.decode()
    assert "Failed" in failed


# --- 4. Uploads -----------------------------------------------------------------------


def upload_clip(admin: Client, name: str, body: bytes, content_type: str, title: str = "Upload"):
    upload = SimpleUploadedFile(name, body, content_type=content_type)
    return admin.post("/admin/viral_clips/clip/add/", {"title": title, "file": upload})


def test_an_html_upload_with_a_path_trick_is_refused_with_a_clear_error(admin, public_cube):
    page = b"<html><body><script>alert(document.domain)</script></body></html>"
    response = upload_clip(admin, "../../../x<svg>.html", page, "text/html")
    assert response.status_code == 200  # the form again, with its error
    text = response.content.decode()
    assert "Only video and image files can be uploaded" in text
    assert "this file has .html" in text
    assert not Clip.objects.exists()
    assert public_cube.keys() == []


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        (
            "evil.mp4",
            b"<html><script>alert(1)</script></html>" + b" " * 64,
            "is not a video or image",
        ),
        ("evil.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", "is not a video"),
        ("photo.mp4", png_bytes(), "its content is a png file"),
        ("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "this file has .svg"),
        ("noextension", mp4_bytes(), "this file has no extension"),
    ],
    ids=["html-named-mp4", "svg-named-png", "png-named-mp4", "svg", "no-extension"],
)
def test_uploads_are_checked_by_content_and_by_name(admin, public_cube, name, body, says):
    response = upload_clip(admin, name, body, "video/mp4")
    assert response.status_code == 200
    assert says in response.content.decode()
    assert not Clip.objects.exists() and public_cube.keys() == []


def test_a_video_upload_is_stored_under_a_safe_name_and_served_as_a_video(admin, public_cube):
    # The browser's claimed type is ignored: the stored type comes from the checked content.
    response = upload_clip(admin, "My <b>great</b> clip\u202e4pm.MP4", mp4_bytes(4096), "text/html")
    assert response.status_code == 302, response.content[:3000]
    clip = Clip.objects.get()
    name = clip.file.name
    assert re.fullmatch(r"clips/\d{4}/\d\d/[A-Za-z0-9_-]+\.mp4", name), name
    assert "<" not in name and RTL not in name
    status, headers, body = anonymous_get(clip.file.url)
    assert status == 200 and body == mp4_bytes(4096)
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Content-Disposition"].startswith("inline; filename=")


def test_an_image_upload_is_served_as_that_image(admin, public_cube):
    assert upload_clip(admin, "still.png", png_bytes(), "application/x-anything").status_code == 302
    status, headers, _ = anonymous_get(Clip.objects.get().file.url)
    assert (status, headers["Content-Type"]) == (200, "image/png")


def test_whatever_code_stores_a_non_media_name_is_served_as_a_download(public_cube):
    # Not through the form: the storage itself never stores a page.
    clip = Clip(title="sneaky")
    clip.file.save("page.html", ContentFile(b"<script>alert(1)</script>"), save=True)
    status, headers, _ = anonymous_get(clip.file.url)
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert "text/html" not in headers["Content-Type"]
    assert headers["Content-Disposition"].startswith("attachment")


# --- 7. Names that lie ------------------------------------------------------------------


def without_input_values(html: str) -> str:
    """The page minus the values of its form fields (an edited text keeps its characters)."""
    return re.sub(r'(<input[^>]*\svalue=")[^"]*"', r'\1"', html)


def test_bidi_controls_in_titles_and_keys_are_shown_escaped_in_the_admin(admin, cube):
    title = f"rtl-{RTL}gnp.exe"
    key = f"clips/rtl-{RTL}gnp.exe"
    cube.put(f"testcube/public/{key}", b"x")
    clip = Clip.objects.create(title=title, file=key, size_bytes=1)
    run = make_run(
        timezone.now(),
        dry_run=True,
        files_deleted=1,
        would_delete_sample=[f"testcube/public/{key}"],
        error_sample=[
            {"key": f"testcube/public/{key}", "code": "AccessDenied", "message": f"no{RTL}"}
        ],
        error_count=1,
        detail=f"could not delete testcube/public/{key}\u200b",
        host=f"worker{RTL}.1",
    )
    pages = {
        "clip list": "/admin/viral_clips/clip/",
        "clip page": f"/admin/viral_clips/clip/{clip.pk}/change/",
        "run page": f"/admin/viral_clips/cleanuprun/{run.pk}/change/",
        "clip history": f"/admin/viral_clips/clip/{clip.pk}/history/",
        "clip delete": f"/admin/viral_clips/clip/{clip.pk}/delete/",
    }
    for what, url in pages.items():
        response = admin.get(url)
        assert response.status_code == 200, what
        html = without_input_values(response.content.decode())
        assert not HIDDEN.search(html), (what, HIDDEN.findall(html))
        assert "rtl-\\u202egnp.exe" in html, what
    run_page = admin.get(pages["run page"]).content.decode()
    assert "\\u200b" in run_page and "worker\\u202e.1" in run_page and "no\\u202e" in run_page
    # The text box keeps the title as stored (saving must not change it); its help
    # says what it hides.
    change = admin.get(pages["clip page"]).content.decode()
    assert "This title contains hidden characters (U+202E RIGHT-TO-LEFT OVERRIDE)" in change
    # Staff who may only view see the title and file as text: escaped, no raw character.
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_clip"]))
    client = Client()
    client.force_login(viewer)
    for what in ("clip list", "clip page"):
        html = client.get(pages[what]).content.decode()
        assert not HIDDEN.search(html), (what, HIDDEN.findall(html))
        assert "rtl-\\u202egnp.exe" in html, what


def test_bidi_controls_in_the_job_audit_trail_are_shown_escaped_in_the_admin(admin):
    # Actor, reason and detail are typed by people (the reason by whoever pressed
    # pause, stop or run now); the dashboard shows them escaped, the admin must too.
    action = JobAction.objects.create(
        job="scheduled-cloudcube-cleanup",
        action=JobAction.Action.PAUSE,
        actor=f"ops{RTL}",
        reason=f"rtl-{RTL}gnp.exe",
        detail=f"queued\u200b {RTL}",
    )
    pages = {
        "action list": "/admin/scheduling/jobaction/",
        "action page": f"/admin/scheduling/jobaction/{action.pk}/change/",
        "action history": f"/admin/scheduling/jobaction/{action.pk}/history/",
    }
    for what, url in pages.items():
        response = admin.get(url)
        assert response.status_code == 200, what
        html = response.content.decode()
        assert not HIDDEN.search(html), (what, HIDDEN.findall(html))
        assert "ops\\u202e" in html, what  # the history shows the action's name only
        assert "rtl-\\u202egnp.exe" in html or what == "action history", what
    assert "queued\\u200b \\u202e" in admin.get(pages["action page"]).content.decode()


def test_bidi_controls_in_a_runs_detail_are_shown_escaped_on_the_dashboard(
    staff_client, cube, redis_client
):
    make_run(
        timezone.now(),
        status=CleanupRun.Status.FAILED,
        detail=f"ClientError: could not delete 'testcube/public/clips/rtl-{RTL}gnp.exe'",
    )
    html = staff_client.get("/").content.decode()
    assert not HIDDEN.search(html), HIDDEN.findall(html)
    assert "rtl-\\u202egnp.exe" in html


# --- 8. Log lines cannot be forged -----------------------------------------------------


def stdout_formatter() -> logging.Formatter:
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "stdout"]
    return handler.formatter


def test_a_key_with_a_newline_is_logged_quoted_on_one_line(cube, s3_server, caplog):
    # (No "[" in it: the bucket policy that refuses its deletion reads it as a pattern.)
    forged = "testcube/public/clips/evil\nERROR viral_clips.cleanup: cube wiped.mp4"
    cube.put(forged, b"e", age=timedelta(days=9))
    caplog.set_level(logging.WARNING, logger="viral_clips.cleanup")
    with s3_server.refuse_deletes([forged], cube.bucket):
        report = run_cleanup(5)
    assert report.error_count == 1
    [record] = [r for r in caplog.records if "could not be deleted" in r.getMessage()]
    message = record.getMessage()
    assert repr(forged) in message and "\n" not in message
    # And what reaches stdout (Heroku's log drain) is one line, whatever a message carries.
    record.args = ()
    record.msg = "raw: " + forged + "\r\x1b[2K\u2028"
    line = stdout_formatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "evil\\nERROR viral_clips.cleanup" in line


# --- 10. /health/: details for staff or a token -----------------------------------------


def test_anonymous_health_says_up_or_down_per_part_and_nothing_else(client, cube, redis_client):
    make_run(timezone.now(), status=CleanupRun.Status.PARTIAL, trigger="manual")
    body = client.get("/health/").json()
    assert set(body) == {"status", "checks", "checked_seconds_ago"}
    assert body["status"] == "unavailable"  # no scheduler in this test
    assert set(body["checks"]) == {"database", "redis", "cloudcube", "scheduler", "worker"}
    assert all(set(check) == {"ok"} for check in body["checks"].values()), body
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["scheduler"] == {"ok": False}
    text = str(body)
    for operational in ("scheduled-cloudcube-cleanup", "last_cleanup", "partial", "manual", "jobs"):
        assert operational not in text


def test_staff_and_the_token_see_the_details_and_a_wrong_token_does_not(
    client, staff_client, cube, redis_client, settings
):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    run = make_run(timezone.now(), status=CleanupRun.Status.PARTIAL, trigger="manual")
    for body in (
        staff_client.get("/health/").json(),
        client.get("/health/", HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}").json(),
        client.get("/health/", HTTP_AUTHORIZATION=f"bearer  {HEALTH_TOKEN} ").json(),
    ):
        assert body["last_cleanup"]["id"] == run.pk and body["last_cleanup"]["status"] == "partial"
        assert "scheduled-cloudcube-cleanup" in body["checks"]["scheduler"]["jobs"]
        assert body["checks"]["scheduler"]["error"] == "no scheduler tick on record"
    for wrong in (
        {"HTTP_AUTHORIZATION": f"Bearer {HEALTH_TOKEN[:-1]}"},
        {"HTTP_AUTHORIZATION": f"Bearer {HEALTH_TOKEN}x"},
        {"HTTP_AUTHORIZATION": f"Basic {HEALTH_TOKEN}"},
        {"HTTP_AUTHORIZATION": "Bearer "},
        {"HTTP_X_HEALTH_TOKEN": HEALTH_TOKEN},
    ):
        assert "last_cleanup" not in client.get("/health/", **wrong).json(), wrong
    # Never in the URL (access logs record it): a query parameter is ignored.
    assert "last_cleanup" not in client.get(f"/health/?token={HEALTH_TOKEN}").json()


def test_no_token_configured_means_staff_only(client, cube, redis_client, settings):
    settings.HEALTH_TOKEN = ""
    assert "last_cleanup" not in client.get("/health/", HTTP_AUTHORIZATION="Bearer ").json()


def test_a_logged_in_non_staff_user_gets_the_anonymous_answer(
    cube, redis_client, django_user_model
):
    member = Client()
    member.force_login(django_user_model.objects.create_user("member", password="pw-m-12345"))
    assert "last_cleanup" not in member.get("/health/").json()


# --- 6. Debug pages -------------------------------------------------------------------


REDIS_PASSWORD = "redis-pw-0f9e8d7c6b5a"
DB_PASSWORD = "pg-pw-1a2b3c4d5e6f"


def test_the_debug_page_masks_credentials_inside_every_url_setting(client, settings):
    settings.DEBUG = True
    redis_url = f"rediss://:{REDIS_PASSWORD}@redis.example.com:6380/0"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_REDBEAT_REDIS_URL = redis_url
    settings.SENTRY_DSN = "https://publickey0123456789@o1.ingest.sentry.io/42"
    settings.EXTRA_URLS = [f"postgres://user:{DB_PASSWORD}@db.example.com/x"]
    settings.DATABASE_URL_FOR_DEBUG = {"url": f"postgres://u:{DB_PASSWORD}@db/x"}
    response = client.get("/health/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    text = response.content.decode()
    assert "DisallowedHost" in text and "CELERY_BROKER_URL" in text  # it is the debug page
    for secret in (REDIS_PASSWORD, DB_PASSWORD, "publickey0123456789"):
        assert secret not in text
    assert "rediss://********@redis.example.com:6380/0" in text


def _fail_holding(url: str, password: str) -> None:
    connection_kwargs = {"password": password, "host": "db"}  # noqa: F841 - shown in the frame
    raise ConnectionError(f"could not connect to {url}")


def test_the_debug_page_masks_credentials_in_frame_variables_and_messages(rf, settings):
    from django.views.debug import get_exception_reporter_class

    settings.DEBUG = True
    request = rf.get("/x")
    try:
        _fail_holding(f"redis://:{REDIS_PASSWORD}@h:6379/0", DB_PASSWORD)
    except ConnectionError:
        reporter = get_exception_reporter_class(request)(request, *sys.exc_info())
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    assert "_fail_holding" in html and "connection_kwargs" in html  # the frame and its locals
    assert "could not connect to redis://********@h:6379/0" in text
    for page in (html, text):
        assert REDIS_PASSWORD not in page and DB_PASSWORD not in page


def test_url_settings_in_the_debug_filter(settings):
    from django.views.debug import get_default_exception_reporter_filter

    settings.REDIS_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert safe["REDIS_URL"] == "redis://********@127.0.0.1:6379/0"
    assert REDIS_PASSWORD not in str(safe)
    assert safe["SECRET_KEY"] == "********************"
