"""A test that starts a process must say so with `@pytest.mark.processes`.

`make quick` runs `-m "not processes and not browser"`, and the suite schedules
process tests first (they are the long ones): both rely on the marker being
true. While an unmarked test sets up or runs, every way of starting a process
(subprocess.Popen and what goes through it, os.fork, os.posix_spawn) is
watched, and the test fails naming the command. Shared servers that a session
fixture starts once for the whole run (the suite's redis-server) are started
under `allowed()`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_watching = False
_allowed = 0
_started: list[str] = []


def _note(what: str) -> None:
    if _watching and not _allowed:
        _started.append(what)


_original_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _execute_child(self, args, *rest, **kwargs):
    _note(" ".join(map(str, args)) if isinstance(args, list | tuple) else str(args))
    return _original_execute_child(self, args, *rest, **kwargs)


def _wrap(name: str):
    original = getattr(os, name)

    def wrapper(*args, **kwargs):
        _note(f"os.{name}{'' if name == 'fork' else ' ' + str(args[0])}")
        return original(*args, **kwargs)

    return wrapper


def install() -> None:
    """Patch the process-starting calls once (they only record while watching)."""
    if getattr(subprocess.Popen, "_koolclips_guarded", False):
        return
    subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
    subprocess.Popen._koolclips_guarded = True  # type: ignore[attr-defined]
    for name in ("fork", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, _wrap(name))


@contextmanager
def allowed() -> Iterator[None]:
    """Start shared infrastructure (a session fixture's server) without it
    counting against the test that happens to set it up first."""
    global _allowed
    _allowed += 1
    try:
        yield
    finally:
        _allowed -= 1


class UnmarkedProcessError(AssertionError):
    pass


@contextmanager
def watching(test_name: str) -> Iterator[None]:
    """Fail an unmarked test (after it ran, so its own outcome is kept when it
    failed anyway) if it started a process."""
    global _watching
    _started.clear()
    _watching = True
    try:
        yield
    finally:
        _watching = False
    if _started:
        first = _started[0][:200]
        raise UnmarkedProcessError(
            f"{test_name} started {len(_started)} process(es) (first: {first}) but is not"
            " marked @pytest.mark.processes: mark it, so that `make quick` leaves it out"
            " and the scheduler starts it early"
        )
