"""The cube's size and object count: listed over HTTP, paged, cached in Redis."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings

from devstack.ports import free_port
from viral_clips.cube_stats import CACHE_KEY, cube_stats, forget_cube_stats, measure_cube
from viral_clips.s3 import cloudcube_client


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
    assert stats.cached is False


def test_empty_cube_is_zero(cube):
    stats = measure_cube()
    assert (stats.objects, stats.bytes) == (0, 0)


@pytest.mark.django_db
def test_cached_for_the_configured_time_and_dropped_after_a_run(cube, redis_client):
    cube.put("testcube/public/a.mp4", b"a" * 10)
    first = cube_stats()
    assert (first.objects, first.bytes, first.cached) == (1, 10, False)
    assert 0 < redis_client.ttl(CACHE_KEY) <= settings.CUBE_STATS_CACHE_SECONDS

    cube.put("testcube/public/b.mp4", b"b" * 20)
    second = cube_stats()
    assert (second.objects, second.bytes, second.cached) == (1, 10, True)
    assert second.measured_at == first.measured_at

    forget_cube_stats()
    third = cube_stats()
    assert (third.objects, third.bytes, third.cached) == (2, 30, False)

    # A caller that needs it fresh gets it fresh.
    cube.put("testcube/public/c.mp4", b"c" * 5)
    assert cube_stats(max_age=0).objects == 3


def test_redis_down_costs_only_the_cache(cube, monkeypatch):
    cube.put("testcube/public/a.mp4", b"a" * 10)
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    stats = cube_stats()
    assert (stats.objects, stats.bytes, stats.cached) == (1, 10, False)
    forget_cube_stats()  # logs, does not raise


def test_cube_unreachable_raises(cube, redis_client, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from config.cloudcube import parse_cloudcube_url

    monkeypatch.setattr(
        settings, "CLOUDCUBE", parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bucket/cube")
    )
    with pytest.raises(EndpointConnectionError):
        cube_stats()
