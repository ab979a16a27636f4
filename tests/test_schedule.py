from datetime import timedelta

import pytest
from celery.schedules import crontab, schedule

from scheduling.schedules import ScheduleError, parse_schedule


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0 2 * * *", "every day at 02:00 UTC"),
        ("0 */12 * * *", "cron '0 */12 * * *' (UTC)"),
        ("0 2 * * 0", "every Sunday at 02:00 UTC"),
        ("30 9 * * 1", "every Monday at 09:30 UTC"),
    ],
)
def test_cron_forms(text, words):
    parsed = parse_schedule(text)
    assert parsed.kind == "crontab"
    assert isinstance(parsed.celery_schedule, crontab)
    assert parsed.describe() == words


def test_cron_fields_map_in_order():
    cron = parse_schedule("5 2 1 6 0").celery_schedule
    assert cron.minute == {5}
    assert cron.hour == {2}
    assert cron.day_of_month == {1}
    assert cron.month_of_year == {6}
    assert cron.day_of_week == {0}


@pytest.mark.parametrize(
    ("text", "seconds", "words"),
    [
        ("30s", 30, "every 30 seconds"),
        ("15m", 900, "every 15 minutes"),
        ("12h", 43200, "every 12 hours"),
        ("1d", 86400, "every 1 day"),
    ],
)
def test_interval_forms(text, seconds, words):
    parsed = parse_schedule(text)
    assert parsed.kind == "interval"
    assert isinstance(parsed.celery_schedule, schedule)
    assert parsed.celery_schedule.run_every == timedelta(seconds=seconds)
    assert parsed.interval_seconds == seconds
    assert parsed.describe() == words


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "daily",
        "0 2 * *",
        "0 2 * * * *",
        "61 2 * * *",
        "0 25 * * *",
        "0s",
        "-5m",
        "5 minutes",
        "5w",
        "0 2 * * 9",
        "0 2 ; * *",
    ],
)
def test_bad_schedules_name_the_variable_and_forms(text):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    message = str(info.value)
    assert "CLEANUP_SCHEDULE" in message
    assert "cron" in message and "interval" in message
