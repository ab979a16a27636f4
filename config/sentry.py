"""Sentry for every process of the app, initialised in one place.

`init_sentry()` is called once, at the end of config/settings.py, so every
process that loads Django's settings reports: each gunicorn worker (gunicorn
forks its workers first and each imports the app itself; were `--preload` ever
added, a `post_fork` hook would have to call `reinit_in_forked_child`), the
Celery worker's main process, `manage.py` commands (the release phase's migrate).

Celery forks its pool children and the embedded beat child *after* settings are
loaded. A forked child inherits the client but not its transport's sending
thread, and it shares the parent's open HTTP connections (the beat child even
closes every inherited file descriptor behind the client's back). So each forked
Celery child starts a client of its own (`worker_process_init`, `beat_init`)
before it sends anything, and the beat child flushes what it queued before it
exits - also when it dies of an exception, which it reports first: a worker
whose embedded beat died keeps running but schedules nothing.

Nothing secret leaves: `send_default_pii` stays off (the SDK's default; setting
it explicitly is deprecated in sentry-sdk 2.75), the SDK's key-name scrubber is
extended with this app's names and made recursive, and the values of the
secrets themselves - URL-encoded and base64 forms included, and the
user:password pairs SMTP AUTH PLAIN/LOGIN and Basic auth encode - plus
signed-URL signatures and credentials, are replaced in every event,
breadcrumb, transaction and check-in.

With SENTRY_DSN empty nothing is initialised and nothing is logged.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from multiprocessing.util import Finalize
from typing import Any
from urllib.parse import quote, quote_plus

import sentry_sdk
from celery.signals import beat_init, worker_process_init
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

logger = logging.getLogger(__name__)

FILTERED = "[Filtered]"
# Shorter values are not scrubbed by value: replacing every "local" or "abc" in
# an event would garble it. Real secrets (generated keys, Heroku's passwords)
# are far longer; `check --deploy` already wants 50 characters for SECRET_KEY.
MIN_SECRET_LENGTH = 8

# Dict keys whose values are always replaced, on top of the SDK's own list
# (password, secret, token, authorization, cookie, ...). Matched exactly,
# case-insensitively, at any depth.
EXTRA_DENYLIST = [
    "secret_key",
    "django_secret_key",
    "aws_secret_access_key",
    "secret_access_key",
    "cloudcube_secret_access_key",
    "aws_session_token",
    "x-amz-security-token",
    "x_amz_security_token",
    "x-amz-signature",
    "x-amz-credential",
    "signature",
    "credential",
    "redis_url",
    "broker_url",
    "database_url",
    "email_host_password",
    "csrfmiddlewaretoken",
    "dsn",
    "sentry_dsn",
]

# Tasks that are bookkeeping, not jobs: nothing of them is sent (no
# transaction, no event). The worker canary runs every 30 s; /health/ reports
# what it finds. (Beat check-ins are off for every task: monitor_beat_tasks=False.)
QUIET_TASKS = frozenset({"scheduling.tasks.canary"})

# Query parameters (and Authorization header parts) of signed S3 URLs: their
# values are replaced, the rest of the URL (host, key) stays readable.
_SIGNED_PARAM_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])"
    r"(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|Signature|Credential)"
    r"=([^&\s\"'<>,;#]+)"
)


def base64_forms(secret: str) -> set[str]:
    """What of `secret` shows in any base64 text that encodes it (SMTP AUTH, Basic auth).

    Standard and URL-safe alphabets, padded and not. Inside a longer encoded
    string the secret starts at one of three byte alignments; for each, the
    characters that depend on the secret's bytes alone are found whatever comes
    before or after it (a character mixing the secret's bits with a neighbour's
    is left: it cannot give the secret away).
    """
    data = secret.encode()
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        first = -(-8 * offset // 6)  # the first character made only of the secret's bits
        last = 8 * (offset + len(data)) // 6  # one past the last such character
        core = encoded[first:last]
        if offset == 0:
            forms.update({encoded, encoded.rstrip("=")})
        forms.add(core)
    urlsafe = {form.translate(_URLSAFE) for form in forms}
    return {form for form in forms | urlsafe if len(form) >= MIN_SECRET_LENGTH}


_URLSAFE = str.maketrans("+/", "-_")


class SecretScrubber:
    """Replaces secret values and signed-URL parameters anywhere in a payload."""

    def __init__(
        self,
        secrets: Iterable[str | None],
        credential_pairs: Iterable[tuple[str | None, str | None]] = (),
    ):
        values: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                values.add(secret)
        for user, password in credential_pairs:
            if user and password and len(password) >= MIN_SECRET_LENGTH:
                # HTTP Basic / URL userinfo, and SMTP AUTH PLAIN's "\0user\0password"
                # (with and without its leading authorisation identity).
                values.update(
                    {f"{user}:{password}", f"\0{user}\0{password}", f"{user}\0{password}"}
                )
        variants: set[str] = set()
        for value in values:
            variants.update({value, quote(value, safe=""), quote_plus(value)})
            variants.update(base64_forms(value))
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(variants, key=len, reverse=True)
        self._secrets_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub_text(self, text: str) -> str:
        if self._secrets_re is not None:
            text = self._secrets_re.sub(FILTERED, text)
        return _SIGNED_PARAM_RE.sub(lambda m: f"{m.group(1)}={FILTERED}", text)

    def scrub(self, value: Any) -> Any:
        """A copy of `value` (dicts, lists, strings, at any depth) with secrets replaced."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {
                (self.scrub_text(k) if isinstance(k, str) else k): self.scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value

    # Hooks for sentry_sdk.init. Events reach before_send already serialised to
    # plain JSON values (and the SDK truncates no value: max_value_length stays
    # unset), so a secret inside a repr() or a message is still whole here.
    def before_send(self, event: dict, hint: dict) -> dict | None:
        if event.get("transaction") in QUIET_TASKS:
            return None
        return self.scrub(event)

    def before_send_transaction(self, event: dict, hint: dict) -> dict | None:
        if event.get("transaction") in QUIET_TASKS:
            return None
        return self.scrub(event)

    def before_breadcrumb(self, crumb: dict, hint: dict) -> dict:
        return self.scrub(crumb)


# Set by init_sentry(); a forked Celery child starts its own client from it.
_build_options: Callable[[], dict] | None = None
_initialised_pid: int | None = None
# Clients replaced in forked children are kept, never garbage-collected: their
# connection pools hold sockets whose descriptor numbers the child may already
# have reused (the beat child closes them all), and closing those would close
# somebody else's connection.
_retired_clients: list = []


def init_sentry(
    *,
    dsn: str,
    environment: str,
    release: str | None,
    server_name: str | None,
    traces_sample_rate: float = 0.0,
    secrets: Iterable[str | None] = (),
    credential_pairs: Iterable[tuple[str | None, str | None]] = (),
) -> bool:
    """Initialise sentry-sdk for this process; False (and nothing at all) without a DSN."""
    global _build_options, _initialised_pid
    if not dsn:
        return False
    scrubber = SecretScrubber(secrets, credential_pairs)

    def build_options() -> dict:
        return {
            "dsn": dsn,
            "environment": environment,
            "release": release,
            "server_name": server_name,
            "integrations": [
                DjangoIntegration(),
                # The cleanup's cron monitor is sent by scheduling.crons,
                # with a schedule, margin and runtime of its own (the SDK's beat
                # monitoring sets neither and skips sub-minute intervals).
                CeleryIntegration(monitor_beat_tasks=False),
                RedisIntegration(),
                # INFO and up become breadcrumbs, ERROR and up events.
                LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            ],
            "traces_sample_rate": traces_sample_rate or None,
            "event_scrubber": EventScrubber(
                denylist=DEFAULT_DENYLIST + EXTRA_DENYLIST, recursive=True
            ),
            "before_send": scrubber.before_send,
            "before_send_transaction": scrubber.before_send_transaction,
            "before_breadcrumb": scrubber.before_breadcrumb,
        }

    sentry_sdk.init(**build_options())
    _build_options = build_options
    # Every process Celery forks later starts a client of its own.
    worker_process_init.connect(_init_pool_child, weak=False, dispatch_uid="koolclips-sentry")
    beat_init.connect(_init_beat_child, weak=False, dispatch_uid="koolclips-sentry")
    _initialised_pid = os.getpid()
    return True


def reinit_in_forked_child(process: str) -> bool:
    """Give a process forked after init_sentry() a client (and transport) of its own.

    Does nothing when Sentry is off or this is the process that initialised it.
    """
    global _initialised_pid
    if _build_options is None or _initialised_pid == os.getpid():
        return False
    _retired_clients.append(sentry_sdk.get_client())
    sentry_sdk.init(**_build_options())
    _initialised_pid = os.getpid()
    sentry_sdk.get_global_scope().set_tag("process", process)
    return True


def _init_pool_child(**kwargs) -> None:
    reinit_in_forked_child("celery-pool")


def _init_beat_child(sender=None, **kwargs) -> None:
    if reinit_in_forked_child("celery-beat"):
        # billiard ends the beat child with os._exit(): no atexit handler runs,
        # but its exit function runs these finalizers, also after an exception.
        Finalize(None, _report_beat_exit, exitpriority=100)


def _report_beat_exit() -> None:
    """In the embedded beat child, on its way out: report a crash, deliver everything."""
    exc = sys.exc_info()[1]
    if exc is not None and not isinstance(exc, SystemExit | KeyboardInterrupt):
        # The scheduler loop raised (lock lost, Redis gone): this worker keeps
        # running but schedules nothing until it restarts.
        with sentry_sdk.new_scope() as scope:
            scope.set_level("fatal")
            scope.set_context(
                "embedded_beat",
                {
                    "what": "The beat child of this worker stopped; this worker no"
                    " longer schedules the cleanup.",
                    "what_to_do": "Restart the worker dyno (heroku ps:restart worker)."
                    " Another worker dyno running --beat takes the lock meanwhile.",
                },
            )
            sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=5)
