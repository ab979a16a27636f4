"""Read and validate environment variables, collecting every error.

config/settings.py reads each variable through one `Env` reader, one line per
variable::

    env = Env()
    RETENTION = env.int("CLEANUP_RETENTION_DAYS", 5, min=1, max=3650)
    ...
    env.raise_errors()  # one ConfigurationError listing every bad value

A bad value never raises on the spot: the reader records an error that names
the variable, shows the value given (redacted for secrets) and says what is
accepted, and returns the default so the rest of the settings can still be
read and checked. So a user with three typos hears about all three at once.

`ConfigurationError` is an `ImproperlyConfigured`; the entry points (manage.py,
config/celery.py, config/wsgi.py) print it as one short message without a
traceback and exit non-zero (`exit_on_configuration_error`).
"""

from __future__ import annotations

import builtins
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.core.exceptions import ImproperlyConfigured

from scheduling.schedules import ParsedSchedule, ScheduleError, parse_schedule

T = TypeVar("T")

# sysexits.h's EX_CONFIG: "configuration error".
EXIT_CONFIG = 78
MESSAGE_PREFIX = "koolclips: configuration error: "

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
BOOL_ACCEPTED = "one of true/false, 1/0, yes/no, on/off"

# In the zone database's listing, but not a place's zone.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})

# A variable whose name contains one of these is never shown, whatever it holds.
SECRET_NAME_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "DSN", "API_KEY")
REDACTED = "<redacted>"


class ConfigurationError(ImproperlyConfigured):
    """One or more settings are wrong. `errors` holds one sentence per problem."""

    def __init__(self, errors: builtins.list[str]):
        self.errors = builtins.list(errors)
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.errors) == 1:
            return self.errors[0]
        lines = "\n".join(f"  - {e}" for e in self.errors)
        return f"{len(self.errors)} settings are wrong:\n{lines}"

    def __str__(self) -> str:
        return self._text()


def is_secret_name(name: str) -> bool:
    return any(marker in name.upper() for marker in SECRET_NAME_MARKERS)


def redact_url(url: str) -> str:
    """The URL with its user-info (user and password) replaced: rediss://***@host:6380."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"***@{host}").geturl()


def shown_value(name: str, raw: str) -> str:
    """How a given value appears in an error message: quoted, or redacted."""
    if is_secret_name(name):
        return REDACTED
    if "://" in raw and "@" in raw:
        return repr(redact_url(raw))
    return repr(raw)


class Env:
    """Typed readers over an environment mapping; errors are collected in `errors`."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ
        self.errors: builtins.list[str] = []

    # --- reporting ----------------------------------------------------------
    def error(self, name: str, message: str, raw: str | None = None) -> None:
        """Record a problem with `name`. Any secret in the message is replaced."""
        raw = self.environ.get(name) if raw is None else raw
        for secret, replacement in _secret_parts(name, raw or ""):
            message = message.replace(secret, replacement)
        self.errors.append(message)

    def invalid(self, name: str, raw: str, accepted: str) -> None:
        """The standard sentence: NAME='value' is not valid; expected <accepted>."""
        what = "is empty" if raw.strip() == "" else "is not valid"
        shown = "" if raw.strip() == "" else f"={shown_value(name, raw)}"
        self.error(name, f"{name}{shown} {what}; expected {accepted}", raw)

    def check(self, ok: bool, name: str, message: str) -> bool:
        """A rule across variables (the lock at least twice the loop, ...)."""
        if not ok:
            self.error(name, message)
        return ok

    def raise_errors(self) -> None:
        if self.errors:
            raise ConfigurationError(self.errors)

    # --- readers ------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """The raw value, or None when the variable is not set."""
        return self.environ.get(name)

    def parsed(self, name: str, default: T, parse: Callable[[str], T], accepted: str) -> T:
        """The general reader: `parse(text)` raises ValueError for a bad value."""
        raw = self.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError, OverflowError):
            self.invalid(name, raw, accepted)
            return default

    def str(
        self,
        name: str,
        default: builtins.str = "",
        *,
        pattern: builtins.str | None = None,
        accepted: builtins.str | None = None,
        choices: tuple[builtins.str, ...] | None = None,
        allow_empty: bool = True,
    ) -> builtins.str:
        """Text as given (surrounding spaces removed). `pattern` is a full-match
        regular expression, `choices` a case-insensitive list (returned as listed)."""
        raw = self.get(name)
        if raw is None:
            return default
        value = raw.strip()
        if value == "" and not allow_empty:
            self.invalid(name, raw, accepted or "a non-empty value")
            return default
        if choices is not None:
            for choice in choices:
                if value.lower() == choice.lower():
                    return choice
            self.invalid(name, raw, accepted or "one of " + ", ".join(choices))
            return default
        if pattern is not None and value and not re.fullmatch(pattern, value):
            self.invalid(name, raw, accepted or f"text matching {pattern}")
            return default
        return value

    def int(
        self, name: str, default: builtins.int, *, min: builtins.int | None = None,
        max: builtins.int | None = None, unit: builtins.str = "",
    ) -> builtins.int:  # fmt: skip
        """A whole number (no sign tricks, no decimals) within [min, max]."""
        accepted = "a whole number" + _range_words(min, max, unit)
        raw = self.get(name)
        if raw is None:
            return default
        text = raw.strip()
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            self.invalid(name, raw, f"{accepted} (default {default})")
            return default
        value = builtins.int(text)
        if (min is not None and value < min) or (max is not None and value > max):
            self.invalid(name, raw, accepted)
            return default
        return value

    def float(
        self, name: str, default: builtins.float, *, min: builtins.float | None = None,
        max: builtins.float | None = None,
    ) -> builtins.float:  # fmt: skip
        """A decimal number within [min, max] (no inf, no nan)."""
        accepted = "a number" + _range_words(min, max)
        raw = self.get(name)
        if raw is None:
            return default
        text = raw.strip()
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            self.invalid(name, raw, f"{accepted} (default {default})")
            return default
        value = builtins.float(text)
        if (min is not None and value < min) or (max is not None and value > max):
            self.invalid(name, raw, accepted)
            return default
        return value

    def bool(self, name: str, default: builtins.bool) -> builtins.bool:
        raw = self.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self.invalid(name, raw, BOOL_ACCEPTED)
        return default

    def port(self, name: str, default: builtins.int) -> builtins.int:
        return self.int(name, default, min=1, max=65535)

    def list(
        self,
        name: str,
        default: builtins.list[builtins.str],
        *,
        item_pattern: builtins.str | None = None,
        accepted: builtins.str | None = None,
    ) -> builtins.list[builtins.str]:
        """Comma-separated items (spaces and empty items dropped); each must match
        `item_pattern` when given."""
        raw = self.get(name)
        if raw is None:
            return builtins.list(default)
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if item_pattern is not None:
            bad = [item for item in items if not re.fullmatch(item_pattern, item)]
            if bad:
                what = accepted or f"items matching {item_pattern}"
                self.error(
                    name,
                    f"{name}={shown_value(name, raw)} is not valid ({', '.join(map(repr, bad))});"
                    f" expected a comma-separated list of {what}",
                    raw,
                )
                return builtins.list(default)
        return items

    def schedule(self, name: str, default: builtins.str) -> ParsedSchedule:
        """A cron expression in UTC or an interval (scheduling/schedules.py)."""
        raw = self.get(name)
        if raw is not None:
            try:
                return parse_schedule(raw, variable=name)
            except ScheduleError as exc:
                self.error(name, str(exc), raw)
        return parse_schedule(default, variable=name)

    def timezone(self, name: str, default: builtins.str = "UTC") -> builtins.str:
        """An IANA time zone name (Europe/Berlin), checked against the zone
        database: a typo stops start-up instead of scheduling on UTC."""
        raw = self.get(name)
        if raw is None:
            return default
        value = raw.strip()
        if value.upper() == "UTC":
            return "UTC"
        # Names of the database's files, not of places: the machine's own zone
        # ("localtime") differs between a laptop and a dyno.
        if value in available_timezones() and value not in _NOT_ZONES:
            try:
                ZoneInfo(value)
                return value
            except (ZoneInfoNotFoundError, ValueError):
                pass
        self.invalid(
            name,
            raw,
            "an IANA time zone name such as Europe/Berlin, America/New_York or UTC",
        )
        return default

    def url(
        self, name: str, default: builtins.str, *, schemes: tuple[builtins.str, ...]
    ) -> builtins.str:
        """A URL with one of `schemes` and a host (its password never shown)."""
        raw = self.get(name)
        if raw is None:
            return default
        value = raw.strip()
        accepted = f"a URL {' or '.join(s + '://' for s in schemes)}host[:port]..."
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            self.invalid(name, raw, accepted)
            return default
        if parts.scheme not in schemes or not parts.hostname:
            self.invalid(name, raw, accepted)
            return default
        return value


def _secret_parts(name: str, raw: str) -> list[tuple[str, str]]:
    """Substrings of `raw` that must not appear in a message, and their stand-ins."""
    parts: list[tuple[str, str]] = []
    if not raw.strip():
        return parts
    if is_secret_name(name):
        parts += [(raw, REDACTED), (raw.strip(), REDACTED)]
    elif "://" in raw and "@" in raw:
        parts.append((raw.strip(), redact_url(raw.strip())))
        try:
            password = urlsplit(raw.strip()).password
        except ValueError:
            password = None
        if password:
            parts += [(password, REDACTED), (unquote(password), REDACTED)]
    return [(secret, stand_in) for secret, stand_in in parts if len(secret) >= 3]


def _range_words(low: object, high: object, unit: str = "") -> str:
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f" from {low} to {high}{unit}"
    if low is not None:
        return f" of at least {low}{unit}"
    if high is not None:
        return f" of at most {high}{unit}"
    return ""


# --- the entry points' side -------------------------------------------------
def configuration_message(exc: ImproperlyConfigured) -> str:
    return MESSAGE_PREFIX + str(exc)


def exit_for_configuration_error(exc: ImproperlyConfigured, code: int = EXIT_CONFIG) -> NoReturn:
    """Print the error as a short message on stderr and exit with `code`."""
    sys.stderr.write(configuration_message(exc) + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


@contextmanager
def exit_on_configuration_error(code: int = EXIT_CONFIG) -> Iterator[None]:
    """Around an entry point: a ConfigurationError becomes a message and an exit;
    any other exception keeps its traceback."""
    try:
        yield
    except Exception as exc:
        found = find_configuration_error(exc)
        if found is None:
            raise
        exit_for_configuration_error(found, code)


def find_configuration_error(exc: BaseException | None) -> ConfigurationError | None:
    """The ConfigurationError behind `exc` (itself, or what it was raised from)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, ConfigurationError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def install_excepthook() -> None:
    """Print an uncaught ConfigurationError as one message instead of a traceback.

    For `celery -A config ...`: Celery loads Django's settings lazily, deep inside
    its command-line parsing, and lets the exception escape to the interpreter.
    Any other uncaught exception goes to the previous hook (its traceback).
    """
    previous = sys.excepthook
    if getattr(previous, "_koolclips", False):
        return

    def hook(kind, value, traceback) -> None:
        found = find_configuration_error(value)
        if found is None:
            previous(kind, value, traceback)
            return
        sys.stderr.write(configuration_message(found) + "\n")
        sys.stderr.flush()

    hook._koolclips = True  # type: ignore[attr-defined]
    sys.excepthook = hook
