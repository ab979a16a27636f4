"""Books that stay right (issue 10.3): Clip rows never outlive their files, and
a database blip mid-run neither leaves a run `running` nor files undeleted."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from config.cloudcube import parse_cloudcube_url
from devstack.latency_proxy import S3LatencyProxy
from devstack.procinfo import wait_for
from tests.support.cleanup import run_cleanup
from tests.support.processes import ProcfileProcess
from viral_clips.cleanup import CleanupBookkeepingFailed
from viral_clips.models import CleanupRun, Clip
from viral_clips.s3 import cloudcube_client
from viral_clips.tasks import scheduled_cloudcube_cleanup

OLD = timedelta(days=30)
NEW = timedelta(days=1)

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="pg_terminate_backend needs PostgreSQL (set DATABASE_URL to run it)",
)


def old_rows(names: list[str], **fields) -> None:
    Clip.objects.bulk_create(Clip(title=name, file=name, **fields) for name in names)
    Clip.objects.filter(file__in=names).update(created_at=timezone.now() - OLD)


@pytest.mark.django_db
def test_every_run_reconciles_old_unpinned_rows_whose_file_is_gone(cube):
    # Two pages of recent files with old rows, upper case before lower case:
    # S3's byte order ("A" < "a"), which a locale collation would interleave.
    upper = [f"clips/A-{i:04d}.mp4" for i in range(1000)]
    lower = [f"clips/a-{i:04d}.mp4" for i in range(1000)]
    expired = [f"clips/m-old-{i:04d}.mp4" for i in range(500)]
    for name in upper + lower:
        cube.put(f"testcube/public/{name}", age=NEW)
    for name in expired:
        cube.put(f"testcube/public/{name}", age=OLD)
    old_rows(upper + lower + expired)
    orphans = [
        "clips/0-before-the-first-page.mp4",
        "clips/2026/01/gone.mp4",
        "clips/A-0999z-between-pages.mp4",
        "clips/zz-after-the-last-page.mp4",
    ]
    old_rows(orphans)
    old_rows(["clips/pinned-gone.mp4"], pinned=True)
    Clip.objects.create(title="recent", file="clips/recent-gone.mp4")  # created now
    old_rows(["avatars/not-in-scope.png"])

    dry = run_cleanup(5, dry_run=True, client=cloudcube_client())
    assert dry.rows_reconciled == 4
    assert Clip.objects.filter(file__in=orphans).count() == 4  # a dry run removes nothing

    report = run_cleanup(5, client=cloudcube_client())

    assert report.rows_reconciled == 4
    assert CleanupRun.objects.get(pk=report.run_id).rows_reconciled == 4
    assert report.files_deleted == 500
    remaining = set(Clip.objects.values_list("file", flat=True))
    assert remaining == set(upper + lower) | {
        "clips/pinned-gone.mp4",
        "clips/recent-gone.mp4",
        "avatars/not-in-scope.png",
    }


@pytest.mark.django_db
def test_an_empty_scope_reconciles_every_old_unpinned_row_in_it(cube):
    old_rows(["clips/x.mp4", "clips/y.mp4"])
    report = run_cleanup(5, client=cloudcube_client())
    assert (report.objects_scanned, report.rows_reconciled) == (0, 2)
    assert not Clip.objects.exists()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_terminated_connection_mid_run_is_replaced_and_the_run_finishes(cube):
    names = [f"clips/{i:04d}.mp4" for i in range(3500)]
    for name in names:
        cube.put(f"testcube/public/{name}", age=OLD)
    old_rows(names)
    calls = []

    def progress(scanned, deleted):
        calls.append(deleted)
        if len(calls) == 2:
            # Another session kills this one, as a PostgreSQL restart would.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                (pid,) = cursor.fetchone()
            killer = connections.create_connection("default")
            try:
                with killer.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                killer.close()

    report = run_cleanup(5, client=cloudcube_client(), progress=progress)

    assert report.status == "succeeded"
    assert report.files_deleted == 3500
    assert cube.keys() == []
    assert not Clip.objects.exists()
    run = CleanupRun.objects.get(pk=report.run_id)
    assert (run.status, run.files_deleted) == ("succeeded", 3500)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_database_that_stays_away_ends_the_run_interrupted_and_the_redelivery_finishes_it(
    cube, s3_server, settings, request
):
    import psycopg

    names = [f"clips/{i:04d}.mp4" for i in range(3500)]
    for name in names:
        cube.put(f"testcube/public/{name}", age=OLD)
    old_rows(names)
    s = connection.settings_dict
    test_db = s["NAME"]
    admin = psycopg.connect(
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    # The database goes away, and stays away (no connection is allowed), while
    # the second batch is in flight: checked and sent, so S3 deletes its files.
    # (A progress callback raced the pipeline: the batch was not always sent.)
    proxy = S3LatencyProxy(s3_server.port, list_ms=0, delete_ms_per_1000=0).start()
    request.addfinalizer(proxy.stop)
    settings.CLOUDCUBE = parse_cloudcube_url(proxy.cloudcube_url(cube.bucket, cube.name))

    def database_goes_away(number: int, count: int) -> None:
        if number == 2:
            admin.execute(f'ALTER DATABASE "{test_db}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [test_db],
            )

    proxy.delete_verdict = database_goes_away
    try:
        with pytest.raises(CleanupBookkeepingFailed):
            run_cleanup(5, client=cloudcube_client(), task_id="t-db")
    finally:
        proxy.delete_verdict = None
        admin.execute(f'ALTER DATABASE "{test_db}" ALLOW_CONNECTIONS true')
        admin.close()
    connection.close()
    run = CleanupRun.objects.get(task_id="t-db")
    assert run.status == "running"  # not recorded as over: it is re-queued
    assert cube.keys()  # work left
    present = {key.removeprefix("testcube/public/") for key in cube.keys()}
    # A batch deleted while the database was away: its files are gone, its rows not.
    rows_without_file = Clip.objects.exclude(file__in=present).count()
    assert rows_without_file >= 1000

    report = run_cleanup(5, client=cloudcube_client(), task_id="t-db")  # the redelivery

    assert (report.run_id, report.status) == (run.pk, "succeeded")
    assert cube.keys() == []
    # Rows of files deleted while the database was away were reconciled.
    assert report.rows_reconciled == rows_without_file
    assert not Clip.objects.exists()
    assert not CleanupRun.objects.filter(status="running").exists()


@needs_postgres
@pytest.mark.processes
def test_postgres_terminating_the_workers_connections_mid_run_leaves_the_books_right(
    worker_env, redis_client, cube, tmp_path
):
    expired, recent = 24_000, 6_000
    server = cube.server
    old_when = timezone.now() - OLD
    new_when = timezone.now() - NEW
    for i in range(expired):
        server.put(cube.bucket, f"testcube/public/clips/old-{i:05d}.mp4", b"o", old_when)
    for i in range(recent):
        server.put(cube.bucket, f"testcube/public/clips/new-{i:05d}.mp4", b"n", new_when)
    # Rows for every 4th expired file, a few pinned ones, and rows whose file
    # is already gone (a crash between a file and its row, earlier).
    old_rows([f"clips/old-{i:05d}.mp4" for i in range(0, expired, 4)])
    pinned = [f"clips/old-{i:05d}.mp4" for i in range(1, expired, 996)]  # never a 4th
    old_rows(pinned, pinned=True)
    old_rows([f"clips/old-gone-{i:03d}.mp4" for i in range(50)])
    env = dict(worker_env, CLEANUP_SCHEDULE="1h")
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_for_output("ready", timeout=40), worker.output()
        scheduled_cloudcube_cleanup.apply_async(kwargs={"trigger": "manual"})
        run = wait_for(lambda: CleanupRun.objects.filter(files_deleted__gte=1000).first(), 90)
        assert run is not None, worker.output()[-3000:]
        killed = 0
        for _ in range(3):  # a few seconds into the run, and again while it recovers
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                killed += cursor.fetchone()[0]
            time.sleep(1.0)
        assert killed >= 1
        finished = wait_for(
            lambda: CleanupRun.objects.exclude(status="running").filter(pk=run.pk).first(), 240
        )
        assert finished is not None, worker.output()[-5000:]
    finally:
        worker.stop()

    # The blip hit the running cleanup, which replaced its connection.
    assert "retrying on a fresh connection" in worker.output()
    assert not CleanupRun.objects.filter(status="running").exists()
    assert finished.status == "succeeded", finished.detail
    keys = set(cube.keys())
    pinned_keys = {f"testcube/public/{name}" for name in pinned}
    assert {key for key in keys if "/old-" in key} == pinned_keys  # every expired file gone
    assert sum("/new-" in key for key in keys) == recent
    # No Clip row whose file is gone.
    rows = set(Clip.objects.values_list("file", flat=True))
    assert {f"testcube/public/{name}" for name in rows} <= keys
    assert rows == {name.removeprefix("testcube/public/") for name in pinned_keys}
