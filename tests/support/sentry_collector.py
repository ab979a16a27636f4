"""A local stand-in for Sentry's ingest endpoint that records what the real SDK sends.

The SDK, with its real HTTP transport, posts envelopes to
``http://<host>/api/<project>/envelope/`` for a DSN ``http://<key>@<host>/<project>``.
This server decodes each body (gzip, or brotli when the SDK has it), splits the
envelope into its items - a header line ``{"type": ..., "length": N}`` then N
bytes of payload, or the payload up to the next newline when no length is given -
and keeps the decoded bytes so tests can search everything that arrived.

It also records *which process* sent each envelope: while the request is open
the client's socket is looked up in /proc (Linux), so a test can tell a forked
beat child from a pool child from the worker's main process.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.background_server import BackgroundServer
from devstack.ports import free_port

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
PROJECT_ID = 4242


@dataclass
class Item:
    headers: dict
    payload: bytes

    @property
    def type(self) -> str | None:
        return self.headers.get("type")

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Envelope:
    headers: dict
    items: list[Item]
    raw: bytes  # the decoded body, exactly as received
    sender_pid: int | None
    received_at: float = field(default_factory=time.monotonic)


def parse_envelope(body: bytes) -> tuple[dict, list[Item]]:
    """Split an envelope into its header and items (Sentry's envelope format)."""
    header_line, _, rest = body.partition(b"\n")
    headers = json.loads(header_line) if header_line.strip() else {}
    items: list[Item] = []
    pos = 0
    while pos < len(rest):
        end = rest.find(b"\n", pos)
        line = rest[pos:] if end == -1 else rest[pos:end]
        pos = len(rest) if end == -1 else end + 1
        if not line.strip():
            continue
        item_headers = json.loads(line)
        length = item_headers.get("length")
        if length is not None:
            payload = rest[pos : pos + length]
            if len(payload) != length:
                raise ValueError(f"item says length {length}, body has {len(payload)} bytes")
            pos += length
            if rest[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = rest.find(b"\n", pos)
            payload = rest[pos:] if end == -1 else rest[pos:end]
            pos = len(rest) if end == -1 else end + 1
        items.append(Item(item_headers, payload))
    return headers, items


def decode_body(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # only sent when the SDK has brotli; then so do we

        return brotli.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def pid_of_peer(peer_port: int, local_port: int, attempts: int = 5) -> int | None:
    """The pid owning the TCP socket 127.0.0.1:peer_port -> 127.0.0.1:local_port.

    The sender is still waiting for our answer, so its socket exists; but its
    other threads open and close descriptors while we read /proc, and a table
    read in pages is no snapshot: look again before saying nobody.
    """
    for attempt in range(attempts):
        inode = _socket_inode(peer_port, local_port)
        pid = _owner_of(inode) if inode else None
        if pid is not None:
            return pid
        time.sleep(0.02 * (attempt + 1))
    return None


def _socket_inode(peer_port: int, local_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, remote = cols[1], cols[2]
                    if (
                        int(local.rsplit(":", 1)[1], 16) == peer_port
                        and int(remote.rsplit(":", 1)[1], 16) == local_port
                    ):
                        return cols[9]
        except OSError:
            continue
    return None


def _owner_of(inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    return int(entry)
            except OSError:
                continue  # closed since the listing: the rest of its fds still count
    return None


class SentryCollector(BackgroundServer):
    """An HTTP server on 127.0.0.1 that answers like Sentry and stores envelopes."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.envelopes: list[Envelope] = []
        self.rejected: list[tuple[str, str]] = []  # (path, reason) of anything unexpected
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{PROJECT_ID}"

    def start(self) -> SentryCollector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Sentry's ingest

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                sender = pid_of_peer(self.client_address[1], collector.port)
                if self.path.rstrip("/") != f"/api/{PROJECT_ID}/envelope":
                    collector._reject(self.path, "not the envelope endpoint")
                    return self._answer(404, {"detail": "not found"})
                try:
                    raw = decode_body(body, self.headers.get("Content-Encoding"))
                    headers, items = parse_envelope(raw)
                except (ValueError, OSError) as exc:
                    collector._reject(self.path, repr(exc))
                    return self._answer(400, {"detail": "bad envelope"})
                with collector._lock:
                    collector.envelopes.append(Envelope(headers, items, raw, sender))
                self._answer(200, {"id": headers.get("event_id")})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass  # quiet test output

        return self._serve(ThreadingHTTPServer(("127.0.0.1", self.port), Handler))

    def _reject(self, path: str, reason: str) -> None:
        with self._lock:
            self.rejected.append((path, reason))

    # --- what arrived -----------------------------------------------------
    def snapshot(self) -> list[Envelope]:
        with self._lock:
            return list(self.envelopes)

    def items(self, type_: str | None = None) -> list[tuple[Envelope, Item]]:
        return [
            (env, item)
            for env in self.snapshot()
            for item in env.items
            if type_ is None or item.type == type_
        ]

    def events(self) -> list[tuple[dict, int | None]]:
        """Error/message events as (payload, sender pid)."""
        return [(item.json(), env.sender_pid) for env, item in self.items("event")]

    def check_ins(self) -> list[tuple[dict, int | None]]:
        return [(item.json(), env.sender_pid) for env, item in self.items("check_in")]

    def raw_bytes(self) -> bytes:
        """Everything received, decoded, concatenated: for searching."""
        return b"\n".join(env.raw for env in self.snapshot())

    def wait_for(self, condition: Callable[[], Any], timeout: float, interval: float = 0.2):
        """Poll `condition` until it returns something truthy; return it (or None)."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result or time.monotonic() >= deadline:
                return result
            time.sleep(interval)
