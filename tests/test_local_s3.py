"""Local S3 serves `<cube>/public/` to anyone, as Cloudcube does; the rest stays private."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

BUCKET = "koolclips-public-test"


def anonymous_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.fixture
def public_cube(s3_server):
    s3_server.create_bucket(BUCKET)
    s3_server.clear(BUCKET)
    s3_server.make_public(BUCKET, "cube")
    s3_server.put(BUCKET, "cube/public/clips/a.mp4", b"public clip")
    s3_server.put(BUCKET, "cube/private/notes.txt", b"private")
    s3_server.put(BUCKET, "cube2/public/clips/b.mp4", b"another cube's")
    yield s3_server
    s3_server._standing.pop(BUCKET, None)
    s3_server.allow_deletes(BUCKET)


def test_public_folder_is_readable_without_credentials(public_cube):
    base = f"{public_cube.endpoint_url}/{BUCKET}"
    assert anonymous_get(f"{base}/cube/public/clips/a.mp4") == (200, b"public clip")
    assert anonymous_get(f"{base}/cube/private/notes.txt")[0] == 403
    assert anonymous_get(f"{base}/cube2/public/clips/b.mp4")[0] == 403  # not made public


def test_denying_deletes_keeps_the_public_read(public_cube):
    base = f"{public_cube.endpoint_url}/{BUCKET}"
    with public_cube.refuse_deletes(["cube/public/clips/a.mp4"], BUCKET):
        assert anonymous_get(f"{base}/cube/public/clips/a.mp4")[0] == 200
    assert anonymous_get(f"{base}/cube/public/clips/a.mp4")[0] == 200
    assert anonymous_get(f"{base}/cube/private/notes.txt")[0] == 403
