"""A boto3 S3 client for the app's Cloudcube cube, configured in one place."""

from __future__ import annotations

import boto3
from botocore.config import Config
from django.conf import settings


def cloudcube_client(
    *, connect_timeout: float = 5, read_timeout: float = 30, max_attempts: int = 5
):
    """An S3 client for the cube's bucket.

    Retries use botocore's `standard` mode, set explicitly: it retries
    throttling (SlowDown/503) and transient errors with backoff.
    """
    cube = settings.CLOUDCUBE
    return boto3.client(
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
        ),
    )
