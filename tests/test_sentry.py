"""Sentry set-up, monitor config and scrubbing, with the real SDK and HTTP transport.

The SDK runs in this process, initialised by config.sentry.init_sentry with its
DSN pointed at a local collector; nothing is stubbed between them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import sentry_sdk
from django.conf import settings
from sentry_sdk.crons import capture_checkin

import config.sentry
from config.cloudcube import parse_cloudcube_url
from config.sentry import SecretScrubber, init_sentry
from devstack.ports import free_port
from scheduling.claim import claim
from scheduling.crons import monitor_config, monitored
from scheduling.headers import CHECK_IN as CHECK_IN_HEADER
from scheduling.headers import CHECK_IN_STARTED as STARTED_HEADER
from scheduling.schedules import parse_schedule
from tests.support.jobs import CLEANUP
from tests.support.sentry_collector import SentryCollector
from viral_clips.models import CleanupRun
from viral_clips.monitoring import CLEANUP_SENTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_PASSWORD = "p@ss/w0rd:with%chars-7f3e"  # needs URL-encoding in REDIS_URL


# --- the cron monitor follows CLEANUP_SCHEDULE ------------------------------
@pytest.mark.parametrize(
    ("schedule", "sentry_schedule", "margin", "max_runtime", "recovery"),
    [
        ("0 2 * * *", {"type": "crontab", "value": "0 2 * * *"}, 5, 60, 1),
        ("0 2 * * 0", {"type": "crontab", "value": "0 2 * * 0"}, 5, 60, 1),
        ("0 */12 * * *", {"type": "crontab", "value": "0 */12 * * *"}, 5, 60, 1),
        # 23:02 then 00:02: an hour apart across midnight.
        ("2 0,23 * * *", {"type": "crontab", "value": "2 0,23 * * *"}, 5, 55, 1),
        ("*/15 * * * *", {"type": "crontab", "value": "*/15 * * * *"}, 5, 10, 3),
        ("*/5 9-17 * * 1-5", {"type": "crontab", "value": "*/5 9-17 * * 1-5"}, 2, 3, 3),
        ("1d", {"type": "interval", "value": 1, "unit": "day"}, 5, 60, 1),
        ("12h", {"type": "interval", "value": 12, "unit": "hour"}, 5, 60, 1),
        ("90m", {"type": "interval", "value": 90, "unit": "minute"}, 5, 60, 1),
        ("15m", {"type": "interval", "value": 15, "unit": "minute"}, 5, 10, 3),
        # Sentry has no seconds: rounded up to whole minutes, never a false "missed".
        ("90s", {"type": "interval", "value": 2, "unit": "minute"}, 1, 1, 3),
        ("30s", {"type": "interval", "value": 1, "unit": "minute"}, 1, 1, 3),
        ("3s", {"type": "interval", "value": 1, "unit": "minute"}, 1, 1, 3),
    ],
)
def test_monitor_config_follows_cleanup_schedule(
    schedule, sentry_schedule, margin, max_runtime, recovery
):
    assert monitor_config(CLEANUP, parse_schedule(schedule)) == {
        "schedule": sentry_schedule,
        "timezone": "UTC",
        "checkin_margin": margin,
        "max_runtime": max_runtime,
        "failure_issue_threshold": 1,
        "recovery_threshold": recovery,
    }


# --- off without a DSN, and quiet about it ------------------------------------
def _django_process(env_overrides: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "HEROKU_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **env_overrides)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.processes
def test_sentry_is_off_and_silent_without_dsn():
    code = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    for overrides in ({}, {"SENTRY_DSN": ""}):
        done = _django_process(overrides, code)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "False", "")


@pytest.mark.processes
def test_environment_defaults_to_production_and_release_is_the_slug_commit():
    code = (
        "import sentry_sdk; o = sentry_sdk.get_client().options;"
        " print(o['environment'], o['release'], o['server_name'],"
        " sentry_sdk.get_client().should_send_default_pii())"
    )
    dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1"
    done = _django_process(
        {"SENTRY_DSN": dsn, "HEROKU_SLUG_COMMIT": "abc123def", "DYNO": "worker.1"}, code
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["production", "abc123def", "worker.1", "False"]

    done = _django_process({"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "staging"}, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "staging"


@pytest.mark.processes
def test_bad_traces_sample_rate_stops_start_up():
    done = _django_process({"SENTRY_TRACES_SAMPLE_RATE": "2"}, "pass")
    assert done.returncode != 0
    # Issue 11's wording: the variable, the value given and the accepted range.
    assert "SENTRY_TRACES_SAMPLE_RATE='2' is not valid" in done.stderr
    assert "from 0.0 to 1.0" in done.stderr


# --- the real SDK in this process --------------------------------------------
@pytest.fixture
def collector():
    with SentryCollector() as server:
        yield server


@pytest.fixture
def sentry(collector, monkeypatch):
    """Initialise Sentry here as settings.py would, with this test's secrets."""
    monkeypatch.setattr(config.sentry, "_build_options", None)
    monkeypatch.setattr(config.sentry, "_initialised_pid", None)

    def start(**overrides) -> None:
        options = dict(
            dsn=collector.dsn,
            environment="test",
            release="test-release",
            server_name="test-host",
            secrets=[
                settings.SECRET_KEY,
                settings.CLOUDCUBE_SECRET_ACCESS_KEY,
                settings.CLOUDCUBE_ACCESS_KEY_ID,
                REDIS_PASSWORD,
            ],
        )
        options.update(overrides)
        assert init_sentry(**options)

    yield start
    sentry_sdk.flush(timeout=5)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def _signed_url() -> str:
    from viral_clips.s3 import cloudcube_client

    return cloudcube_client().generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.CLOUDCUBE.bucket, "Key": "testcube/public/clip.mp4"},
        ExpiresIn=300,
    )


def test_no_secret_leaves_in_events_breadcrumbs_transactions_or_check_ins(sentry, collector):
    sentry(traces_sample_rate=1.0)
    secret_key = settings.SECRET_KEY
    cloudcube_secret = settings.CLOUDCUBE_SECRET_ACCESS_KEY
    redis_url = f"redis://default:{quote(REDIS_PASSWORD, safe='')}@redis.example:6379/0"
    signed = _signed_url()
    signature = signed.split("X-Amz-Signature=")[1].split("&")[0]
    assert settings.CLOUDCUBE_ACCESS_KEY_ID in signed  # in X-Amz-Credential

    log = logging.getLogger("koolclips.test")
    # A breadcrumb (warning) and an event (error) from logging.
    log.warning("fetched %s", signed)
    log.error("cannot reach Redis at %s (key %s)", redis_url, secret_key)
    sentry_sdk.add_breadcrumb(category="s3", message=signed, data={"url": signed})

    # An exception whose message and local variables hold secrets.
    def connect(aws_secret_access_key: str, settings_blob: dict) -> None:
        raise RuntimeError(f"S3 refused credentials {aws_secret_access_key}")

    try:
        connect(cloudcube_secret, {"nested": {"value": f"pw={REDIS_PASSWORD}"}})
    except RuntimeError:
        sentry_sdk.capture_exception()

    # A transaction with a span that describes a signed URL.
    with sentry_sdk.start_transaction(name="download", op="task"):
        with sentry_sdk.start_span(op="http.client", name=f"GET {signed}"):
            pass
    capture_checkin(monitor_slug="scrub-test", status="ok")
    sentry_sdk.flush(timeout=10)

    types = [item.type for _, item in collector.items()]
    assert types.count("event") == 2 and "transaction" in types and "check_in" in types
    received = collector.raw_bytes()
    for name, value in {
        "DJANGO_SECRET_KEY": secret_key,
        "CLOUDCUBE_SECRET_ACCESS_KEY": cloudcube_secret,
        "CLOUDCUBE_ACCESS_KEY_ID": settings.CLOUDCUBE_ACCESS_KEY_ID,
        "Redis password": REDIS_PASSWORD,
        "Redis password, URL-encoded": quote(REDIS_PASSWORD, safe=""),
        "signed URL signature": signature,
    }.items():
        assert value.encode() not in received, f"{name} reached Sentry"
    # Scrubbed, not dropped: the surrounding text still arrives.
    assert b"X-Amz-Signature=[Filtered]" in received
    assert b"S3 refused credentials [Filtered]" in received
    assert b"cannot reach Redis at redis://default:[Filtered]@redis.example" in received


def test_scrubber_replaces_values_in_nested_payloads_and_keeps_the_rest():
    scrubber = SecretScrubber(["s3cr3t-value-123", "short", None, ""])
    event = {
        "message": "token s3cr3t-value-123 used",
        "extra": {"list": ["a", ("s3cr3t-value-123",)], "s3cr3t-value-123": 1},
        "url": "https://x.s3.amazonaws.com/k?AWSAccessKeyId=AKIA1&Signature=abc%2F&Expires=9",
        "n": 5,
    }
    assert scrubber.scrub(event) == {
        "message": "token [Filtered] used",
        "extra": {"list": ["a", ("[Filtered]",)], "[Filtered]": 1},
        "url": "https://x.s3.amazonaws.com/k?AWSAccessKeyId=[Filtered]&Signature=[Filtered]&Expires=9",
        "n": 5,
    }
    # Too short to scrub by value without garbling every event.
    assert scrubber.scrub_text("short") == "short"


PARTIAL_BUCKET = "koolclips-sentry-inprocess"


def test_manual_partial_run_is_a_warning_without_check_in(
    sentry, collector, s3_server, db, monkeypatch, redis_client
):
    s3_server.create_bucket(PARTIAL_BUCKET)
    s3_server.clear(PARTIAL_BUCKET)
    # Under the clips' folder: the cleanup's scope since issue 10 (was public/locked/).
    s3_server.deny_deletes(PARTIAL_BUCKET, ["testcube/public/clips/locked/*"])
    try:
        old = datetime.now(UTC) - timedelta(days=30)
        for key in ("clips/a.mp4", *(f"clips/locked/{i}.mp4" for i in range(1, 5))):
            s3_server.put(PARTIAL_BUCKET, f"testcube/public/{key}", b"x", old)
        monkeypatch.setattr(
            settings,
            "CLOUDCUBE",
            parse_cloudcube_url(s3_server.cloudcube_url(PARTIAL_BUCKET, "testcube")),
        )
        sentry()
        from viral_clips.tasks import scheduled_cloudcube_cleanup

        result = scheduled_cloudcube_cleanup.apply(kwargs={"trigger": "manual"}).get()
        sentry_sdk.flush(timeout=10)
    finally:
        s3_server.allow_deletes(PARTIAL_BUCKET)
        s3_server.clear(PARTIAL_BUCKET)

    assert result["status"] == "partial"
    [(event, _)] = collector.events()
    assert event["level"] == "warning"
    assert event["message"] == (
        f"Cloudcube cleanup run #{result['run_id']} was partial: 4 of 5 expired files could"
        " not be deleted (AccessDenied testcube/public/clips/locked/1.mp4, AccessDenied"
        " testcube/public/clips/locked/2.mp4, AccessDenied testcube/public/clips/locked/3.mp4"
        " and 1 more)"
    )
    assert event["fingerprint"] == ["cloudcube-cleanup-partial", "testcube"]
    assert event["tags"]["cleanup.trigger"] == "manual"
    assert len(event["contexts"]["cleanup_run"]["errors"]) == 4
    assert collector.check_ins() == []  # not dispatched by beat: no monitor check-in


def test_skipped_duplicate_run_checks_in_ok_without_event(sentry, collector, db):
    """A run the task ends as `skipped` (a duplicate of a running one) is no error."""
    from celery import shared_task

    @shared_task(bind=True, name="tests.skipped_cleanup")
    @monitored(CLEANUP, CLEANUP_SENTRY)
    def skipped_cleanup(self, retention_days=None, dry_run=False, trigger="schedule"):
        run = CleanupRun.objects.create(
            trigger=trigger,
            retention_days=5,
            status=CleanupRun.Status.SKIPPED,
            task_id=self.request.id,
            detail="another run of this slot is running",
        )
        return {"run_id": run.pk, "status": run.status}

    sentry()
    task_id = str(uuid.uuid4())
    headers = {CHECK_IN_HEADER: uuid.UUID(task_id).hex, STARTED_HEADER: time.time() - 2}
    result = skipped_cleanup.apply(task_id=task_id, headers=headers).get()
    sentry_sdk.flush(timeout=10)

    assert result["status"] == "skipped"
    assert collector.events() == []
    [(check_in, _)] = collector.check_ins()
    assert check_in["check_in_id"] == uuid.UUID(task_id).hex
    assert check_in["monitor_slug"] == CLEANUP.entry
    assert check_in["status"] == "ok"
    assert check_in["duration"] >= 2


FORKED_CHILD_SCRIPT = """
import os, sys
import django
django.setup()  # settings start Sentry, as in every process of the app
import sentry_sdk
from config.sentry import reinit_in_forked_child

sentry_sdk.capture_message("parent, before the fork")
sentry_sdk.flush(timeout=10)  # the parent now holds an open connection to Sentry
pid = os.fork()
if pid == 0:
    # What Celery's embedded beat child does first: close every inherited
    # descriptor but stdio, the parent's Sentry connection included.
    os.closerange(3, 65536)
    reinit_in_forked_child("celery-beat")
    sentry_sdk.capture_message("child, after the fork")
    sentry_sdk.flush(timeout=10)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(pid, status)
"""


@pytest.mark.processes
def test_forked_child_that_closed_its_inherited_connection_still_delivers(collector):
    """The harsh case for a forked process: its parent had a live connection to
    Sentry, and the child closed every inherited descriptor (as the beat child
    does). A client of its own, started in the child, delivers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "HEROKU_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", SENTRY_DSN=collector.dsn)
    done = subprocess.run(
        [sys.executable, "-c", FORKED_CHILD_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    child_pid, status = map(int, done.stdout.split())
    assert status == 0
    by_message = {e["message"]: (e, pid) for e, pid in collector.events()}
    assert set(by_message) == {"parent, before the fork", "child, after the fork"}
    child_event, sender = by_message["child, after the fork"]
    assert sender == child_pid
    assert child_event["tags"]["process"] == "celery-beat"


def test_run_interrupted_for_a_shutdown_leaves_its_check_in_open(sentry, collector, db):
    """Stopped between batches, the run resumes when the task is redelivered under
    the same id: that delivery, not this one, closes the check-in."""
    from celery import shared_task

    from viral_clips.cleanup import CleanupInterrupted

    @shared_task(bind=True, name="tests.interrupted_cleanup")
    @monitored(CLEANUP, CLEANUP_SENTRY)
    def interrupted_cleanup(self, retention_days=None, dry_run=False, trigger="schedule"):
        raise CleanupInterrupted(run_id=1)

    sentry()
    task_id = str(uuid.uuid4())
    headers = {CHECK_IN_HEADER: uuid.UUID(task_id).hex, STARTED_HEADER: time.time()}
    interrupted_cleanup.apply(task_id=task_id, headers=headers)
    sentry_sdk.flush(timeout=10)

    assert collector.check_ins() == []


def test_the_weekly_report_has_its_own_monitor(sentry, collector, db, redis_client, cube, settings):
    """Every registered job: in_progress from beat at publish, ok from the task,
    its margin and max runtime from the registry."""
    import scheduling.crons as crons
    from scheduling.headers import SLOT as SLOT_HEADER
    from tests.support.jobs import WEEKLY_REPORT
    from viral_clips.tasks import send_weekly_report

    settings.ADMINS = [("ops", "ops@example.com")]
    sentry()
    task_id = str(uuid.uuid4())
    headers = {"id": task_id}
    crons._in_beat_process = True  # as in the beat process
    try:
        crons.start_scheduled_check_in(sender=WEEKLY_REPORT.task, headers=headers)
    finally:
        crons._in_beat_process = False
    headers[SLOT_HEADER] = "2026-11-23T09:00:00+00:00"
    del headers["id"]
    assert send_weekly_report.apply(task_id=task_id, headers=headers).get()["sent"]
    sentry_sdk.flush(timeout=10)

    [(opened, _), (closed, _)] = collector.check_ins()
    assert (opened["monitor_slug"], opened["status"]) == ("weekly-report", "in_progress")
    assert (closed["monitor_slug"], closed["status"]) == ("weekly-report", "ok")
    assert opened["check_in_id"] == closed["check_in_id"] == uuid.UUID(task_id).hex
    config = opened["monitor_config"]
    assert config["schedule"] == {"type": "crontab", "value": "0 9 * * 1"}
    assert (config["checkin_margin"], config["max_runtime"]) == (15, 15)
    assert collector.events() == []


def test_a_deferred_slot_leaves_its_check_in_open_until_it_runs(
    sentry, collector, db, redis_client, cube
):
    from scheduling.headers import SLOT as SLOT_HEADER
    from tests.support.jobs import CLEANUP
    from viral_clips.tasks import scheduled_cloudcube_cleanup

    sentry()
    holder = claim(CLEANUP, trigger="manual", task_id="a-dry-run")
    task_id = str(uuid.uuid4())
    headers = {
        CHECK_IN_HEADER: uuid.UUID(task_id).hex,
        STARTED_HEADER: time.time(),
        SLOT_HEADER: "2026-11-23T02:00:00+00:00",
    }
    assert scheduled_cloudcube_cleanup.apply(task_id=task_id, headers=headers).get()["status"] == (
        "deferred"
    )
    sentry_sdk.flush(timeout=5)
    assert collector.check_ins() == []

    holder.finish("succeeded")
    holder.release()
    assert scheduled_cloudcube_cleanup.apply(task_id=task_id, headers=headers).get()["status"] == (
        "succeeded"
    )
    sentry_sdk.flush(timeout=10)
    [(closed, _)] = collector.check_ins()
    assert (closed["status"], closed["check_in_id"]) == ("ok", uuid.UUID(task_id).hex)


# --- SMTP credentials, in every encoding the login puts them in ---------------
SMTP_USER = "mailer@koolclips.example"
SMTP_PASSWORD = "smtp>?pw~Secret-4b9c"  # its base64 holds '+' and '/'


def smtp_password_forms() -> dict[str, str]:
    import base64

    pair = f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()
    forms = {
        "plain": SMTP_PASSWORD,
        "URL-encoded": quote(SMTP_PASSWORD, safe=""),
        "user:password": f"{SMTP_USER}:{SMTP_PASSWORD}",
        "AUTH PLAIN (base64 of \\0user\\0password)": base64.b64encode(pair).decode(),
        "AUTH LOGIN (base64 of the password)": base64.b64encode(SMTP_PASSWORD.encode()).decode(),
    }
    for name, value in list(forms.items()):
        if name.startswith("AUTH"):
            forms[f"{name}, URL-safe"] = value.translate(str.maketrans("+/", "-_"))
            forms[f"{name}, unpadded"] = value.rstrip("=")
    return forms


def test_refused_smtp_login_reaches_sentry_without_the_password_in_any_form(
    sentry, collector, settings, cube, redis_client, db
):
    from smtplib import SMTPAuthenticationError

    from tests.support.smtp_server import SMTPServer
    from viral_clips.reports import send_weekly_report

    sentry(
        secrets=[settings.SECRET_KEY, SMTP_PASSWORD],
        credential_pairs=[(SMTP_USER, SMTP_PASSWORD)],
    )
    with SMTPServer(refuse_auth=True) as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = SMTP_USER, SMTP_PASSWORD
        settings.ADMINS = [("ops", "ops@koolclips.example")]
        with pytest.raises(SMTPAuthenticationError):
            try:
                send_weekly_report()
            except SMTPAuthenticationError:
                sentry_sdk.capture_exception()  # what Celery's integration does
                raise
        wire = "\n".join(smtp.received)
    sentry_sdk.flush(timeout=10)

    forms = smtp_password_forms()
    # The client really sent the encoded credentials (PLAIN, then LOGIN): the
    # check below is about forms that existed.
    assert forms["AUTH PLAIN (base64 of \\0user\\0password)"] in wire
    assert forms["AUTH LOGIN (base64 of the password)"] in wire
    [event] = [e for e, _ in collector.events()]
    assert event["exception"]["values"][-1]["type"] == "SMTPAuthenticationError"
    received = collector.raw_bytes()
    for name, value in forms.items():
        assert value.encode() not in received, f"SMTP password ({name}) reached Sentry"
    assert b"[Filtered]" in received  # scrubbed where it was, not dropped


# --- the worker canary is bookkeeping: nothing of it reaches Sentry -----------
def test_the_worker_canary_sends_sentry_nothing(sentry, collector, redis_client, db, settings):
    from scheduling.canary import CANARY_KEY
    from scheduling.tasks import canary
    from viral_clips.tasks import send_weekly_report as report_task

    sentry(traces_sample_rate=1.0)
    settings.ADMINS = []
    report_task.apply()  # a real job, for comparison: its transaction is sent
    canary.apply()
    assert redis_client.exists(CANARY_KEY)
    # Redis gone: the canary fails quietly (the health check reports Redis).
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    canary.apply()
    with sentry_sdk.isolation_scope() as scope:
        # An error inside the canary's own task scope is dropped too.
        scope.set_transaction_name("scheduling.tasks.canary")
        sentry_sdk.capture_message("canary hiccup", level="error")
    sentry_sdk.flush(timeout=10)

    sent = [item.json() for _, item in collector.items("transaction")]
    names = [t.get("transaction") for t in sent]
    assert "viral_clips.tasks.send_weekly_report" in names  # transactions do arrive
    assert "scheduling.tasks.canary" not in names
    assert collector.events() == [] and collector.check_ins() == []
    received = collector.raw_bytes()
    for text in (b"scheduling.tasks.canary", b"canary not recorded", b"canary hiccup"):
        assert text not in received
