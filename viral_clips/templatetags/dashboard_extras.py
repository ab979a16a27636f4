"""Relative times for the dashboard ("12 seconds ago", "in 4 hours, 11 minutes"),
a UTC time on a job's own zone (`in_zone`), and `visible` for text from outside
(keys, titles, error messages)."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from scheduling.status import local_time
from scheduling.visible import visible as _visible
from viral_clips.cleanup import cleanup_scope_labels

register = template.Library()


@register.filter
def visible(value: object) -> str:
    """Bidi controls and invisible characters shown as escapes (scheduling/visible.py);
    the result is still escaped for HTML like any other text."""
    return _visible(value)


def _seconds(value: datetime, now: datetime | None) -> float:
    return ((now or timezone.now()) - value).total_seconds()


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = _seconds(value, now)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''} ago"
    return f"{timesince(value, now)} ago"


@register.filter
def in_zone(value: datetime | None, zone: str | None = None) -> str:
    """The same instant on a job's own wall clock, '(09:00 CET, Europe/Berlin)',
    next to a UTC time; nothing for a job on UTC."""
    if value is None or not zone or zone == "UTC":
        return ""
    local = local_time(value, zone)
    fmt = "%a %Y-%m-%d %H:%M" if local.date() != value.astimezone(UTC).date() else "%H:%M"
    return f"({local:{fmt}} {local.tzname()}, {zone})"


@register.filter
def until(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = -_seconds(value, now)
    if seconds <= 0:
        return "due now"
    if seconds < 60:
        return f"in {int(seconds)} second{'s' if int(seconds) != 1 else ''}"
    return f"in {timeuntil(value, now)}"


@register.simple_tag
def cleanup_scope() -> str:
    """The folders the cleanup may delete in, cube-relative ("public/clips/")."""
    try:
        return ", ".join(cleanup_scope_labels())
    except ImproperlyConfigured as exc:  # the cleanup refuses to run too: say why
        return f"none ({exc})"


@register.filter
def duration_words(seconds: int | float | None) -> str:
    """6 * 3600 -> "6 hours"; 90 -> "90 seconds"."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
