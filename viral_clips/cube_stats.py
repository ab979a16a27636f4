"""The cube's current size and object count, for the dashboard and the weekly report.

Measured by listing every key under ``<cube>/`` with ListObjectsV2, a page of
1,000 keys at a time (only running totals are kept, so memory stays flat).
Listing a large cube takes a while, so the answer is kept in Redis for
CUBE_STATS_CACHE_SECONDS: every dashboard view after the first is instant, and
all web dynos share one measurement. A finished cleanup drops the cached value
(see viral_clips.run_now), so the page never shows a size from before a run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.utils import timezone

from scheduling.app_redis import app_redis

logger = logging.getLogger(__name__)

CACHE_KEY = "koolclips:cube-stats"
S3_MAX_KEYS_PER_PAGE = 1000


@dataclass(frozen=True)
class CubeStats:
    objects: int
    bytes: int
    measured_at: datetime
    seconds_to_measure: float
    cached: bool = False

    @property
    def mb(self) -> float:
        return self.bytes / (1024 * 1024)

    def to_json(self) -> str:
        data = asdict(self)
        data["measured_at"] = self.measured_at.isoformat()
        data.pop("cached")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> CubeStats:
        data = json.loads(text)
        data["measured_at"] = datetime.fromisoformat(data["measured_at"])
        return cls(**data, cached=True)


def measure_cube(client=None) -> CubeStats:
    """List the whole cube now and total its objects and bytes."""
    if client is None:
        from viral_clips.s3 import cloudcube_client

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
        seconds_to_measure=round(time.monotonic() - started, 3),
    )


def cube_stats(max_age: int | None = None) -> CubeStats:
    """The cube's size, from the cache when it is at most `max_age` seconds old.

    Raises what listing raises (botocore errors) when the cube cannot be read.
    Redis being down only costs the cache: the cube is then measured directly.
    """
    ttl = settings.CUBE_STATS_CACHE_SECONDS if max_age is None else max_age
    if ttl > 0:
        try:
            with app_redis() as client:
                cached = client.get(CACHE_KEY)
        except redis.RedisError as exc:
            logger.warning("cube stats cache unavailable (%s): measuring", type(exc).__name__)
            cached = None
        if cached:
            stats = CubeStats.from_json(cached)
            if (timezone.now() - stats.measured_at).total_seconds() <= ttl:
                return stats
    stats = measure_cube()
    if settings.CUBE_STATS_CACHE_SECONDS > 0:
        try:
            with app_redis() as client:
                client.set(CACHE_KEY, stats.to_json(), ex=settings.CUBE_STATS_CACHE_SECONDS)
        except redis.RedisError:
            pass  # already logged on read, or transient: the next view measures again
    return stats


def forget_cube_stats() -> None:
    """Drop the cached measurement (after a cleanup changed the cube)."""
    try:
        with app_redis() as client:
            client.delete(CACHE_KEY)
    except redis.RedisError as exc:
        logger.warning("could not drop cached cube stats (%s)", type(exc).__name__)
