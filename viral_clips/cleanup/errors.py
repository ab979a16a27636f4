"""How a cleanup run refuses to start or stops early."""

from __future__ import annotations

from scheduling.shutdown import StopRequested


class InvalidRetention(ValueError):
    """retention_days is not a whole number between 1 and MAX_RETENTION_DAYS."""


class CleanupInterrupted(StopRequested):
    """The run stopped between batches because its process is asked to stop.

    Its CleanupRun (and ledger row) say `interrupted`; a redelivered task
    resumes it (listing again is idempotent: deleted keys are simply gone).
    """

    def __init__(self, run_id: int, message: str | None = None):
        super().__init__(message or f"cleanup run {run_id} interrupted between batches")
        self.run_id = run_id


class CleanupBookkeepingFailed(CleanupInterrupted):
    """The database could not record the run, even on fresh connections.

    Raised instead of carrying on unrecorded: the task re-queues it like a
    shutdown, and the redelivery (or the next run) finishes the work. Files
    already deleted stay deleted; rows left behind are reconciled next time.
    """

    def __init__(self, run_id: int, what: str, cause: BaseException):
        super().__init__(
            run_id,
            f"cleanup run {run_id} could not record {what}"
            f" ({type(cause).__name__}: {cause}); interrupted",
        )
