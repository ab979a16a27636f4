"""Schedules in a job's own time zone, DST-correct (scheduling/zoned.py).

The rule (docs/scheduling.md, Debian cron's): a job at a fixed time runs once
in a repeated hour (the first occurrence) and right after a skipped one; a job
with `*` in its minute or hour field runs on real elapsed time. Each night is
walked the way beat walks it: an entry ticked every 30 s on the schedule's clock,
sending what `is_due` says is due, stamped with `scheduled_slot`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from config.celery import app
from config.env import Env
from scheduling import crons, slots
from scheduling.beat import scheduled_slot
from scheduling.entries import EntryDecoder, EntryEncoder, KoolclipsEntry
from scheduling.management.commands import beat_status
from scheduling.schedules import from_celery_schedule, parse_schedule
from scheduling.status import job_status
from scheduling.zoned import ZonedCrontab
from viral_clips import health
from viral_clips.tasks import scheduled_cloudcube_cleanup, send_weekly_report

BERLIN = "Europe/Berlin"
LORD_HOWE = "Australia/Lord_Howe"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def zoned(cron: str, zone: str):
    return parse_schedule(cron, "TEST_SCHEDULE").in_zone(zone).celery_schedule


def beat_walk(schedule, start: datetime, end: datetime, tick=timedelta(seconds=30)):
    """The slots beat sends between `start` and `end`, ticking every `tick`,
    for an entry last run at the schedule's occurrence before `start`."""
    clock = [start]
    schedule.nowfun = lambda: clock[0]  # the schedule's own clock, as beat reads it
    entry = KoolclipsEntry("tz-test", "viral_clips.tasks.x", schedule, app=app)
    entry.last_run_at = slots.latest_in_window(schedule, start, timedelta(days=8))
    sent = []
    while clock[0] <= end:
        due, _next = entry.is_due()
        if due:
            slot = scheduled_slot(entry, clock[0])
            sent.append(slot)
            entry.last_run_at = slot
        clock[0] += tick
    return sent


def assert_transition(zone: str, before: str, after: str, shift_minutes: int) -> None:
    """The zone really changes its offset between the two instants (guards the
    test against a tz database that moved the date)."""
    tz = ZoneInfo(zone)
    change = utc(after).astimezone(tz).utcoffset() - utc(before).astimezone(tz).utcoffset()
    assert change == timedelta(minutes=shift_minutes)


# --- the must-show cases ---------------------------------------------------------
def test_a_daily_0230_berlin_job_runs_once_at_0300_local_on_the_spring_forward_night():
    assert_transition(BERLIN, "2026-03-29 00:59", "2026-03-29 01:01", 60)
    sent = beat_walk(zoned("30 2 * * *", BERLIN), utc("2026-03-28 22:00"), utc("2026-03-29 22:00"))
    assert sent == [utc("2026-03-29 01:00")]  # 03:00 CEST, right after the skipped hour
    assert sent[0].astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "03:00 CEST"


def test_a_daily_0230_berlin_job_runs_once_at_the_first_0230_on_the_fall_back_night():
    assert_transition(BERLIN, "2026-10-25 00:59", "2026-10-25 01:01", -60)
    sent = beat_walk(zoned("30 2 * * *", BERLIN), utc("2026-10-24 22:00"), utc("2026-10-25 22:00"))
    assert sent == [utc("2026-10-25 00:30")]  # 02:30 CEST; not again at 02:30 CET (01:30 UTC)


def test_the_weekly_report_at_monday_0900_berlin_runs_once_at_0700_utc_in_summer_and_0800_in_winter(
    settings,
):
    settings.WEEKLY_REPORT_SCHEDULE = parse_schedule("0 9 * * 1", "WEEKLY_REPORT_SCHEDULE")
    settings.WEEKLY_REPORT_TIMEZONE = BERLIN
    schedule = send_weekly_report.job.schedule().celery_schedule
    tick = timedelta(minutes=1)
    summer = beat_walk(schedule, utc("2026-07-04 00:00"), utc("2026-07-10 23:59"), tick)
    winter = beat_walk(schedule, utc("2026-12-05 00:00"), utc("2026-12-11 23:59"), tick)
    assert summer == [utc("2026-07-06 07:00")]
    assert winter == [utc("2026-12-07 08:00")]
    # Across both changes of the year, every Monday once, always 09:00 in Berlin.
    year = list(schedule.occurrences_after(utc("2026-01-01 00:00")))[:52]
    assert {s.astimezone(ZoneInfo(BERLIN)).strftime("%a %H:%M") for s in year} == {"Mon 09:00"}
    assert {s.hour for s in year} == {7, 8}


# --- Lord Howe: a 30-minute shift ----------------------------------------------------
def test_lord_howe_fall_back_a_fixed_time_in_the_repeated_half_hour_runs_once():
    # 2026-04-05 02:00 LHDT (+11) -> 01:30 LHST (+10:30): 01:30-02:00 happens twice.
    assert_transition(LORD_HOWE, "2026-04-04 14:59", "2026-04-04 15:01", -30)
    sent = beat_walk(
        zoned("45 1 * * *", LORD_HOWE), utc("2026-04-04 10:00"), utc("2026-04-05 10:00")
    )
    assert sent == [utc("2026-04-04 14:45")]  # the first 01:45 (LHDT)


def test_lord_howe_spring_forward_a_fixed_time_in_the_skipped_half_hour_runs_right_after():
    # 2026-10-04 02:00 LHST (+10:30) -> 02:30 LHDT (+11): 02:00-02:30 never happens.
    assert_transition(LORD_HOWE, "2026-10-03 15:29", "2026-10-03 15:31", 30)
    sent = beat_walk(
        zoned("15 2 * * *", LORD_HOWE), utc("2026-10-03 10:00"), utc("2026-10-04 10:00")
    )
    assert sent == [utc("2026-10-03 15:30")]  # 02:30 LHDT, the first instant after the gap


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        (LORD_HOWE, "2026-04-04 13:00", "2026-04-04 17:00"),
        (LORD_HOWE, "2026-10-03 14:00", "2026-10-03 17:00"),
        (BERLIN, "2026-03-28 23:00", "2026-03-29 03:00"),
        (BERLIN, "2026-10-24 23:00", "2026-10-25 03:00"),
    ],
)
def test_every_15_minutes_runs_on_real_elapsed_time_across_the_change(zone, start, end):
    sent = beat_walk(zoned("*/15 * * * *", zone), utc(start), utc(end))
    gaps = {b - a for a, b in zip(sent, sent[1:], strict=False)}
    assert gaps == {timedelta(minutes=15)}
    assert len(sent) == (utc(end) - utc(start)) // timedelta(minutes=15)


def test_an_hourly_job_runs_in_both_passes_of_berlins_repeated_hour():
    # celery #10107: an hourly job skipped at the autumn change.
    sent = beat_walk(zoned("0 * * * *", BERLIN), utc("2026-10-24 22:30"), utc("2026-10-25 03:30"))
    assert sent == [utc("2026-10-24 23:00")] + [utc(f"2026-10-25 0{h}:00") for h in range(4)]


def test_several_times_inside_one_gap_are_one_run_right_after_it():
    sent = beat_walk(
        zoned("0,30 2 * * *", BERLIN), utc("2026-03-28 22:00"), utc("2026-03-29 22:00")
    )
    assert sent == [utc("2026-03-29 01:00")]


# --- the same semantics as Celery's UTC crontab ---------------------------------------
@pytest.mark.parametrize(
    "cron", ["0 2 * * *", "*/7 * * * *", "0 9 * * 1", "30 */5 13 * 5", "0 0 1 */2 *", "5 4 * * 0"]
)
def test_in_utc_a_zoned_cron_names_the_same_instants_as_celerys(cron):
    fields = cron.split()
    celery_cron = parse_schedule(cron).celery_schedule
    ours = ZonedCrontab(fields[0], fields[1], fields[4], fields[2], fields[3], timezone="UTC")
    moment = utc("2026-01-01 00:00")
    for _ in range(40):
        expected = slots.next_after(celery_cron, moment)
        assert ours.next_after(moment) == expected
        moment = expected + timedelta(seconds=17)


# --- where the zone shows -------------------------------------------------------------
def test_a_zoned_cron_survives_redis_and_a_utc_one_is_stored_as_before():
    schedule = zoned("30 2 * * *", BERLIN)
    stored = json.dumps({"schedule": schedule}, cls=EntryEncoder)
    back = json.loads(stored, cls=EntryDecoder)["schedule"]
    assert isinstance(back, ZonedCrontab) and back == schedule
    assert back.next_after(utc("2026-03-28 12:00")) == utc("2026-03-29 01:00")
    assert from_celery_schedule(back).describe() == "every day at 02:30 Europe/Berlin"
    plain = json.loads(json.dumps({"s": crontab("30", "2")}, cls=EntryEncoder))["s"]
    assert plain["__type__"] == "crontab"  # RedBeat's own encoding for UTC


def test_the_sentry_monitor_carries_the_jobs_time_zone(settings):
    settings.CLEANUP_TIMEZONE = BERLIN
    config = crons.monitor_config(scheduled_cloudcube_cleanup.job)
    assert config["timezone"] == BERLIN
    assert config["schedule"] == {"type": "crontab", "value": "0 2 * * *"}
    settings.CLEANUP_TIMEZONE = "UTC"
    assert crons.monitor_config(scheduled_cloudcube_cleanup.job)["timezone"] == "UTC"


@pytest.mark.django_db
def test_the_status_line_gives_the_next_run_in_the_zone_and_in_utc(settings):
    settings.WEEKLY_REPORT_SCHEDULE = parse_schedule("0 9 * * 1", "WEEKLY_REPORT_SCHEDULE")
    settings.WEEKLY_REPORT_TIMEZONE = BERLIN
    line = job_status(send_weekly_report.job, utc("2026-12-03 12:00"), stored=False)
    assert line.schedule_words == "every Monday at 09:00 Europe/Berlin"
    assert line.timezone == BERLIN
    assert line.next_run_at == utc("2026-12-07 08:00")
    assert line.next_run_local.isoformat() == "2026-12-07T09:00:00+01:00"


@pytest.mark.parametrize("raw", ["Europe/Berln", "CET+1", "localtime", "../etc/passwd", ""])
def test_a_bad_time_zone_is_one_line_naming_the_setting(raw):
    env = Env({"WEEKLY_REPORT_TIMEZONE": raw})
    assert env.timezone("WEEKLY_REPORT_TIMEZONE", "UTC") == "UTC"
    assert len(env.errors) == 1
    assert env.errors[0].startswith("WEEKLY_REPORT_TIMEZONE")
    assert "\n" not in env.errors[0] and "IANA time zone" in env.errors[0]


@pytest.mark.parametrize("raw", ["Europe/Berlin", "Australia/Lord_Howe", "utc", " UTC "])
def test_a_good_time_zone_is_read(raw):
    env = Env({"CLEANUP_TIMEZONE": raw})
    assert env.timezone("CLEANUP_TIMEZONE") == raw.strip().replace("utc", "UTC")
    assert env.errors == []


@pytest.mark.django_db
def test_the_dashboard_and_health_show_the_zone_and_utc(
    settings, client, django_user_model, cube, redis_client
):
    settings.CLEANUP_SCHEDULE = parse_schedule("30 2 * * *", "CLEANUP_SCHEDULE")
    settings.CLEANUP_TIMEZONE = BERLIN
    settings.WEEKLY_REPORT_TIMEZONE = BERLIN
    user = django_user_model.objects.create_user("tz-operator", password="x-9-y", is_staff=True)
    client.force_login(user)

    text = client.get("/").content.decode()

    schedule = re.search(r'<article class="card" id="schedule">.*?</article>', text, re.S)[0]
    assert "Every day at 02:30 Europe/Berlin" in schedule
    # December: CET, one hour ahead of UTC.
    assert re.search(r"01:30 UTC</strong> \(02:30 CET, Europe/Berlin\)", schedule), schedule
    assert "Weekly report: every Monday at 09:00 Europe/Berlin" in schedule
    row = re.search(r'<tr id="job-weekly-report">.*?</tr>', text, re.S)[0]
    assert re.search(r"\d{4}-\d\d-\d\d 08:00:00 \(09:00 CET, Europe/Berlin\)", row), row
    lines = health.job_lines()
    report = lines[send_weekly_report.job.entry]
    assert report["schedule"] == "every Monday at 09:00 Europe/Berlin"
    assert report["timezone"] == BERLIN
    assert report["next_run_at"].endswith("T08:00:00+00:00")
    assert report["next_run_local"].endswith("T09:00:00+01:00")


def test_beat_status_prints_a_zoned_time_on_its_clock_and_in_utc():
    now = utc("2026-11-30 07:00")
    when = beat_status._when(utc("2026-11-30 08:00"), now, BERLIN)
    assert when == "2026-11-30 09:00:00 CET (Europe/Berlin) = 2026-11-30 08:00:00 UTC (in 60 min)"
    assert beat_status._when(utc("2026-11-30 08:00"), now) == "2026-11-30 08:00:00 UTC (in 60 min)"


def test_an_entry_never_run_is_due_not_an_error():
    # RedBeat asks with datetime(MINYEAR, 1, 2) for an entry without a last run.
    schedule = zoned("30 2 * * *", BERLIN)
    schedule.nowfun = lambda: utc("2026-12-03 12:00")
    due, _ = schedule.is_due(datetime(1, 1, 2, tzinfo=UTC))
    assert due is True
