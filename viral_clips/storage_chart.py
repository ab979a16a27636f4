"""The dashboard's chart of storage and deletions over the last runs, as inline SVG.

Drawn on the server: no script, no third-party CDN, nothing for a Content
Security Policy to allow. Every text in it is escaped. Each run gets two bars:
the cube's size when the run started (``bytes_scanned``) and what it deleted
(``bytes_freed``; outlined for a dry run, which only counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from viral_clips.models import CleanupRun

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 36, 40
STORAGE_COLOUR = "#3b6ea8"
DELETED_COLOUR = "#d9822b"
GRID_COLOUR = "#d8dde3"
TEXT_COLOUR = "#4a5561"


def chart_runs(runs: Sequence[CleanupRun]) -> list[CleanupRun]:
    """The runs worth plotting, oldest first: finished ones that listed the cube."""
    done = [
        r
        for r in runs
        if r.status not in (CleanupRun.Status.RUNNING, CleanupRun.Status.SKIPPED)
        and r.finished_at is not None
    ]
    return sorted(done, key=lambda r: r.started_at)


def nice_step(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def byte_axis(largest: int, ticks: int = 4) -> tuple[str, int, float, int]:
    """(unit, bytes per unit, step in units, number of steps) for a 0..largest axis.

    Steps are round numbers in the unit the largest value reads best in
    (binary units, as filesizeformat), so gridlines read 0, 50, 100, 150 MB.
    """
    unit, size = "bytes", 1
    for name, factor in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("TB", 1024**4)):
        if largest >= factor:
            unit, size = name, factor
    top = max(largest / size, 1e-9)
    step = nice_step(top / ticks)
    if unit == "bytes":
        step = max(1.0, math.ceil(step))
    return unit, size, step, max(1, math.ceil(top / step - 1e-12))


def _label(value: float, unit: str) -> str:
    number = f"{value:,.1f}".rstrip("0").rstrip(".")
    return f"{number} {unit}"


def storage_chart_svg(runs: Sequence[CleanupRun]) -> SafeString:
    """An <svg> element for `runs` (any order), or a short note when there are none."""
    runs = chart_runs(runs)
    if not runs:
        return format_html('<p class="muted">{}</p>', "No finished runs to chart yet.")

    unit, unit_size, step, steps = byte_axis(max(max(r.bytes_scanned, r.bytes_freed) for r in runs))
    top = step * steps * unit_size
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / len(runs)
    bar = max(2.0, min(28.0, slot * 0.36))

    def y(value: int) -> float:
        return TOP + plot_h - (value / top) * plot_h

    parts: list[str] = []
    for i in range(steps + 1):
        value = step * i * unit_size
        parts.append(
            format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="1"/>'
                '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="{}">{}</text>',
                LEFT,
                f"{y(value):.1f}",
                WIDTH - RIGHT,
                f"{y(value):.1f}",
                GRID_COLOUR,
                LEFT - 6,
                f"{y(value) + 4:.1f}",
                TEXT_COLOUR,
                _label(step * i, unit),
            )
        )

    label_every = max(1, math.ceil(len(runs) / 12))
    for index, run in enumerate(runs):
        centre = LEFT + slot * (index + 0.5)
        title = (
            f"Run #{run.pk}, {run.started_at:%Y-%m-%d %H:%M} UTC, {run.get_trigger_display()}"
            f"{' (dry run)' if run.dry_run else ''}, {run.get_status_display()}: cube"
            f" {filesizeformat(run.bytes_scanned)} in {run.objects_scanned} objects;"
            f" {'would delete' if run.dry_run else 'deleted'} {run.files_deleted} files"
            f" ({filesizeformat(run.bytes_freed)})"
        )
        deleted_style = (
            format_html(
                'fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="3 2"',
                DELETED_COLOUR,
            )
            if run.dry_run
            else format_html('fill="{}"', DELETED_COLOUR)
        )
        parts.append(
            format_html(
                '<g class="run" data-run="{}"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" {}/></g>',
                run.pk,
                title,
                f"{centre - bar - 1:.1f}",
                f"{y(run.bytes_scanned):.1f}",
                f"{bar:.1f}",
                f"{TOP + plot_h - y(run.bytes_scanned):.1f}",
                STORAGE_COLOUR,
                f"{centre + 1:.1f}",
                f"{y(run.bytes_freed):.1f}",
                f"{bar:.1f}",
                f"{TOP + plot_h - y(run.bytes_freed):.1f}",
                deleted_style,
            )
        )
        if index % label_every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="{}">#{}</text>',
                    f"{centre:.1f}",
                    TOP + plot_h + 16,
                    TEXT_COLOUR,
                    run.pk,
                )
            )

    legend = format_html_join(
        "",
        '<rect x="{}" y="10" width="12" height="12" {}/>'
        '<text x="{}" y="20" font-size="12" fill="{}">{}</text>',
        [
            (LEFT, format_html('fill="{}"', STORAGE_COLOUR), LEFT + 18, TEXT_COLOUR,
             "Cube size at start"),
            (LEFT + 150, format_html('fill="{}"', DELETED_COLOUR), LEFT + 168, TEXT_COLOUR,
             "Deleted"),
            (LEFT + 240,
             format_html('fill="none" stroke="{}" stroke-dasharray="3 2"', DELETED_COLOUR),
             LEFT + 258, TEXT_COLOUR, "Would delete (dry run)"),
        ],
    )  # fmt: skip
    axis = format_html(
        '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="{}">{}</text>',
        LEFT + plot_w / 2,
        HEIGHT - 6,
        TEXT_COLOUR,
        "Run (oldest to newest)",
    )
    summary = (
        f"Cube size and deletions over the last {len(runs)} finished cleanup runs;"
        " the table below has the same numbers."
    )
    return format_html(
        '<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}"'
        ' role="img" aria-label="{}">{}{}{}</svg>',
        WIDTH,
        HEIGHT,
        summary,
        legend,
        mark_safe("".join(parts)),  # noqa: S308 - every part above is format_html output
        axis,
    )
