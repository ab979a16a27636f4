"""`python manage.py preflight [--json] [--send-test-event] [--send-test-mail]`.

Checks that this deployment works (viral_clips/preflight.py): prints a ✓/✗
checklist with a fix for each ✗ and exits 1 when anything failed.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from viral_clips.preflight import run_preflight, wait_for_scheduler


class Command(BaseCommand):
    help = "Check database, Redis, Cloudcube, the scheduler, Sentry and mail; exit 1 on any ✗."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument(
            "--send-test-event", action="store_true", help="Send one test event to Sentry."
        )
        parser.add_argument(
            "--send-test-mail", action="store_true", help="Mail a test message to the admins."
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Wait up to this long for a scheduler to take the lock (right after a deploy).",
        )

    def handle(self, *args, **options) -> None:
        if options["wait"] > 0:
            wait_for_scheduler(options["wait"])
        checks = run_preflight(
            send_test_event=options["send_test_event"], send_test_mail=options["send_test_mail"]
        )
        failed = [c for c in checks if not c.ok]
        if options["json"]:
            data = {"ok": not failed, "checks": [c.as_dict() for c in checks]}
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            for check in checks:
                mark = self.style.SUCCESS("✓") if check.ok else self.style.ERROR("✗")
                self.stdout.write(f"{mark} {check.name}: {check.summary}")
                if not check.ok and check.fix:
                    self.stdout.write(f"    fix: {check.fix}")
            self.stdout.write(
                f"\n{len(failed)} of {len(checks)} checks failed."
                if failed
                else f"\nAll {len(checks)} checks passed."
            )
        if failed:
            raise SystemExit(1)
