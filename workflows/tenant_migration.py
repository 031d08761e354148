"""TenantMigrationWorkflow: one tenant's Flyway run, retried for transient classes, then audited.

Deterministic orchestration only. The Flyway activity resolves the tenant's credentials itself,
so history holds the tenant id and the backend name, never a secret.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.audit import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditContext,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from activities.flyway import FlywayActivities, RunFlywayInput
    from activities.flyway_output import RETRYABLE_CLASSES, Action, ErrorClass, FlywayOutcome
    from activities.rollouts import Outcome, TenantOutcome

__all__ = ["TenantMigrationInput", "TenantMigrationWorkflow"]

_NON_RETRYABLE = [c.value for c in ErrorClass if c not in RETRYABLE_CLASSES]
_MESSAGE_MAX = 300
# workflow.patched marker: validate gained a follow-up info read (drift). Histories recorded before
# it replay without the extra activity; remove the marker once no such run can still be open.
_DRIFT_PATCH = "validate-then-info-drift"
# workflow.patched marker: the audit emit became a local activity (histories before it replay the
# regular one).
_LOCAL_AUDIT_PATCH = "audit-emit-local-activity"


class TenantMigrationInput(BaseModel):
    """One tenant's run: the verb, the tenant, where its credentials live, who asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    tenant_id: str
    secrets_backend: str = "default"
    audit: AuditContext = AuditContext()
    flyway_timeout_s: int = Field(default=600, ge=1)
    max_attempts: int = Field(default=5, ge=1, le=50)
    heartbeat_timeout_s: int = Field(default=30, ge=2, le=600)
    drift_check: bool = True


def _from_failure(tenant_id: str, err: ActivityError) -> TenantOutcome:
    cause = err.cause
    error_class, message, partial = ErrorClass.INTERNAL_ERROR.value, "activity failed", None
    if isinstance(cause, ApplicationError):
        error_class = cause.type or error_class
        message = cause.message
        details = cause.details
        if len(details) > 1 and isinstance(details[1], dict):
            partial = FlywayOutcome.model_validate(details[1])
    elif cause is not None:
        message = type(cause).__name__
    return TenantOutcome(
        tenant_id=tenant_id,
        outcome=Outcome.FAILED,
        version_before=partial.starting_version if partial else "",
        version_after=partial.ending_version if partial else "",
        applied=len(partial.applied_versions) if partial else 0,
        tampered=[i.version for i in partial.validation_issues if "CHECKSUM" in i.error_code][:50]
        if partial
        else [],
        error_class=error_class,
        message=message[:_MESSAGE_MAX],
    )


@workflow.defn(name="TenantMigrationWorkflow")
class TenantMigrationWorkflow:
    """Runs Flyway for one tenant and records a ``migration.applied`` event for migrate."""

    @workflow.run
    async def run(self, request: TenantMigrationInput) -> TenantOutcome:
        """Return the tenant's outcome; a Flyway failure is a result, not an exception."""
        started = workflow.now()
        try:
            flyway = await workflow.execute_activity_method(
                FlywayActivities.run_flyway,
                RunFlywayInput(
                    action=request.action,
                    tenant_id=request.tenant_id,
                    secrets_backend=request.secrets_backend,
                ),
                start_to_close_timeout=timedelta(seconds=request.flyway_timeout_s + 60),
                heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=2),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=60),
                    maximum_attempts=request.max_attempts,
                    non_retryable_error_types=_NON_RETRYABLE,
                ),
                # Cancellation must reach the JVM: wait until the activity confirms it killed it.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            outcome = TenantOutcome(
                tenant_id=request.tenant_id,
                outcome=Outcome.SUCCEEDED,
                version_before=flyway.starting_version,
                version_after=flyway.ending_version,
                applied=len(flyway.applied_versions),
                pending=flyway.pending_versions[:50],
                duration_ms=flyway.duration_ms,
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                # The activity confirmed its JVM is dead; end this child as cancelled, not failed.
                raise asyncio.CancelledError from None
            outcome = _from_failure(request.tenant_id, err)
        if request.action is Action.VALIDATE and request.drift_check and workflow.patched(_DRIFT_PATCH):
            outcome = await self._with_drift(request, outcome)
        duration = workflow.now() - started
        outcome = outcome.model_copy(update={"duration_ms": int(duration.total_seconds() * 1000)})
        if request.action is Action.MIGRATE:
            await self._audit(request, outcome, started)
        return outcome

    async def _with_drift(self, request: TenantMigrationInput, outcome: TenantOutcome) -> TenantOutcome:
        """After validate, read ``info`` too, for the drift summary.

        Validate proves the applied scripts intact; info tells what is pending (lagging), applied
        but unknown here (ahead) and failed. Best effort: without info, validate stands alone.
        """
        try:
            info = await workflow.execute_activity_method(
                FlywayActivities.run_flyway,
                RunFlywayInput(
                    action=Action.INFO, tenant_id=request.tenant_id, secrets_backend=request.secrets_backend
                ),
                start_to_close_timeout=timedelta(seconds=request.flyway_timeout_s + 60),
                heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=_NON_RETRYABLE),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError from None
            return outcome
        return outcome.model_copy(
            update={
                "pending": info.pending_versions[:50],
                "ahead": [e.version for e in info.info if e.state == "Future"][:50],
                "failed_versions": [e.version for e in info.info if e.state == "Failed"][:50],
                "version_after": outcome.version_after or info.ending_version,
            }
        )

    async def _audit(self, request: TenantMigrationInput, outcome: TenantOutcome, started: Any) -> None:
        info = workflow.info()
        succeeded = outcome.outcome is Outcome.SUCCEEDED
        event = AuditEvent(
            # One event per tenant outcome: a retried emit carries the same id, so sinks dedupe it.
            event_id=f"{info.workflow_id}/{info.run_id}/migration.applied",
            type=AuditEventType.MIGRATION_APPLIED,
            target=request.tenant_id,
            principal=request.audit.principal or UNSPECIFIED_PRINCIPAL,
            started_at=started,
            completed_at=workflow.now(),
            outcome=AuditOutcome.SUCCESS if succeeded else AuditOutcome.FAILED,
            version=outcome.version_after,
            error_class="" if succeeded else outcome.error_class,
            git_sha=request.audit.git_sha,
            pipeline_run_id=request.audit.pipeline_run_id,
            attributes={
                "migration.applied_count": str(outcome.applied),
                "migration.from": outcome.version_before,
            },
        )
        retry = RetryPolicy(maximum_attempts=10)
        if workflow.patched(_LOCAL_AUDIT_PATCH):
            # A local activity: emitting only enqueues the event for the worker's sink thread, so a
            # task-queue round trip per tenant bought nothing but latency.
            await workflow.execute_local_activity_method(
                AuditActivities.emit_audit,
                event,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retry,
            )
        else:
            await workflow.execute_activity_method(
                AuditActivities.emit_audit,
                event,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retry,
            )
