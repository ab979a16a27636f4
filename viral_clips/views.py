"""Thin views: /health/ (public, details for staff or a token), the staff dashboard
and its actions: Run now / Dry run, and per job pause, resume, stop, run now
(each behind its permission, scheduling/controls.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path

import redis
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.timesince import timesince
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST, require_safe

from scheduling import controls, registry
from viral_clips.cleanup import InvalidRetention
from viral_clips.dashboard import build_dashboard, run_now_confirmation, stop_confirmation
from viral_clips.health import run_checks
from viral_clips.health_access import health_body, may_see_details
from viral_clips.run_now import CLEANUP, request_cleanup, run_job_now

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


def operator_action(permission: str) -> Callable:
    """An operator's POST: never cached, CSRF-checked, staff only, and the user must
    hold `permission` (superusers do), else 403."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def allowed(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"You need the permission {permission}.")
            return view(request, *args, **kwargs)

        return never_cache(require_POST(csrf_protect(staff_required(allowed))))

    return decorate


def user_powers(user) -> dict[str, bool]:
    """Which buttons the dashboard shows this user."""
    return {
        "run": user.has_perm(controls.PERM_RUN),
        "pause": user.has_perm(controls.PERM_PAUSE),
        "stop": user.has_perm(controls.PERM_STOP),
    }


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
    context = {"board": build_dashboard(), "can": user_powers(request.user)}
    return render(request, "viral_clips/dashboard.html", context)


@operator_action(controls.PERM_RUN)
def run_now(request: HttpRequest) -> HttpResponse:
    """The cleanup's Run now / Dry run, with an operator-chosen retention."""
    mode = request.POST.get("mode")
    if mode not in ("run", "dry-run"):
        return HttpResponseBadRequest("mode must be 'run' or 'dry-run'")
    dry_run = mode == "dry-run"
    retention = request.POST.get("retention_days", "").strip() or None
    reason = request.POST.get("reason", "").strip()
    try:
        confirm = run_now_confirmation(retention)
    except InvalidRetention as exc:
        messages.error(request, f"Not queued: {exc}.")
        return redirect("dashboard")
    if not dry_run and (request.POST.get("confirm") != "1" or not reason):
        # A real deletion asks first, with a reason for the audit trail; the
        # page's own form (CSRF-protected) confirms.
        missing = request.POST.get("confirm") == "1" and not reason
        return _with_csp_header(
            render(
                request,
                "viral_clips/confirm_run.html",
                {"confirm": confirm, "missing_reason": missing},
            )
        )
    kind = "Dry run" if dry_run else "Cleanup"
    try:
        result = request_cleanup(
            dry_run=dry_run,
            requested_by=request.user.get_username(),
            retention_days=confirm.retention_days,
            reason=reason or "dry run",
        )
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


def controlled_job(view: Callable) -> Callable:
    """A job's control view gets the job itself: 404 for an unknown entry, 400 for
    a job the controls cannot reach (outside the run ledger: the canary)."""

    @wraps(view)
    def with_job(request: HttpRequest, entry: str) -> HttpResponse:
        try:
            job = registry.get(entry)
        except KeyError as exc:
            raise Http404(f"no job {entry!r}") from exc
        if not controls.controllable(job):
            return HttpResponseBadRequest(
                f"{job.entry}: {controls.NO_CONTROLS}", content_type="text/plain; charset=utf-8"
            )
        return view(request, job)

    return with_job


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


@operator_action(controls.PERM_RUN)
@controlled_job
def run_job(request: HttpRequest, job) -> HttpResponse:
    """Run now for a job other than the cleanup (which has its own page)."""
    if job == CLEANUP:
        return run_now(request)
    entry = job.entry
    try:
        run_job_now(entry, actor=_actor(request), reason=request.POST.get("reason", ""))
    except controls.ControlError as exc:
        messages.error(request, f"{entry} not queued: {exc}.")
    except redis.RedisError as exc:
        messages.error(request, f"{entry} not queued: Redis is unavailable ({type(exc).__name__}).")
    else:
        messages.success(request, f"{entry} queued; it runs through the guard like a slot.")
    return redirect("dashboard")


def _toggle(request: HttpRequest, job, act: Callable, done: str) -> HttpResponse:
    try:
        act(job, _actor(request), request.POST.get("reason", ""))
    except controls.ControlError as exc:
        messages.error(request, f"{job.entry}: {exc}.")
    else:
        messages.success(request, f"{job.entry} {done}.")
    return redirect("dashboard")


@operator_action(controls.PERM_PAUSE)
@controlled_job
def pause_job(request: HttpRequest, job) -> HttpResponse:
    return _toggle(request, job, controls.pause, "paused: its next slots are skipped")


@operator_action(controls.PERM_PAUSE)
@controlled_job
def resume_job(request: HttpRequest, job) -> HttpResponse:
    return _toggle(request, job, controls.resume, "resumed: the next slot runs, missed ones do not")


@operator_action(controls.PERM_STOP)
@controlled_job
def stop_job(request: HttpRequest, job) -> HttpResponse:
    """Stop the job's running run, after a confirmation page that asks why."""
    reason = request.POST.get("reason", "").strip()
    if request.POST.get("confirm") != "1" or not reason:
        confirm = stop_confirmation(job)
        missing = request.POST.get("confirm") == "1"
        context = {"confirm": confirm, "missing_reason": missing}
        return _with_csp_header(render(request, "viral_clips/confirm_stop.html", context))
    return _toggle(request, job, controls.stop, "told to stop: it ends after its current batch")
