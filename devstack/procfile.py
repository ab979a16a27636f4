"""Read the Procfile, so the local stack and the tests run the production lines."""

from __future__ import annotations

from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        commands[name.strip()] = command.strip()
    return commands


def procfile_command(name: str) -> str:
    """The shell command of one Procfile process type (run it with bash -c)."""
    try:
        return procfile_commands()[name]
    except KeyError:
        raise KeyError(f"Procfile has no {name!r} process") from None
