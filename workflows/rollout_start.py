"""A rollout's first steps (pin, the rerun list, the wave plan) and the audit event of a decision.

Workflow code: each step is one activity, retried by time; a step that cannot be done stops the
rollout ``failed`` before anything is dispatched, with the reason in its warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.activities.rollouts import RolloutActivities
    from fleetway.activities.tenants.waves import PlanWavesInput, WavePlan, WavePlanActivities
    from fleetway.activities.worker_profile import PinRolloutInput, WorkerProfileActivities
    from fleetway.workflows.activity_failures import by_time, failure_reason, reraise_cancel
    from fleetway.workflows.migrate_all_models import WaveDecision
    from fleetway.workflows.rollout_state import Phase, RolloutState

__all__ = ["decision_event", "start_rollout"]


async def start_rollout(state: RolloutState, memo_wave: Callable[[], None]) -> None:
    """Pin, load an explicit or rerun list, plan the waves; on a failure, ``state.stop`` is set."""
    request = state.request
    if not await _pin(state):
        return
    workflow.upsert_memo({"migration_set": state.migration_set})
    if not request.audit.principal.strip():
        # Never invent a principal: the audit trail says <unspecified>, and the result says why.
        state.warn(f"no principal in the audit context; audit events say {UNSPECIFIED_PRINCIPAL}")
    if request.tenants:
        state.pending.extend(request.tenants)
        state.exhausted = True
    elif request.rerun_failed_of:
        state.exhausted = True
        try:
            failed = await workflow.execute_activity_method(
                RolloutActivities.failed_tenants_of,
                request.rerun_failed_of,
                **by_time(request, timedelta(seconds=30)),
            )
        except ActivityError as err:
            reraise_cancel(err)
            state.fail(f"rerun list unavailable; nothing dispatched ({failure_reason(err)})")
            return
        state.pending.extend(failed)
    if request.waves and state.stop is None:
        await _plan(state)
        memo_wave()


async def _pin(state: RolloutState) -> bool:
    """Pin the set (the worker's, when the input names none) and the backends; False: stopped."""
    request = state.request
    state.phase = Phase.PINNING
    try:
        pin = await workflow.execute_activity_method(
            WorkerProfileActivities.pin_rollout,
            PinRolloutInput(
                migration_set=state.migration_set,
                # An explicit list (or a rerun) never reads the source: nothing to pin there.
                tenant_source="" if request.tenants or request.rerun_failed_of else request.tenant_source,
                secrets_backend=request.secrets_backend,
            ),
            **by_time(request, timedelta(minutes=2)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.fail(
            f"pinning the rollout's set and backends failed; nothing dispatched ({failure_reason(err)})"
        )
        return False
    state.migration_set = pin.migration_set
    state.source_pin, state.secrets_pin = pin.tenant_source, pin.secrets_backend
    return True


async def _plan(state: RolloutState) -> None:
    """Split the fleet (or the explicit/rerun list) into the declared waves: one activity."""
    request = state.request
    state.phase = Phase.PLANNING
    explicit = bool(request.tenants or request.rerun_failed_of)
    try:
        plan: WavePlan = await workflow.execute_activity_method(
            WavePlanActivities.plan_waves,
            PlanWavesInput(
                waves=request.waves,
                source=request.tenant_source,
                pinned=state.source_pin,
                restrict_to=list(state.pending) if explicit else [],
            ),
            heartbeat_timeout=timedelta(minutes=2),
            **by_time(request, timedelta(minutes=10)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.fail(f"wave plan failed; nothing dispatched ({failure_reason(err)})")
        return
    state.pending.clear()
    state.exhausted = True
    state.waves.plan(plan)
    if plan.unplanned:
        shown = ", ".join(plan.unplanned_sample[:5]) + (" …" if plan.unplanned > 5 else "")
        state.warn(f"{plan.unplanned} listed tenants are in no wave and were not run ({shown})")


def decision_event(
    state: RolloutState,
    *,
    kind: AuditEventType,
    decision: WaveDecision,
    principal: str,
    rollout_id: str,
    now: datetime,
) -> AuditEvent:
    """The audit event of an operator's decision on the current wave (its id makes a retry idempotent)."""
    name, index = state.waves.current.name, state.waves.index
    approved = kind is AuditEventType.WAVE_APPROVED
    return AuditEvent(
        event_id=f"{rollout_id}/wave/{name}/{'approved' if approved else 'rejected'}",
        type=kind,
        target=rollout_id[:256],
        principal=principal,
        completed_at=now,
        outcome=AuditOutcome.SUCCESS,
        git_sha=state.request.audit.git_sha,
        pipeline_run_id=state.request.audit.pipeline_run_id,
        attributes={"rollout.wave": name, "rollout.wave_index": str(index + 1)}
        | ({"rollout.reason": decision.reason} if decision.reason else {}),
    )
