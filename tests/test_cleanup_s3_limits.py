"""The cleanup at S3's real limits (issue 19): SlowDown never costs a key, and a
cube's month folders are listed in parallel, every key exactly once.

Both go through the latency proxy (devstack/latency_proxy.py) in front of the
local S3 server, with S3's request rates modelled (devstack/s3_throttle.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.cloudcube import parse_cloudcube_url
from devstack.latency_proxy import S3LatencyProxy
from devstack.s3_throttle import S3Throttle
from tests.support.cleanup import run_cleanup, shrink_s3_pages
from viral_clips.models import CleanupRun, Clip
from viral_clips.s3 import cloudcube_client

ROOT = Path(__file__).resolve().parent.parent
OLD = timedelta(days=30)
NEW = timedelta(days=1)
CLIPS = "testcube/public/clips/"


@pytest.fixture
def throttling_proxy(s3_server, cube):
    proxy = S3LatencyProxy(
        s3_server.port, list_ms=20, delete_ms_per_1000=200, throttle=S3Throttle()
    ).start()
    yield proxy
    proxy.stop()


class SlowDownStorm:
    """Every other batch (in the order they first arrive) is answered SlowDown
    `times` times in a row: more than botocore's five attempts."""

    def __init__(self, times: int = 6):
        self.times = times
        self.order: list[str] = []
        self.refused: Counter[str] = Counter()

    def __call__(self, keys: list[str]):
        first = min(keys)
        if first not in self.order:
            self.order.append(first)
        if self.order.index(first) % 2 == 0 and self.refused[first] < self.times:
            self.refused[first] += 1
            return (503, "SlowDown", "Please reduce your request rate.")
        return None


@pytest.mark.processes
def test_a_run_that_meets_slowdown_on_half_of_its_batches_succeeds_with_every_expired_key_gone(
    worker_env, cube, throttling_proxy
):
    proxy = throttling_proxy
    expired = [f"{CLIPS}2026/{m:02d}/{i:04d}.mp4" for m in (1, 2, 3) for i in range(2000)]
    recent = [f"{CLIPS}2026/{m:02d}/new-{i:03d}.mp4" for m in (1, 2, 3) for i in range(100)]
    for key in expired:
        cube.put(key, age=OLD)
    for key in recent:
        cube.put(key, age=NEW)
    storm = proxy.delete_keys_verdict = SlowDownStorm()
    env = dict(
        worker_env, CLOUDCUBE_URL=proxy.cloudcube_url(cube.bucket, cube.name), PYTHONPATH=str(ROOT)
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "cloudcube_cleanup", "--retention-days", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    batches = len(storm.order)
    assert batches >= 6
    assert len(storm.refused) * 2 >= batches  # half of the batches met SlowDown,
    assert all(count == storm.times for count in storm.refused.values())  # over and over
    assert proxy.slowdowns["DeleteObjects"] >= 6 * len(storm.refused)
    assert cube.keys() == sorted(recent)  # every expired key gone, nothing else
    run = CleanupRun.objects.get()
    assert (run.status, run.files_deleted, run.error_count) == ("succeeded", 6000, 0)
    assert "Status: succeeded" in result.stdout


@pytest.mark.django_db
def test_three_month_folders_and_keys_directly_under_clips_are_listed_once_each_in_parallel(
    cube, settings, throttling_proxy
):
    proxy = throttling_proxy
    settings.CLOUDCUBE = parse_cloudcube_url(proxy.cloudcube_url(cube.bucket, cube.name))
    settings.CLEANUP_LIST_CONCURRENCY = 4
    months = [f"{CLIPS}2026/{m:02d}/" for m in (1, 2, 3)]
    keys = [f"{month}{i:04d}.mp4" for month in months for i in range(700)]
    keys += [f"{CLIPS}direct-{i:02d}.mp4" for i in range(30)]  # directly under clips/
    keys += [f"{CLIPS}odd/folder/x-{i}.mp4" for i in range(3)]  # an odd folder
    for key in keys:
        cube.put(key, age=OLD)
    cube.put(f"{CLIPS}2026/02/keep-recent.mp4", age=NEW)
    pinned = Clip.objects.create(title="pinned", file="clips/2026/03/0005.mp4", pinned=True)
    # Rows whose files are gone: in a month, directly under clips/, in a folder
    # that no longer holds any key (S3 does not return it): all reconciled.
    orphans = [
        Clip.objects.create(title=name, file=name)
        for name in ("clips/2026/02/gone.mp4", "clips/gone.mp4", "clips/2025/07/gone.mp4")
    ]
    Clip.objects.filter(pk__in=[c.pk for c in [pinned, *orphans]]).update(
        created_at=timezone.now() - OLD
    )
    client = cloudcube_client()
    listed: Counter[str] = Counter()
    requests: list[tuple[str | None, str | None]] = []

    def seen(http_response, parsed, model, **kwargs):
        listed.update(obj["Key"] for obj in parsed.get("Contents", ()))

    def sent(params, **kwargs):
        query = params.get("query_string", {})
        requests.append((query.get("prefix"), query.get("delimiter")))

    client.meta.events.register("after-call.s3.ListObjectsV2", seen)
    client.meta.events.register("before-call.s3.ListObjectsV2", sent)

    report = run_cleanup(5, client=client)

    everything = [*keys, f"{CLIPS}2026/02/keep-recent.mp4"]
    assert sorted(listed) == sorted(everything)
    assert set(listed.values()) == {1}  # every key exactly once
    assert report.objects_scanned == len(everything)
    # The scope's first page (all of January, part of February), then one
    # Delimiter split per folder level, then each folder left as its own chain.
    prefixes = {prefix for prefix, delimiter in requests if delimiter is None}
    assert prefixes == {CLIPS, months[1], months[2], f"{CLIPS}odd/folder/"}
    splits = [prefix for prefix, delimiter in requests if delimiter == "/"]
    assert sorted(splits) == [CLIPS, f"{CLIPS}2026/", f"{CLIPS}odd/"]
    assert cube.keys() == sorted([f"{CLIPS}2026/02/keep-recent.mp4", f"{CLIPS}2026/03/0005.mp4"])
    assert (report.status, report.files_deleted, report.pinned_kept) == (
        "succeeded",
        len(keys) - 1,
        1,
    )
    assert report.rows_reconciled == 3
    assert list(Clip.objects.values_list("file", flat=True)) == ["clips/2026/03/0005.mp4"]


@pytest.mark.django_db
def test_a_few_pages_are_fetched_at_once_yet_every_month_moves(
    cube, settings, throttling_proxy, monkeypatch
):
    # Threads fetch pages, not folders: at most CLEANUP_LIST_CONCURRENCY list
    # requests at once however many months there are (memory is those pages),
    # and the months take turns, so none waits for another to be listed whole.
    proxy = throttling_proxy
    settings.CLOUDCUBE = parse_cloudcube_url(proxy.cloudcube_url(cube.bucket, cube.name))
    settings.CLEANUP_LIST_CONCURRENCY = 3
    size = shrink_s3_pages(monkeypatch, 50)
    months = [f"{CLIPS}2025/{m:02d}/" for m in range(1, 9)]
    keys = [f"{month}{i:04d}.mp4" for month in months for i in range(3 * size - 30)]
    for key in keys:
        cube.put(key, age=OLD)
    client = cloudcube_client()
    lock = threading.Lock()
    listed: Counter[str] = Counter()
    asked: list[str] = []  # each month's page requests, in the order they were sent
    in_flight = peak = 0

    def sent(params, **kwargs):
        nonlocal in_flight, peak
        query = params.get("query_string", {})
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            if query.get("prefix") in months and not query.get("delimiter"):
                asked.append(query["prefix"])

    def seen(parsed, **kwargs):
        nonlocal in_flight
        with lock:
            in_flight -= 1
            listed.update(obj["Key"] for obj in parsed.get("Contents", ()))

    client.meta.events.register("before-call.s3.ListObjectsV2", sent)
    client.meta.events.register("after-call.s3.ListObjectsV2", seen)

    report = run_cleanup(5, client=client)

    assert peak <= 3
    assert sorted(listed) == sorted(keys) and set(listed.values()) == {1}
    # Every month was asked for a page before any month was asked for its last.
    last = min(i for i, prefix in enumerate(asked) if asked[: i + 1].count(prefix) == 3)
    assert set(asked[:last]) == set(months)
    assert (report.status, report.files_deleted) == ("succeeded", len(keys))
    assert cube.keys() == []
