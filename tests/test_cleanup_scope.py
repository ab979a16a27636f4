"""What the cleanup may touch (issue 10.1), and protection checked when a batch is sent (10.2)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.cloudcube import CleanupPrefixesError, parse_cleanup_prefixes
from tests.support.cleanup import run_cleanup
from viral_clips.cleanup import cleanup_scope_labels, cleanup_scopes
from viral_clips.models import Clip
from viral_clips.s3 import cloudcube_client

ROOT = Path(__file__).resolve().parent.parent
OLD = timedelta(days=30)
NEW = timedelta(days=1)

CLIPS = [
    "testcube/public/clips/a.mp4",
    "testcube/public/clips/2026/01/b.mp4",
]
NOT_CLIPS = [
    "testcube/public/avatars/old.png",
    "testcube/private/report.csv",
    "testcube/backups/db-2026-01.dump",
    "testcube/notes.txt",
    # `public/clips/` with its slash: a folder named like it is not the clips'.
    "testcube/public/clipsarchive/x.mp4",
]


class ListedPrefixes:
    """The Prefix of every ListObjectsV2 request the client sends."""

    def __init__(self, client):
        self.prefixes: list[str] = []
        client.meta.events.register("before-call.s3.ListObjectsV2", self._before)

    def _before(self, params, **kwargs):
        query = params.get("query_string", {})
        self.prefixes.append(query.get("prefix"))


def seed_old_cube(cube) -> None:
    for key in CLIPS + NOT_CLIPS:
        cube.put(key, b"x" * 10, age=OLD)


@pytest.mark.django_db
def test_by_default_only_the_clips_folder_is_listed_and_deleted(cube):
    seed_old_cube(cube)
    client = cloudcube_client()
    listed = ListedPrefixes(client)

    report = run_cleanup(5, client=client)

    assert cube.keys() == sorted(NOT_CLIPS)
    assert (report.objects_scanned, report.files_deleted) == (2, 2)
    assert listed.prefixes == ["testcube/public/clips/"]
    assert report.scopes == ["public/clips/"]


@pytest.mark.django_db
def test_cleanup_prefixes_widen_the_scope_without_listing_a_key_twice(cube, settings):
    seed_old_cube(cube)
    # public/ contains the clips' folder: it is listed once, as public/.
    settings.CLEANUP_PREFIXES = parse_cleanup_prefixes("backups, public/")
    client = cloudcube_client()
    listed = ListedPrefixes(client)

    report = run_cleanup(5, client=client)

    assert cube.keys() == ["testcube/notes.txt", "testcube/private/report.csv"]
    assert listed.prefixes == ["testcube/backups/", "testcube/public/"]
    assert report.objects_scanned == 5  # every listed key once
    assert report.files_deleted == 5
    assert report.scopes == ["backups/", "public/"]


def test_scopes_come_from_the_clip_field_and_drop_contained_prefixes(settings):
    field = Clip._meta.get_field("file")
    assert field.upload_to == "clips/%Y/%m/"
    assert field.storage.location == "testcube/public"
    settings.CLEANUP_PREFIXES = ()
    assert cleanup_scopes() == ["testcube/public/clips/"]
    settings.CLEANUP_PREFIXES = parse_cleanup_prefixes(
        "public/clips/2026/,public/clipsarchive,tmp/a/,tmp/"
    )
    assert cleanup_scopes() == [
        "testcube/public/clips/",
        "testcube/public/clipsarchive/",
        "testcube/tmp/",
    ]
    assert cleanup_scope_labels() == ["public/clips/", "public/clipsarchive/", "tmp/"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("backups", ("backups/",)),
        (" public/exports/ , tmp", ("public/exports/", "tmp/")),
        ("tmp/,tmp", ("tmp/",)),
    ],
)
def test_cleanup_prefixes_are_normalised(raw, expected):
    assert parse_cleanup_prefixes(raw) == expected


@pytest.mark.parametrize("raw", ["", "../x", "/abs", "a,,b", "..", "a/../b", "a//b", "./a", " "])
def test_bad_cleanup_prefixes_are_refused(raw):
    with pytest.raises(CleanupPrefixesError, match="CLEANUP_PREFIXES"):
        parse_cleanup_prefixes(raw)


@pytest.mark.processes
@pytest.mark.parametrize("raw", ["", "../x", "/abs", "a,,b", ".."])
def test_bad_cleanup_prefixes_stop_start_up_and_delete_nothing(worker_env, cube, raw):
    seed_old_cube(cube)
    env = dict(worker_env, CLEANUP_PREFIXES=raw)
    result = subprocess.run(
        [sys.executable, "manage.py", "cloudcube_cleanup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("koolclips: configuration error:"), result.stderr
    assert "CLEANUP_PREFIXES" in result.stderr and "Traceback" not in result.stderr
    assert cube.keys() == sorted(CLIPS + NOT_CLIPS)


@pytest.mark.processes
@pytest.mark.parametrize("raw", ["0", "17"])
def test_a_bad_deletes_in_flight_stops_start_up(raw):
    from tests.test_settings_startup import run_manage

    result = run_manage({"CLEANUP_DELETES_IN_FLIGHT": raw}, "check")
    assert result.returncode != 0
    assert "CLEANUP_DELETES_IN_FLIGHT" in result.stderr and "from 1 to 16" in result.stderr


@pytest.mark.django_db
def test_a_clip_pinned_after_its_page_was_listed_but_before_its_batch_is_sent_keeps_its_file(
    cube,
):
    """The race of issue 10.2: an expired key waits in `pending` for its batch
    to fill while later pages are listed; the clip is pinned meanwhile."""
    pinned_later = Clip.objects.create(title="pinned later", file="clips/a-pin-me.mp4")
    Clip.objects.filter(pk=pinned_later.pk).update(created_at=timezone.now() - OLD)
    cube.put("testcube/public/clips/a-pin-me.mp4", b"p" * 5, age=OLD)
    # The rest of page 1 is recent: the batch fills only on page 2.
    for i in range(999):
        cube.put(f"testcube/public/clips/b-new-{i:04d}.mp4", age=NEW)
    for i in range(1500):
        cube.put(f"testcube/public/clips/c-old-{i:04d}.mp4", age=OLD)
    pages = []

    def progress(scanned, deleted):
        pages.append((scanned, deleted))
        if len(pages) == 1:
            # Page 1 listed, nothing sent yet: the operator pins the clip now.
            assert deleted == 0
            Clip.objects.filter(pk=pinned_later.pk).update(pinned=True)

    report = run_cleanup(5, client=cloudcube_client(), progress=progress)

    assert "testcube/public/clips/a-pin-me.mp4" in cube.keys()
    assert Clip.objects.filter(pk=pinned_later.pk, pinned=True).exists()
    assert report.files_deleted == 1500
    assert report.pinned_kept == 1
    assert len(cube.keys()) == 1000


def test_the_dashboard_tag_names_the_scope(settings):
    from django.template import engines

    settings.CLEANUP_PREFIXES = parse_cleanup_prefixes("backups/")
    template = engines["django"].from_string("{% load dashboard_extras %}{% cleanup_scope %}")
    assert template.render({}) == "backups/, public/clips/"
