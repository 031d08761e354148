"""The reference pages under docs/ show only commands that exist: every ``fleetway`` command path
and ``--option`` in their ``sh`` blocks is one the CLI accepts, and every ``./dev`` job is one the
script runs. (The operator's guide and the README walkthrough are executed outright elsewhere.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from fleetway.worker.cli.main import app
from fleetway.worker.dev.stack import PROJECT_ROOT

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"(^|\$\(|&&|\||;)\s*(fleetway|\./dev)\b")
EXECUTED = {"operators-guide.md"}
PAGES = sorted(p for p in (PROJECT_ROOT / "docs").glob("*.md") if p.name not in EXECUTED)
DEV_JOBS = set(re.findall(r"^  ([a-z]+)\)", (PROJECT_ROOT / "dev").read_text(), re.M))


def _command_lines(page: Path) -> list[str]:
    """The logical lines (continuations joined, comments dropped) of the page's sh blocks."""
    lines: list[str] = []
    for kind, body in FENCE.findall(page.read_text()):
        if kind != "sh":
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        lines += [line.split(" # ", 1)[0] for line in joined.splitlines() if line.strip()]
    return lines


def _check_fleetway(words: list[str]) -> list[str]:
    """Problems with one ``fleetway …`` invocation's command path and options."""
    command: Any = typer.main.get_command(app)  # typer's vendored click: duck-typed
    path = ["fleetway"]
    rest = words
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, path, rest = command.commands[rest[0]], [*path, rest[0]], rest[1:]
    if hasattr(command, "commands"):
        return [f"{' '.join(path)} {rest[:1]}: not a command"]
    accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return [
        f"{' '.join(path)}: no option {opt}"
        for opt in (w.split("=", 1)[0] for w in rest if w.startswith("--"))
        if opt not in accepted
    ]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_commands_on_the_page_exist(page: Path) -> None:
    problems: list[str] = []
    for line in _command_lines(page):
        # Synopsis brackets and alternatives ([--tenant ID ...], DIR|DIGEST) are not shell syntax.
        if not COMMAND.search(line):  # fleetway or ./dev as a command, not as an argument
            continue
        words = shlex.split(re.sub(r"[\[\]]", " ", line.replace("$(", " ").replace(")", " ")), posix=True)
        for i, word in enumerate(words):
            if word == "fleetway":
                end = next(
                    (j for j in range(i + 1, len(words)) if words[j] in {"|", "&&", ";", ">"}), len(words)
                )
                problems += _check_fleetway(words[i + 1 : end])
            if word == "./dev" and i + 1 < len(words) and words[i + 1] not in DEV_JOBS:
                problems.append(f"./dev {words[i + 1]}: not a job")
    assert problems == []


def test_the_checker_catches_a_made_up_command_and_option() -> None:
    assert _check_fleetway(["migrate", "--parallelism", "4"]) == []
    assert _check_fleetway(["migrations", "push", "./m"]) == []
    assert _check_fleetway(["migrate", "--paralelism", "4"]) == ["fleetway migrate: no option --paralelism"]
    assert _check_fleetway(["schedule"]) == ["fleetway schedule []: not a command"]
