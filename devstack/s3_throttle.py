"""S3's request-rate limits as a model: token buckets per partitioned prefix.

AWS documents (docs/benchmarks.md#the-s3-model cites the pages) that an
application can make at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD
requests a second per partitioned prefix, that S3 answers `503 SlowDown` above
that, and that a multi-object delete (DeleteObjects) counts each key it deletes
as one request. This module models exactly that, for the bench's S3 stub
(bench/s3_stub.py) and the tests' latency proxy (devstack/latency_proxy.py):

- a prefix partition is a key's folder (everything up to its last "/"), so
  `clips/2026/11/a.mp4` and `clips/2026/10/b.mp4` have separate limits and
  keys directly under `clips/` share `clips/`'s;
- each (partition, request class) has a token bucket refilled at the class's
  rate, holding at most `burst_seconds` of it (S3 publishes no burst; one second
  is the model's choice) and never less than one request's cost (1,000 keys);
- a request is admitted only if every partition it touches has the tokens
  (DeleteObjects: one a key, charged to each key's partition); otherwise it is
  refused whole, nothing charged, and answered with `SLOWDOWN_BODY`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

WRITE_RATE = 3500.0  # PUT/COPY/POST/DELETE a second per partitioned prefix
READ_RATE = 5500.0  # GET/HEAD a second per partitioned prefix
MAX_REQUEST_COST = 1000  # a DeleteObjects of 1,000 keys costs 1,000 tokens

WRITE, READ = "write", "read"

SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>MODEL0THROTTLE00</RequestId><HostId>s3-throttle-model</HostId></Error>"
)


def partition(key: str) -> str:
    """The partitioned prefix a key (or a list request's prefix) counts against."""
    return key[: key.rfind("/") + 1]


class TokenBucket:
    """`rate` tokens a second, holding at most `capacity`; starts full."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.updated = clock()

    def refill(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens


class S3Throttle:
    """Admits or refuses requests as S3's per-prefix rate limits would."""

    def __init__(
        self,
        *,
        write_rate: float = WRITE_RATE,
        read_rate: float = READ_RATE,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rates = {WRITE: write_rate, READ: read_rate}
        self.burst_seconds = burst_seconds
        self.clock = clock
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.admitted: Counter[str] = Counter()  # tokens spent, per partition (write class)
        self.refused = 0  # requests answered SlowDown
        self.first_admitted: dict[str, float] = {}
        self.last_admitted: dict[str, float] = {}
        self._lock = threading.Lock()

    def _bucket(self, part: str, kind: str) -> TokenBucket:
        bucket = self.buckets.get((part, kind))
        if bucket is None:
            rate = self.rates[kind]
            capacity = max(MAX_REQUEST_COST, rate * self.burst_seconds)
            bucket = self.buckets[(part, kind)] = TokenBucket(rate, capacity, self.clock)
        return bucket

    def admit(self, kind: str, names: Iterable[str]) -> bool:
        """One request touching these keys (or a list request's one prefix)."""
        costs = Counter(partition(name) for name in names)
        with self._lock:
            buckets = [(self._bucket(part, kind), cost) for part, cost in costs.items()]
            if any(bucket.refill() < cost for bucket, cost in buckets):
                self.refused += 1
                return False
            now = self.clock()
            for (bucket, cost), part in zip(buckets, costs, strict=True):
                bucket.tokens -= cost
                if kind == WRITE:
                    self.admitted[part] += cost
                    self.first_admitted.setdefault(part, now)
                    self.last_admitted[part] = now
            return True

    def reset(self) -> None:
        with self._lock:
            self.buckets.clear()
            self.admitted.clear()
            self.first_admitted.clear()
            self.last_admitted.clear()
            self.refused = 0

    def keys_per_second(self) -> dict[str, float]:
        """Deleted keys a second per partition, averaged over the delete phase
        (the first delete admitted in any partition to the last)."""
        with self._lock:
            if not self.admitted:
                return {}
            start = min(self.first_admitted.values())
            span = max(self.last_admitted.values()) - start
            if span <= 0:
                return {}
            return {part: count / span for part, count in self.admitted.items()}
