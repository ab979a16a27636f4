from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from devstack.redis_server import RedisServer
from devstack.s3_server import LocalS3Server
from tests.settings import TEST_BUCKET, TEST_CUBE
from tests.support import cpu, ordering, process_guard
from tests.support.database import test_database_url


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help="write each test's duration to tests/durations.json (make durations)",
    )
    parser.addoption(
        "--cpu-report",
        metavar="FILE",
        help="append each test's CPU seconds (its own and its processes') to FILE, "
        "and print the costliest (tests/support/cpu.py)",
    )
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="only the tests that use the test database (CI's PostgreSQL pass)",
    )


def pytest_configure(config: pytest.Config) -> None:
    process_guard.install()
    if config.getoption("--store-durations"):
        config.pluginmanager.register(ordering.Recorder(), "koolclips-durations")
    if config.getoption("--cpu-report"):
        controller = getattr(config, "workerinput", None) is None
        report = cpu.CPUReport(config.getoption("--cpu-report"), controller)
        config.pluginmanager.register(report, "koolclips-cpu")


# A test can reach the test database only through these (pytest-django blocks
# any other access, and processes get its URL from worker_env, which needs
# transactional_db): the others cannot tell SQLite from PostgreSQL.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "live_server"}


def uses_database(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(item.get_closest_marker("django_db") or fixtures & DATABASE_FIXTURES)


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--database-tests-only"):
        others = [item for item in items if not uses_database(item)]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if uses_database(item)]
    ordering.sort(items)


def _guarded(item: pytest.Item):
    if item.get_closest_marker("processes"):
        return (yield)
    with process_guard.watching(item.nodeid):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    return (yield from _guarded(item))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's own redis-server, on the port tests/settings.py reserved
    (one per xdist worker). Started once, so by no test in particular."""
    with process_guard.allowed():
        server = RedisServer(port=int(os.environ["KOOLCLIPS_TEST_REDIS_PORT"])).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that restart, freeze or flush it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer):
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    server = LocalS3Server(port=int(os.environ["KOOLCLIPS_TEST_S3_PORT"])).start()
    server.create_bucket(TEST_BUCKET)
    yield server
    server.stop()


@dataclass
class Cube:
    """The test's cube in the local S3 server, emptied before each test."""

    server: LocalS3Server
    bucket: str = TEST_BUCKET
    name: str = TEST_CUBE

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    def put(self, key: str, body: bytes = b"x", age: timedelta | None = None) -> str:
        """Store `key` (a full key, e.g. 'testcube/public/a.mp4'), `age` old."""
        when = datetime.now(UTC) - age if age is not None else None
        self.server.put(self.bucket, key, body, when)
        return key

    def keys(self) -> list[str]:
        return self.server.keys(self.bucket)


@pytest.fixture
def cube(s3_server: LocalS3Server) -> Cube:
    s3_server.clear(TEST_BUCKET)
    return Cube(server=s3_server)


@pytest.fixture
def worker_env(transactional_db, redis_server, s3_server) -> dict[str, str]:
    """Environment for real celery/gunicorn processes: production settings
    module, pointed at this test run's database, redis-server and S3 server."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=test_database_url(),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(autouse=True)
def _fresh_health_cache():
    """/health/'s cached result must not carry over from one test to the next."""
    from viral_clips.health import LOCK_KEY, RESULT_KEY, forget_cached_health

    def forget() -> None:
        forget_cached_health()
        port = os.environ["KOOLCLIPS_TEST_REDIS_PORT"]
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis(
                port=int(port),
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0),
            )
            client.delete(RESULT_KEY, LOCK_KEY)
            client.close()
        except Exception:  # noqa: BLE001, S110 - no redis-server in this test: nothing cached
            pass

    forget()
    yield
    forget()
