"""The house rules a reviewer would otherwise check by hand: namespace, rooms, imports, error tree."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleetway.activities import errors

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("activities", "workflows", "worker")

# What each room of worker/ may import from the others: configuration depends on none of them, the
# worker process never on the CLI or the dev stack, the CLI never on the dev stack at import time.
_ROOM_RULES = {
    "fleetway.worker.config": ("fleetway.worker.cli", "fleetway.worker.process", "fleetway.worker.dev"),
    "fleetway.worker.process": ("fleetway.worker.cli", "fleetway.worker.dev"),
    "fleetway.activities": ("fleetway.workflows", "fleetway.worker"),
    "fleetway.workflows": ("fleetway.worker",),
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(("fleetway", *parts)).removesuffix(".__init__"), path))
    return found


def _imports(path: Path, *, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif top_level_only and isinstance(node, ast.With | ast.If | ast.Try):
            names += [n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module]
    return names


def test_nothing_imports_a_generic_top_level_name() -> None:
    """Imports go through ``fleetway.*``: a bare ``worker`` would load a second copy of a module."""
    files = [p for p in ROOT.rglob("*.py") if not {".venv", ".typecheck"} & set(p.parts)]
    bare = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if name.split(".")[0] in ROOMS
    ]
    assert bare == []


@pytest.mark.parametrize(("room", "forbidden"), sorted(_ROOM_RULES.items()))
def test_rooms_import_only_downward(room: str, forbidden: tuple[str, ...]) -> None:
    crossing = [
        f"{module} imports {name}"
        for module, path in _modules()
        if module.startswith(room)
        for name in _imports(path, top_level_only=True)
        if name.startswith(forbidden)
    ]
    assert crossing == []


def _loaded_by(statement: str) -> set[str]:
    """The fleetway modules (and a few heavy libraries) a fresh interpreter loads for ``statement``."""
    probe = (
        f"{statement}\nimport json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('fleetway', 'jpype')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_worker_process_loads_no_dev_stack_and_no_cli() -> None:
    loaded = _loaded_by("import fleetway.worker.process.run")
    assert not {m for m in loaded if m.startswith(("fleetway.worker.dev", "fleetway.worker.cli"))}
    assert "fleetway.workflows.migrate_all" in loaded  # the probe saw the worker's own imports


def test_a_cli_command_loads_neither_the_worker_nor_the_engines() -> None:
    """``fleetway status`` and friends must not pay for the worker, the JVM bridge or the dev stack."""
    loaded = _loaded_by("import fleetway.worker.cli.main")
    heavy = {
        "fleetway.worker.process.run",
        "fleetway.worker.dev.stack",
        "fleetway.activities.flyway.jvm_engine",
        "fleetway.activities.flyway.cli_engine",
        "jpype",
    }
    assert loaded & heavy == set()
    assert "fleetway.worker.cli.main" in loaded


def _documented_tree() -> dict[str, str]:
    """Each class of the tree drawn in ``errors``' docstring, mapped to the parent drawn above it."""
    parents: dict[str, str] = {}
    stack: list[str] = []
    base = None
    for line in (errors.__doc__ or "").splitlines():
        drawn = re.match(r"^(?P<prefix>.*?)[├└]── (?P<name>\w+)$", line)
        if not drawn:
            continue
        base = len(drawn["prefix"]) if base is None else base
        depth = (len(drawn["prefix"]) - base) // 4
        stack = [*stack[:depth], drawn["name"]]
        parents[drawn["name"]] = stack[-2] if len(stack) > 1 else "FleetwayError"
    return parents


def test_the_error_tree_in_the_docstring_is_complete_and_true() -> None:
    actual = {
        name: next(b.__name__ for b in cls.__bases__ if issubclass(b, errors.FleetwayError))
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.FleetwayError) and cls is not errors.FleetwayError
    }
    assert _documented_tree() == actual
    families = sorted(name for name, parent in actual.items() if parent == "FleetwayError")
    assert len(families) <= 12, families  # a caller catches a family, not one of fifty classes
    assert sorted(actual) == sorted(n for n in errors.__all__ if n.endswith("Error") and n != "FleetwayError")


def test_the_rollout_shell_changes_its_state_only_through_named_transitions() -> None:
    """No ``state.x = ...`` nor ``state.x.append(...)`` in the shell: RolloutState owns its changes."""
    mutators = {
        "append",
        "appendleft",
        "extend",
        "extendleft",
        "clear",
        "pop",
        "popleft",
        "add",
        "remove",
        "update",
    }

    def is_state(node: ast.expr) -> bool:
        return (isinstance(node, ast.Name) and node.id == "state") or (
            isinstance(node, ast.Attribute) and node.attr == "_state"
        )

    found = []
    for name in ("migrate_all.py", "rollout_calls.py", "server_gate.py", "tenant_dispatch.py"):
        tree = ast.parse((ROOT / "workflows" / name).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.stmt | ast.expr):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AugAssign | ast.AnnAssign) else []  # fmt: skip
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and is_state(leaf.value):
                        found.append(f"{name}:{node.lineno} assigns state.{leaf.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in mutators
                and isinstance(node.func.value, ast.Attribute)
                and is_state(node.func.value.value)
            ):
                found.append(f"{name}:{node.lineno} mutates state.{node.func.value.attr}")
    assert found == []


def test_the_drawn_route_of_a_rollout_names_real_files_each_once() -> None:
    """docs/architecture.md's route from the API call to the Flyway call: every file it names exists, none twice."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    route = text.split("**The route of a rollout", 1)[1].split("**The rollout as state.**", 1)[0]
    steps = re.findall(r"^\d+\. (.*?)(?=^\d+\. |\Z)", route, re.M | re.S)
    assert len(steps) >= 8
    seen: list[str] = []
    for step in steps:
        names = re.findall(r"`([\w/]+\.py)`", step)
        folder = next(n.rsplit("/", 1)[0] for n in names if "/" in n)  # a step opens with its file's path
        for name in names:
            path = name if "/" in name else f"{folder}/{name}"
            assert (ROOT / path).is_file(), f"the route names {path}, which does not exist"
            seen.append(path)
    assert sorted(p for p in set(seen) if seen.count(p) > 1) == []
