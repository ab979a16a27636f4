"""Settings for koolclips, all from environment variables.

Production-safe by default: DEBUG is off and a missing secret stops start-up.
`make run` and the tests supply their own local values (see devstack/ and
tests/settings.py). Every variable is listed in README.md and app.json.

Every variable is read through `env` (config/env.py): each has a type, a range
or form and a default. A bad value is collected, not raised on the spot, and
the end of this module raises one ConfigurationError naming every bad variable.
Adding a setting is one line, e.g. `CLEANUP_BATCH = env.int(<name>, 1000, min=1, max=1000)`.
"""

from __future__ import annotations

import os
import socket
import ssl
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.cloudcube import (
    CleanupPrefixesError,
    CloudcubeConfig,
    CloudcubeURLError,
    parse_cleanup_prefixes,
    parse_cloudcube_url,
)
from config.env import Env
from config.sentry import init_sentry
from scheduling.schedules import parse_schedule

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

# --- Core -------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        env.error(
            "DJANGO_SECRET_KEY",
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off"
            " (production); on Heroku app.json generates one.",
        )
    SECRET_KEY = "insecure-local-development-key-not-for-production"  # noqa: S105

_HOST = r"(\.?[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:\d+)?|\*"
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [".herokuapp.com"],
    item_pattern=_HOST,
    accepted="host names such as example.com, .herokuapp.com (with subdomains) or 127.0.0.1",
)
CSRF_TRUSTED_ORIGINS = env.list(
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    [],
    item_pattern=r"https?://[^\s/,]+",
    accepted="origins with their scheme, such as https://clips.example.com",
)

# Which dyno this process runs on ("worker.1", "web.2"); hostname locally.
DYNO = os.environ.get("DYNO") or socket.gethostname()
ON_HEROKU = bool(os.environ.get("DYNO"))
# Debug pages show settings and code to anyone who triggers an error: never on
# a dyno (the release phase, web and worker all refuse to start) unless asked.
DEBUG_ON_DYNO = env.bool("DJANGO_ALLOW_DEBUG_ON_DYNO", False)
env.check(
    not (DEBUG and ON_HEROKU and not DEBUG_ON_DYNO),
    "DJANGO_DEBUG",
    f"DJANGO_DEBUG is on on a Heroku dyno (DYNO={os.environ.get('DYNO')}): debug pages show"
    " settings and code to anyone. Turn it off (heroku config:set DJANGO_DEBUG=0), or set"
    " DJANGO_ALLOW_DEBUG_ON_DYNO=1 to run a dyno in debug mode on purpose.",
)

INSTALLED_APPS = [
    # Django's admin with strict list filters on every admin (config/admin_site.py).
    "config.admin_site.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "storages",
    "axes",
    "scheduling",
    "viral_clips",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# Heroku Postgres sets DATABASE_URL; locally a SQLite file.
# Only the engines whose drivers requirements.txt installs.
_DB_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")


def _database(url: str) -> dict:
    config = environ.Env.db_url_config(url)
    if config.get("ENGINE") not in _DB_ENGINES:
        raise ValueError(url)
    return config


DATABASES = {
    "default": env.parsed(
        "DATABASE_URL",
        _database(f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        _database,
        "postgres://user:password@host:5432/name (Heroku Postgres sets it) or sqlite:////path",
    ),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", 60, min=0, unit="seconds")
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write the same file: wait for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

# --- Login throttling (django-axes) ------------------------------------------
# Repeated wrong passwords lock out the client's IP address and, separately,
# the username (so IPs spread over many machines, or a forged
# X-Forwarded-For, get no more guesses at one account). A locked-out attempt
# is refused before any password hashing (no CPU spent on it). Staff see
# lockouts in the admin (Axes: access attempts); `manage.py axes_reset` (all),
# `axes_reset_username <name>` or `axes_reset_ip <ip>` lift them early.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, min=1, max=100)
AXES_COOLOFF_TIME = timedelta(
    minutes=env.int("LOGIN_LOCKOUT_MINUTES", 15, min=1, max=7 * 24 * 60, unit="minutes")
)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# Further attempts while locked out do not extend the lockout: it ends on time.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# No "AXES: BEGIN" line on stdout at every start (it would come before the JSON
# of `preflight --json`); failures and lockouts are still logged (warnings).
AXES_VERBOSE = False
# Proxies in front of the app that append to X-Forwarded-For: Heroku's router
# on a dyno, nothing locally (config/client_ip.py says why that is the rule).
PROXY_HOPS = env.int("DJANGO_PROXY_HOPS", 1 if ON_HEROKU else 0, min=0, max=5)
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise) and media (Cloudcube) -----------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

_LOCAL_CUBE = "http://127.0.0.1:5000/koolclips-local/localcube"
_CLOUDCUBE_URL = env.str("CLOUDCUBE_URL", _LOCAL_CUBE if DEBUG else "")
CLOUDCUBE_REGION = env.str(
    "CLOUDCUBE_REGION",
    "",
    pattern=r"[a-z]{2}(-[a-z]+)+-\d",
    accepted="an AWS region such as us-east-1 or eu-west-1, or empty (from the bucket name)",
)
try:
    CLOUDCUBE = parse_cloudcube_url(_CLOUDCUBE_URL, region=CLOUDCUBE_REGION or None)
except CloudcubeURLError as exc:
    env.error("CLOUDCUBE_URL", str(exc))
    CLOUDCUBE = CloudcubeConfig(
        bucket="koolclips-unconfigured", cube="unconfigured", endpoint_url=None, region="us-east-1"
    )
CLOUDCUBE_ACCESS_KEY_ID = env.str("CLOUDCUBE_ACCESS_KEY_ID", "local" if DEBUG else "")
CLOUDCUBE_SECRET_ACCESS_KEY = env.str("CLOUDCUBE_SECRET_ACCESS_KEY", "local" if DEBUG else "")
env.check(
    bool(CLOUDCUBE_ACCESS_KEY_ID and CLOUDCUBE_SECRET_ACCESS_KEY),
    "CLOUDCUBE_SECRET_ACCESS_KEY",
    "CLOUDCUBE_ACCESS_KEY_ID and CLOUDCUBE_SECRET_ACCESS_KEY must be set"
    " (the Cloudcube add-on sets them).",
)

# Uploads live under <cube>/public/ (publicly readable on Cloudcube), so URLs
# are plain, never signed: no credentials in any page.
STORAGES = {
    "default": {
        # S3Storage, with each object's Content-Type fixed by its name.
        "BACKEND": "viral_clips.storage.ClipStorage",
        "OPTIONS": {
            "bucket_name": CLOUDCUBE.bucket,
            "location": CLOUDCUBE.public_prefix.rstrip("/"),
            "access_key": CLOUDCUBE_ACCESS_KEY_ID,
            "secret_key": CLOUDCUBE_SECRET_ACCESS_KEY,
            "region_name": CLOUDCUBE.region,
            "endpoint_url": CLOUDCUBE.endpoint_url,
            "addressing_style": "path" if CLOUDCUBE.endpoint_url else "virtual",
            "signature_version": "s3v4",
            "querystring_auth": False,
            "file_overwrite": False,
            "default_acl": None,
        },
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

# --- Redis, Celery and the beat scheduler ----------------------------------
REDIS_URL = env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss"))
# Heroku Redis is rediss:// with a self-signed certificate.
REDIS_SSL_OPTIONS = (
    {"ssl_cert_reqs": ssl.CERT_NONE} if urlsplit(REDIS_URL).scheme == "rediss" else None
)
# Beat's loop and lock (the reasoning is with the beat settings below); read
# here because the Redis timeouts' defaults derive from the lock.
# 0 is not allowed: Celery reads it as "unset" and loops every 300 s.
CELERY_BEAT_MAX_LOOP_INTERVAL = env.int("BEAT_MAX_LOOP_INTERVAL", 5, min=1, max=300, unit="seconds")
CELERY_REDBEAT_LOCK_TIMEOUT = env.int("REDBEAT_LOCK_TIMEOUT", 25, min=2, unit="seconds")
# Every Redis client bounds every call: a black-holed connection (a dropped
# network path, a frozen server) raises after this long instead of blocking a
# beat, a worker or a web request for as long as TCP takes to give up (minutes).
# 5 s by default; a fifth of the beat lock when that is shorter (tests run a
# 5 s lock), so that a timed-out renewal still leaves the lock time to spare.
REDIS_SOCKET_TIMEOUT = env.float(
    "REDIS_SOCKET_TIMEOUT", min(5.0, max(0.5, CELERY_REDBEAT_LOCK_TIMEOUT / 5)), min=0.1, max=60.0
)
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", REDIS_SOCKET_TIMEOUT, min=0.1, max=60.0)
# Idle pooled connections are pinged before reuse after this long.
REDIS_HEALTH_CHECK_INTERVAL = env.int(
    "REDIS_HEALTH_CHECK_INTERVAL", 10, min=1, max=3600, unit="seconds"
)

# Redis connections Heroku Redis's plan allows (mini: 20); `manage.py preflight`
# compares what is in use against it. 0: unknown, not compared.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", 20, min=0)

CLEANUP_SCHEDULE = env.schedule("CLEANUP_SCHEDULE", "0 2 * * *")
# The wall clock each job's cron is read on (IANA names; the DST rule is
# scheduling/zoned.py's, written down in docs/scheduling.md).
CLEANUP_TIMEZONE = env.timezone("CLEANUP_TIMEZONE", "UTC")
# The same bounds the cleanup itself enforces (viral_clips/cleanup/run.py): a bad
# value stops start-up instead of failing every scheduled run.
CLEANUP_RETENTION_DAYS = env.int("CLEANUP_RETENTION_DAYS", 5, min=1, max=3650, unit="days")
# --- Cleanup scope and delete pipeline ---------------------------------------
# What the cleanup may expire: always the clips' upload folder (derived from
# Clip.file, viral_clips/cleanup/scope.py), plus these cube-relative folders.
# Unset: only the clips. Validated here so a typo stops start-up instead of
# widening (or breaking) what gets deleted.
CLEANUP_PREFIXES: tuple[str, ...] = ()
try:
    CLEANUP_PREFIXES = parse_cleanup_prefixes(env.get("CLEANUP_PREFIXES"))
except CleanupPrefixesError as exc:
    env.error("CLEANUP_PREFIXES", str(exc))
# DeleteObjects requests (1,000 keys each) in flight per prefix partition while
# listing goes on; a SlowDown answer halves it for a while
# (viral_clips/cleanup/pipeline.py). At most CLEANUP_DELETE_CONCURRENCY in all.
CLEANUP_DELETES_IN_FLIGHT = env.int("CLEANUP_DELETES_IN_FLIGHT", 4, min=1, max=16)
CLEANUP_DELETE_CONCURRENCY = env.int("CLEANUP_DELETE_CONCURRENCY", 48, min=1, max=256)
# Keys a second the cleanup deletes per prefix partition: S3's documented 3,500
# DELETEs a second per partitioned prefix (a DeleteObjects counts each key).
CLEANUP_DELETE_RATE = env.int("CLEANUP_DELETE_RATE", 3500, min=1, max=100_000, unit="keys/s")
# List pages fetched at once, each of another month prefix (clips/%Y/%m/).
CLEANUP_LIST_CONCURRENCY = env.int("CLEANUP_LIST_CONCURRENCY", 12, min=1, max=64)
# The weekly cleanup report to ADMINS (viral_clips.tasks.send_weekly_report).
WEEKLY_REPORT_SCHEDULE = env.schedule("WEEKLY_REPORT_SCHEDULE", "0 9 * * 1")
WEEKLY_REPORT_TIMEZONE = env.timezone("WEEKLY_REPORT_TIMEZONE", "UTC")
# How long run history (JobRun, CleanupRun) is kept; the pruning job keeps each
# job's last success and failure and its catch-up window whatever this says
# (scheduling/history.py). At least a week: the weekly report reads a week.
RUN_HISTORY_DAYS = env.int("RUN_HISTORY_DAYS", 400, min=7, max=36500, unit="days")
RUN_HISTORY_PRUNE_SCHEDULE = env.schedule("RUN_HISTORY_PRUNE_SCHEDULE", "40 3 * * *")
RUN_HISTORY_PRUNE_TIMEZONE = env.timezone("RUN_HISTORY_PRUNE_TIMEZONE", "UTC")

CELERY_BROKER_URL = REDIS_URL
# kombu's Redis transport, but a refused ack frees its prefetch slot (scheduling/broker.py).
CELERY_BROKER_TRANSPORT = "scheduling.broker:Transport"
CELERY_BROKER_USE_SSL = REDIS_SSL_OPTIONS
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # outcomes live in CleanupRun rows, not a result backend
# No result backend, so no nightly `celery.backend_cleanup` beat entry either.
CELERY_RESULT_EXPIRES = None
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# 8 CPUs are reported on a dyno: Celery's default would start 8 children and
# blow the 512 MB quota. Two is plenty for a daily cleanup. The Procfile passes
# no --concurrency: this setting is the only source.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", 2, min=1, max=32)
# gunicorn reads WEB_CONCURRENCY itself (the Procfile's --workers); checked here
# too so that the release phase stops a bad value before the web dyno starts.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", 2, min=1, max=32)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Heroku Redis mini allows 20 connections. Remote control (`celery inspect`,
# `celery control`) costs each worker two more (a pidbox channel and its
# pub/sub); nothing here uses it, and beat_status reads Redis directly.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False

# Late acknowledgement: a cleanup whose worker dies mid-run is delivered again
# (re-listing is idempotent: what was deleted is simply gone). A message not
# acknowledged within the visibility timeout is redelivered, so it must exceed
# the longest run (minutes; Sentry's monitor allows 60) - Redis's default, 1 h.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600, min=1, unit="seconds"),
    # A publish (beat sending a slot) or an ack on a dead connection raises
    # instead of hanging; the consumer's BRPOP is checked by kombu itself
    # (brpop_timeout + health_check_interval).
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL,
}
# Tests shorten the redelivery sweep to see a redelivery within seconds
# (kombu's defaults: every 10 s, throttled to 10 s).
_UNACKED_RESTORE = env.float("CELERY_UNACKED_RESTORE_INTERVAL", 0.0, min=0.0, max=3600.0)
if _UNACKED_RESTORE:
    CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_interval"] = _UNACKED_RESTORE
    CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_throttle"] = _UNACKED_RESTORE
# Heroku: SIGTERM to every process, SIGKILL 30 s later. The cleanup stops
# between batches on SIGTERM and is re-queued; what is still running after
# this many seconds is cancelled and re-queued (Celery's soft shutdown).
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 20.0

# Beat: RedBeat, with its lock held in Redis (scheduling/beat.py). The embedded
# beat of `worker --beat` takes its scheduler from here (the Procfile passes no
# --scheduler).
CELERY_BEAT_SCHEDULER = "scheduling.beat.KoolclipsScheduler"
CELERY_REDBEAT_REDIS_URL = REDIS_URL
CELERY_REDBEAT_REDIS_USE_SSL = REDIS_SSL_OPTIONS
CELERY_REDBEAT_KEY_PREFIX = env.str(
    "REDBEAT_KEY_PREFIX",
    "koolclips:redbeat:",
    pattern=r"[A-Za-z0-9:_.-]+",
    accepted="letters, digits and : _ . - (no spaces), such as koolclips:redbeat:",
)
# RedBeat's own client options (redbeat passes every key but its own -
# retry_period, sentinels, ... - to redis.Redis.from_url). redis-py 8 retries a
# timed-out command by default (measured: socket_timeout=1 through a black-holed
# proxy, ping() raised after 15.6 s): one immediate retry only (a pooled
# connection left stale by a Redis restart), so a call is bounded by about
# 2 x REDIS_SOCKET_TIMEOUT and beat's lock arithmetic (scheduling/beat.py) holds.
CELERY_REDBEAT_REDIS_OPTIONS: dict = {
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL,
    "retry": Retry(NoBackoff(), 1),
}
# Why 5 s and 25 s:
# - Beat wakes at least every loop interval and extends its lock to the full
#   lock timeout each time, so a healthy holder has 25 s of slack: it would
#   have to miss four ticks in a row (a 20 s stall) to lose the lock.
# - A holder that dies without releasing (SIGKILL, R15, a lost dyno) is
#   replaced when its lock expires: at most 25 s after its last tick, plus up
#   to one loop interval for a standby beat's next attempt (it retries every
#   loop interval): under 30 s. A clean stop (SIGTERM) releases the lock at
#   once and a standby takes over within one loop interval.
# - A 5 s loop costs one small Redis round trip a tick: nothing.
# Celery's defaults (300 s loop, RedBeat's 5 x loop = 25 min lock) would leave
# the app without a scheduler for up to 25 minutes after a crash.
env.check(
    CELERY_REDBEAT_LOCK_TIMEOUT >= 2 * CELERY_BEAT_MAX_LOOP_INTERVAL,
    "REDBEAT_LOCK_TIMEOUT",
    f"REDBEAT_LOCK_TIMEOUT={CELERY_REDBEAT_LOCK_TIMEOUT} must be at least twice"
    f" BEAT_MAX_LOOP_INTERVAL={CELERY_BEAT_MAX_LOOP_INTERVAL} (so at least"
    f" {2 * CELERY_BEAT_MAX_LOOP_INTERVAL}), or a healthy scheduler can lose its lock"
    " between two ticks",
)
# One timed-out lock renewal (and its one retry) must leave the lock time to spare.
env.check(
    CELERY_REDBEAT_LOCK_TIMEOUT > 2 * REDIS_SOCKET_TIMEOUT + CELERY_BEAT_MAX_LOOP_INTERVAL,
    "REDBEAT_LOCK_TIMEOUT",
    f"REDBEAT_LOCK_TIMEOUT={CELERY_REDBEAT_LOCK_TIMEOUT} must exceed 2 x REDIS_SOCKET_TIMEOUT"
    f" ({REDIS_SOCKET_TIMEOUT:g}) + BEAT_MAX_LOOP_INTERVAL ({CELERY_BEAT_MAX_LOOP_INTERVAL}),"
    " or one timed-out lock renewal can let the lock lapse",
)
# A running cleanup renews its lease (scheduling.models.JobLease) after every
# listed page (well under a second on S3); a worker killed mid-run frees the
# cleanup this long after its last renewal, and its redelivery takes over.
# (CLEANUP_RUN_GUARD_TTL_SECONDS is the variable's name before the ledger.)
CLEANUP_LEASE_SECONDS = env.int(
    "CLEANUP_LEASE_SECONDS",
    env.int("CLEANUP_RUN_GUARD_TTL_SECONDS", 120, min=1, max=86400, unit="seconds"),
    min=1,
    max=86400,
    unit="seconds",
)
# A scheduled slot deferred behind another run of its overlap group retries
# after this long until it can run. A countdown message outliving the
# visibility timeout is handed out again while it waits: keep it well below.
SCHEDULING_DEFER_RETRY_SECONDS = env.int(
    "SCHEDULING_DEFER_RETRY_SECONDS", 30, min=1, max=86400, unit="seconds"
)
env.check(
    SCHEDULING_DEFER_RETRY_SECONDS < CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"],
    "SCHEDULING_DEFER_RETRY_SECONDS",
    f"SCHEDULING_DEFER_RETRY_SECONDS={SCHEDULING_DEFER_RETRY_SECONDS} must be below"
    f" CELERY_VISIBILITY_TIMEOUT={CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout']}",
)

# --- Operator's view (dashboard and /health/) --------------------------------
# /health/ answers 503 when no scheduler has ticked for this long: a few loop
# intervals, so one slow tick is not an outage but a dead beat is caught.
HEALTH_SCHEDULER_MAX_AGE = env.int(
    "HEALTH_SCHEDULER_MAX_AGE", 3 * CELERY_BEAT_MAX_LOOP_INTERVAL, min=1, unit="seconds"
)
# /health/'s dependency checks are computed at most once per this many seconds
# across all web dynos (kept in Redis; in each process's memory while Redis is
# down): a flood of anonymous requests costs one S3 call per interval. 0: no
# cache; longer than a minute would hide an outage from the health check.
HEALTH_CACHE_SECONDS = env.int("HEALTH_CACHE_SECONDS", 5, min=0, max=60, unit="seconds")
# Anonymous callers of /health/ see up or down per part; staff, and callers
# sending "Authorization: Bearer <HEALTH_TOKEN>", see the details. Empty: staff only.
HEALTH_TOKEN = env.str(
    "HEALTH_TOKEN",
    "",
    pattern=r"[A-Za-z0-9._~+/=-]{32,256}",
    accepted="at least 32 letters, digits or ._~+/=- (a random token:"
    " python -c 'import secrets; print(secrets.token_urlsafe(32))'), or empty",
)
# Beat sends a tiny canary task this often (the `worker-canary` job); the worker
# that executes it records the time in Redis. /health/ is down when no canary ran
# for two intervals plus one beat loop: a worker that stopped consuming while its
# beat ticks is caught. At least every minute.
HEALTH_CANARY_INTERVAL = env.int("HEALTH_CANARY_INTERVAL", 30, min=1, max=60, unit="seconds")
HEALTH_CANARY_SCHEDULE = parse_schedule(f"{HEALTH_CANARY_INTERVAL}s", "HEALTH_CANARY_INTERVAL")
HEALTH_CANARY_MAX_AGE = 2 * HEALTH_CANARY_INTERVAL + CELERY_BEAT_MAX_LOOP_INTERVAL
# The cube's size and object count are measured by a scheduled job (never inside
# a request): this often (each measurement lists the whole cube), and by every
# finished cleanup run's scan.
CUBE_STATS_INTERVAL = env.int(
    "CUBE_STATS_INTERVAL", 6 * 3600, min=300, max=7 * 24 * 3600, unit="seconds"
)
CUBE_STATS_SCHEDULE = parse_schedule(f"{CUBE_STATS_INTERVAL}s", "CUBE_STATS_INTERVAL")

# --- Email ------------------------------------------------------------------
_EMAIL = r"[^@\s,<>]+@[^@\s,<>]+"
ADMINS = [
    ("koolclips admin", a)
    for a in env.list(
        "DJANGO_ADMIN_EMAILS", [], item_pattern=_EMAIL, accepted="addresses such as ops@example.com"
    )
]
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
    pattern=r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+",
    accepted="a dotted Python path such as django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str(
    "DJANGO_DEFAULT_FROM_EMAIL",
    "koolclips <noreply@localhost>",
    pattern=rf"{_EMAIL}|[^<>]*<{_EMAIL}>",
    accepted="an address, optionally with a name: koolclips <noreply@example.com>",
)
# For DJANGO_EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend.
EMAIL_FILE_PATH = env.str("DJANGO_EMAIL_FILE_PATH", "") or None
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.port("EMAIL_PORT", 587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", True)
# Django's default is no timeout: a black-holed SMTP server would hang the
# weekly report's task for ever.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", 10, min=1, max=300, unit="seconds")

# --- Security (production) --------------------------------------------------
# Heroku's router terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int(
    "DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, min=0, unit="seconds"
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Debug pages (DJANGO_DEBUG=1 only) mask the credentials inside URLs too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.debug.UrlCredentialsFilter"
DEFAULT_EXCEPTION_REPORTER = "config.debug.UrlCredentialsReporter"

# --- Logging: one line per record on stdout, readable in `heroku logs` ------
LOG_LEVEL = env.str(
    "DJANGO_LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
)
# Heroku's router stamps every line with the time; anywhere else (no DYNO) we do.
LOG_FORMAT = "%(levelname)s %(name)s [%(processName)s] %(message)s"
if not os.environ.get("DYNO"):
    LOG_FORMAT = "%(asctime)s " + LOG_FORMAT
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # One line per record, whatever a message carries (config/logfmt.py).
        "heroku": {
            "class": "config.logfmt.OneLineFormatter",
            "format": LOG_FORMAT,
            "datefmt": "%Y-%m-%d %H:%M:%S%z",
        },
    },
    "filters": {
        "shutdown_requeue": {"()": "scheduling.shutdown.ShutdownRequeueFilter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "heroku",
            "filters": ["shutdown_requeue"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Sentry -----------------------------------------------------------------
# Off without a DSN. config/sentry.py starts it for this process and for every
# process Celery forks later (pool children, the embedded beat child).
SENTRY_DSN = env.str(
    "SENTRY_DSN",
    "",
    pattern=r"https?://[^@/\s]+@[^/\s]+/(.+/)?\d+",
    accepted="a Sentry DSN https://<key>@<host>/<project id> (Project Settings,"
    " Client Keys), or empty for no Sentry",
)
SENTRY_ENVIRONMENT = env.str(
    "SENTRY_ENVIRONMENT",
    "production",
    pattern=r"[^\s/]{1,64}",
    accepted="a name without spaces or slashes, such as production or staging",
)
# Heroku sets HEROKU_SLUG_COMMIT once dyno metadata is enabled
# (`heroku labs:enable runtime-dyno-metadata`): each deploy is a release.
SENTRY_RELEASE = env.str("HEROKU_SLUG_COMMIT", "") or None
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0, min=0.0, max=1.0)

# Every bad value above, reported at once, before anything starts.
env.raise_errors()

init_sentry(
    dsn=SENTRY_DSN,
    environment=SENTRY_ENVIRONMENT,
    release=SENTRY_RELEASE,
    server_name=DYNO,
    traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    # Their values are replaced wherever they appear in what is sent.
    secrets=[
        SECRET_KEY,
        CLOUDCUBE_SECRET_ACCESS_KEY,
        CLOUDCUBE_ACCESS_KEY_ID,
        unquote(urlsplit(REDIS_URL).password or ""),
        DATABASES["default"].get("PASSWORD"),
        EMAIL_HOST_PASSWORD,
        HEALTH_TOKEN,
    ],
    # A refused SMTP login leaves base64 of "\0user\0password" in smtplib's locals.
    credential_pairs=[(EMAIL_HOST_USER, EMAIL_HOST_PASSWORD)],
)
