"""A local S3-compatible server (moto's standalone server) in this process.

Clients talk to it over real HTTP with boto3. Running it in-process lets the
tests, the demo data and the benchmark seed and back-date objects through its
backend, tens of thousands of objects a second, instead of over HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from devstack.ports import free_port

REGION = "us-east-1"


class LocalS3Server:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self._server = None
        # Bucket policy statements that stay whatever deny_deletes adds or
        # removes (the public-read grant of a cube's public/ folder).
        self._standing: dict[str, list[dict]] = {}
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cloudcube_url(self, bucket: str, cube: str) -> str:
        """A path-style CLOUDCUBE_URL for this server."""
        return f"{self.endpoint_url}/{bucket}/{cube}"

    def start(self) -> LocalS3Server:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # moto logs every request at INFO through werkzeug: keep stdout readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _Serialized(DomainDispatcherApplication(create_backend_app))
        # Threaded like moto's ThreadedMotoServer, but one request at a time
        # inside moto (see _Serialized).
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-s3", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    # --- direct backend access (same process only) -------------------------
    @property
    def backend(self):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def create_bucket(self, bucket: str) -> None:
        if bucket not in self.backend.buckets:
            self.backend.create_bucket(bucket, REGION)

    def put(
        self, bucket: str, key: str, body: bytes = b"x", last_modified: datetime | None = None
    ) -> None:
        """Store an object directly, optionally back-dated (aware or naive UTC)."""
        obj = self.backend.put_object(bucket, key, body)
        if last_modified is not None:
            obj.last_modified = _naive_utc(last_modified)

    def put_many(self, bucket: str, items: Iterable[tuple[str, bytes, datetime | None]]) -> int:
        count = 0
        for key, body, last_modified in items:
            self.put(bucket, key, body, last_modified)
            count += 1
        return count

    def backdate(self, bucket: str, key: str, when: datetime) -> None:
        self.backend.buckets[bucket].keys[key].last_modified = _naive_utc(when)

    def keys(self, bucket: str) -> list[str]:
        return sorted(self.backend.buckets[bucket].keys.keys())

    def clear(self, bucket: str) -> None:
        """Remove every object from the bucket (between tests)."""
        if bucket in self.backend.buckets:
            self.backend.buckets[bucket].keys.clear()

    def make_public(self, bucket: str, cube: str) -> None:
        """Let anyone GET `<cube>/public/*` without credentials, as Cloudcube does.

        A bucket policy (Allow s3:GetObject, Principal "*"): moto's server
        evaluates it for anonymous requests, so everything else stays 403.
        """
        self._standing.setdefault(bucket, []).append(
            {
                "Sid": f"PublicRead-{cube}",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{cube}/public/*",
            }
        )
        self._write_policy(bucket, [])

    def deny_deletes(self, bucket: str, patterns: Iterable[str]) -> None:
        """Deny s3:DeleteObject on these keys (`*` and `?` are wildcards) by a
        bucket policy, as a real bucket's policy would.

        moto's server evaluates the policy for every key of a DeleteObjects
        request and answers each denied key with a per-key AccessDenied error,
        which is what a partial cleanup meets on S3.
        """
        deny = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": [f"arn:aws:s3:::{bucket}/{p}" for p in patterns],
        }
        self._write_policy(bucket, [deny])

    def allow_deletes(self, bucket: str) -> None:
        self._write_policy(bucket, [])

    def _write_policy(self, bucket: str, extra: list[dict]) -> None:
        statements = [*self._standing.get(bucket, []), *extra]
        if not statements:
            self.backend.delete_bucket_policy(bucket)
            return
        policy = {"Version": "2012-10-17", "Statement": statements}
        self.backend.put_bucket_policy(bucket, json.dumps(policy).encode())

    @contextmanager
    def refuse_deletes(self, keys: Iterable[str], bucket: str) -> Iterator[None]:
        """While active, the server refuses to delete exactly these keys."""
        self.deny_deletes(bucket, keys)
        try:
            yield
        finally:
            self.allow_deletes(bucket)

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Serialized:
    """A WSGI app run one request at a time.

    moto's backend is not thread-safe: a DeleteObjects while a listing sorts
    the bucket made it answer 500s. S3 itself is consistent under concurrent
    requests, so concurrent clients (the cleanup's delete threads) get a
    consistent server here too; connections are still accepted concurrently.
    """

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The body is produced under the lock too (moto builds it eagerly).
            return list(self.app(environ, start_response))


def _naive_utc(when: datetime) -> datetime:
    # moto stores naive UTC datetimes.
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when
