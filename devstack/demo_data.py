"""A small demo data set for `make run`: clips of spread ages, some pinned,
their objects back-dated in the local S3 server so the first cleanup has work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devstack.s3_server import LocalS3Server

# (title, age in days, pinned)
DEMO_CLIPS = [
    ("Skateboarding dog", 0, False),
    ("Cat vs cucumber", 1, False),
    ("Sunset timelapse", 2, True),
    ("Office prank", 3, False),
    ("Goal of the season", 4, False),
    ("Baby laughing", 6, False),
    ("Unboxing gone wrong", 7, True),
    ("Parrot sings", 9, False),
    ("Cooking fail", 12, False),
    ("Drone over fjord", 20, False),
]


def seed_demo_data(server: LocalS3Server, bucket: str, cube: str) -> int:
    """Create the demo clips (skipped if any clip exists). Returns clips created."""
    from django.db import transaction

    from viral_clips.models import Clip

    if Clip.objects.exists():
        return 0
    now = datetime.now(UTC)
    with transaction.atomic():
        for index, (title, age_days, pinned) in enumerate(DEMO_CLIPS):
            name = f"clips/demo/{index:02d}-{title.lower().replace(' ', '-')}.mp4"
            body = bytes([index]) * (256 * 1024 * (index + 1))
            when = now - timedelta(days=age_days, hours=1)
            server.put(bucket, f"{cube}/public/{name}", body, when)
            clip = Clip.objects.create(title=title, file=name, size_bytes=len(body), pinned=pinned)
            Clip.objects.filter(pk=clip.pk).update(created_at=when)
        # An orphaned old upload (no clip row), and a private scratch file
        # outside the cleanup's scope (it stays).
        server.put(
            bucket, f"{cube}/public/clips/orphan-upload.mp4", b"o" * 4096, now - timedelta(days=30)
        )
        server.put(bucket, f"{cube}/scratch/transcode.bin", b"t" * 1024, now - timedelta(days=8))
    return len(DEMO_CLIPS)
