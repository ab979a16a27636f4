"""The Cloudcube cleanup: delete clip files older than the retention period.

What it may delete and what it never deletes: docs/cleanup.md. The package, one
idea a module: `scope` (what is listed), `run` (one run, record to outcome),
`books` (its database records), `pipeline` (DeleteObjects, a few in flight),
`errors`.
"""

from viral_clips.cleanup.books import CleanupReport
from viral_clips.cleanup.errors import (
    CleanupBookkeepingFailed,
    CleanupInterrupted,
    InvalidRetention,
)
from viral_clips.cleanup.run import (
    MAX_RETENTION_DAYS,
    RunContext,
    Standalone,
    default_retention_days,
    retention_or_default,
    run_cleanup,
    validate_retention_days,
)
from viral_clips.cleanup.scope import cleanup_scope_labels, cleanup_scopes

__all__ = [
    "MAX_RETENTION_DAYS",
    "CleanupBookkeepingFailed",
    "CleanupInterrupted",
    "CleanupReport",
    "InvalidRetention",
    "RunContext",
    "Standalone",
    "cleanup_scope_labels",
    "default_retention_days",
    "cleanup_scopes",
    "retention_or_default",
    "run_cleanup",
    "validate_retention_days",
]
