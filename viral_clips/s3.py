"""A boto3 S3 client for the app's Cloudcube cube, configured in one place."""

from __future__ import annotations

import threading
from datetime import datetime

import boto3
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp
from django.conf import settings

_session: boto3.session.Session | None = None
_session_lock = threading.Lock()  # making clients from one session is not thread-safe


def fast_timestamp(value):
    """S3's ISO 8601 timestamps ("2026-12-01T09:30:25.000Z") by the standard library.

    botocore's default parser (dateutil) costs about half a millisecond a key:
    most of the CPU of listing a 1,000-key page. Anything else (HTTP dates in
    headers, epoch numbers) still goes to botocore's parser.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return parse_timestamp(value)


def _boto3_session() -> boto3.session.Session:
    global _session
    if _session is None:
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=fast_timestamp
        )
        _session = boto3.session.Session(botocore_session=core)
    return _session


def cloudcube_client(
    *, connect_timeout: float = 5, read_timeout: float = 30, max_attempts: int = 5
):
    """An S3 client for the cube's bucket (thread-safe once made).

    Retries use botocore's `standard` mode, set explicitly: it retries
    throttling (SlowDown/503) and transient errors with backoff. The pool
    holds a connection for each of the cleanup's delete threads and its listing.
    """
    cube = settings.CLOUDCUBE
    with _session_lock:
        return _boto3_session().client(
            "s3",
            endpoint_url=cube.endpoint_url,
            region_name=cube.region,
            aws_access_key_id=settings.CLOUDCUBE_ACCESS_KEY_ID,
            aws_secret_access_key=settings.CLOUDCUBE_SECRET_ACCESS_KEY,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if cube.endpoint_url else "virtual"},
                retries={"mode": "standard", "max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=max(10, settings.CLEANUP_DELETES_IN_FLIGHT + 2),
            ),
        )
