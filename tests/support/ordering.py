"""The order tests are handed to the xdist workers: the long ones first.

A parallel run ends when its last worker does, so a five-minute test picked up
near the end decides the wall time. Tests marked `processes` go first, longest
first by the durations recorded in tests/durations.json (a new test that is
not there yet counts as a long one); in-process tests follow, in
pytest-django's groups (plain db tests before transactional ones, then the
rest) and longest first within each, filling the workers' tails. `make
durations` rewrites the file from a full run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
UNKNOWN_PROCESS_TEST = 20.0  # seconds: a new process test is assumed long
KEEP_ABOVE = 0.5  # seconds: shorter tests are not worth a line in the file


def load() -> dict[str, float]:
    try:
        return json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}


def _django_group(item: pytest.Item) -> int:
    """pytest-django's order: 0 plain db tests, 1 transactional ones, 2 no db."""
    fixtures = set(getattr(item, "fixturenames", ()))
    marker = item.get_closest_marker("django_db")
    if (marker and marker.kwargs.get("transaction")) or "transactional_db" in fixtures:
        return 1
    return 0 if marker or "db" in fixtures else 2


def sort(items: list[pytest.Item]) -> None:
    """Process tests first, longest first; then the rest by pytest-django's
    groups, longest first within each (the sort is stable: ties keep their order)."""
    known = load()

    def key(item: pytest.Item) -> tuple[int, int, float]:
        if item.get_closest_marker("processes"):
            return (0, 0, -known.get(item.nodeid, UNKNOWN_PROCESS_TEST))
        return (1, _django_group(item), -known.get(item.nodeid, 0.0))

    items.sort(key=key)


class Recorder:
    """With --store-durations: write every test's setup+call+teardown time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if getattr(session.config, "workerinput", None) is not None:
            return  # an xdist worker: the controller sees every report and writes
        kept = {k: round(v, 1) for k, v in sorted(self.seconds.items()) if v >= KEEP_ABOVE}
        DURATIONS.write_text(json.dumps(kept, indent=0) + "\n")
