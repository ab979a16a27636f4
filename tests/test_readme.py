"""The README stays a newcomer's page: short, its links alive, and every command in it
exercised by a test or a CI step (a new command needs an entry in COVERED)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from django.core.management import get_commands

from devstack.procfile import procfile_commands

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
MAKE_RUN_TEST = (ROOT / "tests" / "test_make_run.py").read_text()
COMMAND_START = ("make ", "heroku ", "python ", "git ", "DATABASE_URL=", "CLEANUP_SCHEDULE=")


def readme_commands() -> list[str]:
    """Every shell command in the README: lines of ```sh blocks and inline `code`
    that starts like a command. Comments and continuation lines are dropped."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    commands += [c for c in re.findall(r"`([^`\n]+)`", prose) if c.startswith(COMMAND_START)]
    return commands


def make_recipe(target: str) -> str:
    return re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)[1]


def manage_args_are_run_by_the_make_run_test(args: str) -> bool:
    return f'make_manage(env, "{args}")' in MAKE_RUN_TEST and "make_manage" in MAKE_RUN_TEST


def manage_command_exists(name: str) -> bool:
    import django

    django.setup()
    return name in get_commands()


def setting_exists(name: str) -> bool:
    return f'"{name}"' in (ROOT / "config" / "settings.py").read_text()


# Each command the README shows, and how a test or CI step exercises it.
COVERED = {
    # tests/test_make_run.py runs devstack.run, which is all `make run` does.
    "make run": lambda: (
        "$(PY) -m devstack.run" in make_recipe("run") and '"-m", "devstack.run"' in MAKE_RUN_TEST
    ),
    "CLEANUP_SCHEDULE=1m make run": lambda: 'CLEANUP_SCHEDULE="3s"' in MAKE_RUN_TEST,
    "make test": lambda: "\nmake test\n" in CI,
    # The same pytest as `make test`, less the tests marked as starting processes.
    "make quick": lambda: '-m "not processes and not browser"' in make_recipe("quick"),
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make test": lambda: (
        'DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres" make test' in CI
    ),
    'make manage ARGS="beat_status"': lambda: manage_args_are_run_by_the_make_run_test(
        "beat_status"
    ),
    'make manage ARGS="cloudcube_cleanup --dry-run"': lambda: (
        manage_args_are_run_by_the_make_run_test("cloudcube_cleanup --dry-run")
    ),
    # tests/test_layout.py checks what it prints (and the README's copy of it).
    "python -m tests.support.imports": lambda: (
        "from tests.support.imports import" in (ROOT / "tests" / "test_layout.py").read_text()
    ),
    # Run by hand with the Heroku CLI (issue 18); the README sends to its section.
    "heroku local": lambda: (
        "## `heroku local`" in (ROOT / "docs" / "local-development.md").read_text()
        and "(docs/local-development.md#heroku-local)" in README
        and {"web", "worker"} <= set(procfile_commands())
    ),
    # Heroku itself cannot run here: what the commands name must exist.
    "heroku create": lambda: (ROOT / "app.json").exists(),
    "git push heroku main": lambda: (ROOT / "Procfile").exists(),
    "heroku ps:scale worker=1": lambda: "worker" in procfile_commands(),
    "heroku run python manage.py createsuperuser": lambda: manage_command_exists("createsuperuser"),
    "heroku run python manage.py beat_status": lambda: manage_command_exists("beat_status"),
    # tests/test_preflight.py runs it against the test stack.
    "heroku run python manage.py preflight": lambda: (
        manage_command_exists("preflight") and (ROOT / "tests" / "test_preflight.py").exists()
    ),
    "heroku config:set SENTRY_DSN='https://<key>@o<org>.ingest.sentry.io/<project>'": lambda: (
        setting_exists("SENTRY_DSN")
    ),
    "python manage.py …": lambda: True,  # the failing bare form the README warns about
    'make manage ARGS="…"': lambda: "manage: $(STAMP)" in MAKEFILE,
    "make manage": lambda: "$(PY) -m devstack.manage $(ARGS)" in make_recipe("manage"),
}


def test_the_readme_is_a_short_newcomer_page():
    lines = README.count("\n")
    assert 60 <= lines <= 120, lines
    first_steps = README.index("make run"), README.index("make test"), README.index("make manage")
    assert max(first_steps) < README.index("## Deploy")


def test_every_readme_command_is_exercised_by_a_test_or_ci_step():
    commands = readme_commands()
    assert {"make run", "make test", 'make manage ARGS="beat_status"'} <= set(commands)
    unknown = [c for c in commands if c not in COVERED]
    assert not unknown, f"README commands no test or CI step covers: {unknown}"
    failing = [c for c in commands if not COVERED[c]()]
    assert not failing, failing
    for command in commands:
        shlex.split(command.replace("…", "x"))  # each one is valid shell


def test_every_link_in_the_readme_and_docs_points_at_a_file_that_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
    assert "issue tracker" not in "".join(p.read_text() for p in pages)
