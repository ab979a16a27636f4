"""Names that lie, in a real browser: a staff user logs in through the login form,
sees the dashboard and the admin pages that show keys and titles from outside,
and no bidi control or invisible character reaches the rendered page raw; each
is shown as a visible escape.

Debian's headless Chromium driven by Playwright, as tests/test_dashboard_browser.py
(skipped, saying why, without /usr/bin/chromium); the pages come from Django's
live server with the suite's database, redis-server and local S3 server.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.support.runs import make_run
from tests.test_dashboard_browser import CHROMIUM_ARGS, chromium_path  # noqa: F401 - fixture
from viral_clips.models import CleanupRun, Clip

pytestmark = [pytest.mark.browser, pytest.mark.processes]

RTL = "\u202e"
KEY = f"testcube/public/clips/rtl-{RTL}gnp.exe"
# Every bidi control and the invisible format characters a name could hide behind.
HIDDEN = "[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
FIND_HIDDEN_JS = f"""() => {{
  const hidden = new RegExp('{HIDDEN}', 'gu');
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode())
    for (const m of node.data.matchAll(hidden))
      found.push(m[0].codePointAt(0).toString(16) + ' in ' + JSON.stringify(node.data));
  for (const el of document.querySelectorAll('[title], [alt], [aria-label]'))
    for (const attr of ['title', 'alt', 'aria-label'])
      for (const m of (el.getAttribute(attr) || '').matchAll(hidden))
        found.push(m[0].codePointAt(0).toString(16) + ' in @' + attr);
  return found;
}}"""


def test_staff_logs_in_and_no_page_renders_a_bidi_control_raw(
    chromium_path,  # noqa: F811 - the fixture
    live_server,
    cube,
    redis_client,
    django_user_model,
):
    from django.contrib.auth.models import Permission
    from playwright.sync_api import expect, sync_playwright

    user = django_user_model.objects.create_user(
        "operator", password="correct-horse-9", is_staff=True
    )
    for codename in ("view_cleanuprun", "view_clip"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    cube.put(KEY, b"x" * 10, age=timedelta(days=9))
    clip = Clip.objects.create(
        title=f"rtl-{RTL}gnp.exe \u200bhidden", file=KEY[len("testcube/public/") :]
    )
    make_run(
        timezone.now() - timedelta(hours=2),
        status=CleanupRun.Status.FAILED,
        detail=f"ClientError: could not delete '{KEY}'",
        host=f"worker{RTL}.1",
    )
    dry = make_run(
        timezone.now() - timedelta(hours=1),
        dry_run=True,
        trigger="manual",
        files_deleted=1,
        would_delete_sample=[KEY],
    )
    pages = {
        "admin clips": "/admin/viral_clips/clip/",
        "admin clip": f"/admin/viral_clips/clip/{clip.pk}/change/",
        "admin run": f"/admin/viral_clips/cleanuprun/{dry.pk}/change/",
    }
    found: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(live_server.url + "/")
            expect(page).to_have_url(re.compile(r"/admin/login/\?next=/$"))
            page.fill("#id_username", "operator")
            page.fill("#id_password", "correct-horse-9")
            page.click("input[type=submit]")
            expect(page).to_have_url(live_server.url + "/")
            expect(page.locator("h1")).to_have_text("Cloudcube cleanup")
            expect(page.locator("#runs tbody tr")).to_have_count(2)
            found["dashboard"] = page.evaluate(FIND_HIDDEN_JS)
            shown["dashboard"] = page.locator("#runs").inner_text()
            for name, path in pages.items():
                page.goto(live_server.url + path)
                expect(page.locator("#content")).to_be_visible()
                found[name] = page.evaluate(FIND_HIDDEN_JS)
                shown[name] = page.locator("#content").inner_text()
        finally:
            browser.close()

    assert found == {name: [] for name in found}, found
    # Each one is there, readable as what it is.
    assert "rtl-\\u202egnp.exe" in shown["dashboard"]
    assert "rtl-\\u202egnp.exe \\u200bhidden" in shown["admin clips"]
    assert "rtl-\\u202egnp.exe" in shown["admin run"]
    # View only: the title and the file's name as text, escaped.
    assert "Title:\nrtl-\\u202egnp.exe \\u200bhidden" in shown["admin clip"]
    assert "clips/rtl-\\u202egnp.exe" in shown["admin clip"]
