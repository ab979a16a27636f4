"""`@periodic_job`: a job's one declaration.

    @periodic_job(entry="weekly-report", schedule_setting="WEEKLY_REPORT_SCHEDULE")
    def send_weekly_report() -> dict:
        \"\"\"Mail ADMINS the week's cleanup runs and the cube's size.\"\"\"
        return reports.send_weekly_report_once(current_execution())

registers the Job (scheduling/registry.py; its description is the docstring's
first line) and makes the Celery task `<module>.<function>` with late acks,
wrapped in the guard (scheduling/guard.py) and the Sentry check-ins
(scheduling/crons.py). The function takes the task's own arguments (no `self`);
a job that needs its execution (progress, checkpoints) calls
`current_execution()`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from celery import Task, current_app

from scheduling import crons, guard
from scheduling.registry import Job, register


def periodic_job(
    *,
    entry: str,
    schedule_setting: str,
    sentry: crons.Hooks = crons.NO_HOOKS,
    task_options: dict[str, Any] | None = None,
    **declaration: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """Declare a periodic job; `declaration` takes the other `Job` fields
    (overlap, catch_up, lease, …), `sentry` the job's own Sentry hooks,
    `task_options` extra Celery task options (e.g. ignore_result)."""

    def decorate(body: Callable[..., Any]) -> Task:
        description = declaration.pop("description", None) or _first_line(body.__doc__)
        job = register(
            Job(
                entry=entry,
                task=f"{body.__module__}.{body.__name__}",
                schedule_setting=schedule_setting,
                description=description,
                **declaration,
            )
        )

        @functools.wraps(body)
        def run(task, *args, **kwargs):
            return body(*args, **kwargs)

        signature = inspect.signature(body)
        run.__signature__ = signature.replace(
            parameters=[
                inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                *signature.parameters.values(),
            ]
        )
        if job.ledger:
            run = guard.guarded(job)(run)
        run = crons.monitored(job, sentry)(run)
        options = {"acks_late": True, **(task_options or {})}
        # Created now (not lazily as shared_task's are) so that the task can
        # carry its job: `task.job`.
        task = current_app.task(name=job.task, bind=True, lazy=False, **options)(run)
        task.job = job
        return task

    return decorate


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].rstrip(".") if doc and doc.strip() else ""
