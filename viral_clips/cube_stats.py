"""The cube's size and object count, for the dashboard and the weekly report.

No request lists the cube (at a million objects that is 1,000 list calls, far
beyond gunicorn's timeout). The figures come from the database, from whichever
is newer:

* a cleanup run that finished its scan (succeeded or partial: it listed every
  page), as what its listing found minus what it deleted;
* the scheduled measurement (`refresh_cube_stats`, every CUBE_STATS_INTERVAL),
  which lists the cube a page of 1,000 keys at a time, keeping only running
  totals, and stores a CubeMeasurement.

They are shown with their age; a cube never measured says so (None).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from viral_clips.models import CleanupRun, CubeMeasurement
from viral_clips.s3 import cloudcube_client

logger = logging.getLogger(__name__)

S3_MAX_KEYS_PER_PAGE = 1000
SCHEDULED = "scheduled measurement"
KEEP_MEASUREMENTS = timedelta(days=90)
# Runs whose scan covered every page of the listing.
_FULL_SCAN = (CleanupRun.Status.SUCCEEDED, CleanupRun.Status.PARTIAL)


@dataclass(frozen=True)
class CubeStats:
    objects: int
    bytes: int
    measured_at: datetime
    source: str  # "scheduled measurement" or "cleanup run #12"
    seconds_to_measure: float | None = None

    @property
    def mb(self) -> float:
        return self.bytes / (1024 * 1024)


def measure_cube(client=None) -> CubeStats:
    """List the whole cube now and total its objects and bytes (the scheduled job only)."""
    if client is None:
        client = cloudcube_client(read_timeout=10, max_attempts=3)
    cube = settings.CLOUDCUBE
    started = time.monotonic()
    objects = total = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=cube.bucket,
        Prefix=cube.prefix,
        PaginationConfig={"PageSize": S3_MAX_KEYS_PER_PAGE},
    ):
        for obj in page.get("Contents", ()):
            if obj["Key"].startswith(cube.prefix):  # never count a neighbour's keys
                objects += 1
                total += obj.get("Size", 0)
    return CubeStats(
        objects=objects,
        bytes=total,
        measured_at=timezone.now(),
        source=SCHEDULED,
        seconds_to_measure=round(time.monotonic() - started, 3),
    )


def refresh_cube_stats(client=None) -> CubeStats:
    """Measure the cube and store the measurement (task: refresh_cube_stats)."""
    stats = measure_cube(client)
    CubeMeasurement.objects.create(
        measured_at=stats.measured_at,
        object_count=stats.objects,
        total_bytes=stats.bytes,
        cube=settings.CLOUDCUBE.cube,
        seconds_to_measure=stats.seconds_to_measure,
        source=stats.source,
    )
    # Only the newest row is read; a few months are kept to look back on.
    CubeMeasurement.objects.filter(measured_at__lt=stats.measured_at - KEEP_MEASUREMENTS).delete()
    logger.info(
        "Cube %s measured: %d objects, %.1f MB (%.1f s)",
        settings.CLOUDCUBE.cube,
        stats.objects,
        stats.mb,
        stats.seconds_to_measure,
    )
    return stats


def cube_stats(as_of: datetime | None = None) -> CubeStats | None:
    """The latest known size of the cube (at `as_of`, default now), from the
    database; None if it was never measured.

    Never calls S3. Raises only what the database raises.
    """
    cube = settings.CLOUDCUBE.cube
    as_of = as_of or timezone.now()
    candidates: list[CubeStats] = []
    measurement = (
        CubeMeasurement.objects.filter(cube=cube, measured_at__lte=as_of)
        .order_by("-measured_at")
        .first()
    )
    if measurement is not None:
        candidates.append(
            CubeStats(
                objects=measurement.object_count,
                bytes=measurement.total_bytes,
                measured_at=measurement.measured_at,
                source=measurement.source,
                seconds_to_measure=measurement.seconds_to_measure,
            )
        )
    run = (
        CleanupRun.objects.filter(cube=cube, status__in=_FULL_SCAN, finished_at__lte=as_of)
        .order_by("-finished_at")
        .first()
    )
    if run is not None:
        # What the listing found, less what this run deleted (a dry run deletes nothing).
        deleted, freed = (0, 0) if run.dry_run else (run.files_deleted, run.bytes_freed)
        candidates.append(
            CubeStats(
                objects=max(0, run.objects_scanned - deleted),
                bytes=max(0, run.bytes_scanned - freed),
                measured_at=run.finished_at,
                source=f"cleanup run #{run.pk}",
                seconds_to_measure=run.duration_seconds,
            )
        )
    return max(candidates, key=lambda s: s.measured_at, default=None)
