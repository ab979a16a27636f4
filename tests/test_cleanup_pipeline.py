"""Deletes overlapped with listing (issue 13.1), over real HTTP through a latency proxy.

The proxy (devstack/latency_proxy.py) sits in front of the local S3 server and
makes each DeleteObjects slow, so several batches really are in flight at
once; it also counts what it saw. Pages and batches are BATCH (100) keys here,
not S3's 1,000 (tests/support/cleanup.py, `shrink_s3_pages`): every count
below is a tenth of what it would be, in the same number of pages, batches
and requests. A page then takes the client a few tens of ms to list and
parse, and a delete 1 s (real S3: a few hundred ms against pages of tens of
ms: the same shape).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from config.cloudcube import parse_cloudcube_url
from devstack.latency_proxy import S3LatencyProxy
from tests.support.cleanup import run_cleanup, shrink_s3_pages
from viral_clips.cleanup import CleanupInterrupted
from viral_clips.cleanup.pipeline import DeleteWindow
from viral_clips.models import CleanupRun, Clip
from viral_clips.s3 import cloudcube_client

pytestmark = pytest.mark.django_db

OLD = timedelta(days=30)
NEW = timedelta(days=1)
BATCH = 100  # keys a page and a DeleteObjects batch (S3's 1,000, shrunk)


@pytest.fixture
def slow_s3(s3_server, cube, settings, monkeypatch):
    """A client whose S3 is 'far away': 1 s a DeleteObjects of BATCH keys."""
    shrink_s3_pages(monkeypatch, BATCH)
    proxy = S3LatencyProxy(s3_server.port, list_ms=5, delete_ms_per_1000=10_000).start()
    settings.CLOUDCUBE = parse_cloudcube_url(proxy.cloudcube_url(cube.bucket, cube.name))
    yield proxy, cloudcube_client()
    proxy.stop()


def seed_expired(cube, count: int, body: bytes = b"x") -> list[str]:
    keys = [f"testcube/public/clips/{i:05d}.mp4" for i in range(count)]
    for key in keys:
        cube.put(key, body, age=OLD)
    return keys


def test_a_per_key_failure_in_one_in_flight_batch_is_counted_once_and_makes_the_run_partial(
    cube, s3_server, slow_s3
):
    proxy, client = slow_s3
    keys = seed_expired(cube, 4 * BATCH, b"k" * 3)
    refused = keys[120:127]  # inside the second batch

    with s3_server.refuse_deletes(refused, cube.bucket):
        report = run_cleanup(5, client=client, max_in_flight=4)

    assert proxy.max_deletes_in_flight >= 2  # the batches did overlap
    assert proxy.operations["DeleteObjects"] == 4
    assert cube.keys() == refused
    assert report.status == "partial"
    assert (report.error_count, report.files_deleted) == (7, 393)
    assert report.bytes_freed == 3 * 393
    assert sorted(e["key"] for e in report.errors) == refused
    run = CleanupRun.objects.get(pk=report.run_id)
    assert (run.status, run.error_count, run.files_deleted) == ("partial", 7, 393)


def test_a_whole_request_failure_mid_pipeline_fails_only_its_batch(cube, slow_s3):
    proxy, client = slow_s3
    keys = seed_expired(cube, 4 * BATCH)
    # The third DeleteObjects request is refused as a whole (not retried: 403).
    proxy.delete_verdict = lambda number, count: (
        (403, "AccessDenied", "policy says no") if number == 3 else None
    )

    report = run_cleanup(5, client=client, max_in_flight=4)

    left = cube.keys()
    assert len(left) == BATCH
    assert left in [keys[i : i + BATCH] for i in range(0, 4 * BATCH, BATCH)]  # exactly one batch
    assert report.status == "partial"
    assert (report.error_count, report.files_deleted) == (BATCH, 3 * BATCH)
    assert {e["code"] for e in report.errors} == {"AccessDenied"}
    assert proxy.operations["DeleteObjects"] == 4


def test_a_shutdown_with_batches_in_flight_accounts_for_every_one(cube, slow_s3):
    proxy, client = slow_s3
    seed_expired(cube, 8 * BATCH)
    Clip.objects.bulk_create(
        Clip(title=f"c{i}", file=f"clips/{i:05d}.mp4", size_bytes=1) for i in range(8 * BATCH)
    )
    Clip.objects.update(created_at=timezone.now() - OLD)
    stop_asked = []

    def should_stop() -> bool:
        # SIGTERM arrives once two requests are on the wire.
        if not stop_asked and proxy.operations["DeleteObjects"] >= 2:
            stop_asked.append(time.monotonic())
        return bool(stop_asked)

    with pytest.raises(CleanupInterrupted):
        run_cleanup(5, client=client, task_id="t-stop", should_stop=should_stop)
    stopped_after = time.monotonic() - stop_asked[0]

    sent = proxy.operations["DeleteObjects"]
    gone = 8 * BATCH - len(cube.keys())
    run = CleanupRun.objects.get(task_id="t-stop")
    assert run.status == "interrupted" and "interrupted" in run.detail
    assert 2 <= sent < 8  # it stopped sending, with work left
    assert run.files_deleted == gone == BATCH * sent  # every batch sent was counted
    assert Clip.objects.count() == 8 * BATCH - gone  # and its rows removed
    # Only the batches in flight were waited for (about one 1 s delete): inside
    # the worker's 20 s soft shutdown and Heroku's 30 s, with room for a busy machine.
    assert stopped_after < 15

    proxy.delete_ms_per_1000 = 0
    report = run_cleanup(5, client=client, task_id="t-stop")  # the redelivery
    assert (report.run_id, report.status, report.files_deleted) == (
        run.pk,
        "succeeded",
        8 * BATCH,
    )
    assert cube.keys() == [] and not Clip.objects.exists()


def test_a_clip_pinned_while_its_batch_waits_for_a_slot_keeps_its_file(cube, slow_s3):
    proxy, client = slow_s3
    keys = seed_expired(cube, 3 * BATCH)
    waiting = Clip.objects.create(title="waiting", file="clips/00150.mp4")
    Clip.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - OLD)
    seen_in_flight = []
    batched = threading.Event()

    # The first DeleteObjects stays in flight until the second batch is formed,
    # however slowly this machine lists (its latency alone raced the listing).
    def hold_the_first(number: int, count: int) -> None:
        if number == 1:
            batched.wait(60)

    proxy.delete_verdict = hold_the_first

    def before_batch(batch_keys):
        if "testcube/public/clips/00150.mp4" in batch_keys:
            # Listed, batched, and waiting: the first batch holds the only slot.
            seen_in_flight.append(proxy.deletes_in_flight)
            Clip.objects.filter(pk=waiting.pk).update(pinned=True)
            batched.set()

    report = run_cleanup(5, client=client, max_in_flight=1, before_batch=before_batch)

    assert seen_in_flight == [1]
    assert cube.keys() == ["testcube/public/clips/00150.mp4"]
    assert Clip.objects.filter(pk=waiting.pk, pinned=True).exists()
    assert (report.files_deleted, report.pinned_kept) == (3 * BATCH - 1, 1)
    assert len(keys) == 3 * BATCH


def test_slowdown_answers_are_retried_noted_by_the_window_and_the_run_completes(cube, slow_s3):
    proxy, client = slow_s3
    proxy.delete_ms_per_1000 = 5_000  # 0.5 s a batch
    seed_expired(cube, 4 * BATCH)
    # S3's throttling answer to the first two DeleteObjects; botocore retries them.
    proxy.delete_verdict = lambda number, count: (
        (503, "SlowDown", "Please reduce your request rate.") if number <= 2 else None
    )

    report = run_cleanup(5, client=client, max_in_flight=4)

    assert report.status == "succeeded"
    assert (report.files_deleted, report.error_count) == (4 * BATCH, 0)
    assert cube.keys() == []
    assert report.delete_throttles == 2  # each halved the window (see the AIMD test)
    assert proxy.operations["DeleteObjects"] == 4 + 2  # the two throttled ones, again


def test_the_delete_window_is_aimd():
    window = DeleteWindow(4)
    assert window.limit == 4
    window.throttled()
    assert window.limit == 2
    window.throttled()
    window.throttled()
    assert window.limit == 1  # never below one request
    window.succeeded()
    assert window.limit == 2  # one window's worth of successes adds one slot
    window.succeeded()
    assert window.limit == 2
    window.succeeded()
    assert window.limit == 3
    for _ in range(10):
        window.succeeded()
    assert window.limit == 4  # up to the maximum, no further


def test_dry_run_through_the_pipeline_counts_what_a_real_run_deletes(cube, slow_s3):
    proxy, client = slow_s3
    proxy.delete_ms_per_1000 = 0
    seed_expired(cube, 2 * BATCH + BATCH // 2, b"d" * 2)  # two batches and a leftover
    for i in (3, 170):
        clip = Clip.objects.create(title=f"p{i}", file=f"clips/{i:05d}.mp4", pinned=True)
        Clip.objects.filter(pk=clip.pk).update(created_at=timezone.now() - OLD)

    dry = run_cleanup(5, dry_run=True, client=client)
    assert proxy.operations["DeleteObjects"] == 0
    real = run_cleanup(5, client=client)

    fields = ("objects_scanned", "files_deleted", "bytes_freed", "clips_retained", "pinned_kept")
    assert [getattr(dry, f) for f in fields] == [getattr(real, f) for f in fields]
    assert (real.files_deleted, real.pinned_kept) == (2 * BATCH + BATCH // 2 - 2, 2)
