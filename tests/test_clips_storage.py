"""Clips are stored on Cloudcube (the local S3 server, over HTTP) under <cube>/public/."""

import boto3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.support.media import mp4_bytes
from viral_clips.models import Clip

pytestmark = pytest.mark.django_db


def test_clip_file_lands_under_the_cubes_public_prefix(cube):
    clip = Clip(title="Cat jumps")
    clip.file.save("cat jumps.mp4", ContentFile(b"0123456789"), save=False)
    clip.save()

    key = f"{cube.name}/public/{clip.file.name}"
    assert key in cube.keys()
    assert key.startswith(f"{cube.name}/public/clips/")
    assert clip.size_bytes == 10
    # A plain public URL, never a signed one.
    assert "X-Amz-Signature" not in clip.file.url
    assert clip.file.url.endswith(clip.file.name.replace(" ", "%20"))

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.CLOUDCUBE.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    assert s3.get_object(Bucket=cube.bucket, Key=key)["Body"].read() == b"0123456789"


def test_same_name_twice_keeps_both_files(cube):
    a = Clip(title="a")
    a.file.save("same.mp4", ContentFile(b"a"), save=True)
    b = Clip(title="b")
    b.file.save("same.mp4", ContentFile(b"b"), save=True)
    assert a.file.name != b.file.name
    assert len([k for k in cube.keys() if k.endswith(".mp4")]) == 2


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


def test_admin_upload_list_search_filter(staff_client, cube):
    # A real MP4's first bytes: uploads are checked by content (viral_clips/uploads.py).
    upload = SimpleUploadedFile("dance.mp4", mp4_bytes(2048), content_type="video/mp4")
    response = staff_client.post(
        "/admin/viral_clips/clip/add/", {"title": "Dance", "file": upload, "pinned": "on"}
    )
    assert response.status_code == 302, response.content[:2000]
    clip = Clip.objects.get(title="Dance")
    assert clip.pinned and clip.size_bytes == 2048
    assert f"{cube.name}/public/{clip.file.name}" in cube.keys()

    Clip.objects.create(title="Other", file="clips/other.mp4", size_bytes=5)
    listing = staff_client.get("/admin/viral_clips/clip/").content.decode()
    assert "Dance" in listing and "2.0\xa0KB" in listing and "Other" in listing

    searched = staff_client.get("/admin/viral_clips/clip/?q=danc").content.decode()
    assert "Dance" in searched and "Other" not in searched

    filtered = staff_client.get("/admin/viral_clips/clip/?pinned__exact=0").content.decode()
    assert "Other" in filtered and ">Dance<" not in filtered


def test_cleanup_runs_are_read_only_in_admin(staff_client):
    assert staff_client.get("/admin/viral_clips/cleanuprun/add/").status_code == 403
    assert staff_client.get("/admin/viral_clips/cleanuprun/").status_code == 200
