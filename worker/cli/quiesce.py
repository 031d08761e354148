"""``fleetway quiesce set|clear|status|init|ROLLOUT``: the deployment's flag, or one rollout's.

The flag lives in a shared store (``quiesce.dsn``); a CLI without one is refused rather than set a
flag in its own memory that no worker reads. Every flip is audited. ``init`` creates the table once
with an owner's login and grants operators and workers only what each needs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import InvalidQuiesceTtlError
from fleetway.activities.quiesce import PostgresQuiesceController, QuiesceStatus, quiesce_audit_event
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_client, load_settings, run_command, stderr
from fleetway.worker.client.lookup import running_rollout
from fleetway.worker.config.backends import audit_emitter, shared_quiesce_controller
from fleetway.workflows.migrate_all import MigrateAllWorkflow

__all__ = ["quiesce"]


def _print(state: QuiesceStatus, output: OutputFormat) -> None:
    if output is not OutputFormat.TEXT:
        print(state.model_dump_json(indent=2))
        return
    label = (
        "ACTIVE"
        if state.active
        else "expired (auto-released)"
        if state.expired
        else "cleared"
        if state.cleared
        else "not quiesced"
    )
    expires = state.expires_at.isoformat() if state.expires_at else ""
    print(f'state={label} set_by="{state.set_by}" reason="{state.reason}" expires_at={expires}')


def quiesce(  # noqa: PLR0917 - typer maps each option to a parameter
    target: Annotated[
        str, typer.Argument(help="set | clear | status | init (the deployment flag), or a rollout id.")
    ],
    reason: Annotated[str, typer.Option()] = "",
    ttl: Annotated[
        str, typer.Option(help="How long the flag holds: seconds, or like 45m, 1h30m (0 = 30m, max 2h).")
    ] = "0",
    by: Annotated[str, typer.Option(help="Who sets or clears it.", envvar="FLEETWAY_PRINCIPAL")] = "",
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    grant_to: Annotated[str, typer.Option(help="init: operators' role (SELECT, INSERT, UPDATE).")] = "",
    grant_read_to: Annotated[str, typer.Option(help="init: workers' role (SELECT).")] = "",
) -> None:
    """Quiesce the deployment (set/clear/status), or one rollout (its id): dispatch stops.

    'init' creates the flag's table once, with quiesce.dsn set to an owner's login; operators and
    workers then use logins with only the rights --grant-to and --grant-read-to give.
    """

    async def go() -> ExitCode:
        if target == "init":
            store = shared_quiesce_controller(load_settings())
            assert isinstance(store, PostgresQuiesceController)  # noqa: S101 - a shared store is one
            await store.install(grant_to=grant_to, grant_read_to=grant_read_to)
            stderr.print(f"quiesce table ready: {store.description}", markup=False)
            return ExitCode.OK
        if target not in {"set", "clear", "status"}:
            client, _ = await connect_client()
            await running_rollout(client, target, "quiesce")
            await client.get_workflow_handle(target).signal(MigrateAllWorkflow.quiesce)
            stderr.print(f"quiesce sent to {target}")
            return ExitCode.OK
        settings = load_settings()
        controller = shared_quiesce_controller(settings)
        if target == "status":
            _print(await controller.status(), output)
            return ExitCode.OK
        emitter = audit_emitter(settings)
        try:
            if target == "set":
                state = await controller.set(
                    principal=by,
                    reason=reason,
                    ttl=timedelta(seconds=parse_duration_s(ttl, what="--ttl", error=InvalidQuiesceTtlError)),
                )
            else:
                state = await controller.clear(principal=by)
            emitter.emit(quiesce_audit_event(state))
        finally:
            if not await asyncio.to_thread(emitter.close, settings.audit.close_timeout_s):
                stderr.print("warning: the audit sink did not drain in time", markup=False)
        _print(state, output)
        return ExitCode.OK

    run_command(go)
