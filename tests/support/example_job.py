"""A job a test declares itself, as a developer would add one: its setting
(EXAMPLE_JOB_SCHEDULE, tests/settings.py) and one `@periodic_job`.

Declaring it registers it; it is taken out of the registry again at once, so
that only the tests that ask for it (`registered()`) see a fourth job: the
worker processes other tests start never know it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from scheduling import registry
from scheduling.execution import current_execution
from scheduling.periodic import periodic_job
from scheduling.registry import OVERLAP_DEFER


@periodic_job(
    entry="example-job",
    schedule_setting="EXAMPLE_JOB_SCHEDULE",
    kwargs_settings={"greeting": "EXAMPLE_JOB_GREETING"},
    overlap=OVERLAP_DEFER,
    catch_up=timedelta(hours=1),
    checkin_margin_minutes=2,
    max_runtime_minutes=5,
    lease=30,
)
def example_job(greeting: str = "hello") -> dict:
    """Say hello into the run ledger."""
    current_execution().checkpoint(said=greeting)
    return {"status": "succeeded", "said": greeting}


EXAMPLE = example_job.job
registry.unregister(EXAMPLE.entry)


@contextmanager
def registered() -> Iterator[registry.Job]:
    registry.register(EXAMPLE)
    try:
        yield EXAMPLE
    finally:
        registry.unregister(EXAMPLE.entry)
