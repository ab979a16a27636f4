"""Does this deployment work? Each check answers one question, read-only.

`manage.py preflight` (and app.json's postdeploy script) prints them as a
checklist. Nothing the app owns is changed: the only write is a probe object
under a scratch key inside the cube, deleted again at once. A test event to
Sentry and a test mail to the admins are sent only when asked for.

Each check returns a `Check`; a check that cannot reach its service is a
failed check with the reason, never an exception, so one down service does not
hide the state of the others. Messages never carry a secret: exception texts
are reduced to their type and the service's own error code.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import sentry_sdk
from django.conf import settings
from django.core.mail import mail_admins
from django.db import connection
from django.utils import timezone
from redis.exceptions import ResponseError

from scheduling import registry
from scheduling.app_redis import app_redis
from scheduling.status import scheduler_status
from viral_clips.s3 import cloudcube_client

PROBE_FOLDER = "koolclips-preflight"
TIMEOUT = 5.0  # seconds, per network call


@dataclass
class Check:
    name: str
    ok: bool
    summary: str
    fix: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _failure(exc: BaseException) -> str:
    """An exception in words without its message (which may carry a URL or host)."""
    code = getattr(exc, "response", None)
    if isinstance(code, dict):  # botocore ClientError
        error = code.get("Error", {})
        return f"{type(exc).__name__} {error.get('Code', '')}".strip()
    return type(exc).__name__


# --- database ---------------------------------------------------------------
def check_database() -> list[Check]:
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - any failure is "not reachable"
        return [
            Check(
                "database",
                False,
                f"cannot reach the database ({_failure(exc)})",
                "check DATABASE_URL (`heroku config:get DATABASE_URL`) and `heroku pg:info`",
            )
        ]
    vendor = connection.vendor
    checks = [Check("database", True, f"reachable ({vendor})")]
    if plan:
        names = [f"{m.app_label}.{m.name}" for m, _ in plan]
        checks.append(
            Check(
                "migrations",
                False,
                f"{len(names)} migration(s) not applied: {', '.join(names[:5])}",
                "heroku run python manage.py migrate (the release phase runs it on every"
                " deploy: see `heroku releases`)",
                {"unapplied": names},
            )
        )
    else:
        checks.append(Check("migrations", True, "all migrations applied"))
    return checks


# --- Redis ------------------------------------------------------------------
def _eviction_policy(client) -> str:
    """maxmemory-policy: CONFIG GET where allowed; Heroku refuses CONFIG, but
    INFO memory reports it too."""
    try:
        value = client.config_get("maxmemory-policy").get("maxmemory-policy")
        if value:
            return str(value)
    except ResponseError:
        pass
    return str(client.info("memory").get("maxmemory_policy", "unknown"))


def check_redis() -> list[Check]:
    tls = urlsplit(settings.REDIS_URL).scheme == "rediss"
    try:
        with app_redis(timeout=TIMEOUT) as client:
            started = time.monotonic()
            client.ping()
            latency_ms = round((time.monotonic() - started) * 1000, 1)
            policy = _eviction_policy(client)
            clients = client.info("clients")
    except Exception as exc:  # noqa: BLE001
        return [
            Check(
                "redis",
                False,
                f"cannot reach Redis ({_failure(exc)})",
                "check REDIS_URL (`heroku redis:info`); Heroku Redis is rediss:// (TLS)",
            )
        ]
    checks = [
        Check(
            "redis",
            True,
            f"reachable{' over TLS' if tls else ''} ({latency_ms} ms)",
            details={"tls": tls, "latency_ms": latency_ms},
        )
    ]
    if policy == "noeviction":
        checks.append(
            Check(
                "redis_eviction", True, "maxmemory-policy is noeviction", details={"policy": policy}
            )
        )
    else:
        checks.append(
            Check(
                "redis_eviction",
                False,
                f"maxmemory-policy is {policy}: under memory pressure Redis may drop the"
                " scheduler's lock and schedule and the cleanup's run guards",
                "heroku redis:maxmemory <addon> --policy noeviction"
                " (<addon>: the Heroku Redis add-on's name, see `heroku addons`)",
                {"policy": policy},
            )
        )
    in_use = int(clients.get("connected_clients", 0))
    limit = settings.REDIS_MAX_CONNECTIONS
    details = {"connected_clients": in_use, "limit": limit or None}
    if not limit:
        checks.append(
            Check(
                "redis_connections", True, f"{in_use} in use (plan limit unknown)", details=details
            )
        )
    elif in_use < limit:
        checks.append(
            Check("redis_connections", True, f"{in_use} of {limit} in use", details=details)
        )
    else:
        checks.append(
            Check(
                "redis_connections",
                False,
                f"{in_use} of {limit} in use: new connections will be refused",
                "lower CELERY_WORKER_CONCURRENCY or WEB_CONCURRENCY, stop extra worker"
                " dynos, or move to a Redis plan with more connections (then set"
                " REDIS_MAX_CONNECTIONS)",
                details,
            )
        )
    return checks


# --- Cloudcube ----------------------------------------------------------------
def check_cloudcube() -> list[Check]:
    cube = settings.CLOUDCUBE
    where = f"s3://{cube.bucket}/{cube.prefix}"
    client = cloudcube_client(connect_timeout=TIMEOUT, read_timeout=TIMEOUT * 2, max_attempts=2)
    try:
        page = client.list_objects_v2(Bucket=cube.bucket, Prefix=cube.prefix, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001
        return [
            Check(
                "cloudcube_list",
                False,
                f"cannot list {where} ({_failure(exc)})",
                "check CLOUDCUBE_URL, CLOUDCUBE_ACCESS_KEY_ID and CLOUDCUBE_SECRET_ACCESS_KEY"
                " (`heroku config | grep CLOUDCUBE`; the add-on sets them)",
            )
        ]
    checks = [
        Check(
            "cloudcube_list",
            True,
            f"can list {where}",
            details={"empty": not page.get("KeyCount")},
        )
    ]
    checks.append(_probe_write_delete(client, cube.bucket, cube.prefix))
    return checks


def _probe_write_delete(client, bucket: str, prefix: str) -> Check:
    """Write a probe object under a scratch key, delete it the way the cleanup
    deletes (DeleteObjects), and make sure it is gone."""
    key = f"{prefix}{PROBE_FOLDER}/{uuid.uuid4().hex}"
    details: dict = {"probe_key": key}
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"koolclips preflight probe\n")
    except Exception as exc:  # noqa: BLE001
        return Check(
            "cloudcube_write_delete",
            False,
            f"cannot write a probe object in the cube ({_failure(exc)})",
            "the credentials may not write in the cube: uploads would fail; check the"
            " bucket policy and the CLOUDCUBE_* credentials",
            details,
        )
    try:
        answer = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key}], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        error = errors[0].get("Code", "error") if errors else None
    except Exception as exc:  # noqa: BLE001
        error = _failure(exc)
    if error is None:
        try:
            client.head_object(Bucket=bucket, Key=key)
            error = "the probe is still there after DeleteObjects"
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                error = _failure(exc)
    if error is None:
        return Check(
            "cloudcube_write_delete", True, "can write and delete in the cube", "", details
        )
    # Try once more the simplest way; if that fails too the probe stays behind.
    left_behind = True
    try:
        client.delete_object(Bucket=bucket, Key=key)
        client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as exc:
        left_behind = exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey")
    except Exception:  # noqa: BLE001, S110 - reported below as left behind
        pass
    details["probe_left_behind"] = left_behind
    note = f"; the probe object {key} was left behind, delete it by hand" if left_behind else ""
    return Check(
        "cloudcube_write_delete",
        False,
        f"cannot delete in the cube ({error}): the cleanup would delete nothing{note}",
        "the credentials or the bucket policy deny s3:DeleteObject in the cube: allow it"
        " on the cube's prefix (Cloudcube support), then run preflight again",
        details,
    )


# --- scheduler ------------------------------------------------------------------
def check_scheduler() -> list[Check]:
    try:
        status = scheduler_status()
    except Exception as exc:  # noqa: BLE001
        return [
            Check(
                "scheduler",
                False,
                f"cannot read the scheduler's state ({_failure(exc)})",
                "Redis must be reachable first (see the redis line)",
            )
        ]
    max_age = settings.HEALTH_SCHEDULER_MAX_AGE
    now = timezone.now()
    checks: list[Check] = []
    age = (now - status.last_tick_at).total_seconds() if status.last_tick_at else None
    holder = status.holder
    details = {
        "lock_held": status.lock_held,
        "holder": asdict(holder) if holder else None,
        "seconds_since_tick": round(age, 1) if age is not None else None,
        "max_age_seconds": max_age,
    }
    if status.lock_held and age is not None and age <= max_age:
        who = f"{holder.dyno} pid {holder.pid}" if holder else "unknown"
        checks.append(
            Check(
                "scheduler",
                True,
                f"lock held by {who}, last tick {age:.0f} s ago",
                details=details,
            )
        )
    else:
        why = (
            "no scheduler holds the lock"
            if not status.lock_held
            else f"no scheduler tick in the last {max_age} s"
        )
        checks.append(
            Check(
                "scheduler",
                False,
                f"{why}: nothing is being scheduled",
                "heroku ps:scale worker=1, then `heroku logs --dyno worker` should show"
                " `beat: Acquired lock`; `python manage.py beat_status` shows the lock",
                details,
            )
        )
    found = {entry.name: entry for entry in status.entries}
    for name in sorted(job.entry for job in registry.jobs()):
        entry = found.get(name)
        if entry is None or not entry.in_scheduler:
            checks.append(
                Check(
                    f"schedule:{name}",
                    False,
                    f"{name} is not in Redis (no scheduler has started since Redis was emptied)",
                    "start the worker (heroku ps:scale worker=1): its beat writes the schedule",
                )
            )
            continue
        when = entry.next_run_at
        if when is None:
            text = "next run: when the scheduler first sees it"
        else:
            late = " (overdue)" if when < now else ""
            text = f"next run {when:%Y-%m-%d %H:%M:%S} UTC{late}"
        checks.append(
            Check(
                f"schedule:{name}",
                True,
                f"{entry.schedule_words}; {text}",
                details={
                    "schedule": entry.schedule,
                    "next_run_at": when.isoformat() if when else None,
                    "last_run_at": entry.last_run_at.isoformat() if entry.last_run_at else None,
                },
            )
        )
    return checks


# --- Sentry ----------------------------------------------------------------------
def _envelope_url(dsn: str) -> tuple[str, str]:
    parts = urlsplit(dsn)
    path, _, project = parts.path.rstrip("/").rpartition("/")
    netloc = parts.netloc.rsplit("@", 1)[1]
    return f"{parts.scheme}://{netloc}{path}/api/{project}/envelope/", parts.username or ""


def check_sentry(send_test_event: bool = False) -> list[Check]:
    dsn = settings.SENTRY_DSN
    if not dsn:
        return [
            Check(
                "sentry",
                False,
                "SENTRY_DSN is not set: failed, partial and missed runs reach no one",
                "heroku config:set SENTRY_DSN=<the project's DSN> (Sentry: Project Settings,"
                " Client Keys)",
            )
        ]
    url, key = _envelope_url(dsn)
    # An envelope with one empty client report: accepted (200) only for a valid
    # key and project, and it creates no event.
    report = json.dumps({"timestamp": datetime.now(UTC).timestamp(), "discarded_events": []})
    body = (
        json.dumps({"dsn": dsn}) + "\n" + json.dumps({"type": "client_report"}) + "\n" + report
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is http(s) (settings check it)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-sentry-envelope",
            "X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key},"
            " sentry_client=koolclips-preflight/1",
        },
    )
    host = urlsplit(url).hostname
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:  # noqa: BLE001
        return [
            Check(
                "sentry",
                False,
                f"cannot reach Sentry at {host} ({_failure(exc)})",
                "check SENTRY_DSN (Sentry: Project Settings, Client Keys)",
            )
        ]
    if status != 200:
        return [
            Check(
                "sentry",
                False,
                f"Sentry at {host} refused the DSN (HTTP {status})",
                "the key or project in SENTRY_DSN is wrong or disabled: copy the DSN again"
                " from Project Settings, Client Keys",
            )
        ]
    checks = [Check("sentry", True, f"DSN accepted by {host}")]
    if send_test_event:
        checks.append(_send_test_event())
    return checks


def _send_test_event() -> Check:
    event_id = sentry_sdk.capture_message("koolclips preflight: test event", level="info")
    sentry_sdk.flush(timeout=TIMEOUT)
    if not event_id:
        return Check(
            "sentry_test_event",
            False,
            "the SDK did not send the test event (is Sentry initialised in this process?)",
            "check SENTRY_DSN",
        )
    return Check(
        "sentry_test_event", True, f"test event sent, id {event_id}", details={"event_id": event_id}
    )


# --- mail -------------------------------------------------------------------------
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def check_mail(send_test_mail: bool = False) -> list[Check]:
    checks: list[Check] = []
    admins = [address for _, address in settings.ADMINS]
    if admins:
        checks.append(
            Check("mail_admins", True, f"{len(admins)} admin address(es)", details={"to": admins})
        )
    else:
        checks.append(
            Check(
                "mail_admins",
                False,
                "DJANGO_ADMIN_EMAILS is empty: the weekly report and error mails go to no one",
                "heroku config:set DJANGO_ADMIN_EMAILS=ops@example.com",
            )
        )
    if settings.EMAIL_BACKEND != SMTP_BACKEND:
        checks.append(
            Check("smtp", True, f"not SMTP ({settings.EMAIL_BACKEND}): nothing to connect to")
        )
    else:
        checks.append(_check_smtp())
    if send_test_mail:
        checks.append(_send_test_mail(admins))
    return checks


def _check_smtp() -> Check:
    host, port = settings.EMAIL_HOST, settings.EMAIL_PORT
    where = f"{host}:{port}"
    steps = ["connect"]
    fix = (
        "check EMAIL_HOST and EMAIL_PORT (587 with EMAIL_USE_TLS=1 for STARTTLS), and"
        " EMAIL_HOST_USER / EMAIL_HOST_PASSWORD, against your mail provider's settings"
    )
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            steps.append("EHLO")
            code, _ = smtp.ehlo()
            if code != 250:
                raise smtplib.SMTPResponseException(code, b"EHLO refused")
            if settings.EMAIL_USE_TLS:
                steps.append("STARTTLS")
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.EMAIL_HOST_USER:
                steps.append("login")
                smtp.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
    except (OSError, smtplib.SMTPException) as exc:
        code = getattr(exc, "smtp_code", None)
        reason = f"{type(exc).__name__}{f' {code}' if code else ''}"
        return Check(
            "smtp",
            False,
            f"SMTP at {where} failed at {steps[-1]} ({reason})",
            fix,
            {"host": host, "port": port, "step": steps[-1]},
        )
    return Check(
        "smtp",
        True,
        f"SMTP at {where} answers ({', '.join(steps)})",
        details={"host": host, "port": port},
    )


def _send_test_mail(admins: list[str]) -> Check:
    if not admins:
        return Check(
            "mail_test", False, "no admins to send a test mail to", "set DJANGO_ADMIN_EMAILS"
        )
    try:
        mail_admins(
            "koolclips preflight: test mail",
            "This is a test mail from `manage.py preflight --send-test-mail`.",
            fail_silently=False,
        )
    except (OSError, smtplib.SMTPException) as exc:
        return Check(
            "mail_test", False, f"the test mail was not sent ({_failure(exc)})", "see the smtp line"
        )
    return Check("mail_test", True, f"test mail sent to {', '.join(admins)}")


def wait_for_scheduler(seconds: float, every: float = 2.0) -> bool:
    """Wait up to `seconds` for a scheduler to hold the lock and tick (a worker
    dyno takes a few seconds to start after a deploy). True once it does."""
    deadline = time.monotonic() + seconds
    while True:
        if check_scheduler()[0].ok:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # The last look is at the deadline itself, not up to `every` before it.
        time.sleep(min(every, remaining))


# --- all of it --------------------------------------------------------------------
def run_preflight(*, send_test_event: bool = False, send_test_mail: bool = False) -> list[Check]:
    """Every check, in the order an operator fixes things."""
    groups: list[Callable[[], list[Check]]] = [
        check_database,
        check_redis,
        check_cloudcube,
        check_scheduler,
        lambda: check_sentry(send_test_event),
        lambda: check_mail(send_test_mail),
    ]
    checks: list[Check] = []
    for group in groups:
        try:
            checks.extend(group())
        except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the rest
            checks.append(
                Check(
                    getattr(group, "__name__", "check"),
                    False,
                    f"the check itself failed ({_failure(exc)})",
                    "a bug in preflight: please report it",
                )
            )
    return checks
