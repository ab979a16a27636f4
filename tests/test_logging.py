"""Log lines carry a timestamp off Heroku (no DYNO), and none on a dyno (the router adds it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} WARNING koolclips\.probe ")


def log_a_line(dyno: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DYNO"}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DJANGO_LOG_LEVEL="INFO")
    if dyno is not None:
        env["DYNO"] = dyno
    code = (
        "import django, logging; django.setup();"
        " logging.getLogger('koolclips.probe').warning('hello from the probe')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if "hello from the probe" in ln]
    return line


@pytest.mark.processes
@pytest.mark.parametrize("dyno", [None, ""])
def test_local_log_lines_start_with_a_timestamp(dyno):
    line = log_a_line(dyno)
    assert STAMP.match(line), line
    assert line.endswith("WARNING koolclips.probe [MainProcess] hello from the probe")


@pytest.mark.processes
def test_on_a_dyno_the_line_is_as_before():
    line = log_a_line("worker.1")
    assert line == "WARNING koolclips.probe [MainProcess] hello from the probe"
