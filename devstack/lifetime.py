"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM):
    """A preexec_fn for subprocess.Popen: the child gets `sig` when its parent dies.

    Linux only (a no-op elsewhere). The setting survives exec, so a Procfile
    line run through `bash -c exec ...` keeps it.
    """

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)

    return preexec
