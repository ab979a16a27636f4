"""Make the local S3 server refuse deletes, the way S3 does under a bucket policy.

moto's server evaluates a bucket policy for every key of a DeleteObjects request
and answers each denied key with a per-key ``AccessDenied`` error (Quiet mode
returns only those), exactly what a partial cleanup run meets on S3.
"""

from __future__ import annotations

import json

from devstack.s3_server import LocalS3Server


def deny_deletes_under(server: LocalS3Server, bucket: str, prefix: str) -> None:
    """Deny s3:DeleteObject on every key of `bucket` under `prefix` (bucket-wide policy)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            }
        ],
    }
    server.backend.put_bucket_policy(bucket, json.dumps(policy).encode())


def allow_deletes(server: LocalS3Server, bucket: str) -> None:
    server.backend.delete_bucket_policy(bucket)
