"""One tenant handled alone while the rollout runs: what an operator's action does beyond the state.

The rules (what may be done to which tenant, what it is reported as) are ``RolloutState``'s; this
module does the two things that need Temporal: the audit event with the operator's principal, and
telling a running child its call's new deadline (a signal to the child, which owns its call).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.workflows.activity_failures import by_time, failure_reason, reraise_cancel
    from fleetway.workflows.migrate_all_models import TenantDecision
    from fleetway.workflows.rollout_state import RolloutState

__all__ = ["audit_tenant_action", "principal_of", "send_deadline"]


def principal_of(decision: TenantDecision) -> str:
    """Who acted (never invented: ``<unspecified>`` when the decision names no one)."""
    return decision.principal.strip() or UNSPECIFIED_PRINCIPAL


async def audit_tenant_action(state: RolloutState, kind: AuditEventType, decision: TenantDecision) -> None:
    """The action in the audit trail, with its principal (its event id makes a retry idempotent)."""
    info = workflow.info()
    event = AuditEvent(
        event_id=f"{info.workflow_id}/tenant/{decision.tenant}/{kind.value}/{len(state.operator_actions)}",
        type=kind,
        target=decision.tenant,
        principal=principal_of(decision),
        completed_at=workflow.now(),
        outcome=AuditOutcome.SUCCESS,
        git_sha=state.request.audit.git_sha,
        pipeline_run_id=state.request.audit.pipeline_run_id,
        attributes={"rollout.id": info.workflow_id[:256]}
        | ({"rollout.reason": decision.reason} if decision.reason else {})
        | ({"rollout.deadline_s": str(decision.deadline_s)} if decision.deadline_s else {}),
    )
    try:
        await workflow.execute_activity_method(
            AuditActivities.emit_audit, event, **by_time(state.request, timedelta(seconds=30))
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.warn(f"audit of the action on tenant {decision.tenant!r} failed ({failure_reason(err)})")


async def send_deadline(state: RolloutState, decision: TenantDecision) -> None:
    """Tell the tenant's running child that its Flyway call may take ``deadline_s`` more seconds."""
    child = f"{workflow.info().workflow_id}/{decision.tenant}{state.child_suffix(decision.tenant)}"
    try:
        await workflow.get_external_workflow_handle(child).signal("set_deadline", decision.deadline_s)
    except FailureError:  # it ended meanwhile: nothing left to bound
        state.warn(f"the deadline for {decision.tenant!r} arrived after its run ended")
