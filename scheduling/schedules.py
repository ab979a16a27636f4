"""Parse ``CLEANUP_SCHEDULE``: a 5-field cron expression, or an interval.

Accepted forms:

* cron, 5 fields, on the job's time zone (UTC unless its timezone setting says
  otherwise, e.g. ``WEEKLY_REPORT_TIMEZONE``): ``0 2 * * *``, ``0 */12 * * *``,
  ``0 2 * * 0``
* interval: a whole number and a unit, ``30s``, ``15m``, ``12h``, ``1d``
  (real elapsed time: no time zone applies)

Anything else raises ScheduleError, which settings turn into a start-up failure.
A cron in a zone other than UTC becomes a `ZonedCrontab` (scheduling/zoned.py:
its DST rule); in UTC it stays Celery's crontab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta

from celery.schedules import ParseException, crontab, schedule

from scheduling.zoned import ZonedCrontab

UTC_NAME = "UTC"

ACCEPTED_FORMS = (
    "a 5-field cron expression such as '0 2 * * *', '0 */12 * * *' or"
    " '0 2 * * 0', or an interval such as '30s', '15m', '12h' or '1d'"
)
_INTERVAL_RE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[smhd])$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Longer than ten years is a typo; far longer overflows timedelta (OverflowError).
MAX_INTERVAL_SECONDS = 3650 * 86400
_CRON_FIELD_RE = re.compile(r"^[A-Za-z0-9*/,-]+$")
_DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


class ScheduleError(ValueError):
    """CLEANUP_SCHEDULE (or another schedule variable) cannot be parsed."""


@dataclass(frozen=True)
class ParsedSchedule:
    raw: str
    kind: str  # "crontab" or "interval"
    celery_schedule: crontab | schedule
    interval_seconds: int | None = None
    # The wall clock a cron is read on (an IANA name); an interval ignores it.
    timezone: str = UTC_NAME

    def in_zone(self, timezone: str) -> ParsedSchedule:
        """The same schedule on `timezone`'s wall clock (a cron becomes a
        ZonedCrontab unless the zone is UTC)."""
        timezone = timezone or UTC_NAME
        if timezone == self.timezone:
            return self
        cron = self.celery_schedule
        if self.kind == "crontab":
            fields = self.raw.split()
            cron = (
                crontab(*_celery_order(fields))
                if timezone == UTC_NAME
                else ZonedCrontab(*_celery_order(fields), timezone=timezone)
            )
        return replace(self, celery_schedule=cron, timezone=timezone)

    def describe(self) -> str:
        """The schedule in words, for the dashboard and beat_status."""
        if self.kind == "interval":
            return f"every {_describe_seconds(self.interval_seconds or 0)}"
        minute, hour, dom, month, dow = self.raw.split()
        if hour == dom == month == dow == "*":
            if minute == "*":
                return "every minute"
            step = minute.removeprefix("*/")
            if minute.startswith("*/") and step.isdigit() and 60 % int(step) == 0:
                return f"every {_describe_seconds(int(step) * 60)}"
            if minute.isdigit():
                at = f"every hour at minute {int(minute)}"
                return at if self.timezone == UTC_NAME else f"{at} ({self.timezone})"
        if minute.isdigit() and hour.isdigit() and dom == month == "*":
            at = f"{int(hour):02d}:{int(minute):02d} {self.timezone}"
            if dow == "*":
                return f"every day at {at}"
            if dow.isdigit() and 0 <= int(dow) <= 7:
                return f"every {_DAY_NAMES[int(dow) % 7]} at {at}"
        return f"cron '{self.raw}' ({self.timezone})"


def _describe_seconds(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def parse_schedule(value: str, variable: str = "CLEANUP_SCHEDULE") -> ParsedSchedule:
    """Turn the variable's text into a Celery schedule, or raise ScheduleError."""
    text = " ".join((value or "").split())
    if not text:
        raise ScheduleError(f"{variable} is empty; expected {ACCEPTED_FORMS}")

    interval = _INTERVAL_RE.match(text)
    if interval:
        seconds = int(interval["n"]) * _UNIT_SECONDS[interval["unit"].lower()]
        if seconds <= 0:
            raise ScheduleError(
                f"{variable}={value!r}: an interval must be positive; expected {ACCEPTED_FORMS}"
            )
        if seconds > MAX_INTERVAL_SECONDS:
            raise ScheduleError(
                f"{variable}={value!r}: an interval must be at most 3650 days;"
                f" expected {ACCEPTED_FORMS}"
            )
        return ParsedSchedule(
            raw=text,
            kind="interval",
            celery_schedule=schedule(run_every=timedelta(seconds=seconds)),
            interval_seconds=seconds,
        )

    fields = text.split(" ")
    if len(fields) != 5 or not all(_CRON_FIELD_RE.match(f) for f in fields):
        raise ScheduleError(f"{variable}={value!r} is not valid; expected {ACCEPTED_FORMS}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        cron = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    # celery's crontab_parser raises ParseException ('0 2 * * 1,', '- 2 * * *'),
    # ValueError (out of range), and has raised TypeError/IndexError/OverflowError:
    # whatever it raises, the text is not a schedule.
    except (ParseException, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ScheduleError(
            f"{variable}={value!r} is not a valid cron expression ({exc});"
            f" expected {ACCEPTED_FORMS}"
        ) from exc
    return ParsedSchedule(raw=text, kind="crontab", celery_schedule=cron)


def _celery_order(fields: list[str]) -> tuple[str, ...]:
    """A cron's 5 fields (minute hour dom month dow) in crontab()'s argument order."""
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return minute, hour, day_of_week, day_of_month, month_of_year


def from_celery_schedule(value: crontab | schedule, variable: str = "schedule") -> ParsedSchedule:
    """The ParsedSchedule of a Celery schedule object, e.g. one a scheduler
    stored in Redis (so a status can describe what the scheduler holds, not
    what this process's settings say). Raises ScheduleError for other types."""
    if isinstance(value, crontab):
        fields = (
            value._orig_minute,
            value._orig_hour,
            value._orig_day_of_month,
            value._orig_month_of_year,
            value._orig_day_of_week,
        )
        parsed = parse_schedule(" ".join(str(f) for f in fields), variable=variable)
        return parsed.in_zone(getattr(value, "timezone_name", UTC_NAME))
    if isinstance(value, schedule):
        seconds = int(value.run_every.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return parse_schedule(f"{seconds // size}{unit}", variable=variable)
        return parse_schedule(f"{seconds}s", variable=variable)
    raise ScheduleError(f"{variable}: no description for {type(value).__name__}")
