"""`python manage.py beat_status [--json]`: who schedules, and what is next."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from redis.exceptions import RedisError

from scheduling.status import local_time, scheduler_status


def _when(moment: datetime | None, now: datetime, zone: str = "UTC") -> str:
    """The UTC time and how far off it is; for a job on another zone, its
    wall-clock time there first."""
    if moment is None:
        return "never"
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    if span < 120:
        amount = f"{span} s"
    elif span < 7200:
        amount = f"{span // 60} min"
    elif span < 172800:
        amount = f"{span / 3600:.1f} h"
    else:
        amount = f"{span / 86400:.1f} days"
    relative = f"in {amount}" if seconds >= 0 else f"{amount} ago"
    if zone != "UTC":
        local = local_time(moment, zone)
        return (
            f"{local:%Y-%m-%d %H:%M:%S %Z} ({zone}) = {moment:%Y-%m-%d %H:%M:%S} UTC ({relative})"
        )
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({relative})"


class Command(BaseCommand):
    help = (
        "Show which process holds the beat lock and, per scheduled job, its schedule,"
        " last run and outcome (from the run ledger) and next slot. Exits 2 when no"
        " scheduler holds the lock."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, json: bool = False, **options) -> None:
        try:
            status = scheduler_status()
        except RedisError as exc:
            raise CommandError(f"cannot read the scheduler state from Redis: {exc}") from exc
        if json:
            data = asdict(status)
            for line, entry in zip(data["entries"], status.entries, strict=True):
                line["next_run_local"] = entry.next_run_local
                line["last_run_local"] = entry.last_run_local
            self.stdout.write(_dumps(data))
        else:
            self._describe(status)
        if not status.lock_held:
            # For scripts and probes: no beat is scheduling.
            raise CommandError("no scheduler holds the beat lock", returncode=2)

    def _describe(self, status) -> None:
        now = timezone.now()
        if status.lock_held and status.holder:
            h = status.holder
            self.stdout.write(
                f"Scheduler lock: held by {h.dyno} (host {h.hostname}, pid {h.pid}),"
                f" expires in {status.lock_ttl_seconds} s unless renewed;"
                f" holding since {_when(h.acquired_at, now)}"
            )
            self.stdout.write(f"Last tick: {_when(status.last_tick_at, now)}")
        elif status.lock_held:
            self.stdout.write("Scheduler lock: held, holder unknown (starting up?)")
        else:
            self.stdout.write(
                self.style.WARNING("Scheduler lock: free — no beat is scheduling right now")
            )
        if not any(entry.in_scheduler for entry in status.entries):
            self.stdout.write("No schedule entries in Redis yet (no beat has started).")
        for entry in status.entries:
            self.stdout.write(f"\n{entry.name} ({entry.task})")
            source = "" if entry.in_scheduler else " (from this process's settings: not in Redis)"
            self.stdout.write(f"  schedule: {entry.schedule_words} [{entry.schedule}]{source}")
            if entry.ledger_error:
                self.stdout.write(f"  last run: unknown (ledger unavailable: {entry.ledger_error})")
            else:
                trigger = f" ({entry.last_trigger})" if entry.last_trigger else ""
                last = _when(entry.last_run_at, now, entry.timezone)
                self.stdout.write(f"  last run: {last}{trigger}")
                self.stdout.write(f"  last outcome: {entry.last_status or 'none'}")
            if entry.paused:
                self.stdout.write(self.style.WARNING(f"  {entry.paused}: its slots are skipped"))
            self.stdout.write(f"  next run: {_when(entry.next_run_at, now, entry.timezone)}")


def _dumps(data: dict) -> str:
    return json.dumps(
        data, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o), indent=2
    )
