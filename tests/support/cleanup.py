"""Run the cleanup in-process the way tests need to: with their own S3 client
(one that counts requests or goes through a slow proxy), a stop or progress
callback, a pinning hook, or another delete window. None of these belong to
the production signature (`run_cleanup(retention, dry_run=, trigger=, context=)`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from unittest import mock

from django.test import override_settings

from scheduling.models import JobRun
from viral_clips import cleanup as _cleanup
from viral_clips import s3
from viral_clips.cleanup.books import CleanupReport
from viral_clips.cleanup.pipeline import DeletePipeline
from viral_clips.models import CleanupRun


@dataclass
class TestContext:
    """A RunContext made of callbacks."""

    __test__ = False  # not a pytest test class

    task_id: str = ""
    run: JobRun | None = None
    on_progress: Callable[[int, int], None] | None = None
    stop: Callable[[], bool] = field(default=lambda: False)
    on_fence: Callable[[], None] | None = None

    def progress(self, scanned: int, deleted: int) -> None:
        if self.on_progress is not None:
            self.on_progress(scanned, deleted)

    def should_stop(self) -> bool:
        return self.stop()

    def fence(self) -> None:
        if self.on_fence is not None:
            self.on_fence()


def run_cleanup(
    retention_days: object = 5,
    *,
    dry_run: bool = False,
    trigger: str = CleanupRun.Trigger.SCHEDULE,
    client=None,
    task_id: str = "",
    job_run: JobRun | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_in_flight: int | None = None,
    before_batch: Callable[[list[str]], None] | None = None,
) -> CleanupReport:
    context = TestContext(
        task_id=task_id,
        run=job_run,
        on_progress=progress,
        stop=should_stop or (lambda: False),
    )
    with ExitStack() as stack:
        if client is not None:
            stack.enter_context(mock.patch.object(s3, "cloudcube_client", lambda **kw: client))
        if max_in_flight is not None:
            stack.enter_context(override_settings(CLEANUP_DELETES_IN_FLIGHT=max_in_flight))
        if before_batch is not None:
            stack.enter_context(
                mock.patch.object(
                    DeletePipeline, "batch_formed", lambda self, keys: before_batch(keys)
                )
            )
        return _cleanup.run_cleanup(
            retention_days, dry_run=dry_run, trigger=trigger, context=context
        )


def shrink_s3_pages(monkeypatch, size: int) -> int:
    """List pages and DeleteObjects batches of `size` keys instead of S3's 1,000.

    For tests whose subject is the shape of a run (several pages, several
    batches, several in flight, one refused), not S3's page size: the same
    shape on a tenth of the keys costs the machine a tenth of the CPU (moto
    builds, and botocore parses, every key of every page and batch). The real
    1,000 is exercised by tests/test_cleanup.py and the process tests, which
    cannot be patched."""
    from viral_clips.cleanup import pipeline, scope

    monkeypatch.setattr(scope, "S3_MAX_KEYS_PER_PAGE", size)
    monkeypatch.setattr(pipeline, "S3_MAX_KEYS_PER_DELETE", size)
    return size
