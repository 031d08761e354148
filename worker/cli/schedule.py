"""``fleetway schedule …`` (nightly validation) and ``fleetway drift`` (what a validation found)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import ScheduleHandle, ScheduleUpdate

from fleetway.activities.errors import ConfigurationError
from fleetway.activities.flyway.output import Action
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.flyway_options import flyway_options
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_client, load_settings, run_command, stderr
from fleetway.worker.cli.schedules import (
    DEFAULT_CRON,
    ScheduleRequest,
    build_schedule,
    ensure_schedule,
    latest_run_id,
)
from fleetway.worker.config.client import connect
from fleetway.workflows.drift import DriftKind, DriftSummary, render_markdown, summarize
from fleetway.workflows.migrate_all_models import MigrateAllResult

__all__ = ["drift", "schedule_app"]

schedule_app = typer.Typer(no_args_is_help=True, help="Nightly fleet validation as a Temporal Schedule.")
DEFAULT_ID = "fleetway-nightly-validate"


class DriftFormat(StrEnum):
    """``fleetway drift --output`` values."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


ScheduleId = Annotated[str, typer.Option("--id", help="Schedule id.")]
ActionOption = Annotated[Action, typer.Option(help="validate (tampering) or info (pending versions).")]
CronOption = Annotated[str, typer.Option(help="Cron spec, UTC.")]
ParallelismOption = Annotated[int, typer.Option(min=1, max=256)]
PlaceholderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--placeholder", help="NAME=VALUE for ${NAME}, as the rollouts that migrate pass it (repeatable)."
    ),
]
PlaceholdersFileOption = Annotated[
    Path | None, typer.Option(help="A file of NAME=VALUE lines (or JSON/YAML).")
]


def _apply(
    schedule_id: str,
    action: Action,
    cron: str,
    parallelism: int,
    placeholders: tuple[list[str] | None, Path | None],
    *,
    must_exist: bool,
) -> None:
    async def go() -> ExitCode:
        settings = load_settings()
        flyway = flyway_options(
            target="", out_of_order="", placeholders=list(placeholders[0] or []),
            placeholders_file=placeholders[1], baseline_version="",
        )  # fmt: skip
        request = ScheduleRequest(
            schedule_id=schedule_id,
            task_queue=settings.effective_temporal().task_queue,
            action=action,
            cron=cron,
            parallelism=parallelism,
            flyway=flyway,
        )
        schedule = build_schedule(request)  # validates before anything is contacted
        client = await connect(settings.effective_temporal())
        if must_exist:
            await client.get_schedule_handle(schedule_id).update(lambda _: ScheduleUpdate(schedule=schedule))
            verb = "updated"
        else:
            verb = await ensure_schedule(client, request)
        print(f"{verb} {schedule_id} ({action.value}, cron '{cron}' UTC, overlap skip, catch-up 1h)")
        return ExitCode.OK

    run_command(go)


@schedule_app.command("create")
def create(  # noqa: PLR0917 - typer maps each option to a parameter
    schedule_id: ScheduleId = DEFAULT_ID,
    action: ActionOption = Action.VALIDATE,
    cron: CronOption = DEFAULT_CRON,
    parallelism: ParallelismOption = 8,
    placeholder: PlaceholderOption = None,
    placeholders_file: PlaceholdersFileOption = None,
) -> None:
    """Create the schedule, or update it when it exists (idempotent: safe on every deploy).

    A set whose scripts use placeholders is validated with the values its migrations ran with:
    give them here as to the rollouts (Flyway fills them into repeatables' checksums).
    """
    _apply(schedule_id, action, cron, parallelism, (placeholder, placeholders_file), must_exist=False)


@schedule_app.command("update")
def update(  # noqa: PLR0917 - typer maps each option to a parameter
    schedule_id: ScheduleId = DEFAULT_ID,
    action: ActionOption = Action.VALIDATE,
    cron: CronOption = DEFAULT_CRON,
    parallelism: ParallelismOption = 8,
    placeholder: PlaceholderOption = None,
    placeholders_file: PlaceholdersFileOption = None,
) -> None:
    """Replace an existing schedule's action, spec and placeholders (fails when it does not exist)."""
    _apply(schedule_id, action, cron, parallelism, (placeholder, placeholders_file), must_exist=True)


def _on_schedule(schedule_id: str, act: Callable[[ScheduleHandle], Awaitable[None]], done: str) -> None:
    async def go() -> ExitCode:
        client, _ = await connect_client()
        await act(client.get_schedule_handle(schedule_id))
        print(f"{done} {schedule_id}")
        return ExitCode.OK

    run_command(go)


@schedule_app.command("delete")
def delete(schedule_id: ScheduleId = DEFAULT_ID) -> None:
    """Delete the schedule (runs already started are not affected)."""
    _on_schedule(schedule_id, ScheduleHandle.delete, "deleted")


@schedule_app.command("trigger")
def trigger(schedule_id: ScheduleId = DEFAULT_ID) -> None:
    """Start a run now (the overlap policy still applies)."""
    _on_schedule(schedule_id, lambda handle: handle.trigger(), "triggered")


@schedule_app.command("list")
def list_schedules(
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
) -> None:
    """List schedules with their specs and most recent run."""

    async def go() -> ExitCode:
        client, _ = await connect_client()
        rows: list[dict[str, object]] = []
        async for entry in await client.list_schedules():
            spec, info = (entry.schedule.spec if entry.schedule else None), entry.info
            cron = ",".join(spec.cron_expressions) if spec else ""
            recent = (
                ",".join(getattr(a.action, "workflow_id", "") for a in info.recent_actions) if info else ""
            )
            paused = bool(entry.schedule and entry.schedule.state.paused)
            rows.append({"id": entry.id, "cron": cron, "paused": paused, "recent": recent})
        if output is OutputFormat.TEXT:
            for row in rows:
                print(f"{row['id']}  cron={row['cron']}  paused={row['paused']}  recent={row['recent']}")
        else:
            print(json.dumps(rows))
        return ExitCode.OK

    run_command(go)


def _print_drift(summary: DriftSummary, output: DriftFormat) -> None:
    if output is DriftFormat.JSON:
        print(summary.model_dump_json())
        return
    if output is DriftFormat.MARKDOWN:
        print(render_markdown(summary), end="")
        return
    table = Table(title=f"drift in {summary.rollout_id}: {summary.clean}/{summary.total} clean")
    for column in ("tenant", "drift", "tampered", "pending", "ahead", "failed", "error"):
        table.add_column(column)
    for t in summary.tenants:
        table.add_row(
            t.tenant_id,
            ", ".join(k.value for k in t.kinds),
            *(", ".join(v) for v in (t.tampered, t.pending, t.ahead, t.failed_versions)),
            t.error_class,
        )
    Console(highlight=False).print(table)
    print("  ".join(f"{k.value}={n}" for k, n in summary.counts.items()))


def drift(
    rollout: Annotated[str, typer.Argument(help="A finished validate/info rollout id.")] = "",
    schedule: Annotated[str, typer.Option(help="Use this schedule's most recent run instead.")] = "",
    output: Annotated[DriftFormat, typer.Option("--output", "-o")] = DriftFormat.TEXT,
) -> None:
    """Summarise schema drift: tampered, lagging, ahead, failed migrations. Exit 1 when any."""

    async def go() -> ExitCode:
        client, _ = await connect_client()
        rollout_id = rollout
        if schedule:
            found = await latest_run_id(client, schedule)
            if found is None:
                stderr.print(f"schedule {schedule} has not run yet", markup=False)
                return ExitCode.USAGE
            rollout_id = found
        if not rollout_id:
            raise ConfigurationError("give a rollout id or --schedule")
        result = await client.get_workflow_handle(rollout_id, result_type=MigrateAllResult).result()
        summary = summarize(result)
        _print_drift(summary, output)
        drifted = any(n for k, n in summary.counts.items() if k is not DriftKind.UNCHECKED)
        return ExitCode.FAILED if drifted or summary.counts[DriftKind.UNCHECKED] else ExitCode.OK

    run_command(go)
