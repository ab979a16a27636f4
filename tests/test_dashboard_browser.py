"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

A staff user logs in, sees the dashboard, presses Dry run, and watches the new
run appear with its numbers: the task goes through the real broker to a real
worker started from the Procfile's line. The page is served by Django's live
server (the test settings); the worker uses the production settings module.

Nothing downloads a browser: Playwright launches /usr/bin/chromium (the
`chromium` Debian package, which .ci/run installs when missing). Without it the
test skips and says so.

The page is checked at 1280 and 420 px wide: no table or card overflows its
card (a wide table scrolls inside its own box) and the page itself never
scrolls sideways; the admin's runs list fits at 1280. Screenshots at both widths
go to tests/artifacts/, or to $DASHBOARD_SCREENSHOT_DIR (`docs/` refreshes the
README's docs/dashboard-1280.png and docs/dashboard-420.png).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.support.processes import ProcfileProcess
from tests.support.runs import make_run
from viral_clips.cube_stats import refresh_cube_stats
from viral_clips.models import CleanupRun

pytestmark = [pytest.mark.browser, pytest.mark.processes]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: headless, no sandbox as root, and no background
# connections (the closed network refuses them).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MB = 1024 * 1024
WIDTHS = (1280, 420)

# Everything that sticks out: the page scrolling sideways, a card whose content
# is wider than the card, a table's box reaching outside its card, and (where
# asked) a table wider than its box, which then has to scroll.
OVERFLOW_JS = """(mustFit) => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1)
    problems.push(`page scrolls sideways: ${doc.scrollWidth} > ${window.innerWidth}`);
  for (const card of document.querySelectorAll('section, .card, .module')) {
    if (card.matches('section.cards')) continue;
    const style = getComputedStyle(card);
    if (card.scrollWidth > card.clientWidth + 1 && style.overflowX === 'visible')
      problems.push(`${card.id || card.className}: ${card.scrollWidth} > ${card.clientWidth}`);
  }
  for (const table of document.querySelectorAll('table')) {
    const box = table.closest('.table-wrap, .results') || table.parentElement;
    const card = table.closest('section:not(.cards), .card, #content') || document.body;
    const b = box.getBoundingClientRect(), c = card.getBoundingClientRect();
    if (b.left < c.left - 1 || b.right > c.right + 1)
      problems.push(`table box ${b.left}-${b.right} outside its card ${c.left}-${c.right}`);
    if (getComputedStyle(box).overflowX === 'visible' && table.scrollWidth > box.clientWidth + 1)
      problems.push(`table ${table.id} clipped: ${table.scrollWidth} > ${box.clientWidth}`);
    if (mustFit && table.scrollWidth > box.clientWidth + 1)
      problems.push(`table ${table.id} needs a scroll: ${table.scrollWidth} > ${box.clientWidth}`);
  }
  return problems;
}"""


@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not installed at /usr/bin/chromium; the browser test needs"
            " it (`apt-get install chromium`; .ci/run installs it). No browser is downloaded."
        )
    return str(CHROMIUM)


@pytest.fixture
def seeded(cube, django_user_model):
    """A staff user, a cube with expired and recent files, and a week of past runs."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(
        "operator", password="correct-horse-9", is_staff=True
    )
    # Enough to read the runs in the admin (a read-only page), and to press Run now.
    user.user_permissions.add(Permission.objects.get(codename="view_cleanuprun"))
    user.user_permissions.add(Permission.objects.get(codename="run_job"))
    for i in range(6):
        cube.put(f"testcube/public/clips/old-{i}.mp4", b"o" * (MB // 2), age=timedelta(days=9))
    for i in range(4):
        cube.put(f"testcube/public/clips/new-{i}.mp4", b"n" * (MB // 4), age=timedelta(days=1))
    refresh_cube_stats()  # the scheduled measurement: the page shows it, never lists
    now = timezone.now()
    # (days ago, cube size at start in MB, MB deleted): the cube shrinking to today's 4 MB.
    history = [
        (6, 9.5, 3.0),
        (5, 8.0, 2.0),
        (4, 7.5, 2.5),
        (3, 6.5, 1.5),
        (2, 6.0, 2.0),
        (1, 4.5, 0.5),
    ]
    for days, size_mb, freed_mb in history:
        partial = days == 3
        make_run(
            now - timedelta(days=days),
            duration=timedelta(seconds=1 + days / 2),
            objects_scanned=int(size_mb * 4),
            bytes_scanned=int(size_mb * MB),
            files_deleted=int(freed_mb * 4),
            bytes_freed=int(freed_mb * MB),
            clips_retained=int((size_mb - freed_mb) * 4),
            status=CleanupRun.Status.PARTIAL if partial else CleanupRun.Status.SUCCEEDED,
            error_count=2 if partial else 0,
            detail="2 key(s) could not be deleted" if partial else "",
        )
    return cube


def test_staff_logs_in_presses_dry_run_and_sees_the_run(
    chromium_path, seeded, live_server, worker_env, redis_client, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    env = dict(worker_env, DYNO="worker.1")
    worker = ProcfileProcess("worker", env, tmp_path / "worker.log").start()
    keys_before = seeded.keys()
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR") or ROOT / "tests" / "artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    screenshots = {width: shots / f"dashboard-{width}.png" for width in WIDTHS}
    overflow: dict[str, list[str]] = {}
    # Playwright's sync API runs an event loop in this thread; the ORM must not
    # be called until it is closed (Django refuses ORM calls from async contexts).
    try:
        assert worker.wait_for_output("beat: Acquired lock", timeout=40), worker.output()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(live_server.url + "/")
                # Anonymous: sent to the login page first.
                expect(page).to_have_url(re.compile(r"/admin/login/\?next=/$"))
                page.fill("#id_username", "operator")
                page.fill("#id_password", "correct-horse-9")
                page.click("input[type=submit]")

                expect(page).to_have_url(live_server.url + "/")
                expect(page.locator("h1")).to_have_text("Cloudcube cleanup")
                expect(page.locator("#schedule")).to_contain_text("Every day at 02:00 UTC")
                expect(page.locator("#schedule")).to_contain_text("0 2 * * *")
                next_run = re.compile(r"\d{4}-\d\d-\d\d 02:00 UTC")
                expect(page.locator("#next-run")).to_contain_text(next_run)
                expect(page.locator("#lock-holder")).to_have_text("worker.1")
                expect(page.locator("#cube-objects")).to_have_text("10")
                expect(page.locator("svg.chart g.run")).to_have_count(6)
                expect(page.locator("#runs tbody tr")).to_have_count(6)

                page.get_by_role("button", name="Dry run").click()
                expect(page.locator(".messages")).to_contain_text("Dry run queued")

                # The page refreshes itself while the run is queued or running.
                new_row = page.locator("#runs tbody tr.status-succeeded", has_text="Manual")
                expect(new_row).to_have_count(1, timeout=30_000)
                expect(new_row).to_contain_text("dry run")
                expect(page.locator("#runs tbody tr").first).to_contain_text("Manual")
                expect(new_row.locator(".files-deleted")).to_have_text("6")
                expect(new_row.locator(".mb-freed")).to_have_text("3.00 MB")
                expect(page.locator("#runs tbody tr")).to_have_count(7)
                expect(page.locator("svg.chart g.run")).to_have_count(7)
                expect(page.locator("#activity")).to_have_count(0)
                expect(new_row).to_contain_text("would delete")
                run_link = new_row.locator("a").first.get_attribute("href")

                for width in WIDTHS:
                    page.set_viewport_size({"width": width, "height": 900})
                    page.goto(live_server.url + "/")
                    expect(page.locator("#runs tbody tr")).to_have_count(7)
                    overflow[f"dashboard@{width}"] = page.evaluate(OVERFLOW_JS, False)
                    page.screenshot(path=str(screenshots[width]), full_page=True)
                    # The header's parts stay apart when it wraps (no "koolclipsDashboard").
                    brand = page.locator(".topbar .brand").bounding_box()
                    first_link = page.locator(".topbar nav a").first.bounding_box()
                    assert (
                        first_link["x"] >= brand["x"] + brand["width"] + 4
                        or first_link["y"] >= brand["y"] + brand["height"]
                    ), (width, brand, first_link)
                    page.goto(live_server.url + "/admin/viral_clips/cleanuprun/")
                    expect(page.locator("#result_list tbody tr")).to_have_count(7)
                    overflow[f"admin runs@{width}"] = page.evaluate(OVERFLOW_JS, width >= 1280)
                    page.screenshot(path=str(shots / f"admin-runs-{width}.png"), full_page=True)

                # Run now asks first; cancelling queues nothing.
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(live_server.url + "/")
                page.get_by_role("button", name="Run now").click()
                expect(page.locator("h1")).to_have_text("Delete expired files now?")
                expect(page.locator("#last-dry-run")).to_contain_text("would have deleted 6 files")
                page.get_by_role("link", name="Cancel").click()
                expect(page).to_have_url(live_server.url + "/")
                expect(page.locator("#activity")).to_have_count(0)
            finally:
                browser.close()
    finally:
        worker.stop()

    run = CleanupRun.objects.order_by("-started_at").first()
    assert run_link == f"/admin/viral_clips/cleanuprun/{run.pk}/change/"
    assert (run.trigger, run.dry_run, run.status) == ("manual", True, "succeeded")
    assert (run.files_deleted, run.bytes_freed, run.clips_retained) == (6, 3 * MB, 4)
    assert seeded.keys() == keys_before  # a dry run deletes nothing, nor a cancelled Run now
    assert CleanupRun.objects.count() == 7
    assert overflow == {name: [] for name in overflow}, overflow
    for path in screenshots.values():
        assert path.stat().st_size > 10_000
