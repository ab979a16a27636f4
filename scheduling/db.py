"""Database writes that survive a blip (a PostgreSQL restart, a terminated backend).

Django checks a connection's health once per request or task, so after the
server drops it every later query on that connection fails. Bookkeeping writes
go through `db_retry`: on an operational error the broken connection is closed
(the next query opens a fresh one) and the write is tried again a few times.
Never use it inside `transaction.atomic()`: a connection cannot be closed there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 4
BACKOFF_SECONDS = 0.5  # 0.5, 1, 1.5: a restarted server is back within a few seconds


def db_retry(
    write: Callable[[], T], *, what: str = "database write", attempts: int = ATTEMPTS
) -> T:
    """Run `write()`; on a broken connection close it and try again (at most `attempts`)."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if attempt == attempts or connection.in_atomic_block:
                raise
            logger.warning(
                "%s failed (%s: %s); retrying on a fresh connection (%d/%d)",
                what,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                attempt,
                attempts - 1,
            )
            connection.close()
            time.sleep(BACKOFF_SECONDS * attempt)
    raise AssertionError("unreachable")
