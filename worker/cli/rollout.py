"""``fleetway migrate|validate|info|repair|baseline``: one durable rollout, started through the library.

The command parses (``rollout_options.py``: each verb offers only its options), builds the typed
request, asks a worker what the rollout will use and prints it, starts through
:class:`FleetwayClient` (which refuses a reused id or a rerun of a running rollout), then follows
or detaches and exits by the outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowFailureError

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.errors import WorkerUnavailableError
from fleetway.activities.flyway.output import Action
from fleetway.activities.tenants.static import load_tenants_file
from fleetway.worker.cli.exit_codes import ExitCode, exit_code_for
from fleetway.worker.cli.flyway_options import flyway_options, held_at
from fleetway.worker.cli.follow import follow_rollout
from fleetway.worker.cli.output import OutputFormat, render_result
from fleetway.worker.cli.rollout_options import RolloutOptions, signature_for
from fleetway.worker.cli.runtime import connect_fleetway, run_command, stderr
from fleetway.worker.cli.server_options import server_controls
from fleetway.worker.cli.sets import named_set, print_plan
from fleetway.worker.cli.wave_plan import plan_only, plan_servers, waves_from_options
from fleetway.worker.client.lookup import refuse_rerun_of_running, refuse_reused_rollout_id
from fleetway.worker.config.settings import load_settings
from fleetway.workflows.migrate_all_models import MigrateAllInput

__all__ = ["rollout_command"]


def rollout_command(action: Action) -> Callable[..., None]:
    """The command for ``action``, its signature holding only the options that apply to it."""

    def command(**given: Any) -> None:
        options = RolloutOptions(**given)
        run_command(lambda: _rollout(action, options))

    command.__signature__ = signature_for(action)  # type: ignore[attr-defined]
    command.__doc__ = f"Run Flyway {action.value} across the fleet as one durable rollout."
    command.__name__ = action.value
    return command


def _dry_run_action(action: Action) -> Action:
    """What a dry run runs: info, validate (what repair would fix), or a checking baseline."""
    return {Action.REPAIR: Action.VALIDATE, Action.BASELINE: Action.BASELINE}.get(action, Action.INFO)


def _request(action: Action, o: RolloutOptions) -> MigrateAllInput:
    """The typed request (every value checked before anything connects)."""
    settings = load_settings()
    selected = list(o.tenant or []) + (load_tenants_file(o.tenants_file) if o.tenants_file else [])
    flyway = flyway_options(
        target="" if o.dry_run else o.target,  # a dry run reads info; the cut is made after
        out_of_order="" if o.dry_run else o.out_of_order,
        placeholders=list(o.placeholder or []),
        placeholders_file=o.placeholders_file,
        baseline_version=o.baseline_version,
        baseline_reference=o.baseline_reference,
        dry_run=o.dry_run and action is Action.BASELINE,
    )
    waves = waves_from_options(list(o.wave or []), o.wave_plan)
    if o.dry_run:  # the plan and what each wave would apply, now: no gate, bake or halt
        waves = [plan_only(w) for w in waves]
    servers = server_controls(
        settings, plan_servers(o.wave_plan), per_server=o.per_server, checks=o.server_checks,
        max_lock_waiters=o.max_lock_waiters, max_replica_lag_bytes=o.max_replica_lag_bytes,
        min_free_connections=o.min_free_connections, replicas=list(o.replica or []),
        health_probe=o.health_probe, health_probe_max=o.health_probe_max, park_limit=o.park_limit,
    )  # fmt: skip
    return MigrateAllInput(
        migration_set=named_set(o.migrations, settings).digest,
        action=_dry_run_action(action) if o.dry_run else action,
        tenants=selected,
        rerun_failed_of=o.rerun_failed,
        parallelism=o.parallelism,
        continue_on_error=o.continue_on_error or o.dry_run,
        canary_count=o.canary,
        max_failure_ratio=o.max_failure_ratio,
        audit=AuditContext(principal=o.principal, git_sha=o.git_sha, pipeline_run_id=o.pipeline_run_id),
        start_paused=o.paused,
        waves=waves,
        flyway=flyway,
        where=o.where,
        applied_in=o.applied_in,
        applied_version=o.applied_version,
        skip_current=o.skip_current,
        skip_callbacks_when_current=o.skip_callbacks_when_current,
        servers=servers,
    )


async def _rollout(action: Action, o: RolloutOptions) -> ExitCode:
    request = _request(action, o)
    if not o.principal:  # after the input is known valid: a bad input gets one line, nothing else
        stderr.print("warning: no --principal; audit events will say <unspecified>")
    client = await connect_fleetway()
    settings = client.settings
    # Refused before anything is printed or started (the start checks again, atomically).
    await refuse_rerun_of_running(client.temporal, request.rerun_failed_of)
    if o.rollout_id:
        await refuse_reused_rollout_id(client.temporal, o.rollout_id)
    try:
        # No wait for a starting worker: the rollout itself waits for one.
        fleet = await client.workers(migration_set=request.migration_set, wait_s=0)
    except WorkerUnavailableError as exc:
        fleet = None
        stderr.print(f"warning: {exc}; the rollout waits until one does", markup=False)
    named = named_set(o.migrations, settings)
    print_plan(
        settings, fleet, named, lists_source=not request.tenants, retry_budget_s=request.retry_budget_s
    )
    rollout = await client.start(request, rollout_id=o.rollout_id)
    stderr.print(f"started {rollout.id}")
    if o.detach:
        print(json.dumps({"rollout_id": rollout.id}) if o.output is not OutputFormat.TEXT else rollout.id)
        return ExitCode.OK
    try:
        result, streamed = await follow_rollout(rollout, o.output, stderr)
    except asyncio.CancelledError:  # Ctrl-C: stop following; never cancel the rollout
        stderr.print(
            f"detached from {rollout.id}; it keeps running "
            f"(fleetway status {rollout.id} | fleetway cancel {rollout.id})"
        )
        raise
    except WorkflowFailureError as exc:
        stderr.print(f"rollout {rollout.id} ended: {type(exc.cause).__name__}")
        return ExitCode.FAILED
    if o.dry_run and o.target:  # what migrate --target would apply, not everything pending
        result = held_at(result, o.target)
    render_result(result, o.output, dry_run=o.dry_run, streamed=streamed)
    return exit_code_for(result.status)
