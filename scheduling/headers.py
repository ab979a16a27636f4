"""The message headers a scheduled run carries, written and read in one place.

Beat writes them when it sends a slot (scheduling/beat.py, scheduling/crons.py);
the guard and the task's check-in read them back (scheduling/guard.py,
scheduling/crons.py); a deferred slot is re-sent with all of them unchanged.

* `scheduled_for`: the slot, the exact due time in UTC, ISO 8601. A message
  without it was not sent by a scheduler (Run now, a shell's `.delay()`).
* `koolclips_trigger`: `catch_up` when a scheduler sent the slot late, from the
  ledger, on taking the lock; absent for a slot sent on time.
* `koolclips_check_in_id` / `koolclips_check_in_started_at`: the Sentry cron
  check-in beat opened for the slot, and when (epoch seconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

SLOT = "scheduled_for"
TRIGGER = "koolclips_trigger"
CHECK_IN = "koolclips_check_in_id"
CHECK_IN_STARTED = "koolclips_check_in_started_at"
CATCH_UP = "catch_up"
ALL = (SLOT, TRIGGER, CHECK_IN, CHECK_IN_STARTED)


def for_slot(slot: datetime, *, catch_up: bool = False) -> dict[str, str]:
    """The headers beat adds to the message of `slot`."""
    headers = {SLOT: slot.isoformat()}
    if catch_up:
        headers[TRIGGER] = CATCH_UP
    return headers


def open_check_in(headers: dict, check_in_id: str, started_at: float) -> None:
    """Beat side: record the check-in it opened in the outgoing message's headers."""
    headers[CHECK_IN] = check_in_id
    headers[CHECK_IN_STARTED] = started_at


def _read(request, name: str) -> Any:
    # Celery puts custom headers on the request itself, and (depending on the
    # protocol and on apply() vs a worker) in request.headers.
    headers = getattr(request, "headers", None) or {}
    return headers.get(name) or getattr(request, name, None)


def slot(request) -> datetime | None:
    """The slot this message was sent for, if a scheduler sent it."""
    value = _read(request, SLOT)
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def is_catch_up(request) -> bool:
    return _read(request, TRIGGER) == CATCH_UP


def check_in(request) -> tuple[str | None, float | None]:
    """(check-in id, when it was opened) of the slot's Sentry check-in, if any."""
    check_in_id = _read(request, CHECK_IN)
    started_at = _read(request, CHECK_IN_STARTED)
    try:
        started_at = float(started_at) if started_at is not None else None
    except (TypeError, ValueError):
        started_at = None
    return check_in_id, started_at


def carried(request) -> dict[str, Any]:
    """Every scheduling header of this message, to send it again unchanged."""
    return {name: _read(request, name) for name in ALL if _read(request, name) is not None}
