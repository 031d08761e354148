"""A fleet's own set through releases (issues 35, 37): ``./dev bench --migrations DIR [--placeholder k=v]``.

On the user's folder: the first rollout, then a repeatable edited twice (an application's views and
functions change every few releases), each change rolled out; after every release a no-op validate
and migrate, by the default path (tables read first: current tenants proven without a Flyway run)
and by the full path (every tenant runs Flyway). Prints tenants proven current and wall times side
by side. ``releases`` also builds the histories ``--noop`` clones, so its no-op is measured on a
fleet whose repeatable was applied three times.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import Client

from fleetway.activities.flyway.output import Action
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.workflows.migrate_all_models import MigrateAllInput

if TYPE_CHECKING:
    from bench.run import Bench

__all__ = ["history_benchmark", "history_markdown", "releases"]

_FLEETWAY = str(Path(sys.executable).parent / "fleetway")


def releases(folder: Path, workdir: Path) -> list[tuple[str, Path]]:
    """The set as given, then its first repeatable edited once and twice ([the set] without one)."""
    repeatables = sorted(p for p in folder.rglob("R__*.sql"))
    found = [("first release", folder)]
    if not repeatables:
        return found
    previous = folder
    for number in (1, 2):
        edited = workdir / f"release-{number}"
        shutil.rmtree(edited, ignore_errors=True)
        shutil.copytree(previous, edited)
        script = edited / repeatables[0].relative_to(folder)
        script.write_bytes(script.read_bytes() + f"\n-- bench release {number}\n".encode())
        found.append((f"{repeatables[0].name} edited ({number})", edited))
        previous = edited
    return found


async def _rollout(
    bench: Bench, client: Client, task_queue: str, tenants: list[str], **fields: Any
) -> dict[str, Any]:
    """One timed rollout over ``tenants``: its wall time and how many tenants were proven current."""
    bench.settle()
    started = time.monotonic()
    result = await FleetwayClient(client, task_queue).run(
        MigrateAllInput(
            tenants=tenants,
            parallelism=bench.args.parallelism,
            continue_on_error=True,
            drift_check=False,
            flyway=bench.flyway_options,
            **fields,
        ),
        rollout_id=f"bench-history-{uuid.uuid4().hex[:8]}",
    )
    return {
        "tenants": len(tenants),
        "wall_s": round(time.monotonic() - started, 2),
        "current": result.counts.get(Outcome.CURRENT, 0),
        "failed": result.counts.get(Outcome.FAILED, 0),
    }


async def history_benchmark(bench: Bench, schemas: list[str]) -> dict[str, Any]:
    """Each release rolled out to ``schemas``, then the no-op by both paths; returns the report section."""
    rows: list[dict[str, Any]] = []
    full = schemas[: min(len(schemas), bench.args.noop_full)]
    for name, folder in releases(bench.migrations, bench.workdir):
        task_queue = f"bench-history-{uuid.uuid4().hex[:8]}"
        env = bench.worker_env(task_queue, "jvm", schemas, [], migrations=folder)
        worker = subprocess.Popen([_FLEETWAY, "worker"], env=env, start_new_session=True)
        client = await connect(TemporalConfig(address=bench.stack.temporal.address, task_queue=task_queue))
        row: dict[str, Any] = {"release": name}
        try:
            row["rollout"] = await _rollout(bench, client, task_queue, schemas)
            for action in (Action.VALIDATE, Action.MIGRATE):
                row[f"default {action.value}"] = await _rollout(
                    bench, client, task_queue, schemas, action=action
                )
                row[f"full {action.value}"] = await _rollout(
                    bench, client, task_queue, full, action=action, skip_current=False
                )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        print(f"  {name}: {row}", file=sys.stderr)
        rows.append(row)
    return {
        "set": str(bench.migrations),
        "tenants": len(schemas),
        "full_path_tenants": len(full),
        "releases": rows,
    }


def history_markdown(data: dict[str, Any]) -> str:
    """The history section of ``latest.md``."""
    lines = [
        f"The set {data['set']} through its releases: {data['tenants']} tenants "
        f"(full path over {data['full_path_tenants']})",
        "",
        "| release | rollout s | default validate s (current) | full validate s | default migrate s (current) "
        "| full migrate s |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["releases"]:
        lines.append(
            f"| {r['release']} | {r['rollout']['wall_s']} | {r['default validate']['wall_s']} "
            f"({r['default validate']['current']}/{r['default validate']['tenants']}) | {r['full validate']['wall_s']} "
            f"| {r['default migrate']['wall_s']} ({r['default migrate']['current']}/{r['default migrate']['tenants']}) "
            f"| {r['full migrate']['wall_s']} |"
        )
    return "\n".join(lines) + "\n"
