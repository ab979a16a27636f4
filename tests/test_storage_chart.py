"""The dashboard's storage chart: inline SVG, escaped, one bar pair per finished run."""

from __future__ import annotations

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.utils import timezone

from tests.support.runs import make_run
from viral_clips.models import CleanupRun
from viral_clips.storage_chart import byte_axis, chart_runs, nice_step, storage_chart_svg

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"
MB = 1024 * 1024


def bars(svg: str) -> dict[str, list[ElementTree.Element]]:
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own output
    return {g.get("data-run"): g.findall(f"{SVG}rect") for g in root.iter(f"{SVG}g")}


def test_two_bars_per_finished_run_scaled_to_the_largest_value():
    now = timezone.now()
    a = make_run(now - timedelta(days=2), bytes_scanned=100 * MB, bytes_freed=40 * MB)
    b = make_run(now - timedelta(days=1), bytes_scanned=60 * MB, bytes_freed=0)
    dry = make_run(
        now - timedelta(hours=1), bytes_scanned=60 * MB, bytes_freed=10 * MB, dry_run=True
    )
    make_run(now, duration=None, status=CleanupRun.Status.RUNNING, bytes_scanned=5 * MB)
    make_run(now, status=CleanupRun.Status.SKIPPED)

    svg = str(storage_chart_svg(CleanupRun.objects.all()))

    found = bars(svg)
    assert list(found) == [str(a.pk), str(b.pk), str(dry.pk)]  # oldest first, finished only
    heights = {pk: [float(r.get("height")) for r in rects] for pk, rects in found.items()}
    full = heights[str(a.pk)][0]  # 100 MB is the axis' top: 0, 25, 50, 75, 100 MB
    assert heights[str(a.pk)][1] == pytest.approx(full * 0.4, abs=0.2)
    assert heights[str(b.pk)] == [pytest.approx(full * 0.6, abs=0.2), 0.0]
    # A dry run's deletion bar is an outline: it only counted.
    assert found[str(dry.pk)][1].get("fill") == "none"
    assert found[str(a.pk)][1].get("fill") != "none"
    assert [t for t in ("0 MB", "25 MB", "50 MB", "75 MB", "100 MB") if f">{t}<" in svg] == [
        "0 MB",
        "25 MB",
        "50 MB",
        "75 MB",
        "100 MB",
    ]
    assert "<script" not in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_titles_are_escaped():
    run = make_run(timezone.now(), bytes_scanned=10)
    # Within the column's 16 characters.
    CleanupRun.objects.filter(pk=run.pk).update(trigger="<svg onload=x>")
    run.refresh_from_db()
    svg = str(storage_chart_svg([run]))
    assert "<svg onload" not in svg
    assert "&lt;svg onload=x&gt;" in svg
    ElementTree.fromstring(svg)  # noqa: S314 - still well-formed


def test_no_runs_is_a_note_not_an_empty_chart():
    html = str(storage_chart_svg([]))
    assert "<svg" not in html
    assert "No finished runs" in html


def test_chart_runs_drops_running_and_skipped():
    now = timezone.now()
    done = make_run(now - timedelta(minutes=5))
    make_run(now, duration=None, status=CleanupRun.Status.RUNNING)
    make_run(now, status=CleanupRun.Status.SKIPPED)
    assert chart_runs(CleanupRun.objects.all()) == [done]


@pytest.mark.parametrize(
    ("value", "step"),
    [(0, 1), (1, 1), (7, 10), (11, 20), (21, 25), (26, 50), (50, 50), (51, 100), (1.5e9, 2e9)],
)
def test_nice_step(value, step):
    assert nice_step(value) == step


@pytest.mark.parametrize(
    ("largest", "axis"),
    [
        (0, ("bytes", 1, 1, 1)),
        (7, ("bytes", 1, 2, 4)),
        (210 * MB, ("MB", MB, 100, 3)),
        (100 * MB, ("MB", MB, 25, 4)),
        (3 * 1024**3 + 1, ("GB", 1024**3, 1, 4)),
        (1500, ("KB", 1024, 0.5, 3)),
    ],
)
def test_byte_axis_uses_round_steps_in_one_unit(largest, axis):
    assert byte_axis(largest) == axis


def test_labels_thin_out_when_there_are_many_runs():
    now = timezone.now()
    runs = [make_run(now - timedelta(hours=i), bytes_scanned=i) for i in range(40)]
    svg = str(storage_chart_svg(runs))
    assert len(bars(svg)) == 40
    assert len(re.findall(r">#\d+</text>", svg)) <= 14
