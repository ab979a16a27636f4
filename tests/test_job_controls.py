"""The operator's hands (issue 16): permissions, pause/resume, stop, run now,
the `jobs` command and the audit trail, in-process against the real broker
(redis-server) and the local S3 server. The process tests are in
tests/test_job_controls_processes.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from scheduling import catchup, controls
from scheduling.claim import Refusal, claim
from scheduling.execution import Execution
from scheduling.models import JobAction, JobPause, JobRun, RunStop
from tests.support.broker import queued_messages
from tests.support.jobs import CANARY, CLEANUP, CUBE_STATS, WEEKLY_REPORT, operators_group
from viral_clips.models import CleanupRun, CubeMeasurement
from viral_clips.tasks import refresh_cube_stats, scheduled_cloudcube_cleanup, send_weekly_report

pytestmark = pytest.mark.django_db
OLD = timedelta(days=30)
ENTRY = CLEANUP.entry


@pytest.fixture
def make_user(django_user_model):
    def make(name: str, *, operator: bool) -> Client:
        user = django_user_model.objects.create_user(name, password="pw-9-long", is_staff=True)
        if operator:
            user.groups.add(operators_group())
        client = Client()
        client.force_login(user)
        return client

    return make


def _post_every_action(client: Client, before_the_runs=None) -> list[int]:
    """Stop, pause, resume, then run (the cleanup, confirmed; the weekly report)."""
    codes = [
        client.post(f"/jobs/{ENTRY}/stop/", {"confirm": "1", "reason": "why"}).status_code,
        client.post(f"/jobs/{ENTRY}/pause/", {"reason": "why"}).status_code,
        client.post(f"/jobs/{ENTRY}/resume/", {"reason": "why"}).status_code,
    ]
    if before_the_runs is not None:
        before_the_runs()
    return [
        *codes,
        client.post(
            "/run-now/",
            {"mode": "run", "confirm": "1", "reason": "why", "retention_days": "1"},
        ).status_code,
        client.post(f"/jobs/{WEEKLY_REPORT.entry}/run/", {"reason": "why"}).status_code,
    ]


def _by_task(messages: list[dict]) -> dict[str, dict]:
    return {message["task"]: message for message in messages}


def test_staff_without_the_permission_gets_403_and_nothing_happens(make_user, cube, redis_client):
    cube.put("testcube/public/clips/old.mp4", age=OLD)
    running = claim(CLEANUP, trigger="manual", task_id="t-1")  # something to stop
    looker = make_user("looker", operator=False)

    page = looker.get("/").content.decode()
    assert "Dry run" not in page and 'action="/jobs/' not in page  # no button shown
    assert _post_every_action(looker) == [403] * 5
    assert queued_messages(redis_client) == []
    assert not JobPause.objects.exists() and not RunStop.objects.exists()
    assert not JobAction.objects.exists()
    assert not running.should_stop()
    assert cube.keys() == ["testcube/public/clips/old.mp4"]

    operator = make_user("operator", operator=True)
    page = operator.get("/").content.decode()
    assert f'action="/jobs/{ENTRY}/pause/"' in page and f'action="/jobs/{ENTRY}/stop/"' in page

    confirm = operator.post(f"/jobs/{ENTRY}/stop/").content.decode()  # asks first, and why
    assert f"Run #{running.run.pk} (manual)" in confirm and "Yes, stop it" in confirm
    assert "It is not resumed" in confirm and not RunStop.objects.exists()

    def stopped() -> None:
        assert RunStop.objects.get().run_id == running.run.pk
        running.interrupt(running.stop_detail())
        running.release()

    assert _post_every_action(operator, stopped) == [302] * 5
    queued = _by_task(queued_messages(redis_client))
    cleanup = queued[CLEANUP.task]
    assert (cleanup["trigger"], cleanup["retention_days"], cleanup["dry_run"]) == (
        "manual",
        1,
        False,
    )
    assert WEEKLY_REPORT.task in queued
    assert [a.action for a in JobAction.objects.order_by("pk")] == [
        "stop",
        "pause",
        "resume",
        "run",
        "run",
    ]
    assert {a.actor for a in JobAction.objects.all()} == {"operator"}
    # The queued deletion, executed, deletes with the retention chosen.
    kwargs = {k: v for k, v in cleanup.items() if k not in ("task", "id")}
    scheduled_cloudcube_cleanup.apply(kwargs=kwargs, task_id=cleanup["id"]).get()
    assert cube.keys() == []
    assert CleanupRun.objects.get().trigger == "manual"


def test_a_real_run_asks_for_a_reason_and_a_bad_retention_queues_nothing(make_user, redis_client):
    operator = make_user("operator", operator=True)
    page = operator.post("/run-now/", {"mode": "run", "retention_days": "9"}).content.decode()
    assert "9 days" in page and "Dry run instead" in page  # the confirmation, dry run offered
    page = operator.post("/run-now/", {"mode": "run", "confirm": "1", "retention_days": "9"})
    assert 'id="missing-reason"' in page.content.decode()
    for bad in ("0", "-3", "ten", "99999"):
        operator.post(
            "/run-now/", {"mode": "run", "confirm": "1", "reason": "x", "retention_days": bad}
        )
    assert queued_messages(redis_client) == []
    assert not JobAction.objects.exists()


def _slot(seconds_ago: int = 0) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


def test_a_paused_slot_is_skipped_with_the_reason_and_resume_catches_none_up():
    controls.pause(CLEANUP, "ops", "cube being migrated")
    outcome = claim(CLEANUP, trigger="schedule", slot=_slot(60))
    assert isinstance(outcome, Refusal) and outcome.status == "skipped"
    assert outcome.run.detail.startswith("paused (by ops since ")
    assert "cube being migrated" in outcome.run.detail
    assert catchup.plan(datetime.now(UTC)) == []  # a paused job is not caught up
    # A manual run still runs: it is explicit (and audited where it was pressed).
    manual = claim(CLEANUP, trigger="manual", task_id="m-1")
    assert isinstance(manual, Execution)
    manual.finish("succeeded")
    manual.release()

    time.sleep(1.1)
    controls.resume(CLEANUP, "ops", "migration done")
    # The slot skipped while paused, and one whose message vanished then, are
    # never sent again; the next slot runs.
    assert [c for c in catchup.plan(datetime.now(UTC)) if c.job == CLEANUP] == []
    assert isinstance(claim(CLEANUP, trigger="schedule", slot=_slot()), Execution)


def test_a_stopped_run_ends_interrupted_and_is_never_resumed():
    execution = claim(CLEANUP, trigger="schedule", slot=_slot(5))
    assert not execution.should_stop()
    controls.stop(CLEANUP, "ops", "deleting the wrong thing")
    deadline = time.monotonic() + 3
    while not execution.should_stop():  # read at most once a second
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert execution.stop_detail() == "stopped by ops: deleting the wrong thing; not resumed"
    execution.interrupt(execution.stop_detail())
    execution.release()

    again = claim(CLEANUP, trigger="schedule", slot=execution.slot, task_id="redelivered")
    assert isinstance(again, Refusal) and "stopped by ops" in again.reason
    assert execution.slot not in [c.slot for c in catchup.plan(datetime.now(UTC))]
    assert JobRun.objects.get(pk=execution.run.pk).status == "interrupted"


def test_the_jobs_command_pauses_resumes_stops_runs_and_lists(capsys, redis_client, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    call_command("jobs", "pause", ENTRY, "--reason", "incident 42")
    call_command("jobs", "list")
    assert f"{ENTRY}: paused (by cli:alice" in capsys.readouterr().out
    with pytest.raises(CommandError):  # exits 2: no beat holds the lock in this test
        call_command("beat_status")
    assert "  paused (by cli:alice since " in capsys.readouterr().out
    call_command("jobs", "resume", ENTRY, "--reason", "fixed")
    with pytest.raises(CommandError, match="nothing is running"):
        call_command("jobs", "stop", ENTRY, "--reason", "x")
    with pytest.raises(CommandError, match="retention_days must be at least 1"):
        call_command("jobs", "run", ENTRY, "--reason", "x", "--retention-days", "0")
    with pytest.raises(CommandError, match="the cleanup's"):
        call_command("jobs", "run", WEEKLY_REPORT.entry, "--reason", "x", "--dry-run")
    call_command("jobs", "run", ENTRY, "--reason", "check", "--dry-run", "--retention-days", "7")
    call_command("jobs", "run", WEEKLY_REPORT.entry, "--reason", "resend", "--actor", "bob")
    with pytest.raises(CommandError):
        call_command("jobs", "pause", ENTRY)  # a reason is required
    monkeypatch.delenv("USER")
    running = claim(CLEANUP, trigger="manual", task_id="t-2")
    call_command("jobs", "stop", ENTRY, "--reason", "from a dyno")

    trail = [(a.action, a.actor, a.reason) for a in JobAction.objects.order_by("pk")]
    assert trail == [
        ("pause", "cli:alice", "incident 42"),
        ("resume", "cli:alice", "fixed"),
        ("run", "cli:alice", "check"),
        ("run", "bob", "resend"),
        ("stop", "cli:heroku", "from a dyno"),
    ]
    assert RunStop.objects.get().run_id == running.run.pk
    queued = _by_task(queued_messages(redis_client))
    dry = queued[CLEANUP.task]
    assert (dry["dry_run"], dry["retention_days"]) == (True, 7)
    assert WEEKLY_REPORT.task in queued


def test_the_audit_trail_is_shown_and_read_only_in_the_admin(admin_client, make_user):
    controls.pause(CLEANUP, "ops", "look <b>here</b>")
    action = JobAction.objects.get()
    listing = admin_client.get("/admin/scheduling/jobaction/").content.decode()
    assert "look &lt;b&gt;here&lt;/b&gt;" in listing
    page = admin_client.get(f"/admin/scheduling/jobaction/{action.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "Delete" not in page
    assert admin_client.get("/admin/scheduling/jobaction/add/").status_code == 403
    assert admin_client.post(f"/admin/scheduling/jobaction/{action.pk}/delete/").status_code == 403
    assert admin_client.post(
        "/admin/scheduling/jobaction/",
        {"action": "delete_selected", "_selected_action": [action.pk], "post": "yes"},
    ).status_code in (200, 302)
    assert JobAction.objects.filter(pk=action.pk).exists()
    board = make_user("looker", operator=False).get("/").content.decode()
    assert f'id="action-{action.pk}"' in board and "look &lt;b&gt;here&lt;/b&gt;" in board
    assert f'id="paused-{ENTRY}"' in board  # the pause is said at the top


def test_run_now_of_the_report_and_the_measurement_runs_through_the_guard_as_manual(
    make_user, cube, redis_client, settings, mailoutbox
):
    settings.ADMINS = [("ops", "ops@example.com")]
    cube.put("testcube/public/clips/a.mp4", b"12345")
    operator = make_user("operator", operator=True)
    for job in (WEEKLY_REPORT, CUBE_STATS):
        assert operator.post(f"/jobs/{job.entry}/run/", {"reason": "again"}).status_code == 302
    queued = _by_task(queued_messages(redis_client))
    assert set(queued) == {WEEKLY_REPORT.task, CUBE_STATS.task}
    for job, task in ((WEEKLY_REPORT, send_weekly_report), (CUBE_STATS, refresh_cube_stats)):
        message = queued[job.task]
        kwargs = {k: v for k, v in message.items() if k not in ("task", "id")}
        task.apply(kwargs=kwargs, task_id=message["id"]).get()
        run = JobRun.objects.get(job=job.entry)
        assert (run.trigger, run.status, run.slot, run.task_id) == (
            "manual",
            "succeeded",
            None,
            message["id"],
        )
        action = JobAction.objects.get(job=job.entry)
        assert (action.action, action.actor, action.reason) == ("run", "operator", "again")
    assert [m.to for m in mailoutbox] == [["ops@example.com"]]
    assert CubeMeasurement.objects.get().object_count == 1


@pytest.mark.parametrize(
    ("codename", "allowed"),
    [("run_job", {"run"}), ("pause_job", {"pause", "resume"}), ("stop_job", {"stop"})],
)
def test_each_permission_opens_only_its_own_buttons(
    codename, allowed, django_user_model, redis_client
):
    user = django_user_model.objects.create_user("one", password="pw-9-long", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="scheduling", codename=codename)
    )
    client = Client()
    client.force_login(user)
    entry = WEEKLY_REPORT.entry
    codes = {
        "stop": client.post(f"/jobs/{entry}/stop/", {"confirm": "1", "reason": "why"}).status_code,
        "pause": client.post(f"/jobs/{entry}/pause/", {"reason": "why"}).status_code,
        "resume": client.post(f"/jobs/{entry}/resume/", {"reason": "why"}).status_code,
        "run": client.post(f"/jobs/{entry}/run/", {"reason": "why"}).status_code,
    }
    assert {action for action, code in codes.items() if code != 403} == allowed
    assert {a.action for a in JobAction.objects.all()} <= allowed


def test_a_job_outside_the_ledger_offers_no_controls_and_refuses_them(
    make_user, redis_client, capsys
):
    # The canary runs bare (ledger=False): no claim reads a pause, no execution
    # reads a stop order, a run by hand skips the guard. Offering the controls
    # would be a lie, and a pause would put a false banner on the dashboard.
    entry = CANARY.entry
    assert not CANARY.ledger
    operator = make_user("operator", operator=True)
    board = operator.get("/").content.decode()
    assert f'action="/jobs/{entry}/' not in board  # no button for it
    assert f'id="control-{entry}"' in board and "No controls: it runs outside" in board
    for action, data in (
        ("pause", {"reason": "why"}),
        ("resume", {"reason": "why"}),
        ("run", {"reason": "why"}),
        ("stop", {"reason": "why"}),  # before its confirmation page
        ("stop", {"reason": "why", "confirm": "1"}),
    ):
        response = operator.post(f"/jobs/{entry}/{action}/", data)
        assert (response.status_code, action) == (400, action)
        assert "outside the run ledger" in response.content.decode()
    for action in ("pause", "resume", "stop", "run"):
        with pytest.raises(CommandError, match=rf"^{entry}: .*outside the run ledger") as exc:
            call_command("jobs", action, entry, "--reason", "why")
        assert "\n" not in str(exc.value) and exc.value.returncode != 0
    for act in (controls.pause, controls.resume, controls.stop):
        with pytest.raises(controls.ControlError, match="outside the run ledger"):
            act(CANARY, "ops", "why")
    with pytest.raises(controls.ControlError, match="outside the run ledger"):
        controls.queue_run(CANARY, "ops", "why")
    assert not JobPause.objects.exists() and not JobAction.objects.exists()
    assert queued_messages(redis_client) == []

    # A pause row written before controls were refused says nothing anywhere.
    JobPause.objects.create(
        job=entry, paused=True, changed_at=datetime.now(UTC), changed_by="ops", reason="old"
    )
    board = operator.get("/").content.decode()
    assert f'id="paused-{entry}"' not in board
    capsys.readouterr()
    call_command("jobs", "list")
    lines = capsys.readouterr().out.splitlines()
    assert f"{entry}: scheduled; no controls (it runs outside the run ledger)" in lines


def test_the_operators_group_of_the_docs_sees_the_audit_trail_in_the_admin(make_user):
    # docs/operations.md's "Operators" group: the three actions and view_jobaction.
    action = controls.pause(CLEANUP, "ops", "cube being migrated")
    operator = make_user("operator", operator=True)
    assert 'href="/admin/scheduling/jobaction/"' in operator.get("/admin/").content.decode()
    listing = operator.get("/admin/scheduling/jobaction/")
    assert listing.status_code == 200 and "cube being migrated" in listing.content.decode()
    page = operator.get(f"/admin/scheduling/jobaction/{action.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    looker = make_user("looker", operator=False)  # staff in no group: the dashboard only
    assert looker.get("/admin/scheduling/jobaction/").status_code == 403
