"""Provisioning workflows: go-bricks' state machine, made durable by Temporal instead of a CAS table.

requested → schema_created → roles_created → migrated → seeded → ready; a failed step →
cleanup → failed (a cancel takes the same way back, then ends the workflow CANCELED). Each step
is an idempotent activity; every transition emits one ``state.transitioned`` audit event (id
``<workflow id>/<run id>/<from>-><to>``, so retries dedupe).
Before each forward step the workflow checks the quiesce flag and, while it is set, parks (sleeps
and re-checks) instead of failing; cleanup is never held by quiesce. The workflow id is
``provision/<tenant>`` for both workflows, so one tenant has at most one provisioning or
deprovisioning at a time. Deterministic orchestration only; no credential enters history.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditContext,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.activities.flyway.activity import FlywayActivities
    from fleetway.activities.flyway.output import RETRYABLE_CLASSES, Action, ErrorClass
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.postgres.provisioning import (
        CleanupInput,
        ProvisioningActivities,
        SeedInput,
        TenantRoles,
    )
    from fleetway.activities.quiesce import QuiesceActivities
    from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL
    from fleetway.workflows.activity_failures import failure_reason, reraise_cancel

__all__ = [
    "DeprovisionTenantWorkflow",
    "ProvisionProgress",
    "ProvisionRequest",
    "ProvisionResult",
    "ProvisionState",
    "ProvisionTenantWorkflow",
    "provisioning_workflow_id",
]

_STEP_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[
        "provisioning_error",
        "configuration_error",
        "unsafe_identifier",
        "unsafe_env_value",
        "secret_access_denied",
        "secret_malformed",
        *(c.value for c in ErrorClass if c not in RETRYABLE_CLASSES),
    ],
)


def provisioning_workflow_id(tenant_id: str) -> str:
    """The one workflow id per tenant shared by provisioning and deprovisioning."""
    return f"provision/{tenant_id}"


class ProvisionState(StrEnum):
    """Published states (additions only)."""

    REQUESTED = "requested"
    SCHEMA_CREATED = "schema_created"
    ROLES_CREATED = "roles_created"
    MIGRATED = "migrated"
    SEEDED = "seeded"
    READY = "ready"
    CLEANUP = "cleanup"
    FAILED = "failed"
    DEPROVISIONED = "deprovisioned"


class ProvisionRequest(BaseModel):
    """Provision (or, for ``DeprovisionTenantWorkflow``, remove) one tenant."""

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """Always a client's input (see ``activities/wire.py``)."""
        return True

    roles: TenantRoles
    seed_sql: str = Field(default="", max_length=256 * 1024)
    audit: AuditContext = AuditContext()
    quiesce_poll_s: float = Field(default=10.0, ge=0.1, le=3600)
    flyway_timeout_s: int = Field(default=600, ge=1)
    heartbeat_timeout_s: int = Field(default=30, ge=2, le=600)


class ProvisionProgress(BaseModel):
    """The ``state`` query's answer."""

    model_config = WIRE_MODEL

    state: ProvisionState
    parked_on_quiesce: bool = False
    last_error: str = ""


class ProvisionResult(BaseModel):
    """Where the tenant ended, and the path it took."""

    model_config = WIRE_MODEL

    tenant_id: str
    state: ProvisionState
    last_error: str = ""
    path: list[ProvisionState] = Field(default_factory=list)


def _reason(err: ActivityError) -> str:
    return failure_reason(err)[:300]


class _StateMachine:
    """Shared by both workflows: state, quiesce parking, audited transitions."""

    def __init__(self, request: ProvisionRequest, initial: ProvisionState) -> None:
        self.request = request
        self.state = initial
        self.path = [initial]
        self.parked = False
        self.last_error = ""

    def progress(self) -> ProvisionProgress:
        return ProvisionProgress(state=self.state, parked_on_quiesce=self.parked, last_error=self.last_error)

    async def park_while_quiesced(self) -> None:
        while True:
            try:
                status = await workflow.execute_activity_method(
                    QuiesceActivities.check_quiesce,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                )
            except ActivityError as err:
                reraise_cancel(err)
                workflow.logger.warning("quiesce check failed; proceeding (fail-open)")
                status = None
            if status is None or not status.active:
                self.parked = False
                return
            self.parked = True
            await workflow.sleep(timedelta(seconds=self.request.quiesce_poll_s))

    async def transition(self, to: ProvisionState) -> None:
        info = workflow.info()
        audit = self.request.audit
        started = workflow.now()
        event = AuditEvent(
            event_id=f"{info.workflow_id}/{info.run_id}/{self.state.value}->{to.value}",
            type=AuditEventType.STATE_TRANSITIONED,
            target=self.request.roles.tenant_id,
            principal=audit.principal or UNSPECIFIED_PRINCIPAL,
            started_at=started,
            completed_at=started,
            outcome=AuditOutcome.FAILED if to is ProvisionState.FAILED else AuditOutcome.SUCCESS,
            from_state=self.state.value,
            to_state=to.value,
            error_class=ErrorClass.INTERNAL_ERROR.value if to is ProvisionState.FAILED else "",
            git_sha=audit.git_sha,
            pipeline_run_id=audit.pipeline_run_id,
            attributes={
                "provisioning.workflow_id": info.workflow_id,
                "provisioning.schema": self.request.roles.schema_name,
            },
        )
        self.state = to
        self.path.append(to)
        await workflow.execute_activity_method(
            AuditActivities.emit_audit,
            event,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=15),  # a sink outage is waited out, by time
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
        )

    def result(self) -> ProvisionResult:
        return ProvisionResult(
            tenant_id=self.request.roles.tenant_id,
            state=self.state,
            last_error=self.last_error,
            path=self.path,
        )


@workflow.defn(name="ProvisionTenantWorkflow")
class ProvisionTenantWorkflow:
    """Brings a new tenant to the fleet's latest schema version with least-privilege roles."""

    @workflow.init
    def __init__(self, request: ProvisionRequest) -> None:
        self._machine = _StateMachine(request, ProvisionState.REQUESTED)

    @workflow.query(description="Current state, whether parked on the quiesce flag, and the last error.")
    def state(self) -> ProvisionProgress:
        """Return the live state."""
        return self._machine.progress()

    @workflow.run
    async def run(self, request: ProvisionRequest) -> ProvisionResult:
        """Walk the forward states; on a failed step clean up and end ``failed`` (a result, not an error)."""
        machine = self._machine
        roles = request.roles
        owned = False
        timeout = timedelta(minutes=5)
        try:
            await machine.park_while_quiesced()
            schema = await workflow.execute_activity_method(
                ProvisioningActivities.create_schema,
                roles,
                start_to_close_timeout=timeout,
                retry_policy=_STEP_RETRY,
            )
            owned = schema.owned
            await machine.transition(ProvisionState.SCHEMA_CREATED)

            await machine.park_while_quiesced()
            await workflow.execute_activity_method(
                ProvisioningActivities.create_roles,
                roles,
                start_to_close_timeout=timeout,
                retry_policy=_STEP_RETRY,
            )
            await machine.transition(ProvisionState.ROLES_CREATED)

            await machine.park_while_quiesced()
            await workflow.execute_activity_method(
                FlywayActivities.run_flyway,
                FlywayRequest(
                    action=Action.MIGRATE,
                    tenant_id=roles.tenant_id,
                    secrets_backend=roles.secrets_backend,
                    timeout_s=request.flyway_timeout_s,
                ),
                start_to_close_timeout=timedelta(seconds=request.flyway_timeout_s + 60),
                heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
                retry_policy=_STEP_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            await machine.transition(ProvisionState.MIGRATED)

            await machine.park_while_quiesced()
            if request.seed_sql.strip():
                await workflow.execute_activity_method(
                    ProvisioningActivities.seed,
                    SeedInput(roles=roles, sql=request.seed_sql),
                    start_to_close_timeout=timeout,
                    retry_policy=_STEP_RETRY,
                )
            await machine.transition(ProvisionState.SEEDED)
        except (ActivityError, asyncio.CancelledError) as err:
            # A cancel rolls back like a failed step, then ends the workflow CANCELED.
            cancelled = is_cancelled_exception(err)
            machine.last_error = "cancelled"
            if isinstance(err, ActivityError) and not cancelled:
                machine.last_error = _reason(err)
            await machine.transition(ProvisionState.CLEANUP)
            try:  # never parked by quiesce: a rollback must not be stranded
                await workflow.execute_activity_method(
                    ProvisioningActivities.cleanup,
                    CleanupInput(roles=roles, owned=owned),
                    start_to_close_timeout=timeout,
                    retry_policy=RetryPolicy(maximum_attempts=10),
                )
            except ActivityError as cleanup_err:
                machine.last_error += f"; cleanup error: {_reason(cleanup_err)}"
            await machine.transition(ProvisionState.FAILED)
            if cancelled:
                raise asyncio.CancelledError from None
            return machine.result()
        await machine.transition(ProvisionState.READY)
        return machine.result()


@workflow.defn(name="DeprovisionTenantWorkflow")
class DeprovisionTenantWorkflow:
    """Drops a tenant's schema, roles and secrets (guarded by the CLI; parked by quiesce)."""

    @workflow.init
    def __init__(self, request: ProvisionRequest) -> None:
        self._machine = _StateMachine(request, ProvisionState.READY)

    @workflow.query(description="Current state, whether parked on the quiesce flag, and the last error.")
    def state(self) -> ProvisionProgress:
        """Return the live state."""
        return self._machine.progress()

    @workflow.run
    async def run(self, request: ProvisionRequest) -> ProvisionResult:
        """Remove everything provisioning made for the tenant."""
        machine = self._machine
        await machine.park_while_quiesced()
        try:
            await workflow.execute_activity_method(
                ProvisioningActivities.deprovision,
                request.roles,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=_STEP_RETRY,
            )
        except ActivityError as err:
            reraise_cancel(err)
            machine.last_error = _reason(err)
            await machine.transition(ProvisionState.FAILED)
            return machine.result()
        await machine.transition(ProvisionState.DEPROVISIONED)
        return machine.result()
