"""An HTTP reverse proxy that counts every request it forwards (for S3 call budgets).

Put it between a real process and the local S3 server (CLOUDCUBE_URL at the
proxy): every request the process makes to S3, over any connection, is counted
at the wire, whoever made it - unlike boto3 event hooks, which only see the
test's own clients.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from devstack.background_server import BackgroundServer
from devstack.ports import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str  # without the query
    query: str


class CountingProxy(BackgroundServer):
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.at >= since]

    def start(self) -> CountingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                with proxy._lock:
                    proxy.seen.append(Seen(time.monotonic(), self.command, parts.path, parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP_BY_HOP | {"content-length"}:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        return self._serve(ThreadingHTTPServer(("127.0.0.1", self.port), Handler))
