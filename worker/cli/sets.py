"""``fleetway migrations …`` (set digests, the set store), and what a rollout will use, from the workers.

Before a rollout starts, ``fleetway`` asks a worker (``DescribeFleetWorkflow``) what it will use
and prints it: the task queue, the tenant source, the secret backend and the migration set. Where
the CLI's own settings differ from the worker's, it says so: the rollout uses the worker's.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from fleetway.activities.backend_identity import describe
from fleetway.activities.errors import ConfigurationError, MigrationSetInvalidError
from fleetway.activities.sets.digest import check_digest, looks_like_digest, scan_set
from fleetway.activities.sets.store import push_set
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import load_settings, run_command, stderr
from fleetway.worker.config.backends import secrets_provider, set_store, tenant_lister
from fleetway.worker.config.settings import Settings
from fleetway.workflows.describe_fleet import FleetDescription

__all__ = ["NamedSet", "migrations_app", "named_set", "print_plan"]

migrations_app = typer.Typer(no_args_is_help=True, help="Migration sets: digests and the set store.")
_DESCRIBE_TIMEOUT = timedelta(seconds=20)
_LIST_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class NamedSet:
    """The set a rollout will name: its digest ("" = pinned by the rollout) and where it came from."""

    digest: str
    origin: str


def named_set(option: str, settings: Settings) -> NamedSet:
    """What ``--migrations`` names: a digest, a folder (digested here), or the configured folders.

    Without the option, the configured ``flyway.locations`` are digested when they form a valid
    set; otherwise the rollout names none and pins the set of the first worker that answers.

    Raises:
        MigrationSetInvalidError: the option is neither a full digest nor a valid set folder.
    """
    if option:
        if looks_like_digest(option) and not Path(option).exists():
            return NamedSet(check_digest(option), "given by digest")
        manifest, _ = scan_set([Path(option)])
        return NamedSet(manifest.digest, f"folder {option} ({manifest.scripts} scripts)")
    try:
        manifest, _ = scan_set(settings.flyway.locations)
    except MigrationSetInvalidError:
        return NamedSet("", "none named: the rollout pins the set of the worker that answers first")
    folders = ", ".join(str(p) for p in settings.flyway.locations)
    return NamedSet(manifest.digest, f"configured folder {folders} ({manifest.scripts} scripts)")


def _local(settings: Settings) -> tuple[str, str]:
    """This CLI's own tenant source and secret backend, described as a worker describes its own."""
    try:
        source = describe(tenant_lister(settings))
    except Exception as exc:
        source = f"unusable ({type(exc).__name__})"
    try:
        secrets = describe(secrets_provider(settings))
    except Exception as exc:
        secrets = f"unusable ({type(exc).__name__})"
    return source, secrets


def print_plan(
    settings: Settings,
    fleet: FleetDescription | None,
    named: NamedSet,
    *,
    lists_source: bool,
    retry_budget_s: int,
) -> None:
    """Print (stderr) what the rollout will use, and every way the CLI's settings differ from it."""
    task_queue = settings.effective_temporal().task_queue
    source, secrets = _local(settings)
    worker = fleet.worker if fleet else None
    lines = [("task queue", task_queue)]
    if worker is None:
        lines += [("tenant source", f"{source} (this CLI's settings: no worker answered)"),
                  ("secret backend", f"{secrets} (this CLI's settings: no worker answered)")]  # fmt: skip
    else:
        lines += [("worker", worker.identity), ("tenant source", worker.tenant_source),
                  ("secret backend", worker.secrets_backend)]  # fmt: skip
    shown = named.digest or (worker.migration_set if worker and worker.migration_set else "(pinned at start)")
    lines.append(("migration set", f"{shown} ({named.origin})"))
    for label, value in lines:
        stderr.print(f"{label:<15} {value}", markup=False)
    if worker is None:
        return
    if lists_source and source != worker.tenant_source:
        stderr.print(
            f"warning: this CLI's tenant source is {source!r}, the worker's is {worker.tenant_source!r}; "
            "the rollout lists the worker's",
            markup=False,
        )
    if secrets != worker.secrets_backend:
        stderr.print(
            f"warning: this CLI's secret backend is {secrets!r}, the worker's is {worker.secrets_backend!r}; "
            "the rollout resolves credentials through the worker's",
            markup=False,
        )
    if named.digest and worker.can_run_set is False:
        own = worker.migration_set or f"none ({worker.migration_set_problem})"
        store = worker.set_store or "no set store"
        stderr.print(
            f"warning: the worker that answered cannot run {named.digest} (its own set is {own}; {store}); "
            f"each tenant waits up to {retry_budget_s}s for a worker that can, then fails "
            "migration_set_mismatch (push the set: fleetway migrations push DIR)",
            markup=False,
        )


OutputOption = Annotated[OutputFormat, typer.Option("--output", "-o")]


@migrations_app.command("digest")
def digest(folder: Path, output: OutputOption = OutputFormat.TEXT) -> None:
    """Print the digest of the migration set in FOLDER (what --migrations FOLDER names)."""

    async def go() -> ExitCode:
        manifest, _ = await asyncio.to_thread(scan_set, [folder])
        if output is OutputFormat.TEXT:
            print(manifest.digest)
        else:
            print(
                json.dumps(
                    {"digest": manifest.digest, "files": len(manifest.entries), "scripts": manifest.scripts}
                )
            )
        return ExitCode.OK

    run_command(go)


@migrations_app.command("push")
def push(folder: Path, output: OutputOption = OutputFormat.TEXT) -> None:
    """Upload the set in FOLDER to the configured set store and print its digest."""

    async def go() -> ExitCode:
        store = set_store(load_settings())
        if store is None:
            raise ConfigurationError("no set store configured (sets.store = dir or s3)")
        manifest, uploaded = await asyncio.to_thread(push_set, store, [folder])
        stderr.print(
            f"pushed {manifest.digest} to {store.description}: {len(manifest.entries)} files, {uploaded} new",
            markup=False,
        )
        if output is OutputFormat.TEXT:
            print(manifest.digest)
        else:
            print(
                json.dumps({"digest": manifest.digest, "files": len(manifest.entries), "uploaded": uploaded})
            )
        return ExitCode.OK

    run_command(go)
