"""The scheduling layer's own job: the worker canary (scheduling/canary.py).

Bookkeeping, not work: no run ledger, no Sentry monitor; each message expires
after one interval, so a stopped worker does not come back to a backlog.
"""

from __future__ import annotations

from scheduling.registry import Job, register

CANARY = register(
    Job(
        entry="worker-canary",
        task="scheduling.tasks.canary",
        schedule_setting="HEALTH_CANARY_SCHEDULE",
        ledger=False,
        monitor=False,
        expires_with_period=True,
        description="Prove a worker still consumes tasks (/health/'s worker check)",
    )
)
