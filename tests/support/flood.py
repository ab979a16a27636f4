"""GET /health/ many times at once, from a process of its own.

Run as a script (`python tests/support/flood.py PORT COUNT TIMEOUT`); it prints
one JSON object: the answers and when the flood started and how long it took
(time.monotonic(), which every process on the machine shares). Its threads
must not share the test process's GIL with the proxies the test measures S3
through: under load, 200 threads in one interpreter delay a proxy's forwarding
past the health check's own timeouts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request


def get_health(port: int, timeout: float = 10) -> tuple[int, dict, float]:
    """(status, body, seconds it took) of one GET /health/."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(  # noqa: S310 - local test server
            f"http://127.0.0.1:{port}/health/", timeout=timeout
        ) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw), time.monotonic() - started


def flood(port: int, count: int, timeout: float) -> dict:
    go = threading.Barrier(count)
    answers: list[tuple[int, dict, float]] = []

    def one() -> None:
        go.wait()
        answers.append(get_health(port, timeout=timeout))

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * timeout)
    return {"answers": answers, "started": started, "took": time.monotonic() - started}


if __name__ == "__main__":
    port, count, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(flood(port, count, timeout)))
