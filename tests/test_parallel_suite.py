"""What the parallel suite relies on: ports are never handed to two workers, and
a test that starts a process without the `processes` marker fails."""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from devstack.ports import CLAIM_DIR, free_port, release_port
from tests.support import process_guard


def test_a_port_handed_out_is_claimed_until_released():
    port = free_port()
    # Another open file description (as in another xdist worker) cannot take the claim.
    fd = os.open(CLAIM_DIR / str(port), os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release_port(port)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)
    assert free_port() != free_port()


@pytest.mark.processes  # it starts one, on purpose
def test_a_process_started_by_an_unmarked_test_fails_it_naming_the_command():
    with pytest.raises(process_guard.UnmarkedProcessError, match="true-guard-check"):
        with process_guard.watching("tests/x.py::test_unmarked"):
            subprocess.run(["bash", "-c", "true true-guard-check"], check=True)
    with process_guard.watching("tests/x.py::test_unmarked"), process_guard.allowed():
        subprocess.run(["true"], check=True)  # a shared server's start does not count
