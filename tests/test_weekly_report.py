"""The weekly report: the week's runs, deletions, failures and the cube's size, to ADMINS."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab

from scheduling import registry
from tests.support.jobs import WEEKLY_REPORT
from tests.support.runs import make_run
from viral_clips.cube_stats import refresh_cube_stats
from viral_clips.models import CleanupRun, CubeMeasurement
from viral_clips.reports import build_weekly_report, send_weekly_report

pytestmark = pytest.mark.django_db
MB = 1024 * 1024
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


@pytest.fixture
def week(cube, redis_client):
    """A known week: every status, a dry run, and runs just outside the window."""
    cube.put("testcube/public/clips/a.mp4", b"a" * (3 * MB))
    cube.put("testcube/public/clips/b.mp4", b"b" * (MB // 2))
    # The scheduled measurement listed it three hours before the report.
    refresh_cube_stats()
    CubeMeasurement.objects.update(measured_at=NOW - timedelta(hours=3))
    runs = {
        "too_old": make_run(NOW - timedelta(days=7, seconds=1), files_deleted=999, bytes_freed=999),
        "first": make_run(
            NOW - timedelta(days=7), files_deleted=10, bytes_freed=10 * MB, clips_retained=5
        ),
        "partial": make_run(
            NOW - timedelta(days=3),
            status=CleanupRun.Status.PARTIAL,
            files_deleted=3,
            bytes_freed=MB + MB // 2,
            clips_retained=4,
            error_count=2,
            detail="2 key(s) could not be deleted",
        ),
        "failed": make_run(
            NOW - timedelta(days=2),
            status=CleanupRun.Status.FAILED,
            detail="EndpointConnectionError: Could not connect to the endpoint URL",
        ),
        "dry": make_run(
            NOW - timedelta(days=1),
            trigger=CleanupRun.Trigger.MANUAL,
            dry_run=True,
            files_deleted=50,
            bytes_freed=100 * MB,
        ),
        "skipped": make_run(
            NOW - timedelta(hours=5), status=CleanupRun.Status.SKIPPED, detail="already running"
        ),
        "too_new": make_run(NOW, files_deleted=777, bytes_freed=777),
    }
    return runs


def test_report_totals_on_a_known_week(week):
    report = build_weekly_report(now=NOW)
    ids = [r.pk for r in report.runs]
    expected = ["first", "partial", "failed", "dry", "skipped"]
    assert ids == [week[name].pk for name in expected]
    assert len(report.real_runs) == 4 and len(report.dry_runs) == 1
    assert report.files_deleted == 13  # the dry run's 50 are not deletions
    assert report.bytes_freed == 11 * MB + MB // 2
    assert [r.pk for r in report.failures] == [week["partial"].pk, week["failed"].pk]
    assert (report.cube.objects, report.cube.bytes) == (2, 3 * MB + MB // 2)


def test_email_to_admins_says_what_happened(week, mailoutbox, settings):
    settings.ADMINS = [("ops", "ops@example.com"), ("lead", "lead@example.com")]
    settings.DEFAULT_FROM_EMAIL = "koolclips <noreply@example.com>"

    send_weekly_report(now=NOW)

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@example.com", "lead@example.com"]
    assert mail.from_email == "koolclips <noreply@example.com>"
    assert mail.subject == (
        "koolclips weekly cleanup report: 4 cleanup runs, 13 files deleted, 11.5 MB freed,"
        " 2 failures"
    )
    body = mail.body
    assert "Week: Mon 2026-11-16 09:00 UTC to Mon 2026-11-23 09:00 UTC" in body
    assert "Runs:          5 (4 cleanups, 1 dry run)" in body
    assert "succeeded 2, partial 1, failed 1, skipped 1" in body
    assert "Files deleted: 13\n" in body
    assert "MB freed:      11.5 MB\n" in body
    assert "Failures:      2\n" in body
    assert f"run #{week['partial'].pk} 2026-11-20 09:00 UTC schedule: partial" in body
    assert "2 key(s) could not be deleted" in body
    assert f"run #{week['failed'].pk} 2026-11-21 09:00 UTC schedule: failed" in body
    assert (
        "Cube size:     3.5 MB in 2 objects (measured 2026-11-23 06:00 UTC, 3\xa0hours before"
        " this report, by the scheduled measurement)" in body
    )
    # One table row per run of the week, none from outside it.
    for name in ("first", "partial", "failed", "dry", "skipped"):
        assert f"#{week[name].pk} " in body
    assert f"#{week['too_old'].pk} " not in body and "999" not in body
    assert f"#{week['too_new'].pk} " not in body and "777" not in body
    assert "50*" in body and "dry run: counted, nothing deleted" in body


def test_report_never_lists_the_cube_its_size_is_the_last_runs_scan(
    db, redis_client, mailoutbox, settings
):
    # Intended change (issue 13.2): the cube is unreachable, and the report does
    # not care - the size comes from the last run's scan, not from a listing.
    from config.cloudcube import parse_cloudcube_url
    from devstack.ports import free_port

    settings.ADMINS = [("ops", "ops@example.com")]
    settings.CLOUDCUBE = parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bucket/cube")
    run = make_run(NOW - timedelta(days=1), cube="cube", objects_scanned=5,
                   bytes_scanned=3 * MB, files_deleted=1, bytes_freed=MB)  # fmt: skip

    send_weekly_report(now=NOW)

    body = mailoutbox[0].body
    assert "Cube size:     2.0 MB in 4 objects (measured 2026-11-22 09:00 UTC" in body
    assert f"by the cleanup run #{run.pk})" in body
    assert "Files deleted: 1\n" in body


def test_empty_week_says_so(cube, redis_client, mailoutbox, settings):
    settings.ADMINS = [("ops", "ops@example.com")]
    send_weekly_report(now=NOW)
    mail = mailoutbox[0]
    assert mail.subject.endswith("0 cleanup runs, 0 files deleted, 0.0 MB freed, 0 failures")
    assert "none. Is the worker running?" in mail.body
    assert "Cube size:     never measured (no cleanup run or measurement yet)" in mail.body


def test_no_admins_no_mail(cube, redis_client, mailoutbox, settings, caplog):
    settings.ADMINS = []
    assert send_weekly_report(now=NOW) is None
    assert mailoutbox == []
    assert "DJANGO_ADMIN_EMAILS is empty" in caplog.text


def test_the_task_sends_it(cube, redis_client, mailoutbox, settings):
    from viral_clips.tasks import send_weekly_report as task

    settings.ADMINS = [("ops", "ops@example.com")]
    make_run(datetime.now(UTC) - timedelta(hours=1), files_deleted=4, bytes_freed=2 * MB)
    result = task.apply().get()
    assert result == {
        "sent": True,
        "runs": 1,
        "files_deleted": 4,
        "bytes_freed": 2 * MB,
        "failures": 0,
    }
    assert "4 files deleted" in mailoutbox[0].subject


def test_beat_schedule_has_the_report_on_monday_0900_utc_next_to_the_cleanup():
    entries = registry.beat_entries()
    assert {"scheduled-cloudcube-cleanup", WEEKLY_REPORT.entry} <= set(entries)
    entry = entries[WEEKLY_REPORT.entry]
    assert entry["task"] == "viral_clips.tasks.send_weekly_report"
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab)
    assert schedule.minute == {0} and schedule.hour == {9} and schedule.day_of_week == {1}
    # Next due after Sunday noon is Monday 09:00 UTC.
    sunday = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    at_sunday = copy.copy(schedule)
    at_sunday.nowfun = lambda: sunday
    remaining = at_sunday.remaining_estimate(sunday)
    assert sunday + remaining == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
