"""The cube's size and object count: measured by a scheduled job that lists the
cube over HTTP (paged), or taken from a finished cleanup run's scan; read from
the database, never listed inside a request."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from devstack.ports import free_port
from scheduling import registry
from tests.support.jobs import CUBE_STATS
from tests.support.runs import make_run
from viral_clips.cube_stats import cube_stats, measure_cube, refresh_cube_stats
from viral_clips.models import CleanupRun, CubeMeasurement
from viral_clips.s3 import cloudcube_client

MB = 1024 * 1024


class ListLog:
    """Counts ListObjectsV2 calls and holds the client to S3's 1,000-key page limit."""

    def __init__(self, client):
        self.pages: Counter[str] = Counter()
        client.meta.events.register("after-call.s3.ListObjectsV2", self._after_list)

    def _after_list(self, parsed, **kwargs):
        assert parsed.get("KeyCount", 0) <= 1000, "a list page over S3's 1,000 keys"
        self.pages["ListObjectsV2"] += 1


def test_measure_counts_every_object_in_pages_and_nothing_outside_the_cube(cube):
    server = cube.server
    for i in range(2500):
        server.put(cube.bucket, f"testcube/public/clips/{i:05d}.mp4", b"x" * (i % 7 + 1))
    server.put(cube.bucket, "testcube/scratch/private.bin", b"p" * 100)
    # Neighbours in the shared bucket: a sibling cube and the bare prefix.
    server.put(cube.bucket, "testcube2/public/other.mp4", b"n" * 1000)
    server.put(cube.bucket, "testcube", b"n" * 1000)
    client = cloudcube_client()
    log = ListLog(client)

    stats = measure_cube(client)

    expected_bytes = sum(i % 7 + 1 for i in range(2500)) + 100
    assert (stats.objects, stats.bytes) == (2501, expected_bytes)
    assert log.pages["ListObjectsV2"] == 3


def test_empty_cube_is_zero(cube):
    stats = measure_cube()
    assert (stats.objects, stats.bytes) == (0, 0)


@pytest.mark.django_db
def test_never_measured_is_none(cube):
    cube.put("testcube/public/a.mp4", b"a" * 10)  # there, but nobody measured it
    assert cube_stats() is None


@pytest.mark.django_db
def test_the_scheduled_job_stores_a_measurement_that_is_read_back_without_listing(cube):
    cube.put("testcube/public/a.mp4", b"a" * 10)
    from viral_clips.tasks import refresh_cube_stats as task

    assert task.apply().get() == {"objects": 1, "bytes": 10}
    [row] = CubeMeasurement.objects.all()
    assert (row.cube, row.object_count, row.total_bytes, row.source) == (
        "testcube",
        1,
        10,
        "scheduled measurement",
    )

    cube.put("testcube/public/b.mp4", b"b" * 20)
    stats = cube_stats()  # the stored figure, not a new listing
    assert (stats.objects, stats.bytes, stats.source) == (1, 10, "scheduled measurement")
    assert stats.measured_at == row.measured_at

    # A measurement from months ago goes when the next one is stored.
    ancient = CubeMeasurement.objects.create(
        measured_at=timezone.now() - timedelta(days=100),
        object_count=9,
        total_bytes=9,
        cube="testcube",
    )
    assert refresh_cube_stats().objects == 2
    assert cube_stats().objects == 2
    assert not CubeMeasurement.objects.filter(pk=ancient.pk).exists()
    assert CubeMeasurement.objects.count() == 2


@pytest.mark.django_db
def test_the_newest_of_the_measurement_and_a_finished_runs_scan_wins(cube):
    now = timezone.now()
    CubeMeasurement.objects.create(
        measured_at=now - timedelta(hours=5),
        object_count=100,
        total_bytes=100 * MB,
        cube="testcube",
    )
    # A run of the cube that finished its scan 2 h ago: listed 90, deleted 30.
    run = make_run(now - timedelta(hours=2), cube="testcube", objects_scanned=90,
                   bytes_scanned=90 * MB, files_deleted=30, bytes_freed=30 * MB)  # fmt: skip
    # Newer, but none of them counts: a failed run (it may have stopped
    # mid-listing), a run still going, another cube's run.
    make_run(now - timedelta(hours=1), cube="testcube", status=CleanupRun.Status.FAILED,
             objects_scanned=5)  # fmt: skip
    make_run(now - timedelta(minutes=30), cube="testcube", status=CleanupRun.Status.RUNNING,
             duration=None, objects_scanned=7)  # fmt: skip
    make_run(now - timedelta(minutes=10), cube="othercube", objects_scanned=1)

    stats = cube_stats()
    assert (stats.objects, stats.bytes) == (60, 60 * MB)
    assert stats.source == f"cleanup run #{run.pk}"
    # A dry run deleted nothing: its scan is the cube as it stands.
    dry = make_run(now - timedelta(minutes=5), cube="testcube", dry_run=True, objects_scanned=60,
                   bytes_scanned=60 * MB, files_deleted=30, bytes_freed=30 * MB)  # fmt: skip
    assert (cube_stats().objects, cube_stats().source) == (60, f"cleanup run #{dry.pk}")
    # As of before that run: the 5 h old measurement.
    assert cube_stats(as_of=now - timedelta(hours=3)).objects == 100


@pytest.mark.django_db
def test_reading_never_touches_s3(cube, monkeypatch):
    from config.cloudcube import parse_cloudcube_url

    CubeMeasurement.objects.create(
        measured_at=timezone.now(), object_count=3, total_bytes=30, cube="bucket-gone"
    )
    monkeypatch.setattr(
        settings,
        "CLOUDCUBE",
        parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bucket/bucket-gone"),
    )
    assert cube_stats().objects == 3  # the cube is unreachable; the figure is not


def test_beat_runs_the_measurement_every_cube_stats_interval():
    entry = registry.beat_entries()[CUBE_STATS.entry]
    assert entry["task"] == "viral_clips.tasks.refresh_cube_stats"
    assert settings.CUBE_STATS_INTERVAL == 6 * 3600
    assert entry["schedule"].run_every.total_seconds() == settings.CUBE_STATS_INTERVAL
