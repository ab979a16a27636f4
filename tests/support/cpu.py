"""`--cpu-report FILE`: each test's CPU seconds, its own and its processes'.

On this two-core machine the suite is bound by CPU, not by waiting (the
workers overlap the waits): the tests to shrink are those that cost the most
CPU, which are not always the longest. Every xdist worker appends one JSON
line per test (setup, call and teardown) to FILE: wall seconds, the worker's
own CPU (its threads: the local S3 server, the tests' clients) and its
children's (the celery, gunicorn and manage.py processes a test started and
waited for). The controller prints the totals and the 20 costliest tests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest


class CPUReport:
    def __init__(self, path: str, controller: bool) -> None:
        self.path = Path(path)
        if controller:  # before the xdist workers start: this run's lines only
            self.path.unlink(missing_ok=True)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        before, started = os.times(), time.monotonic()
        yield
        after = os.times()
        line = {
            "test": item.nodeid,
            "wall": round(time.monotonic() - started, 3),
            "own": round(after.user - before.user + after.system - before.system, 3),
            "children": round(
                after.children_user
                - before.children_user
                + after.children_system
                - before.children_system,
                3,
            ),
            "processes": item.get_closest_marker("processes") is not None,
        }
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, config: pytest.Config) -> None:
        if getattr(config, "workerinput", None) is not None or not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        cpu = {row["test"]: row["own"] + row["children"] for row in rows}
        spawning = sum(cpu[row["test"]] for row in rows if row["processes"])
        write = terminalreporter.write_line
        write(f"CPU of {len(rows)} tests: {sum(cpu.values()):.0f} s ", bold=True)
        write(f"  ({spawning:.0f} s in tests marked processes; lines in {self.path})")
        for test, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])[:20]:
            write(f"  {seconds:6.1f} s  {test}")
