"""The cleanup service against the local S3 server, over real HTTP with boto3."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest
from botocore.exceptions import BotoCoreError
from django.utils import timezone

from tests.support.cleanup import run_cleanup
from viral_clips.cleanup import MAX_RETENTION_DAYS, CleanupInterrupted, InvalidRetention
from viral_clips.models import CleanupRun, Clip
from viral_clips.s3 import cloudcube_client

pytestmark = pytest.mark.django_db

OLD = timedelta(days=30)
NEW = timedelta(days=1)


class RequestLog:
    """Counts the S3 operations a client sends and enforces S3's own limits,
    which moto's server does not (it accepts >1,000 keys a DeleteObjects)."""

    def __init__(self, client):
        self.operations: Counter[str] = Counter()
        self.delete_sizes: list[int] = []
        client.meta.events.register("before-call.s3", self._before_call)
        client.meta.events.register("after-call.s3.ListObjectsV2", self._after_list)

    def _before_call(self, model, params, **kwargs):
        self.operations[model.name] += 1
        if model.name == "DeleteObjects":
            size = len(params["body"].split(b"<Object>")) - 1
            assert size <= 1000, f"DeleteObjects with {size} keys: S3 refuses more than 1,000"
            self.delete_sizes.append(size)

    def _after_list(self, parsed, **kwargs):
        assert parsed.get("KeyCount", 0) <= 1000, "a list page over S3's 1,000 keys"


@pytest.fixture
def s3():
    client = cloudcube_client()
    return client, RequestLog(client)


def backdate_clip(clip: Clip, age: timedelta) -> Clip:
    Clip.objects.filter(pk=clip.pk).update(created_at=timezone.now() - age)
    clip.refresh_from_db()
    return clip


def test_retention_boundary_an_hour_either_side(cube, s3):
    client, _ = s3
    cube.put("testcube/public/clips/just-expired.mp4", b"a" * 7, age=timedelta(days=5, hours=1))
    cube.put("testcube/public/clips/just-kept.mp4", b"b" * 9, age=timedelta(days=4, hours=23))

    report = run_cleanup(5, client=client)

    assert cube.keys() == ["testcube/public/clips/just-kept.mp4"]
    assert (report.files_deleted, report.bytes_freed, report.clips_retained) == (1, 7, 1)
    assert report.status == "succeeded"


def test_sibling_cubes_and_keys_outside_the_cube_are_never_touched(cube, s3):
    client, log = s3
    outside = [
        "testcube2/public/old.mp4",
        "testcube-x/old.mp4",
        "testcube.bak/old.mp4",
        "testcube",  # the bare prefix without its slash
        "othercube/public/testcube/old.mp4",
        "old-at-root.mp4",
    ]
    for key in outside:
        cube.put(key, age=timedelta(days=400))
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    cube.put("testcube/public/clips/2026/01/old.mp4", age=OLD)

    report = run_cleanup(5, client=client)

    # Issue 10 changed this test: it used to delete testcube/private/notes.txt
    # too (the whole cube was in scope); now only the clips' folder is.
    assert sorted(cube.keys()) == sorted(outside)
    assert report.objects_scanned == 2
    assert report.files_deleted == 2
    assert log.operations == {"ListObjectsV2": 1, "DeleteObjects": 1}


AWKWARD_KEYS = [
    "testcube/public/clips/with space.mp4",
    "testcube/public/clips/plus+sign.mp4",
    "testcube/public/clips/percent%20encoded%.mp4",
    "testcube/public/clips/question?mark.mp4",
    "testcube/public/clips/hash#tag.mp4",
    "testcube/public/clips/quotes'single\"double.mp4",
    "testcube/public/clips/angle<brackets>&amp.mp4",
    "testcube/public/clips/ünïcödé-日本語-emoji-🎬.mp4",
    "testcube/public/clips/trailing space .mp4",
    "testcube/public/clips//double-slash.mp4",
]


def test_awkward_keys_are_deleted_exactly(cube, s3):
    client, _ = s3
    for key in AWKWARD_KEYS:
        cube.put(key, b"z", age=OLD)
        # A recent twin of each, which must survive.
        cube.put(key + ".keep", b"z", age=NEW)
    names = [key.removeprefix("testcube/public/") for key in AWKWARD_KEYS]
    for name in names:
        backdate_clip(Clip.objects.create(title=name, file=name, size_bytes=1), OLD)

    report = run_cleanup(5, client=client)

    assert cube.keys() == sorted(key + ".keep" for key in AWKWARD_KEYS)
    assert report.files_deleted == len(AWKWARD_KEYS)
    assert report.error_count == 0
    assert not Clip.objects.exists()


def test_more_than_a_thousand_expired_keys_cross_page_and_batch_boundaries(cube, s3):
    client, log = s3
    expired, recent = 2345, 1210
    for i in range(expired):
        cube.put(f"testcube/public/clips/old-{i:05d}.mp4", b"o" * 3, age=OLD)
    for i in range(recent):
        cube.put(f"testcube/public/clips/new-{i:05d}.mp4", b"n", age=NEW)
    listed = expired + recent
    progress_calls = []

    report = run_cleanup(5, client=client, progress=lambda s, d: progress_calls.append((s, d)))

    assert len(cube.keys()) == recent
    assert all("/new-" in key for key in cube.keys())
    assert (report.objects_scanned, report.files_deleted) == (listed, expired)
    assert report.bytes_freed == 3 * expired
    assert report.clips_retained == recent
    # ceil(L/1000) list calls plus ceil(E/1000) delete calls, nothing per object.
    assert log.operations == {
        "ListObjectsV2": math.ceil(listed / 1000),
        "DeleteObjects": math.ceil(expired / 1000),
    }
    # Batches are sent from the pipeline's threads: their order on the wire is not fixed.
    assert sorted(log.delete_sizes, reverse=True) == [1000, 1000, 345]
    assert progress_calls[-1] == (listed, expired)


def test_pinned_and_recently_created_clips_are_kept(cube, s3):
    client, _ = s3
    pinned = backdate_clip(
        Clip.objects.create(title="pinned", file="clips/pinned.mp4", pinned=True), OLD
    )
    # The object is old, but its clip row was created within the retention
    # period (re-attached file): it is a recent clip and stays.
    recent_row = Clip.objects.create(title="recent row", file="clips/recent-row.mp4")
    expired = backdate_clip(Clip.objects.create(title="expired", file="clips/expired.mp4"), OLD)
    for clip in (pinned, recent_row, expired):
        cube.put(f"testcube/public/{clip.file.name}", b"x" * 100, age=OLD)
    cube.put("testcube/public/clips/orphan.mp4", b"x" * 100, age=OLD)

    report = run_cleanup(5, client=client)

    assert cube.keys() == [
        "testcube/public/clips/pinned.mp4",
        "testcube/public/clips/recent-row.mp4",
    ]
    assert set(Clip.objects.values_list("title", flat=True)) == {"pinned", "recent row"}
    assert report.files_deleted == 2
    assert report.pinned_kept == 2
    assert report.clips_retained == 2


def test_pinned_lookups_are_one_query_per_page_not_per_key(cube, s3, django_assert_max_num_queries):
    client, _ = s3
    for i in range(1500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    # Queries: run insert, <=2 pinned lookups a page (2 pages), per-batch
    # clip deletes and progress saves, final update. Far below one per key.
    with django_assert_max_num_queries(20):
        report = run_cleanup(5, client=client)
    assert report.files_deleted == 1500


def test_dry_run_deletes_nothing_and_reports_what_a_real_run_would(cube, s3):
    client, log = s3
    for i in range(30):
        cube.put(f"testcube/public/clips/old-{i}.mp4", b"o" * 10, age=OLD)
    for i in range(5):
        cube.put(f"testcube/public/clips/new-{i}.mp4", b"n", age=NEW)
    backdate_clip(Clip.objects.create(title="p", file="clips/old-0.mp4", pinned=True), OLD)
    backdate_clip(Clip.objects.create(title="e", file="clips/old-1.mp4"), OLD)
    before = cube.keys()

    dry = run_cleanup(5, dry_run=True, client=client)

    assert cube.keys() == before
    assert Clip.objects.count() == 2
    assert "DeleteObjects" not in log.operations
    run = CleanupRun.objects.get(pk=dry.run_id)
    assert run.dry_run and run.status == "succeeded"

    real = run_cleanup(5, client=client)
    comparable = ("objects_scanned", "files_deleted", "bytes_freed", "clips_retained")
    assert [getattr(dry, f) for f in comparable] == [getattr(real, f) for f in comparable]
    assert (dry.files_deleted, dry.bytes_freed) == (29, 290)


def test_per_key_delete_errors_are_counted_reported_and_make_the_run_partial(cube, s3, s3_server):
    client, _ = s3
    keys = [cube.put(f"testcube/public/clips/{i:04d}.mp4", b"e" * 4, age=OLD) for i in range(1200)]
    refused = keys[5:8] + keys[1100:1130]

    with s3_server.refuse_deletes(refused, cube.bucket):
        report = run_cleanup(5, client=client)

    assert sorted(cube.keys()) == sorted(refused)
    assert report.status == "partial"
    assert report.error_count == 33
    assert report.files_deleted == 1200 - 33
    assert report.bytes_freed == 4 * (1200 - 33)
    assert len(report.errors) == 20
    assert {e["key"] for e in report.errors} <= set(refused)
    assert all(e["code"] == "AccessDenied" for e in report.errors)
    run = CleanupRun.objects.get(pk=report.run_id)
    assert (run.status, run.error_count, len(run.error_sample)) == ("partial", 33, 20)
    assert "33 key(s) could not be deleted" in run.detail
    assert run.finished_at is not None


def test_a_run_where_every_delete_fails_is_failed(cube, s3, s3_server):
    client, _ = s3
    keys = [cube.put(f"testcube/public/clips/{i}.mp4", age=OLD) for i in range(3)]
    with s3_server.refuse_deletes(keys, cube.bucket):
        report = run_cleanup(5, client=client)
    assert report.status == "failed"
    assert sorted(cube.keys()) == sorted(keys)


def test_an_unreachable_server_fails_the_run_and_records_it(cube, settings):
    from config.cloudcube import parse_cloudcube_url
    from devstack.ports import free_port

    cube.put("testcube/public/clips/old.mp4", age=OLD)
    settings.CLOUDCUBE = parse_cloudcube_url(f"http://127.0.0.1:{free_port()}/bucket/testcube")
    with pytest.raises(BotoCoreError):
        run_cleanup(5, client=cloudcube_client(max_attempts=1, connect_timeout=1))
    run = CleanupRun.objects.get()
    assert run.status == "failed"
    assert run.finished_at is not None
    assert "EndpointConnectionError" in run.detail or "Connect" in run.detail


@pytest.mark.parametrize(
    "value", [0, -1, 2.5, "5 days", None, True, "", MAX_RETENTION_DAYS + 1, "0", [5]]
)
def test_bad_retention_is_refused_before_anything_is_listed(cube, s3, value):
    client, log = s3
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    with pytest.raises(InvalidRetention):
        run_cleanup(value, client=client)
    assert cube.keys() == ["testcube/public/clips/old.mp4"]
    assert sum(log.operations.values()) == 0
    assert not CleanupRun.objects.exists()


def test_retention_given_as_digits_is_accepted(cube, s3):
    client, _ = s3
    assert run_cleanup("5", client=client).retention_days == 5


def test_the_run_record_is_written_at_start_and_completed_at_end(cube, s3):
    client, _ = s3
    for i in range(1500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", age=OLD)
    seen = []

    def progress(scanned, deleted):
        run = CleanupRun.objects.get()
        seen.append((run.status, run.finished_at))

    report = run_cleanup(5, trigger="command", client=client, progress=progress)

    assert seen and all(status == "running" and end is None for status, end in seen)
    run = CleanupRun.objects.get(pk=report.run_id)
    assert run.trigger == "command"
    assert (run.objects_scanned, run.files_deleted, run.status) == (1500, 1500, "succeeded")
    assert run.finished_at >= run.started_at
    assert run.duration_seconds >= 0


def test_interrupted_run_says_so_and_resumes_under_the_same_task_id(cube, s3):
    client, log = s3
    for i in range(2500):
        cube.put(f"testcube/public/clips/{i:04d}.mp4", b"r", age=OLD)

    with pytest.raises(CleanupInterrupted):
        run_cleanup(5, client=client, task_id="task-1", should_stop=lambda: True)
    run = CleanupRun.objects.get()
    assert run.status == "interrupted"  # not `running`: no process runs it now
    assert run.files_deleted == 1000
    assert len(cube.keys()) == 1500

    report = run_cleanup(5, client=client, task_id="task-1")

    assert report.run_id == run.pk
    assert CleanupRun.objects.count() == 1
    run.refresh_from_db()
    assert (run.status, run.files_deleted, run.bytes_freed) == ("succeeded", 2500, 2500)
    assert cube.keys() == []


def test_unknown_trigger_is_refused(cube, s3):
    client, log = s3
    with pytest.raises(ValueError, match="unknown trigger"):
        run_cleanup(5, trigger="cron", client=client)
    assert sum(log.operations.values()) == 0
