"""An HTTP proxy in front of the local S3 server that behaves like S3 far away.

The local server answers in microseconds, which hides what a cleanup pays on
real S3: tens of milliseconds a ListObjectsV2 page, hundreds a 1,000-key
DeleteObjects. This proxy forwards every request to the local server and
adds that latency (configurable), concurrently for concurrent requests, as
the real service would. For fault tests it can also answer chosen
DeleteObjects requests itself: a whole-request error (e.g. 403), or
503 SlowDown, S3's throttling answer. Like S3 (and unlike moto), a Quiet
DeleteObjects answer lists only the keys that could not be deleted. With a
`throttle` (devstack/s3_throttle.py) it also answers like S3 at its request
rates: a DeleteObjects (one token a key) or list over its prefix's rate gets
`503 SlowDown`. It records what it saw: requests per operation, SlowDown
answers, and the most DeleteObjects in flight at once.

    proxy = S3LatencyProxy(server.port, list_ms=50, delete_ms_per_1000=500).start()
    client = boto3.client("s3", endpoint_url=proxy.endpoint_url, ...)
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import unescape

from devstack.background_server import BackgroundServer
from devstack.ports import free_port
from devstack.s3_throttle import READ, SLOWDOWN_BODY, WRITE, S3Throttle

_QUIET = re.compile(rb"<Quiet>\s*true\s*</Quiet>", re.IGNORECASE)
_DELETED = re.compile(rb"<Deleted>.*?</Deleted>", re.DOTALL)
_KEY = re.compile(rb"<Key>(.*?)</Key>", re.DOTALL)
_ENTITIES = {"&quot;": '"', "&apos;": "'"}

# (status, S3 error code, message) or None to forward the request.
DeleteVerdict = tuple[int, str, str] | None


class S3LatencyProxy(BackgroundServer):
    def __init__(
        self,
        target_port: int,
        *,
        list_ms: float = 50,
        delete_ms_per_1000: float = 500,
        other_ms: float = 0,
        target_host: str = "127.0.0.1",
        throttle: S3Throttle | None = None,
    ):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.list_ms = list_ms
        self.delete_ms_per_1000 = delete_ms_per_1000
        self.other_ms = other_ms
        # Called with the 1-based number of each DeleteObjects request and its
        # key count; a verdict answers it instead of the server.
        self.delete_verdict: Callable[[int, int], DeleteVerdict] | None = None
        # Called with each DeleteObjects request's keys, the same way.
        self.delete_keys_verdict: Callable[[list[str]], DeleteVerdict] | None = None
        self.throttle = throttle
        self.slowdowns: Counter[str] = Counter()  # 503 SlowDown answers per operation
        self.operations: Counter[str] = Counter()
        self.deletes_in_flight = 0
        self.max_deletes_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cloudcube_url(self, bucket: str, cube: str) -> str:
        return f"{self.endpoint_url}/{bucket}/{cube}"

    def start(self) -> S3LatencyProxy:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        return self._serve(ThreadingHTTPServer(("127.0.0.1", self.port), Handler), "s3-latency")


def _operation(method: str, target: str) -> str:
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET" and query.get("list-type") == ["2"]:
        return "ListObjectsV2"
    return method


_SLOWDOWN = (503, "SlowDown", "Please reduce your request rate.")


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: S3LatencyProxy
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle's algorithm the body
    # waits for the client's delayed ACK (40 ms on Linux), a latency S3 lacks.
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass

    def _handle(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        operation = _operation(self.command, self.path)
        started = time.monotonic()
        verdict: DeleteVerdict = None
        with proxy._lock:
            proxy.operations[operation] += 1
            number = proxy.operations[operation]
            if operation == "DeleteObjects":
                proxy.deletes_in_flight += 1
                proxy.max_deletes_in_flight = max(
                    proxy.max_deletes_in_flight, proxy.deletes_in_flight
                )
        try:
            if operation == "DeleteObjects":
                keys = [unescape(k.decode(), _ENTITIES) for k in _KEY.findall(body)]
                delay = proxy.delete_ms_per_1000 * len(keys) / 1000
                if proxy.delete_verdict is not None:
                    verdict = proxy.delete_verdict(number, len(keys))
                if verdict is None and proxy.delete_keys_verdict is not None:
                    verdict = proxy.delete_keys_verdict(keys)
                if verdict is None and proxy.throttle and not proxy.throttle.admit(WRITE, keys):
                    verdict = _SLOWDOWN
            elif operation == "ListObjectsV2":
                delay = proxy.list_ms
                prefix = parse_qs(urlsplit(self.path).query).get("prefix", [""])[0]
                if proxy.throttle and not proxy.throttle.admit(READ, [prefix]):
                    verdict = _SLOWDOWN
            else:
                delay = proxy.other_ms
            if verdict is not None and verdict[0] == 503:
                delay = proxy.list_ms  # a refusal costs one round trip, not the work
                with proxy._lock:
                    proxy.slowdowns[operation] += 1
            if verdict is not None:
                status, code, message = verdict
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                ).encode()
                if verdict == _SLOWDOWN:
                    payload = SLOWDOWN_BODY
                headers = [("Content-Type", "application/xml")]
            else:
                status, headers, payload = self._forward(body)
                if operation == "DeleteObjects" and status == 200 and _QUIET.search(body):
                    # S3 in Quiet mode answers only the keys it could not
                    # delete; moto lists every deleted key too.
                    payload = _DELETED.sub(b"", payload)
            # The latency is the whole request's, wherever the server's time went.
            remaining = delay / 1000 - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
        finally:
            if operation == "DeleteObjects":
                with proxy._lock:
                    proxy.deletes_in_flight -= 1
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.owner.target, timeout=120)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle
