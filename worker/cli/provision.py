"""``fleetway provision`` and ``fleetway deprovision``: one tenant's lifecycle as durable workflows.

Both use the workflow id ``provision/<tenant>``: a second ``provision`` while one runs attaches to
it; ``deprovision`` is refused while anything runs for the tenant, and demands ``--confirm`` with
the tenant id typed again (it drops the schema and its data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.errors import ConfigurationError
from fleetway.activities.postgres.provisioning import TenantRoles
from fleetway.activities.secrets.providers import validate_tenant_id
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_client, run_command, stderr
from fleetway.workflows.provision_tenant import (
    DeprovisionTenantWorkflow,
    ProvisionRequest,
    ProvisionResult,
    ProvisionState,
    ProvisionTenantWorkflow,
    provisioning_workflow_id,
)

__all__ = ["deprovision", "provision"]


def _roles(tenant: str, schema: str, migrator_role: str, runtime_role: str, backend: str) -> TenantRoles:
    tenant_id = validate_tenant_id(tenant)
    try:
        return TenantRoles(
            tenant_id=tenant_id,
            schema_name=schema,
            migrator_role=migrator_role,
            runtime_role=runtime_role,
            secrets_backend=backend,
        )
    except ValidationError as exc:
        raise ConfigurationError(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from None


def _render(result: ProvisionResult, output: OutputFormat) -> ExitCode:
    if output is OutputFormat.TEXT:
        path = " → ".join(s.value for s in result.path)
        print(f"{result.tenant_id}: {result.state.value} ({path})")
        if result.last_error:
            print(f"  error: {result.last_error}")
    else:
        print(result.model_dump_json())
    return (
        ExitCode.OK
        if result.state in {ProvisionState.READY, ProvisionState.DEPROVISIONED}
        else ExitCode.FAILED
    )


def provision(  # noqa: PLR0917 - typer maps each option to a parameter
    tenant: Annotated[str, typer.Argument(help="Tenant id; also the schema name unless --schema.")],
    seed: Annotated[Path | None, typer.Option(help="SQL file run as the migrator after migrating.")] = None,
    schema: Annotated[str, typer.Option(help="Schema name (default: the tenant id).")] = "",
    migrator_role: Annotated[str, typer.Option(help="Default: <schema>_migrator.")] = "",
    runtime_role: Annotated[str, typer.Option(help="Default: <schema>_app.")] = "",
    secrets_backend: Annotated[str, typer.Option(help="Where the new credentials are written.")] = "default",
    principal: Annotated[str, typer.Option(envvar="FLEETWAY_PRINCIPAL")] = "",
    git_sha: Annotated[str, typer.Option(envvar="FLEETWAY_GIT_SHA")] = "",
    pipeline_run_id: Annotated[str, typer.Option(envvar="FLEETWAY_PIPELINE_RUN_ID")] = "",
    detach: Annotated[bool, typer.Option("--detach", help="Start and print the workflow id.")] = False,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
) -> None:
    """Provision a tenant: schema, least-privilege roles, migrations, seed; rerun to rotate passwords."""

    async def go() -> ExitCode:
        roles = _roles(tenant, schema, migrator_role, runtime_role, secrets_backend)
        seed_sql = ""
        if seed is not None:
            try:
                seed_sql = seed.read_text()
            except OSError as exc:
                raise ConfigurationError(f"cannot read seed file {str(seed)!r}: {exc.strerror}") from None
        client, settings = await connect_client()
        request = ProvisionRequest(
            roles=roles,
            seed_sql=seed_sql,
            audit=AuditContext(principal=principal, git_sha=git_sha, pipeline_run_id=pipeline_run_id),
            quiesce_poll_s=settings.provisioning.quiesce_poll_s,
        )
        workflow_id = provisioning_workflow_id(roles.tenant_id)
        handle = client.get_workflow_handle(workflow_id, result_type=ProvisionResult)
        try:
            running = await handle.describe()
        except RPCError:
            running = None
        if running is not None and running.status == WorkflowExecutionStatus.RUNNING:
            if running.workflow_type != "ProvisionTenantWorkflow":
                stderr.print(
                    f"tenant {roles.tenant_id} is busy: {running.workflow_type} is running", markup=False
                )
                return ExitCode.USAGE
            stderr.print(f"attached to the running provisioning {workflow_id}", markup=False)
        else:
            handle = await client.start_workflow(
                ProvisionTenantWorkflow.run,
                request,
                id=workflow_id,
                task_queue=settings.effective_temporal().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            stderr.print(f"started {workflow_id}", markup=False)
        if detach:
            print(
                json.dumps({"workflow_id": workflow_id}) if output is not OutputFormat.TEXT else workflow_id
            )
            return ExitCode.OK
        return _render(await handle.result(), output)

    run_command(go)


def deprovision(  # noqa: PLR0917 - typer maps each option to a parameter
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    confirm: Annotated[
        str, typer.Option(help="Type the tenant id again: its schema and data are dropped.")
    ] = "",
    schema: Annotated[str, typer.Option(help="Schema name (default: the tenant id).")] = "",
    migrator_role: Annotated[str, typer.Option()] = "",
    runtime_role: Annotated[str, typer.Option()] = "",
    secrets_backend: Annotated[str, typer.Option()] = "default",
    principal: Annotated[str, typer.Option(envvar="FLEETWAY_PRINCIPAL")] = "",
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
) -> None:
    """Drop a tenant's schema (with its data), roles and secrets. Guarded by --confirm TENANT."""

    async def go() -> ExitCode:
        roles = _roles(tenant, schema, migrator_role, runtime_role, secrets_backend)
        if confirm != roles.tenant_id:
            stderr.print(
                f"refusing: pass --confirm {roles.tenant_id} to drop its schema and data", markup=False
            )
            return ExitCode.USAGE
        client, settings = await connect_client()
        request = ProvisionRequest(
            roles=roles,
            audit=AuditContext(principal=principal),
            quiesce_poll_s=settings.provisioning.quiesce_poll_s,
        )
        try:
            handle = await client.start_workflow(
                DeprovisionTenantWorkflow.run,
                request,
                id=provisioning_workflow_id(roles.tenant_id),
                task_queue=settings.effective_temporal().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            stderr.print(f"tenant {roles.tenant_id} is busy: a provisioning is running", markup=False)
            return ExitCode.USAGE
        return _render(await handle.result(), output)

    run_command(go)
