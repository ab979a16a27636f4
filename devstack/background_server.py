"""One way to run a small socketserver in a background thread (the local test
peers: S3 latency and counting proxies, the Sentry collector, the SMTP server)."""

from __future__ import annotations

import socketserver
import threading
from typing import Self


class BackgroundServer:
    """`start()` builds the server and hands it to `_serve`; `stop()` and `with` end it."""

    _server: socketserver.BaseServer | None = None

    def _serve(self, server: socketserver.ThreadingMixIn, name: str = "") -> Self:
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, name=name or type(self).__name__, daemon=True
        ).start()
        return self

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
