"""A local TCP proxy that can black-hole its traffic, for fault tests.

`BlackholeProxy(target_port).start()` listens on a free port and forwards every
connection to 127.0.0.1:target_port. `blackhole()` stops forwarding: connections
stay open (new ones are still accepted) but no byte moves either way, as when a
network path silently drops packets. `restore()` forwards again; bytes sent
while black-holed are dropped, so clients see a broken stream, not a delay.
"""

from __future__ import annotations

import selectors
import socket
import threading

from devstack.ports import free_port


class BlackholeProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BlackholeProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        thread = threading.Thread(target=self._accept, name="blackhole-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def blackhole(self) -> None:
        self._forwarding.clear()

    def restore(self) -> None:
        self._forwarding.set()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            thread.start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        peers = {client: upstream, upstream: client}
        selector = selectors.DefaultSelector()
        for sock in peers:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    try:
                        data = key.fileobj.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        return
                    if self._forwarding.is_set():  # black-holed: drop the bytes
                        peers[key.fileobj].sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in peers:
                sock.close()
