"""Every registered job gets everything from its one declaration
(`@periodic_job`, scheduling/periodic.py): a beat entry, a guarded task writing
the ledger, a Sentry monitor config, a line in beat_status, the dashboard and
/health/.

Parametrized over the registry, so a job added later is checked without a new
test, and over a job this suite declares itself the way a developer would
(tests/support/example_job.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from config.celery import app
from scheduling import crons, registry
from scheduling.claim import claim
from scheduling.headers import SLOT as SLOT_HEADER
from scheduling.models import JobRun
from tests.support.example_job import EXAMPLE, registered
from viral_clips import tasks  # noqa: F401 - registers the tasks, as the worker does

# The app's jobs, plus one this suite declares itself (tests/support/example_job.py).
APP_JOBS = registry.jobs()
JOBS = [*APP_JOBS, EXAMPLE]


@pytest.fixture(autouse=True)
def _example_job_registered():
    with registered():
        yield


def test_the_registry_holds_the_two_jobs_under_their_historic_names():
    assert {(j.entry, j.task) for j in JOBS} >= {
        ("scheduled-cloudcube-cleanup", "viral_clips.tasks.scheduled_cloudcube_cleanup"),
        ("weekly-report", "viral_clips.tasks.send_weekly_report"),
    }
    assert registry.for_task("viral_clips.tasks.send_weekly_report").entry == "weekly-report"
    assert registry.for_task("celery.backend_cleanup") is None
    with pytest.raises(KeyError, match="no scheduled job"):
        registry.get("nope")


@pytest.mark.parametrize("job", JOBS, ids=[j.entry for j in JOBS])
def test_every_job_has_its_beat_entry(job):
    entry = registry.beat_entries()[job.entry]
    assert entry["task"] == job.task
    assert entry["schedule"] == job.schedule().celery_schedule
    assert entry["kwargs"] == job.beat_kwargs()


@pytest.mark.parametrize("job", [j for j in JOBS if j.monitor], ids=lambda j: j.entry)
def test_every_monitored_job_has_a_monitor_config(job):
    config = crons.monitor_config(job)
    assert config["schedule"] == crons.sentry_schedule(job.schedule())
    assert 1 <= config["checkin_margin"] <= job.checkin_margin_minutes
    assert 1 <= config["max_runtime"] <= job.max_runtime_minutes
    period = crons.schedule_period_minutes(job.schedule())
    assert config["checkin_margin"] + config["max_runtime"] <= max(period, 2)


@pytest.mark.parametrize("job", [j for j in JOBS if j.ledger], ids=lambda j: j.entry)
def test_every_job_task_is_guarded(job, db, redis_client, cube, settings):
    task = app.tasks[job.task]
    assert task.job == job
    assert task.acks_late
    # And the guard really is in the way: a slot delivered twice runs once.
    settings.ADMINS = []
    slot = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    headers = {SLOT_HEADER: slot.isoformat()}
    first = task.apply(kwargs=job.beat_kwargs(), task_id=str(uuid.uuid4()), headers=headers)
    second = task.apply(kwargs=job.beat_kwargs(), task_id=str(uuid.uuid4()), headers=headers)
    assert first.successful() and second.get()["status"] == "skipped"
    assert JobRun.objects.filter(job=job.entry, slot=slot).exclude(status="skipped").count() == 1


def test_a_registry_clash_is_refused():
    cleanup = registry.get("scheduled-cloudcube-cleanup")
    with pytest.raises(ValueError, match="declared twice"):
        registry.register(registry.Job(entry=cleanup.entry, task="x.y", schedule_setting="S"))
    with pytest.raises(ValueError, match="overlap"):
        registry.Job(entry="e", task="t", schedule_setting="S", overlap="sometimes")


# --- the weekly report: one mail per slot -----------------------------------
SLOT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def send(task_id: str) -> dict:
    from viral_clips.tasks import send_weekly_report

    return send_weekly_report.apply(task_id=task_id, headers={SLOT_HEADER: SLOT.isoformat()}).get()


@pytest.mark.django_db
def test_one_weekly_report_per_slot_whatever_is_redelivered(
    cube, redis_client, mailoutbox, settings
):
    settings.ADMINS = [("ops", "ops@example.com")]
    task_id = str(uuid.uuid4())
    assert send(task_id)["sent"] is True
    assert send(task_id)["status"] == "skipped"  # redelivery
    assert send(str(uuid.uuid4()))["status"] == "skipped"  # a second scheduler's send
    assert len(mailoutbox) == 1
    assert mailoutbox[0].extra_headers["X-Koolclips-Slot"] == SLOT.isoformat()
    row = JobRun.objects.get(job="weekly-report", status="succeeded")
    assert row.state == {"sent": True}


@pytest.mark.django_db
def test_a_report_taken_over_after_sending_does_not_send_again(
    cube, redis_client, mailoutbox, settings
):
    from tests.support.jobs import WEEKLY_REPORT

    settings.ADMINS = [("ops", "ops@example.com")]
    first = claim(WEEKLY_REPORT, trigger="schedule", slot=SLOT, task_id="t")
    from viral_clips.reports import send_weekly_report_once

    send_weekly_report_once(first)  # mailed and recorded; then the worker died
    JobRun.objects.filter(pk=first.run.pk).update(
        lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    first.release()

    result = send("t")  # the redelivery takes the run over

    assert result == {"sent": True, "already_sent": True}
    assert len(mailoutbox) == 1
    assert JobRun.objects.get(pk=first.run.pk).status == "succeeded"


# --- the command goes through the same guard ---------------------------------
def test_the_command_is_refused_while_a_cleanup_runs(cube, db, capsys):
    from tests.support.jobs import CLEANUP

    cube.put("testcube/public/clips/old.mp4", age=timedelta(days=9))
    holder = claim(CLEANUP, trigger="schedule", slot=SLOT, task_id="t")
    with pytest.raises(CommandError, match="not started: refused: another run is active") as exc:
        call_command("cloudcube_cleanup")
    assert exc.value.returncode == 3
    assert cube.keys() == ["testcube/public/clips/old.mp4"]
    holder.finish("succeeded")
    holder.release()
    call_command("cloudcube_cleanup")
    assert cube.keys() == []
    row = JobRun.objects.filter(trigger="command").exclude(status="skipped").get()
    assert row.status == "succeeded" and row.cleanup_runs.get().files_deleted == 1


@pytest.mark.processes
def test_a_fresh_process_configures_celery_before_django_and_builds_every_entry_after():
    """As `celery -A config worker --beat` does: the Celery app configures itself
    before Django's app registry is ready (nothing there may need the jobs), and
    the entries come from the registry once Django is set up (the scheduler
    installs them when it takes the lock)."""
    import subprocess
    import sys

    from tests.support.processes import ROOT

    code = (
        "from config.celery import app; print(app.conf.broker_url.split(':')[0]);"
        " import django; django.setup();"
        " from scheduling.registry import beat_entries; print(sorted(beat_entries()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["redis", str(sorted(j.entry for j in APP_JOBS))]


@pytest.mark.parametrize("job", JOBS, ids=[j.entry for j in JOBS])
def test_every_job_has_a_status_line_and_a_dashboard_row(job, db, redis_client, cube, client):
    from io import StringIO

    from django.contrib.auth import get_user_model

    from scheduling.status import scheduler_status
    from viral_clips.health import job_lines

    def beat_status() -> str:
        out = StringIO()
        with pytest.raises(CommandError):  # no beat holds the lock in this test
            call_command("beat_status", stdout=out)
        return out.getvalue()

    # Never ran: the ledger says so ("never"), whatever Redis holds.
    line = scheduler_status().entry(job.entry)
    assert line is not None, f"{job.entry} has no status line"
    assert line.last_run_at is None and line.schedule_words == job.schedule().describe()
    block = beat_status().split(f"\n{job.entry} ({job.task})\n", 1)[1].split("\n\n")[0]
    assert "last run: never" in block
    assert job.entry in job_lines(), f"{job.entry} has no /health/ line"

    if job.ledger:
        slot = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        JobRun.objects.create(
            job=job.entry, slot=slot, trigger="schedule", status="succeeded", started_at=slot
        )
        line = scheduler_status().entry(job.entry)
        assert (line.last_run_at, line.last_status) == (slot, "succeeded")
        assert job_lines()[job.entry]["last_status"] == "succeeded"
        assert "last outcome: succeeded" in beat_status()

    staff = get_user_model().objects.create_user("ops", password="x-Pass-1234", is_staff=True)
    client.force_login(staff)
    page = client.get("/").content.decode()
    row = page.split(f'<tr id="job-{job.entry}">', 1)
    assert len(row) == 2, f"{job.entry} has no dashboard row"
    words = line.schedule_words
    assert words[0].upper() + words[1:] in row[1].split("</tr>")[0]

    # The real /health/, as the staff user sees it (503: no beat ticks in this test).
    health = client.get("/health/")
    assert health.status_code in (200, 503)
    shown = health.json()["checks"]["scheduler"]["jobs"].get(job.entry)
    assert shown is not None, f"{job.entry} has no line in /health/'s answer"
    assert shown["schedule"] == words
    # Its checks run on threads of their own, outside this test's transaction:
    # the run written above is job_lines()'s to show (checked above), not theirs.
    assert ("last_run_at" in shown) == job.ledger


def test_the_docs_example_is_a_real_job_from_the_code():
    """docs/scheduling.md's "Adding a scheduled job" shows a declaration that
    stands, as written, in the code, and declares a real, registered task."""
    import re
    import textwrap
    from pathlib import Path

    from tests.support.processes import ROOT

    page = (ROOT / "docs" / "scheduling.md").read_text()
    section = page.split("## Adding a scheduled job", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    declaration = textwrap.dedent(next(b for b in blocks if "@periodic_job(" in b))
    function = re.search(r"^def (\w+)\(", declaration, re.M)[1]
    module = "viral_clips.tasks"
    assert declaration in Path(ROOT / "viral_clips" / "tasks.py").read_text()
    task = getattr(__import__(module, fromlist=[function]), function)
    assert task.name == f"{module}.{function}"
    entry = re.search(r'entry="([^"]+)"', declaration)[1]
    assert task.job is registry.get(entry)


@pytest.mark.django_db
def test_the_example_job_runs_with_what_beat_sends_and_records_it(redis_client):
    entry = registry.beat_entries()[EXAMPLE.entry]
    assert entry["kwargs"] == {"greeting": "hello from the settings"}
    slot = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    task = app.tasks[EXAMPLE.task]
    result = task.apply(kwargs=entry["kwargs"], headers={SLOT_HEADER: slot.isoformat()}).get()
    assert result == {"status": "succeeded", "said": "hello from the settings"}
    row = JobRun.objects.get(job=EXAMPLE.entry, slot=slot)
    assert (row.status, row.trigger, row.state) == (
        "succeeded",
        "schedule",
        {"said": "hello from the settings"},
    )
