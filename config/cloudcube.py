"""Parse the Cloudcube add-on's ``CLOUDCUBE_URL`` into bucket, cube and endpoint.

A cube is a key prefix inside a bucket that Cloudcube shares between many
customers, so everything the app reads, writes or deletes must stay under
``<cube>/``. Two URL forms are accepted:

* virtual-hosted AWS, as the add-on hands it out:
  ``https://cloud-cube-us2.s3.amazonaws.com/<cube>`` (bucket = first host label)
* path-style, for any other S3-compatible endpoint (the local moto server):
  ``http://127.0.0.1:9000/<bucket>/<cube>``
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Regions of the buckets Cloudcube is known to use; anything else falls back to
# us-east-1 and botocore's S3 region redirector, or CLOUDCUBE_REGION.
KNOWN_BUCKET_REGIONS = {
    "cloud-cube": "us-east-1",
    "cloud-cube-us2": "us-east-1",
    "cloud-cube-eu": "eu-west-1",
    "cloud-cube-eu2": "eu-central-1",
    "cloud-cube-jp": "ap-northeast-1",
}

_CUBE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AWS_HOST_RE = re.compile(r"^(?P<bucket>[^.]+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")


class CloudcubeURLError(ValueError):
    """CLOUDCUBE_URL is not a URL this app can use."""


@dataclass(frozen=True)
class CloudcubeConfig:
    bucket: str
    cube: str
    endpoint_url: str | None  # None means AWS itself (virtual-hosted)
    region: str

    @property
    def prefix(self) -> str:
        """Every key of this cube starts with this (note the trailing slash)."""
        return f"{self.cube}/"

    @property
    def public_prefix(self) -> str:
        """Files under here are publicly readable; uploads go here."""
        return f"{self.cube}/public/"


def parse_cloudcube_url(url: str, region: str | None = None) -> CloudcubeConfig:
    """Split CLOUDCUBE_URL into its parts, or raise CloudcubeURLError saying why."""
    if not url or not url.strip():
        raise CloudcubeURLError("CLOUDCUBE_URL is empty")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise CloudcubeURLError(f"CLOUDCUBE_URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise CloudcubeURLError(f"CLOUDCUBE_URL has no host: {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise CloudcubeURLError("CLOUDCUBE_URL must not carry credentials, a query or a fragment")
    segments = [s for s in parts.path.split("/") if s]
    host = parts.hostname.lower()

    aws = _AWS_HOST_RE.match(host)
    if aws:
        if len(segments) != 1:
            raise CloudcubeURLError(
                "CLOUDCUBE_URL on AWS must be https://<bucket>.s3.amazonaws.com/<cube>"
                f" (exactly one path segment), got {url!r}"
            )
        bucket, cube, endpoint = aws["bucket"], segments[0], None
        region = region or aws["region"] or KNOWN_BUCKET_REGIONS.get(bucket, "us-east-1")
    else:
        if len(segments) != 2:
            raise CloudcubeURLError(
                "CLOUDCUBE_URL for a non-AWS endpoint must be path-style,"
                f" <scheme>://<host>[:port]/<bucket>/<cube>, got {url!r}"
            )
        bucket, cube = segments
        try:
            port = parts.port
        except ValueError as exc:
            raise CloudcubeURLError(f"CLOUDCUBE_URL has a bad port: {url!r}") from exc
        netloc = f"[{host}]" if ":" in host else host
        endpoint = f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
        region = region or "us-east-1"

    if not _BUCKET_RE.match(bucket):
        raise CloudcubeURLError(f"CLOUDCUBE_URL names an invalid bucket {bucket!r}")
    if not _CUBE_RE.match(cube):
        raise CloudcubeURLError(
            f"CLOUDCUBE_URL names an invalid cube {cube!r} (letters, digits, '.', '_' and '-' only)"
        )
    return CloudcubeConfig(bucket=bucket, cube=cube, endpoint_url=endpoint, region=region)


class CleanupPrefixesError(ValueError):
    """CLEANUP_PREFIXES is not a list of folders inside the cube."""


def parse_cleanup_prefixes(raw: str | None) -> tuple[str, ...]:
    """CLEANUP_PREFIXES: cube-relative folders the cleanup may expire besides the clips'.

    Comma-separated, e.g. ``public/exports/,tmp/``. Each item must stay inside
    the cube: no leading ``/``, no ``.`` or ``..`` segment, no empty item or
    segment. Items are normalised to end with ``/`` so ``tmp`` never matches
    ``tmpfiles/``. Unset (None) means none; set but empty is refused, since an
    empty item would mean the whole cube.
    """
    if raw is None:
        return ()
    items = [item.strip() for item in raw.split(",")]
    prefixes: list[str] = []
    for item in items:
        if not item:
            raise CleanupPrefixesError(
                f"CLEANUP_PREFIXES={raw!r} has an empty item; list cube-relative folders"
                " separated by commas (e.g. 'public/exports/,tmp/'), or unset it to expire"
                " only the clips' folder"
            )
        if item.startswith("/") or "\\" in item:
            raise CleanupPrefixesError(
                f"CLEANUP_PREFIXES item {item!r} must be relative to the cube"
                " (no leading '/' or backslash)"
            )
        segments = item.rstrip("/").split("/")
        if any(segment in ("", ".", "..") for segment in segments):
            raise CleanupPrefixesError(
                f"CLEANUP_PREFIXES item {item!r} must stay inside the cube"
                " (no '.', '..' or empty path segment)"
            )
        if any(ord(ch) < 32 for ch in item):
            raise CleanupPrefixesError(
                f"CLEANUP_PREFIXES item {item!r} contains a control character"
            )
        prefixes.append("/".join(segments) + "/")
    return tuple(dict.fromkeys(prefixes))
