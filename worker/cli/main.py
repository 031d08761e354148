"""The ``fleetway`` CLI: start and steer rollouts, run the worker, flip the quiesce flag.

Each command parses options, builds a model, calls the client and renders through
``worker/output.py``. Exit codes: 0 ok, 1 a tenant failed or the rollout halted, 2 bad usage or
config, 3 quiesced or paused, 130 Ctrl-C (the rollout runs on). Processes end with ``os._exit``
(temporalio/sdk-python#300).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import (
    ConfigurationError,
    InvalidQuiesceTtlError,
    TenantSourceError,
    WorkerUnavailableError,
)
from fleetway.activities.flyway.output import Action
from fleetway.activities.quiesce import PostgresQuiesceController, QuiesceStatus, quiesce_audit_event
from fleetway.activities.tenants.static import load_tenants_file
from fleetway.activities.tenants.walk import TenantListing, list_all_tenants
from fleetway.worker.cli.audit import audit_app
from fleetway.worker.cli.fleet import fleet, wait
from fleetway.worker.cli.flyway_jars import flyway_app
from fleetway.worker.cli.flyway_options import flyway_options, held_at
from fleetway.worker.cli.follow import follow_rollout
from fleetway.worker.cli.output import (
    ExitCode,
    OutputFormat,
    exit_code_for,
    render_progress,
    render_result,
    render_server_view,
)
from fleetway.worker.cli.provision import deprovision, provision
from fleetway.worker.cli.runtime import (
    connect_client,
    describe_rollout,
    load_settings,
    refuse_rerun_of_running,
    refuse_reused_rollout_id,
    run_command,
    running_rollout,
    stderr,
)
from fleetway.worker.cli.schedule import drift, schedule_app
from fleetway.worker.cli.server_options import server_controls
from fleetway.worker.cli.sets import ask_workers, migrations_app, named_set, print_plan
from fleetway.worker.cli.wave_plan import plan_only, plan_servers, waves_from_options
from fleetway.worker.cli.waves import approve, reject
from fleetway.worker.config.backends import (
    audit_emitter,
    quiesce_store_named,
    shared_quiesce_controller,
    tenant_lister,
)
from fleetway.worker.config.client import has_pollers
from fleetway.worker.config.effective import effective_settings
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Durable multi-tenant Flyway rollouts on Temporal.",
    epilog=(
        "Configuration: environment variables FLEETWAY_<SECTION>__<KEY> (e.g. FLEETWAY_TEMPORAL__ADDRESS), "
        "a TOML file named by FLEETWAY_CONFIG, or the defaults; TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE "
        "are honoured. 'fleetway settings' prints what is in effect and where each value came from."
    ),
)
# What each command reads from the settings (shown under its --help).
_CONNECTS = "Reads temporal.address, temporal.namespace, temporal.task_queue (see 'fleetway settings')."
_EPILOGS = {
    "rollout": "Reads temporal.address, temporal.task_queue, and flyway.locations (or --migrations); the "
    "worker on that task queue supplies the tenant source (tenants.*) and the secret backend (secrets.*). "
    "See 'fleetway settings'.",
    "worker": "Reads every section: temporal.* (where to poll), flyway.engine, flyway.locations, sets.* "
    "(migration sets), tenants.* (the tenant source), secrets.* (credentials), quiesce.*, audit.*, worker.*. "
    "See 'fleetway settings'.",
    "quiesce": "Reads quiesce.dsn and quiesce.table (the flag's shared store; unset: refused) and "
    "audit.* (the flip is audited). See 'fleetway settings'.",
    "list-tenants": "Asks the worker on temporal.task_queue; with --local reads tenants.* itself. "
    "See 'fleetway settings'.",
}
T = TypeVar("T")
_LOCAL_LIST_RETRY_S = 300  # how long ``list-tenants --local`` rides out an unavailable source


def _rollout_command(action: Action) -> Callable[..., None]:
    def command(  # noqa: PLR0917 - typer maps each option to a parameter
        tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Tenant id (repeatable).")] = None,
        tenants_file: Annotated[
            Path | None, typer.Option(help="File of tenant ids (txt, json, yaml).")
        ] = None,
        parallelism: Annotated[int, typer.Option(min=1, max=256)] = 8,
        continue_on_error: Annotated[bool, typer.Option("--continue-on-error")] = False,
        canary: Annotated[int, typer.Option(min=0, help="Run N tenants first, then decide.")] = 0,
        max_failure_ratio: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
        rerun_failed: Annotated[str, typer.Option(help="Re-run the failed tenants of this rollout.")] = "",
        principal: Annotated[str, typer.Option(envvar="FLEETWAY_PRINCIPAL")] = "",
        git_sha: Annotated[str, typer.Option(envvar="FLEETWAY_GIT_SHA")] = "",
        pipeline_run_id: Annotated[str, typer.Option(envvar="FLEETWAY_PIPELINE_RUN_ID")] = "",
        rollout_id: Annotated[str, typer.Option(help="Workflow id (default: generated).")] = "",
        detach: Annotated[bool, typer.Option("--detach", help="Start and print the id.")] = False,
        paused: Annotated[
            bool, typer.Option("--paused", help="Start held: nothing runs until `fleetway resume`.")
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Show what migrate would apply, or what repair would change."),
        ] = False,
        target: Annotated[
            str, typer.Option("--target", help="migrate: up to this version (V, next, current or latest).")
        ] = "",
        out_of_order: Annotated[
            str,
            typer.Option(
                "--out-of-order", help="migrate: a hotfix, this one version below a tenant's current one."
            ),
        ] = "",
        placeholder: Annotated[
            list[str] | None,
            typer.Option("--placeholder", help="NAME=VALUE for ${NAME} in the scripts (repeatable)."),
        ] = None,
        placeholders_file: Annotated[
            Path | None, typer.Option(help="Placeholders from a JSON object of names to values.")
        ] = None,
        baseline_version: Annotated[
            str, typer.Option("--baseline-version", help="baseline: the version to record (default 1).")
        ] = "",
        baseline_reference: Annotated[
            str,
            typer.Option(
                "--baseline-reference",
                help="baseline (or migrate): adopt only schemas equal to this tenant's (fingerprint).",
            ),
        ] = "",
        migrations: Annotated[
            str,
            typer.Option(
                "--migrations",
                help="The migration set: a folder (digested here) or a digest pushed to the set store "
                "(default: the configured flyway.locations).",
            ),
        ] = "",
        wave: Annotated[
            list[str] | None,
            typer.Option(
                "--wave",
                help="A ring: 'NAME; labels=SELECTOR|tenants=a,b|count=N|percent=P|rest[; parallelism=N]"
                "[; max-failures=N|max-failure-ratio=R][; bake=30m][; gate]' (repeatable, in order).",
            ),
        ] = None,
        wave_plan: Annotated[
            Path | None, typer.Option("--wave-plan", help="The waves from a YAML or JSON file.")
        ] = None,
        where: Annotated[
            str,
            typer.Option(
                "--where",
                help="Only tenants whose table shows: behind, failed, tampered, ahead, outdated, current, "
                "version<V (<=, =, >=, >); comma = or.",
            ),
        ] = "",
        applied_in: Annotated[
            str, typer.Option("--applied-in", help="Only tenants with a row this rollout applied.")
        ] = "",
        applied_version: Annotated[
            str, typer.Option("--applied-version", "--version", help="With --applied-in: that version's row.")
        ] = "",
        skip_current: Annotated[
            bool,
            typer.Option(
                "--skip-current/--no-skip-current",
                help="Read the tables first; a tenant proven current is reported 'current', no Flyway run.",
            ),
        ] = True,
        skip_callbacks_when_current: Annotated[
            bool,
            typer.Option(
                "--skip-callbacks-when-current",
                help="A tenant proven current skips the every-run callbacks (afterMigrate.sql ...) too.",
            ),
        ] = False,
        per_server: Annotated[
            int | None,
            typer.Option(
                "--per-server", min=1, max=256, help="Most tenants in flight on one database server."
            ),
        ] = None,
        server_checks: Annotated[
            bool | None,
            typer.Option(
                "--server-checks/--no-server-checks",
                help="Check each server before dispatching to it; park one that does not answer.",
            ),
        ] = None,
        max_lock_waiters: Annotated[
            int | None,
            typer.Option(min=0, help="Hold a server while more sessions than this wait on a lock."),
        ] = None,
        max_replica_lag_bytes: Annotated[
            int | None,
            typer.Option(min=0, help="Hold a primary while a replica's replay is this many bytes behind."),
        ] = None,
        replica: Annotated[
            list[str] | None,
            typer.Option(
                "--replica",
                help="PRIMARY=REPLICA (host:port each): read that server's replica lag on the replica.",
            ),
        ] = None,
        min_free_connections: Annotated[
            int | None,
            typer.Option(min=1, help="Hold a server while fewer client connections than this are free."),
        ] = None,
        health_probe: Annotated[
            str, typer.Option(help="A query returning one number; hold a server while it is over the max.")
        ] = "",
        health_probe_max: Annotated[float | None, typer.Option(help="The --health-probe's maximum.")] = None,
        park_limit: Annotated[
            str, typer.Option(help="End a server's tenants unreachable once parked this long (30m).")
        ] = "",
        output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    ) -> None:
        async def go() -> ExitCode:
            selected = list(tenant or []) + (load_tenants_file(tenants_file) if tenants_file else [])
            effective = _dry_run_action(action) if dry_run else action
            flyway = flyway_options(
                target="" if dry_run else target,  # a dry run reads info; the cut is made below
                out_of_order="" if dry_run else out_of_order,
                placeholders=list(placeholder or []),
                placeholders_file=placeholders_file,
                baseline_version=baseline_version,
                baseline_reference=baseline_reference,
                dry_run=dry_run and action is Action.BASELINE,
            )
            waves = waves_from_options(list(wave or []), wave_plan)
            if dry_run:  # the plan and what each wave would apply, now: no gate, bake or halt
                waves = [plan_only(w) for w in waves]
            settings = load_settings()
            servers = server_controls(
                settings,
                plan_servers(wave_plan),
                per_server=per_server,
                checks=server_checks,
                max_lock_waiters=max_lock_waiters,
                max_replica_lag_bytes=max_replica_lag_bytes,
                min_free_connections=min_free_connections,
                replicas=list(replica or []),
                health_probe=health_probe,
                health_probe_max=health_probe_max,
                park_limit=park_limit,
            )
            named = named_set(migrations, settings)
            request = MigrateAllInput(
                migration_set=named.digest,
                action=effective,
                tenants=selected,
                rerun_failed_of=rerun_failed,
                parallelism=parallelism,
                continue_on_error=continue_on_error or dry_run,
                canary_count=canary,
                max_failure_ratio=max_failure_ratio,
                audit=AuditContext(principal=principal, git_sha=git_sha, pipeline_run_id=pipeline_run_id),
                start_paused=paused,
                waves=waves,
                flyway=flyway,
                where=where,
                applied_in=applied_in,
                applied_version=applied_version,
                skip_current=skip_current,
                skip_callbacks_when_current=skip_callbacks_when_current,
                quiesce_store=quiesce_store_named(settings),
                servers=servers,
            )
            if not principal:  # after the input is known valid: a bad input gets one line, nothing else
                stderr.print("warning: no --principal; audit events will say <unspecified>")
            client, settings = await connect_client()
            await refuse_rerun_of_running(client, rerun_failed)
            workflow_id = rollout_id or f"rollout-{effective.value}-{uuid.uuid4().hex[:10]}"
            await refuse_reused_rollout_id(client, workflow_id)
            task_queue = settings.effective_temporal().task_queue
            try:
                # No wait for a starting worker: the rollout itself waits for one.
                fleet = await ask_workers(client, task_queue, migration_set=named.digest, wait_s=0)
            except WorkerUnavailableError as exc:
                fleet = None
                stderr.print(f"warning: {exc}; the rollout waits until one does", markup=False)
            print_plan(
                settings, fleet, named, lists_source=not selected, retry_budget_s=request.retry_budget_s
            )
            try:
                await client.start_workflow(
                    MigrateAllWorkflow.run,
                    request,
                    id=workflow_id,
                    task_queue=task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            except WorkflowAlreadyStartedError:  # started by someone else since the check above
                await refuse_reused_rollout_id(client, workflow_id)
                raise
            stderr.print(f"started {workflow_id}")
            if detach:
                print(
                    json.dumps({"rollout_id": workflow_id})
                    if output is not OutputFormat.TEXT
                    else workflow_id
                )
                return ExitCode.OK
            try:
                result, streamed = await follow_rollout(client, workflow_id, output, stderr)
            except asyncio.CancelledError:  # Ctrl-C: stop following; never cancel the rollout
                stderr.print(
                    f"detached from {workflow_id}; it keeps running "
                    f"(fleetway status {workflow_id} | fleetway cancel {workflow_id})"
                )
                raise
            except WorkflowFailureError as exc:
                stderr.print(f"rollout {workflow_id} ended: {type(exc.cause).__name__}")
                return ExitCode.FAILED
            if dry_run and target:  # what migrate --target would apply, not everything pending
                result = held_at(result, target)
            render_result(result, output, dry_run=dry_run, streamed=streamed)
            return exit_code_for(result.status)

        if dry_run and action not in {Action.MIGRATE, Action.REPAIR, Action.BASELINE}:
            stderr.print("--dry-run applies to migrate, repair and baseline only")
            raise typer.Exit(int(ExitCode.USAGE))
        run_command(go)

    command.__doc__ = f"Run Flyway {action.value} across the fleet as one durable rollout."
    return command


def _dry_run_action(action: Action) -> Action:
    """What a dry run runs: info, validate (what repair would fix), or a checking baseline."""
    return {Action.REPAIR: Action.VALIDATE, Action.BASELINE: Action.BASELINE}.get(action, Action.INFO)


for _action in Action:
    app.command(name=_action.value, epilog=_EPILOGS["rollout"])(_rollout_command(_action))


@app.command(epilog=_EPILOGS["worker"])
def worker(
    engine: Annotated[
        str, typer.Option(help="Flyway engine: auto, cli or jvm (default: flyway.engine).")
    ] = "",
) -> None:
    """Run a worker: registers every workflow and activity; SIGTERM shuts down gracefully."""
    # Only this command loads the worker (its engines, the JVM bridge): every other command stays light.
    from fleetway.worker.process.run import run_worker  # noqa: PLC0415

    async def go() -> ExitCode:
        settings = load_settings()
        if engine:
            if engine not in ("auto", "cli", "jvm"):
                raise ConfigurationError(f"--engine must be auto, cli or jvm, not {engine!r}")
            settings = settings.model_copy(
                update={"flyway": settings.flyway.model_copy(update={"engine": engine})}
            )
        await run_worker(settings)
        return ExitCode.OK

    run_command(go, service="fleetway-worker")


_QUERY_TIMEOUT = timedelta(seconds=10)
_CANCEL_WAIT_S = 120.0


@app.command(epilog=_CONNECTS)
def status(
    rollout: str,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Follow a running rollout to its end (as an attached migrate does); exit by outcome.",
        ),
    ] = False,
) -> None:
    """Show a rollout's progress, or its result once it has ended.

    A running rollout's progress is a query, which a worker answers: with no worker polling (or
    none answering within 10 s) the server's own view is shown instead, saying why. With
    ``--follow`` (a pipeline that started the rollout ``--detach``ed) it waits for the result.
    """

    async def go() -> ExitCode:
        client, _ = await connect_client()
        handle = client.get_workflow_handle(rollout, result_type=MigrateAllResult)
        described = await describe_rollout(client, rollout)
        if follow and described.status is WorkflowExecutionStatus.RUNNING:
            result, streamed = await follow_rollout(client, rollout, output, stderr)
            render_result(result, output, streamed=streamed)
            return exit_code_for(result.status)
        if described.status is WorkflowExecutionStatus.COMPLETED:
            result = await handle.result()
            render_result(result, output)
            return exit_code_for(result.status)
        if described.status is WorkflowExecutionStatus.RUNNING:
            reason = ""
            if not await has_pollers(client, described.task_queue):
                reason = f"no worker polls task queue {described.task_queue!r}"
            else:
                try:
                    progress = await handle.query(MigrateAllWorkflow.progress, rpc_timeout=_QUERY_TIMEOUT)
                except RPCError as exc:
                    reason = (
                        f"no worker answered within {_QUERY_TIMEOUT.seconds}s ({exc.status.name.lower()})"
                    )
                else:
                    render_progress(progress, output, rollout)
                    return exit_code_for(progress.status)
            render_server_view(rollout, "running", await described.memo(), output, reason=reason)
            return ExitCode.OK
        state = described.status.name.lower() if described.status else "unknown"
        render_server_view(rollout, state, await described.memo(), output)
        return ExitCode.FAILED

    run_command(go)


def _signal_command(name: str, doc: str) -> Callable[[str], None]:
    def command(rollout: str) -> None:
        async def go() -> ExitCode:
            client, _ = await connect_client()
            described = await running_rollout(client, rollout, name)
            await client.get_workflow_handle(rollout).signal(name)
            stderr.print(f"{name} sent to {rollout}")
            if not await has_pollers(client, described.task_queue):
                stderr.print(
                    f"no worker polls task queue {described.task_queue!r}; the {name} is recorded and takes "
                    "effect when one does"
                )
            return ExitCode.OK

        run_command(go)

    command.__doc__ = doc
    return command


app.command(name="pause", epilog=_CONNECTS)(
    _signal_command("pause", "Hold a rollout's dispatching (in-flight tenants finish).")
)
app.command(name="resume", epilog=_CONNECTS)(_signal_command("resume", "Lift a pause."))


@app.command(name="set-parallelism", epilog=_CONNECTS)
def set_parallelism(rollout: str, parallelism: Annotated[int, typer.Argument(min=1, max=256)]) -> None:
    """Change a running rollout's window size."""

    async def go() -> ExitCode:
        client, _ = await connect_client()
        described = await running_rollout(client, rollout, "set-parallelism")
        if not await has_pollers(client, described.task_queue):  # an update waits for a worker's answer
            raise WorkerUnavailableError(
                f"no worker polls task queue {described.task_queue!r}; set-parallelism needs one to answer"
            )
        handle = client.get_workflow_handle(rollout, result_type=MigrateAllResult)
        previous = await handle.execute_update(
            MigrateAllWorkflow.set_parallelism, parallelism, rpc_timeout=_QUERY_TIMEOUT
        )
        stderr.print(f"parallelism {previous} -> {parallelism}")
        return ExitCode.OK

    run_command(go)


@app.command(epilog=_CONNECTS)
def cancel(rollout: str, wait: Annotated[bool, typer.Option(help="Wait until it has ended.")] = True) -> None:
    """Cancel a rollout: stop dispatching, cancel every in-flight tenant (its Flyway run is stopped)."""

    async def go() -> ExitCode:
        client, _ = await connect_client()
        described = await running_rollout(client, rollout, "cancel")
        handle = client.get_workflow_handle(rollout)
        await handle.cancel()
        if not await has_pollers(client, described.task_queue):
            stderr.print(
                f"no worker polls task queue {described.task_queue!r}; the cancel is recorded and takes "
                "effect when one does"
            )
            return ExitCode.OK
        if wait:
            stderr.print(f"cancel requested; waiting for {rollout}'s in-flight tenants to stop")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _CANCEL_WAIT_S
            while (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                if loop.time() > deadline:
                    stderr.print(
                        f"{rollout} is still stopping after {_CANCEL_WAIT_S:.0f}s; the cancel stands "
                        f"(fleetway status {rollout})"
                    )
                    return ExitCode.OK
                await asyncio.sleep(0.2)
        stderr.print(f"{rollout} cancelled")
        return ExitCode.OK

    run_command(go)


def _print_quiesce(state: QuiesceStatus, output: OutputFormat) -> None:
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


@app.command(epilog=_EPILOGS["quiesce"])
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
            await client.get_workflow_handle(target).signal(MigrateAllWorkflow.quiesce)
            stderr.print(f"quiesce sent to {target}")
            return ExitCode.OK
        settings = load_settings()
        controller = shared_quiesce_controller(settings)
        if target == "status":
            _print_quiesce(await controller.status(), output)
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
        _print_quiesce(state, output)
        return ExitCode.OK

    run_command(go)


@app.command(name="list-tenants", epilog=_EPILOGS["list-tenants"])
def list_tenants(
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    local: Annotated[
        bool, typer.Option("--local", help="List from this CLI's settings instead of asking a worker.")
    ] = False,
) -> None:
    """Print the tenants a rollout would target: a worker's tenant source, every page."""

    async def go() -> ExitCode:
        if local:

            def retrying(exc: TenantSourceError, wait: float) -> None:
                stderr.print(f"{exc.error_type}: {exc}; asking again in {wait:g}s", markup=False)

            # As a rollout's listing is retried: a 5xx or 429 is asked again (its Retry-After honoured).
            listing = await list_all_tenants(
                tenant_lister(load_settings()),
                page_size=500,
                retry_for_s=_LOCAL_LIST_RETRY_S,
                on_retry=retrying,
            )
        else:
            client, settings = await connect_client()
            fleet = await ask_workers(client, settings.effective_temporal().task_queue, list_tenants=True)
            stderr.print(
                f"tenant source {fleet.worker.tenant_source} (worker {fleet.worker.identity})", markup=False
            )
            if fleet.error:
                raise TenantSourceError(f"the worker could not list its tenant source: {fleet.error}")
            if fleet.truncated:
                stderr.print(
                    f"warning: only the first {len(fleet.tenants)} of {fleet.total} tenants are shown "
                    "(one answer's bytes); --local lists them all",
                    markup=False,
                )
            listing = TenantListing(tenant_ids=fleet.tenants, duplicates=fleet.duplicates, pages=fleet.pages)
        if listing.duplicates:
            shown = ", ".join(sorted(set(listing.duplicates))[:20])
            stderr.print(
                f"warning: the source returned duplicate tenant ids (listed once): {shown}", markup=False
            )
        if output is OutputFormat.TEXT:
            print("\n".join(listing.tenant_ids))
        else:
            print(
                json.dumps(
                    {"tenants": listing.tenant_ids, "duplicates": listing.duplicates, "pages": listing.pages}
                )
            )
        return ExitCode.OK

    run_command(go)


@app.command(name="settings")
def show_settings(
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
) -> None:
    """Print every setting this process would run with, and where each came from.

    Sources, highest first: the environment (FLEETWAY_<SECTION>__<KEY>; TEMPORAL_ADDRESS and
    TEMPORAL_NAMESPACE for the Temporal section), the TOML file named by FLEETWAY_CONFIG, the
    default. Secrets show as set or unset, never their value.
    """

    async def go() -> ExitCode:
        rows = effective_settings(load_settings())
        if output is OutputFormat.TEXT:
            # Plain aligned columns, never wrapped: greppable, and pasteable into a ticket.
            width = min(56, max(len(f"{row.key} = {row.value}") for row in rows))
            for row in rows:
                print(f"{row.key} = {row.value}".ljust(width), f" # {row.source}; {row.env}")
        else:
            print(json.dumps([asdict(row) for row in rows]))
        return ExitCode.OK

    run_command(go)


@app.command()
def demo(
    tenants: Annotated[int, typer.Option(min=1, max=500, help="How many demo tenants.")] = 24,
    hold: Annotated[bool, typer.Option("--hold", help="Keep the stack up afterwards until Ctrl-C.")] = False,
    secrets: Annotated[
        str,
        typer.Option(help="Where the demo keeps tenant credentials: file, vault (OpenBao) or aws (moto)."),
    ] = "file",
) -> None:
    """Start the embedded stack and migrate a fleet of demo tenants end to end through the CLI."""
    from fleetway.worker.dev.demo import run_demo  # noqa: PLC0415 - only this command needs the dev stack

    if secrets not in ("file", "vault", "aws"):
        raise typer.BadParameter("--secrets must be file, vault or aws")
    run_command(lambda: run_demo(tenants=tenants, hold=hold, secrets_backend=secrets))  # type: ignore[arg-type]


app.command(name="approve", epilog=_CONNECTS)(approve)
app.command(name="reject", epilog=_CONNECTS)(reject)
app.command()(provision)
app.command(epilog=_CONNECTS)(fleet)
app.command(epilog=_CONNECTS)(wait)
app.command()(deprovision)
app.command()(drift)
app.add_typer(schedule_app, name="schedule")
app.add_typer(migrations_app, name="migrations")
app.add_typer(flyway_app, name="flyway")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Console-script entry point."""
    app()
