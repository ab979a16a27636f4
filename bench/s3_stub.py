"""A bench-only S3 stub server: in memory, fast at a million keys, with S3's latency.

Not for tests (they use moto's server, devstack/s3_server.py): moto re-sorts the
whole bucket for every ListObjectsV2 page, so it cannot list a million keys in
reasonable time. This serves, over real HTTP, what the app and its cleanup use:

- ListObjectsV2 (path style): prefix, delimiter (CommonPrefixes), start-after,
  continuation-token and max-keys (at most 1,000 keys and prefixes, as S3), keys
  in order, the XML boto3 parses; a page costs O(page): keys are kept in one
  sorted list, found by bisection;
- DeleteObjects: at most 1,000 keys a request (more is refused, as S3 does),
  Quiet or not, per-key results (a missing key counts as deleted);
- PutObject, HeadObject, GetObject (zero-filled body of the stored size), HeadBucket.

Latency model (configurable): `list_latency` seconds per list page and
`delete_latency` seconds per 1,000 keys of a DeleteObjects (proportional for a
smaller batch); other calls are immediate. Requests wait without holding the
store's lock, so concurrent requests overlap as they do on S3. With a
`throttle` (devstack/s3_throttle.py) S3's per-prefix request rates are modelled
too: a request over them is answered `503 SlowDown` after one round trip
(`list_latency`), and `slowdowns` counts those answers.

Seeding is in memory (`seed`), never over HTTP. Deleted keys stay in the sorted
list as tombstones (removing from the middle of a million-entry list costs a
memmove each); listing skips them, and `restore` brings a key back in O(1).
"""

from __future__ import annotations

import base64
import bisect
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape, unescape

from devstack.s3_throttle import READ, SLOWDOWN_BODY, WRITE, S3Throttle

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000


def s3_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def contents_xml(key: str, size: int, stamp: str) -> str:
    """One object's <Contents> in a list page, in S3's element order."""
    return (
        f"<Contents><Key>{escape(key)}</Key><LastModified>{stamp}</LastModified>"
        f'<ETag>"stub"</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass>'
        "</Contents>"
    )


class Bucket:
    """Keys in order, and each object's (size, LastModified, <Contents> XML).

    The XML is written when an object is stored (seed, put), never while a
    page is served: a list page costs the stub a join, so its own CPU (on the
    same machine as the client it serves) stays small beside the client's.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []  # sorted; may hold tombstones (keys not in objects)
        # key -> (size, LastModified as S3 says, its <Contents> XML)
        self.objects: dict[str, tuple[int, str, str]] = {}

    def put(self, key: str, size: int, last_modified: str) -> None:
        if key not in self.objects:
            i = bisect.bisect_left(self.keys, key)
            if i == len(self.keys) or self.keys[i] != key:
                self.keys.insert(i, key)
        self.objects[key] = (size, last_modified, contents_xml(key, size, last_modified))

    def _live_under(self, folder: str, start: int) -> bool:
        keys, objects = self.keys, self.objects
        for i in range(start, len(keys)):
            if not keys[i].startswith(folder):
                return False
            if keys[i] in objects:
                return True
        return False

    def delimited_page(self, prefix: str, delimiter: str, after: str | None, max_keys: int):
        """Keys without `delimiter` after the prefix, and CommonPrefixes, in key order."""
        keys, objects = self.keys, self.objects
        i = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
        if after and after.endswith(delimiter) and after.startswith(prefix):
            # Resuming after a common prefix: skip everything under it.
            i = bisect.bisect_left(keys, after[:-1] + chr(ord(delimiter) + 1))
        found: list[tuple[str, int, str, str]] = []
        prefixes: list[str] = []
        last = None
        while i < len(keys):
            key = keys[i]
            if not key.startswith(prefix):
                break
            at = key.find(delimiter, len(prefix))
            if at < 0:
                if key in objects:
                    if len(found) + len(prefixes) == max_keys:
                        return found, prefixes, True, last
                    found.append((key, *objects[key]))
                    last = key
                i += 1
                continue
            folder = key[: at + 1]
            nxt = bisect.bisect_left(keys, folder[:-1] + chr(ord(delimiter) + 1))
            if self._live_under(folder, i):
                if len(found) + len(prefixes) == max_keys:
                    return found, prefixes, True, last
                prefixes.append(folder)
                last = folder
            i = nxt
        return found, prefixes, False, last

    def page(self, prefix: str, after: str | None, max_keys: int):
        keys, objects = self.keys, self.objects
        i = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
        found: list[tuple[str, int, str, str]] = []
        n = len(keys)
        while i < n and len(found) < max_keys:
            key = keys[i]
            if not key.startswith(prefix):
                n = i  # past the prefix: nothing more
                break
            value = objects.get(key)
            if value is not None:
                found.append((key, *value))
            i += 1
        # Truncated only if another live key under the prefix follows.
        truncated = False
        while i < n:
            key = keys[i]
            if not key.startswith(prefix):
                break
            if key in objects:
                truncated = True
                break
            i += 1
        return found, truncated


class S3Stub:
    def __init__(
        self,
        port: int = 0,
        list_latency: float = 0.05,
        delete_latency: float = 0.5,
        host: str = "127.0.0.1",
        throttle: S3Throttle | None = None,
    ):
        self.host = host
        self.throttle = throttle
        self.slowdowns: Counter[str] = Counter()  # SlowDown answers per operation
        self.list_latency = list_latency
        self.delete_latency = delete_latency
        self.buckets: dict[str, Bucket] = {}
        self.requests: Counter[str] = Counter()
        self.delete_sizes: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cloudcube_url(self, bucket: str, cube: str) -> str:
        return f"{self.endpoint_url}/{bucket}/{cube}"

    # --- in-memory access (the bench's own process) -------------------------
    def create_bucket(self, name: str) -> Bucket:
        with self._lock:
            return self.buckets.setdefault(name, Bucket())

    def seed(self, bucket: str, items: Iterable[tuple[str, int, datetime]]) -> int:
        """Replace the bucket's content with `items` (key, size, LastModified)."""
        stamps: dict[datetime, str] = {}
        objects = {}
        for key, size, when in items:
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = s3_time(when)
            objects[key] = (size, stamp, contents_xml(key, size, stamp))
        fresh = Bucket()
        fresh.objects = objects
        fresh.keys = sorted(objects)
        with self._lock:
            self.buckets[bucket] = fresh
        return len(objects)

    def restore(self, bucket: str, items: Iterable[tuple[str, int, datetime]]) -> None:
        """Put objects back (after a delete), in memory."""
        with self._lock:
            target = self.buckets[bucket]
            for key, size, when in items:
                target.put(key, size, s3_time(when))

    def count(self, bucket: str, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for k in self.buckets[bucket].objects if k.startswith(prefix))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.delete_sizes.clear()
            self.slowdowns.clear()
        if self.throttle is not None:
            self.throttle.reset()

    def start(self) -> S3Stub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- HTTP -----------------------------------------------------------------
    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes: with Nagle's algorithm the
            # body waits for the client's delayed ACK (40 ms on Linux).
            disable_nagle_algorithm = True

            def _slowdown(self, operation: str) -> None:
                stub.slowdowns[operation] += 1
                time.sleep(stub.list_latency)  # one round trip
                self._send(503, SLOWDOWN_BODY)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

            def _target(self) -> tuple[str, str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                path = unquote(parts.path).lstrip("/")
                bucket, _, key = path.partition("/")
                return bucket, key, parse_qs(parts.query, keep_blank_values=True)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                encoding = self.headers.get("Content-Encoding", "")
                sha = self.headers.get("x-amz-content-sha256", "")
                if "aws-chunked" in encoding or sha.startswith("STREAMING-"):
                    data = _decode_aws_chunked(data)
                return data

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body and "Content-Type" not in (headers or {}):
                    self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{escape(message)}</Message></Error>"
                ).encode()
                self._send(status, body)

            def _bucket(self, name: str) -> Bucket | None:
                found = stub.buckets.get(name)
                if found is None:
                    self._error(404, "NoSuchBucket", "The specified bucket does not exist")
                return found

            def do_GET(self) -> None:  # noqa: N802
                name, key, query = self._target()
                if key:
                    return self._object(name, key, with_body=True)
                if query.get("list-type") == ["2"]:
                    return self._list(name, query)
                self._error(400, "NotImplemented", "only ListObjectsV2 is served")

            def do_HEAD(self) -> None:  # noqa: N802
                name, key, _ = self._target()
                if key:
                    return self._object(name, key, with_body=False)
                stub.requests["HeadBucket"] += 1
                if name in stub.buckets:
                    self._send(200)
                else:
                    self._send(404)

            def do_PUT(self) -> None:  # noqa: N802
                name, key, _ = self._target()
                data = self._body()
                stub.requests["PutObject"] += 1
                if not key:
                    stub.create_bucket(name)
                    return self._send(200)
                with stub._lock:
                    bucket = stub.buckets.get(name)
                    if bucket is not None:
                        bucket.put(key, len(data), s3_time(datetime.now(UTC)))
                if bucket is None:
                    return self._error(404, "NoSuchBucket", "The specified bucket does not exist")
                self._send(200, headers={"ETag": '"stub"'})

            def do_POST(self) -> None:  # noqa: N802
                name, key, query = self._target()
                data = self._body()
                if key or "delete" not in query:
                    return self._error(400, "NotImplemented", "only DeleteObjects is served")
                self._delete(name, data)

            def _object(self, name: str, key: str, with_body: bool) -> None:
                stub.requests["GetObject" if with_body else "HeadObject"] += 1
                with stub._lock:
                    bucket = stub.buckets.get(name)
                    found = bucket.objects.get(key) if bucket else None
                if found is None:
                    return self._error(404, "NoSuchKey", "The specified key does not exist")
                size, stamp, _ = found
                when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.000Z")
                headers = {
                    "ETag": '"stub"',
                    "Last-Modified": when.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                    "Content-Type": "application/octet-stream",
                }
                if with_body:
                    return self._send(200, b"\0" * size, headers)
                headers["Content-Length"] = str(size)
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()

            def _list(self, name: str, query: dict[str, list[str]]) -> None:
                stub.requests["ListObjectsV2"] += 1
                prefix = query.get("prefix", [""])[0]
                if stub.throttle is not None and not stub.throttle.admit(READ, [prefix]):
                    return self._slowdown("ListObjectsV2")
                time.sleep(stub.list_latency)
                delimiter = query.get("delimiter", [""])[0]
                prefixes: list[str] = []
                max_keys = min(MAX_KEYS, int(query.get("max-keys", [MAX_KEYS])[0]))
                token = query.get("continuation-token", [None])[0]
                after = query.get("start-after", [None])[0]
                if token:
                    after = base64.urlsafe_b64decode(token.encode()).decode()
                with stub._lock:
                    bucket = stub.buckets.get(name)
                    if bucket is None:
                        found, truncated = None, False
                    elif delimiter:
                        found, prefixes, truncated, last = bucket.delimited_page(
                            prefix, delimiter, after, max_keys
                        )
                    else:
                        found, truncated = bucket.page(prefix, after, max_keys)
                        last = found[-1][0] if found else None
                if found is None:
                    return self._error(404, "NoSuchBucket", "The specified bucket does not exist")
                parts = [
                    f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{S3_NS}">',
                    f"<Name>{escape(name)}</Name><Prefix>{escape(prefix)}</Prefix>",
                    f"<KeyCount>{len(found) + len(prefixes)}</KeyCount>"
                    f"<MaxKeys>{max_keys}</MaxKeys>",
                    f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
                ]
                if token:
                    parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
                if delimiter:
                    parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
                if truncated:
                    last = base64.urlsafe_b64encode(last.encode()).decode()
                    parts.append(f"<NextContinuationToken>{last}</NextContinuationToken>")
                parts.extend(xml for _, _, _, xml in found)
                parts.extend(
                    f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>"
                    for p in prefixes
                )
                parts.append("</ListBucketResult>")
                self._send(200, "".join(parts).encode())

            def _delete(self, name: str, data: bytes) -> None:
                stub.requests["DeleteObjects"] += 1
                parsed = _delete_body(data)
                if parsed is None:
                    return self._error(400, "MalformedXML", "not XML")
                keys, quiet = parsed
                if not keys or len(keys) > MAX_KEYS:
                    return self._error(400, "MalformedXML", f"{len(keys)} keys (1 to 1000)")
                if stub.throttle is not None and not stub.throttle.admit(WRITE, keys):
                    return self._slowdown("DeleteObjects")
                stub.delete_sizes.append(len(keys))
                time.sleep(stub.delete_latency * len(keys) / MAX_KEYS)
                with stub._lock:
                    bucket = stub.buckets.get(name)
                    if bucket is not None:
                        for key in keys:
                            bucket.objects.pop(key, None)  # a tombstone stays in the list
                if bucket is None:
                    return self._error(404, "NoSuchBucket", "The specified bucket does not exist")
                parts = [f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="{S3_NS}">']
                if not quiet:
                    parts.extend(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in keys)
                parts.append("</DeleteResult>")
                self._send(200, "".join(parts).encode())

        return Handler


_PLAIN_DELETE = re.compile(
    rb"\s*(?:<\?xml[^>]*\?>\s*)?<Delete(?: xmlns=\"[^\"]*\")?>"
    rb"((?:<Object><Key>[^<]*</Key></Object>)*)"
    rb"(?:<Quiet>(true|false)</Quiet>)?</Delete>\s*"
)
_KEY_TEXT = re.compile(rb"<Key>([^<]*)</Key>")


def _delete_body(data: bytes) -> tuple[list[str], bool] | None:
    """(keys, quiet) of a DeleteObjects body, None if it is not XML.

    A body of plain <Object><Key> elements (what the cleanup sends) is read
    by a regular expression, and its five entities decoded; anything else
    (other elements, character references, CDATA, whitespace) by ElementTree.
    """
    plain = _PLAIN_DELETE.fullmatch(data) if b"&#" not in data else None
    if plain is not None:
        keys = [_unescape(raw.decode()) for raw in _KEY_TEXT.findall(plain.group(1))]
        return keys, plain.group(2) == b"true"
    try:
        root = ET.fromstring(data)  # noqa: S314 - the bench client, on localhost
    except ET.ParseError:
        return None
    local = lambda tag: tag.rsplit("}", 1)[-1]  # noqa: E731
    keys, quiet = [], False
    for child in root:
        if local(child.tag) == "Object":
            for field in child:
                if local(field.tag) == "Key":
                    keys.append(field.text or "")
        elif local(child.tag) == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
    return keys, quiet


def _unescape(text: str) -> str:
    return unescape(text, {"&quot;": '"', "&apos;": "'"}) if "&" in text else text


def _decode_aws_chunked(data: bytes) -> bytes:
    """The payload of an aws-chunked body: `<hex size>[;ext]\\r\\n<bytes>\\r\\n`..., trailers."""
    out, pos = bytearray(), 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";", 1)[0], 16)
        pos = end + 2
        if size == 0:
            break
        out += data[pos : pos + size]
        pos += size + 2
    return bytes(out)
