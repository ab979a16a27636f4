"""The admin: run pages read-only and readable, sizes in human units, koolclips' name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.support.cleanup import run_cleanup
from tests.support.runs import make_run
from viral_clips.cleanup.pipeline import WOULD_DELETE_SAMPLE_SIZE
from viral_clips.models import CleanupRun, Clip

pytestmark = pytest.mark.django_db
MB = 1024 * 1024


@pytest.fixture
def admin_client_(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@localhost", "pw-12345678")
    client = Client()
    client.force_login(user)
    return client


def test_the_runs_list_is_condensed_and_shows_dry_runs_neutrally(admin_client_):
    make_run(timezone.now() - timedelta(hours=2), dry_run=True, trigger="manual",
             files_deleted=6, bytes_freed=8 * MB)  # fmt: skip
    make_run(timezone.now() - timedelta(hours=1), files_deleted=4, bytes_freed=MB)
    text = admin_client_.get("/admin/viral_clips/cleanuprun/").content.decode()
    headers = [h for h in ("Run", "Status", "Files deleted", "Freed", "Error count", "Duration")]
    for header in headers:
        assert f">{header}<" in text, header
    # No boolean column for dry_run: a red "no" icon next to "Succeeded" read as a failure.
    assert "icon-no.svg" not in text and "icon-yes.svg" not in text
    assert "Manual · dry run" in text and "would free 8.0\xa0MB" in text
    assert "would delete 6" in text
    for dropped in ("Retention days", "Objects scanned", "Clips retained"):
        assert f">{dropped}<" not in text


def test_a_run_page_is_read_only_with_human_sizes(admin_client_):
    run = make_run(timezone.now(), objects_scanned=55, bytes_scanned=14423040,
                   files_deleted=3, bytes_freed=3 * MB, dry_run=False)  # fmt: skip
    response = admin_client_.get(f"/admin/viral_clips/cleanuprun/{run.pk}/change/")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'name="_save"' not in text and 'name="_continue"' not in text
    assert "13.8\xa0MB (14,423,040 bytes)" in text
    assert "3.0\xa0MB" in text
    assert "icon-no.svg" not in text  # "dry run: no" is not a failure
    assert "Schedule" in text
    assert "Objects kept" in text and "Clips retained" not in text
    post = admin_client_.post(f"/admin/viral_clips/cleanuprun/{run.pk}/change/", {"status": "x"})
    assert post.status_code == 403
    run.refresh_from_db()
    assert run.status == CleanupRun.Status.SUCCEEDED


def test_a_dry_runs_page_lists_a_sample_of_the_keys_it_would_delete(admin_client_, cube):
    expired = [f"testcube/public/clips/old-{i:03d}.mp4" for i in range(60)]
    for key in expired:
        cube.put(key, b"o", age=timedelta(days=9))
    cube.put("testcube/public/clips/new.mp4", b"n", age=timedelta(days=1))

    report = run_cleanup(5, dry_run=True, trigger=CleanupRun.Trigger.MANUAL)
    run = CleanupRun.objects.get(pk=report.run_id)
    assert run.files_deleted == 60
    assert len(run.would_delete_sample) == WOULD_DELETE_SAMPLE_SIZE == 50
    assert set(run.would_delete_sample) <= set(expired)
    assert len(cube.keys()) == 61  # nothing deleted

    text = admin_client_.get(f"/admin/viral_clips/cleanuprun/{run.pk}/change/").content.decode()
    assert text.count("<li><code>testcube/public/clips/old-") == 50
    assert "… and 10 more" in text
    assert "new.mp4" not in text

    # A real run keeps no such sample.
    real = run_cleanup(5, dry_run=False, trigger=CleanupRun.Trigger.MANUAL)
    assert CleanupRun.objects.get(pk=real.run_id).would_delete_sample == []


def test_the_clip_pages_show_sizes_readably_and_the_add_form_no_size(admin_client_, cube):
    cube.put("testcube/public/clips/big.mp4", b"b" * (3 * MB))
    clip = Clip.objects.create(title="Big", file="clips/big.mp4")
    assert clip.size_bytes == 3 * MB
    assert "3.0\xa0MB" in admin_client_.get("/admin/viral_clips/clip/").content.decode()
    change = admin_client_.get(f"/admin/viral_clips/clip/{clip.pk}/change/").content.decode()
    assert "3.0\xa0MB" in change and "3145728" not in change
    add = admin_client_.get("/admin/viral_clips/clip/add/").content.decode()
    assert "Size bytes" not in add and ">Size<" not in add


def test_the_login_page_says_koolclips(client):
    text = client.get("/admin/login/").content.decode()
    assert "koolclips admin" in text and "<title>Log in | koolclips</title>" in text
    assert "Django administration" not in text and "Django site admin" not in text
