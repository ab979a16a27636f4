"""Thin views: /health/ (public, details for staff or a token), the staff dashboard
and its Run now / Dry run action."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path

import redis
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.timesince import timesince
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST, require_safe

from viral_clips.dashboard import build_dashboard, run_now_confirmation
from viral_clips.health import run_checks
from viral_clips.health_access import health_body, may_see_details
from viral_clips.run_now import request_cleanup

# Only our own stylesheet and forms; no script, no frames, no third party.
DASHBOARD_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)


FAVICON = Path(__file__).resolve().parent / "static" / "viral_clips" / "favicon.svg"


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on every page (no 404 warning each time)."""
    response = HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    ok, checks, extra = run_checks()
    body = health_body(ok, checks, extra, details=may_see_details(request))
    response = JsonResponse(body, status=200 if ok else 503)
    if request.method == "HEAD":
        # Uptime monitors probe with HEAD: the same status and headers, no body.
        response["Content-Length"] = str(len(response.content))
        response.content = b""
    return response


def staff_required(view: Callable) -> Callable:
    """Anonymous: to the login page. Logged in but not active staff: 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            # After logging in, come back to the dashboard (an action URL is POST-only).
            next_url = request.get_full_path() if request.method == "GET" else reverse("dashboard")
            return redirect_to_login(next_url, resolve_url(settings.LOGIN_URL))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("Staff only.")
        return view(request, *args, **kwargs)

    return wrapped


def _with_csp_header(response: HttpResponse) -> HttpResponse:
    response.setdefault("Content-Security-Policy", DASHBOARD_CSP)
    return response


def with_csp(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return _with_csp_header(view(request, *args, **kwargs))

    return wrapped


@never_cache
@require_GET
@staff_required
@with_csp
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "viral_clips/dashboard.html", {"board": build_dashboard()})


@never_cache
@require_POST
@csrf_protect
@staff_required
def run_now(request: HttpRequest) -> HttpResponse:
    mode = request.POST.get("mode")
    if mode not in ("run", "dry-run"):
        return HttpResponseBadRequest("mode must be 'run' or 'dry-run'")
    dry_run = mode == "dry-run"
    if not dry_run and request.POST.get("confirm") != "1":
        # A real deletion asks first; the page's own form (CSRF-protected) confirms.
        return _with_csp_header(
            render(request, "viral_clips/confirm_run.html", {"confirm": run_now_confirmation()})
        )
    kind = "Dry run" if dry_run else "Cleanup"
    try:
        result = request_cleanup(dry_run=dry_run, requested_by=request.user.get_username())
    except redis.RedisError as exc:
        messages.error(request, f"{kind} not queued: Redis is unavailable ({type(exc).__name__}).")
        return redirect("dashboard")
    if result.queued:
        messages.success(
            request, f"{kind} queued; its run appears below when the worker starts it."
        )
    else:
        busy = result.busy
        messages.warning(
            request,
            f"{kind} not queued: {busy.describe()} (since {timesince(busy.since)} ago)."
            " It was not queued again.",
        )
    return redirect("dashboard")
