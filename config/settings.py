"""Settings for koolclips, all from environment variables.

Production-safe by default: DEBUG is off and a missing secret stops start-up.
`make run` and the tests supply their own local values (see scripts/ and
tests/settings.py). Every variable is listed in README.md and app.json.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config.cloudcube import CloudcubeURLError, parse_cloudcube_url
from config.sentry import init_sentry
from scheduling.schedules import ScheduleError, parse_schedule

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# --- Core -------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off"
            " (production); on Heroku app.json generates one."
        )
    SECRET_KEY = "insecure-local-development-key-not-for-production"  # noqa: S105

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [".herokuapp.com"],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Which dyno this process runs on ("worker.1", "web.2"); hostname locally.
DYNO = os.environ.get("DYNO") or socket.gethostname()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "storages",
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
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise) and media (Cloudcube) -----------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

try:
    CLOUDCUBE = parse_cloudcube_url(
        env.str(
            "CLOUDCUBE_URL",
            default="" if not DEBUG else "http://127.0.0.1:5000/koolclips-local/localcube",
        ),
        region=env.str("CLOUDCUBE_REGION", default="") or None,
    )
except CloudcubeURLError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
CLOUDCUBE_ACCESS_KEY_ID = env.str("CLOUDCUBE_ACCESS_KEY_ID", default="local" if DEBUG else "")
CLOUDCUBE_SECRET_ACCESS_KEY = env.str(
    "CLOUDCUBE_SECRET_ACCESS_KEY", default="local" if DEBUG else ""
)
if not (CLOUDCUBE_ACCESS_KEY_ID and CLOUDCUBE_SECRET_ACCESS_KEY):
    raise ImproperlyConfigured(
        "CLOUDCUBE_ACCESS_KEY_ID and CLOUDCUBE_SECRET_ACCESS_KEY must be set"
        " (the Cloudcube add-on sets them)."
    )

# Uploads live under <cube>/public/ (publicly readable on Cloudcube), so URLs
# are plain, never signed: no credentials in any page.
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
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
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Heroku Redis is rediss:// with a self-signed certificate.
REDIS_SSL_OPTIONS = (
    {"ssl_cert_reqs": ssl.CERT_NONE} if urlsplit(REDIS_URL).scheme == "rediss" else None
)

try:
    CLEANUP_SCHEDULE = parse_schedule(env.str("CLEANUP_SCHEDULE", default="0 2 * * *"))
except ScheduleError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
CLEANUP_RETENTION_DAYS = env.int("CLEANUP_RETENTION_DAYS", default=5)
# The weekly cleanup report to ADMINS (viral_clips.tasks.send_weekly_report).
try:
    WEEKLY_REPORT_SCHEDULE = parse_schedule(
        env.str("WEEKLY_REPORT_SCHEDULE", default="0 9 * * 1"), variable="WEEKLY_REPORT_SCHEDULE"
    )
except ScheduleError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

CELERY_BROKER_URL = REDIS_URL
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
# blow the 512 MB quota. Two is plenty for a daily cleanup.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
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
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Heroku: SIGTERM to every process, SIGKILL 30 s later. The cleanup stops
# between batches on SIGTERM and is re-queued; what is still running after
# this many seconds is cancelled and re-queued (Celery's soft shutdown).
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 20.0

# Beat: RedBeat, with its lock held in Redis (scheduling/beat.py).
CELERY_BEAT_SCHEDULER = "scheduling.beat.KoolclipsScheduler"
CELERY_REDBEAT_REDIS_URL = REDIS_URL
CELERY_REDBEAT_REDIS_USE_SSL = REDIS_SSL_OPTIONS
CELERY_REDBEAT_KEY_PREFIX = env.str("REDBEAT_KEY_PREFIX", default="koolclips:redbeat:")
# Its own (empty) client options rather than the broker's transport options.
CELERY_REDBEAT_REDIS_OPTIONS: dict = {}
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
CELERY_BEAT_MAX_LOOP_INTERVAL = env.int("BEAT_MAX_LOOP_INTERVAL", default=5)
CELERY_REDBEAT_LOCK_TIMEOUT = env.int("REDBEAT_LOCK_TIMEOUT", default=25)
if CELERY_REDBEAT_LOCK_TIMEOUT < 2 * CELERY_BEAT_MAX_LOOP_INTERVAL:
    raise ImproperlyConfigured(
        "REDBEAT_LOCK_TIMEOUT must be at least twice BEAT_MAX_LOOP_INTERVAL,"
        " or a healthy scheduler can lose its lock between two ticks"
    )
# A scheduled cleanup slot, once claimed, is remembered this long in Redis
# (scheduling/guard.py). A running cleanup renews its overlap guard after
# every listed page (well under a second on S3); a worker killed mid-run
# leaves it to expire after this long.
CLEANUP_SLOT_TTL_SECONDS = 7 * 24 * 3600
CLEANUP_RUN_GUARD_TTL_SECONDS = env.int("CLEANUP_RUN_GUARD_TTL_SECONDS", default=120)

# --- Operator's view (dashboard and /health/) --------------------------------
# /health/ answers 503 when no scheduler has ticked for this long: a few loop
# intervals, so one slow tick is not an outage but a dead beat is caught.
HEALTH_SCHEDULER_MAX_AGE = env.int(
    "HEALTH_SCHEDULER_MAX_AGE", default=3 * CELERY_BEAT_MAX_LOOP_INTERVAL
)


# --- Health, worker canary and cube measurements (issues 10.5 and 13.2) -------
# New settings of the health branch, validated here; to be converted to the
# typed settings readers at merge.
def _bounded_int(name: str, default: int, low: int, high: int, why: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ImproperlyConfigured(
            f"{name} must be a whole number of seconds from {low} to {high} ({why}), got {raw!r}"
        )
    return value


# /health/'s dependency checks are computed at most once per this many seconds
# across all web dynos (kept in Redis; in each process's memory while Redis is
# down): a flood of anonymous requests costs one S3 call per interval. 0: no cache.
HEALTH_CACHE_SECONDS = _bounded_int(
    "HEALTH_CACHE_SECONDS", 5, 0, 60, "longer hides an outage from the health check"
)
# Beat sends a tiny canary task this often; the worker that executes it records
# the time in Redis. /health/ is down when no canary ran for two intervals plus
# one beat loop: a worker that stopped consuming while its beat ticks is caught.
HEALTH_CANARY_INTERVAL = _bounded_int(
    "HEALTH_CANARY_INTERVAL", 30, 1, 60, "the canary must run at least every minute"
)
HEALTH_CANARY_MAX_AGE = 2 * HEALTH_CANARY_INTERVAL + CELERY_BEAT_MAX_LOOP_INTERVAL
# The cube's size and object count are measured by a scheduled job (never inside
# a request): this often, and by every finished cleanup run's full scan.
CUBE_STATS_INTERVAL = _bounded_int(
    "CUBE_STATS_INTERVAL", 6 * 3600, 300, 7 * 24 * 3600, "each measurement lists the whole cube"
)

# --- Email ------------------------------------------------------------------
ADMINS = [("koolclips admin", a) for a in env.list("DJANGO_ADMIN_EMAILS", default=[])]
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="koolclips <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)

# --- Security (production) --------------------------------------------------
# Heroku's router terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Logging: one line per record on stdout, readable in `heroku logs` ------
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "heroku": {"format": "%(levelname)s %(name)s [%(processName)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "heroku",
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
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
# Heroku sets HEROKU_SLUG_COMMIT once dyno metadata is enabled
# (`heroku labs:enable runtime-dyno-metadata`): each deploy is a release.
SENTRY_RELEASE = env.str("HEROKU_SLUG_COMMIT", default="") or None
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if not 0.0 <= SENTRY_TRACES_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured(
        f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, got {SENTRY_TRACES_SAMPLE_RATE}"
    )
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
    ],
    # A refused SMTP login leaves base64 of "\0user\0password" in smtplib's locals.
    credential_pairs=[(EMAIL_HOST_USER, EMAIL_HOST_PASSWORD)],
)
