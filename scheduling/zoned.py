"""A cron schedule read on a time zone's wall clock, DST-correct.

`ZonedCrontab("30", "2", timezone="Europe/Berlin")` is 02:30 in Berlin; its
occurrences are UTC instants (a slot is one instant in the ledger). Celery's
own crontab with a time zone is wrong across DST (celery #10107: an hourly job
skipped at the autumn change; #1604: ran twice), so the instants are computed
here from the local schedule with zoneinfo. The rule is Debian cron's (cron(8),
"special considerations ... daylight savings time"):

* a job at a fixed time (neither the minute nor the hour field starts with
  `*`) runs once in a repeated hour, at the first occurrence (a 02:30 job on
  Berlin's autumn night: 02:30 CEST, 00:30 UTC, not again at 02:30 CET) ...
* ... and right after a skipped hour: at the first instant after the gap (a
  02:30 job on Berlin's spring night runs at 03:00 CEST, 01:00 UTC). Several
  times of one job inside one gap are that one run.
* a job with `*` in the minute or hour field (`*/15 * * * *`, `0 * * * *`)
  runs on real elapsed time: at every instant whose wall-clock time matches,
  so in both passes of a repeated hour and never inside a skipped one.

Day fields keep Celery's meaning (day of month AND day of week must match),
so a zoned cron and a UTC cron with the same fields name the same days.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab, schedstate

# A cron that matches no day this far ahead never runs ('0 0 30 2 *').
_HORIZON_DAYS = 8 * 366


class ZonedCrontab(crontab):
    """A crontab whose fields are wall-clock times in `timezone` (an IANA name)."""

    def __init__(
        self,
        minute: str = "*",
        hour: str = "*",
        day_of_week: str = "*",
        day_of_month: str = "*",
        month_of_year: str = "*",
        *,
        timezone: str,
        **kwargs,
    ) -> None:
        super().__init__(minute, hour, day_of_week, day_of_month, month_of_year, **kwargs)
        self.timezone_name = timezone
        self.zone = ZoneInfo(timezone)
        # Debian cron's "wildcard job": `*` first in the minute or hour field.
        self.fixed_time = not (
            str(self._orig_minute).startswith("*") or str(self._orig_hour).startswith("*")
        )
        self._times = sorted((h, m) for h in self.hour for m in self.minute)
        self._deltas = [timedelta(hours=h, minutes=m) for h, m in self._times]

    # --- occurrences -----------------------------------------------------------
    def _matches(self, day: date) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and day.isoweekday() % 7 in self.day_of_week
        )

    def _day(self, day: date) -> list[datetime]:
        """The day's occurrences (UTC instants, ascending, unique) by the rule above."""
        start = datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=self.zone).astimezone(UTC)
        offset = start.astimezone(self.zone).utcoffset()
        if end - start == timedelta(days=1) and end.astimezone(self.zone).utcoffset() == offset:
            # No transition today (the common case): plain arithmetic.
            base = datetime.combine(day, time(), tzinfo=UTC) - offset
            return [base + delta for delta in self._deltas]
        found: set[datetime] = set()
        for hour, minute in self._times:
            wall = datetime.combine(day, time(hour, minute))
            first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
            if first == second:  # an ordinary time
                found.add(first)
            elif first < second:  # repeated: the clock went back over it
                found.add(first)
                if not self.fixed_time:
                    found.add(second)
            elif self.fixed_time:  # skipped: fold=1 lies before the gap, fold=0 after
                found.add(self._gap_end(second, first))
        return sorted(found)

    def _gap_end(self, before: datetime, after: datetime) -> datetime:
        """The instant the clock jumped forward (the first one after the gap),
        in whole seconds, between two instants on either side of it."""
        offset = after.astimezone(self.zone).utcoffset()
        low, high = int(before.timestamp()), int(after.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).utcoffset() == offset:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def occurrences_after(self, moment: datetime) -> Iterator[datetime]:
        """Every occurrence strictly after `moment`, ascending."""
        # RedBeat asks about an entry never run as of 0001-01-02: every
        # occurrence that far back is superseded by the latest, so start late.
        moment = max(_utc(moment), _utc(self.now()) - timedelta(days=_HORIZON_DAYS // 2))
        # From the day before: a gap across midnight maps onto the next day.
        day = moment.astimezone(self.zone).date() - timedelta(days=1)
        last = moment
        for _ in range(_HORIZON_DAYS):
            if self._matches(day):
                for found in self._day(day):
                    if found > last:
                        last = found
                        yield found
            day += timedelta(days=1)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (UTC)."""
        for found in self.occurrences_after(moment):
            return found
        raise ValueError(f"cron {self._fields()} never occurs in {self.timezone_name}")

    def latest_between(self, after: datetime | None, now: datetime) -> datetime | None:
        """The latest occurrence in (after, now], or None (after=None: no lower
        bound within the horizon)."""
        now = _utc(now)
        after = _utc(after) if after is not None else None
        day = now.astimezone(self.zone).date() + timedelta(days=1)
        stop = (after.astimezone(self.zone).date() - timedelta(days=1)) if after else None
        for _ in range(_HORIZON_DAYS):
            if stop is not None and day < stop:
                return None
            if self._matches(day):
                for found in reversed(self._day(day)):
                    if found <= now:
                        return found if after is None or found > after else None
            day -= timedelta(days=1)
        return None

    # --- what Celery and RedBeat call ------------------------------------------
    def remaining_delta(self, last_run_at, tz=None, ffwd=None):
        """(start, delta, now) with start + delta the next occurrence after
        `last_run_at`: Celery's contract, computed by the rule above."""
        start = _utc(last_run_at)
        return start, self.next_after(start) - start, _utc(self.now())

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.next_after(last_run_at) - _utc(self.now())

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = _utc(self.now())
        if self.next_after(last_run_at) <= now:
            return schedstate(True, max((self.next_after(now) - now).total_seconds(), 0))
        return schedstate(False, (self.next_after(last_run_at) - now).total_seconds())

    def _fields(self) -> str:
        return " ".join(
            str(f)
            for f in (
                self._orig_minute,
                self._orig_hour,
                self._orig_day_of_month,
                self._orig_month_of_year,
                self._orig_day_of_week,
            )
        )

    def __repr__(self) -> str:
        return f"<zoned crontab: {self._fields()} {self.timezone_name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ZonedCrontab):
            return super().__eq__(other) and other.timezone_name == self.timezone_name
        return NotImplemented if not isinstance(other, crontab) else False

    __hash__ = None  # mutable like crontab's equality; never a dict key

    def __reduce__(self):
        return (
            _rebuild,
            (
                self._orig_minute,
                self._orig_hour,
                self._orig_day_of_week,
                self._orig_day_of_month,
                self._orig_month_of_year,
                self.timezone_name,
            ),
        )


def _rebuild(minute, hour, day_of_week, day_of_month, month_of_year, timezone) -> ZonedCrontab:
    return ZonedCrontab(minute, hour, day_of_week, day_of_month, month_of_year, timezone=timezone)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
