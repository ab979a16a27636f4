"""config/env.py: each reader accepts its forms, names the variable, shows the
value (never a secret), says what is accepted, and collects every error."""

import pytest

from config.env import ConfigurationError, Env


def read(method: str, environ: dict, *args, **kwargs):
    env = Env(environ)
    value = getattr(env, method)(*args, **kwargs)
    return value, env.errors


@pytest.mark.parametrize(
    ("raw", "value"),
    [("5", 5), (" 12 ", 12), ("1", 1), ("3650", 3650)],
)
def test_int_accepts_whole_numbers_in_range(raw, value):
    got, errors = read("int", {"N": raw}, "N", 5, min=1, max=3650)
    assert (got, errors) == (value, [])


@pytest.mark.parametrize("raw", ["five", "1.5", "", "  ", "0", "99999", "-3", "1e3", "0x10"])
def test_int_rejects_with_name_value_and_range(raw):
    got, errors = read("int", {"CLEANUP_RETENTION_DAYS": raw}, "CLEANUP_RETENTION_DAYS", 5, min=1,
                       max=3650, unit="days")  # fmt: skip
    assert got == 5  # the default, so the other settings can still be checked
    assert len(errors) == 1
    message = errors[0]
    assert message.startswith("CLEANUP_RETENTION_DAYS")
    assert "from 1 to 3650 days" in message
    if raw.strip():
        assert repr(raw) in message
    else:
        assert "is empty" in message


def test_unset_variable_gives_the_default():
    assert read("int", {}, "N", 7, min=1) == (7, [])
    assert read("bool", {}, "B", True) == (True, [])
    assert read("float", {}, "F", 0.5, min=0, max=1) == (0.5, [])


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("false", False),
     ("no", False), ("off", False)],
)  # fmt: skip
def test_bool_words(raw, value):
    assert read("bool", {"B": raw}, "B", not value) == (value, [])


@pytest.mark.parametrize("raw", ["enabled", "2", "", "y", "truee"])
def test_bool_rejects_anything_else(raw):
    got, errors = read("bool", {"EMAIL_USE_TLS": raw}, "EMAIL_USE_TLS", True)
    assert got is True
    assert "EMAIL_USE_TLS" in errors[0] and "true/false, 1/0, yes/no, on/off" in errors[0]


@pytest.mark.parametrize("raw", ["half", "1.5", "-0.1", "nan", "inf", ""])
def test_float_rejects_words_and_out_of_range(raw):
    got, errors = read("float", {"SENTRY_TRACES_SAMPLE_RATE": raw}, "SENTRY_TRACES_SAMPLE_RATE",
                       0.0, min=0.0, max=1.0)  # fmt: skip
    assert got == 0.0
    assert "SENTRY_TRACES_SAMPLE_RATE" in errors[0] and "from 0.0 to 1.0" in errors[0]


def test_float_accepts_decimals():
    assert read("float", {"R": "0.25"}, "R", 0.0, min=0.0, max=1.0) == (0.25, [])
    assert read("float", {"R": "1"}, "R", 0.0, min=0.0, max=1.0) == (1.0, [])


@pytest.mark.parametrize("raw", ["0", "65536", "smtp", "-1"])
def test_port(raw):
    got, errors = read("port", {"EMAIL_PORT": raw}, "EMAIL_PORT", 587)
    assert got == 587 and "EMAIL_PORT" in errors[0] and "from 1 to 65535" in errors[0]


@pytest.mark.parametrize(
    "raw", ["0 2 * * 1,", "0,, * * * *", "- 2 * * *", "99999999999999d", "0 26 * * *", "daily"]
)
def test_schedule_every_parser_failure_is_collected(raw):
    env = Env({"CLEANUP_SCHEDULE": raw})
    parsed = env.schedule("CLEANUP_SCHEDULE", "0 2 * * *")
    assert parsed.raw == "0 2 * * *"
    assert len(env.errors) == 1
    assert env.errors[0].startswith(f"CLEANUP_SCHEDULE={raw!r}")
    assert "cron" in env.errors[0] and "interval" in env.errors[0]


def test_list_items_are_checked():
    got, errors = read("list", {"A": "a@x.org, b@y.org,"}, "A", [], item_pattern=r"[^@]+@[^@]+")
    assert (got, errors) == (["a@x.org", "b@y.org"], [])
    got, errors = read("list", {"A": "a@x.org,nobody"}, "A", [], item_pattern=r"[^@]+@[^@]+",
                       accepted="addresses")  # fmt: skip
    assert got == [] and "A=" in errors[0] and "'nobody'" in errors[0] and "addresses" in errors[0]


def test_str_choices_and_pattern():
    assert read("str", {"L": "warning"}, "L", "INFO", choices=("INFO", "WARNING")) == (
        "WARNING",
        [],
    )
    got, errors = read("str", {"L": "loud"}, "L", "INFO", choices=("INFO", "WARNING"))
    assert got == "INFO" and "one of INFO, WARNING" in errors[0]
    got, errors = read("str", {"P": "a b"}, "P", "x", pattern=r"\S+", accepted="no spaces")
    assert got == "x" and errors == ["P='a b' is not valid; expected no spaces"]


def test_parsed_reader_for_new_settings():
    def prefixes(text: str) -> list[str]:
        items = [p.strip() for p in text.split(",")]
        if not all(p.endswith("/") for p in items):
            raise ValueError(text)
        return items

    assert read("parsed", {"P": "a/,b/"}, "P", ["x/"], prefixes, "folders ending in /") == (
        ["a/", "b/"],
        [],
    )
    got, errors = read("parsed", {"P": "a"}, "P", ["x/"], prefixes, "folders ending in /")
    assert got == ["x/"] and errors == ["P='a' is not valid; expected folders ending in /"]


@pytest.mark.parametrize(
    ("name", "raw", "secret"),
    [
        ("REDIS_URL", "rediss://:hunter2-secret-pw@ec2-host:notaport", "hunter2-secret-pw"),
        ("SENTRY_DSN", "https://abcdef0123456789@o1.ingest.sentry.io/notanumber",
         "abcdef0123456789"),
        ("EMAIL_HOST_PASSWORD", "pass word with spaces", "pass word with spaces"),
        ("DJANGO_SECRET_KEY", "short secret", "short secret"),
    ],
)  # fmt: skip
def test_secrets_are_never_shown(name, raw, secret):
    env = Env({name: raw})
    if name == "REDIS_URL":
        env.url(name, "redis://x", schemes=("redis", "rediss"))
    else:
        env.str(name, "", pattern=r"https?://[^@/\s]+@[^/\s]+/\d+|\S{80,}", accepted="a DSN")
    assert len(env.errors) == 1
    assert name in env.errors[0]
    assert secret not in env.errors[0]


def test_all_errors_are_raised_at_once():
    env = Env({"A": "five", "B": "half", "C": "maybe"})
    env.int("A", 1, min=1)
    env.float("B", 0.0, min=0, max=1)
    env.bool("C", False)
    env.check(False, "D", "D must be at least twice E")
    with pytest.raises(ConfigurationError) as info:
        env.raise_errors()
    text = str(info.value)
    assert text.startswith("4 settings are wrong:")
    for name in ("A=", "B=", "C=", "D must"):
        assert name in text
    assert len(info.value.errors) == 4


def test_no_errors_no_exception():
    env = Env({"A": "3"})
    env.int("A", 1, min=1)
    env.raise_errors()
