"""What /health/ tells whom: up or down per part for anyone, the details for staff
and for callers presenting HEALTH_TOKEN.

An anonymous uptime monitor needs to know whether the app is up and which part
is down: the overall status (and the status code: 200 or 503), ``ok`` per
check, and how old the answer is. Job names, schedules, tick and canary ages,
error texts and the last cleanup's id, status and trigger describe how the app
is operated: they are for staff (logged in, active) or for a monitor sending
``Authorization: Bearer <HEALTH_TOKEN>``. The token is compared in constant
time and never logged (it is in a header, not in the URL that access logs
record). The checks, their cache and deadline are viral_clips/health.py's; this
only shapes the answer.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest

BEARER = "bearer "


def presented_token(request: HttpRequest) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return header[len(BEARER) :].strip() if header[: len(BEARER)].lower() == BEARER else ""


def may_see_details(request: HttpRequest) -> bool:
    token = settings.HEALTH_TOKEN
    if token:
        given = presented_token(request)
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
    # Only a caller with a session cookie can be staff: no database query otherwise.
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def health_body(ok: bool, checks: dict[str, dict], extra: dict, *, details: bool) -> dict:
    """The JSON /health/ answers: everything, or up/down per part."""
    if details:
        return {"status": "ok" if ok else "unavailable", "checks": checks, **extra}
    return {
        "status": "ok" if ok else "unavailable",
        "checks": {name: {"ok": bool(check.get("ok"))} for name, check in checks.items()},
        "checked_seconds_ago": extra.get("checked_seconds_ago"),
    }
