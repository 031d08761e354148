"""Every activity a rollout calls, each with what its failure means for the rollout.

Workflow code. The start (pin, the rerun list, the wave plan) and the tenant listing are retried
by time and, past the budget, stop the rollout ``failed`` with the reason in its warnings; the
quiesce check fails open; a decision's audit failing is a warning. A cancel always goes through.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.activities.errors import WorkerConfigMismatchError
    from fleetway.activities.fleet.activity import FleetStateActivities
    from fleetway.activities.fleet.state import ReadStatesInput
    from fleetway.activities.quiesce import CheckQuiesceInput, QuiesceActivities
    from fleetway.activities.rollouts import RolloutActivities
    from fleetway.activities.tenants.static import ListTenantsInput, TenantSourceActivities
    from fleetway.activities.tenants.wave_book import PlanRead, PlanSummary, ReadPlanInput
    from fleetway.activities.tenants.waves import PlanWavesInput
    from fleetway.activities.worker_profile import PinRolloutInput, WorkerProfileActivities
    from fleetway.workflows.activity_failures import by_time, failure_reason, failure_type, reraise_cancel
    from fleetway.workflows.migrate_all_models import WaveDecision
    from fleetway.workflows.rollout_state import Phase, RolloutState
    from fleetway.workflows.server_gate import ServerGate
    from fleetway.workflows.wave_plan import HoldPlanInput, WavePlanWorkflow, holder_id

__all__ = [
    "audit_decision",
    "next_tenant",
    "quiesce_allows",
    "read_wave_chunk",
    "release_plan",
    "start_rollout",
]

# A refusal that means "not this worker": the call goes to one configured as the rollout pinned.
_NOT_THIS_WORKER = WorkerConfigMismatchError.error_type


async def start_rollout(state: RolloutState) -> None:
    """Pin, load an explicit or rerun list, plan the waves; on a failure, ``state.stop`` is set."""
    request = state.request
    if not await _pin(state):
        return
    memo = {"migration_set": state.migration_set}
    if described := request.flyway.describe():
        memo["flyway"] = described  # the target is part of what the rollout is
    workflow.upsert_memo(memo)
    if not request.audit.principal.strip():
        # Never invent a principal: the audit trail says <unspecified>, and the result says why.
        state.warn(f"no principal in the audit context; audit events say {UNSPECIFIED_PRINCIPAL}")
    if request.tenants:
        state.listed(request.tenants)
    elif request.rerun_failed_of:
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
        state.listed(failed)
    if request.applied_in and state.stop is None:
        await _applied_marker(state)
    if request.waves and state.stop is None:
        await _plan(state)


async def _applied_marker(state: RolloutState) -> None:
    """The history marker of the rollout ``applied_in`` names (its rows are selected by it)."""
    try:
        marker = await workflow.execute_activity_method(
            RolloutActivities.history_marker_of,
            state.request.applied_in,
            **by_time(state.request, timedelta(seconds=30)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.fail(
            f"rollout {state.request.applied_in!r} unknown; nothing dispatched ({failure_reason(err)})"
        )
        return
    state.selecting_by(marker)


async def _pin(state: RolloutState) -> bool:
    """Pin the set (the worker's, when the input names none) and the backends; False: stopped."""
    request = state.request
    state.enter(Phase.PINNING)
    try:
        pin = await workflow.execute_activity_method(
            WorkerProfileActivities.pin_rollout,
            PinRolloutInput(
                migration_set=state.migration_set,
                # An explicit list (or a rerun) never reads the source: nothing to pin there.
                tenant_source="" if request.tenants or request.rerun_failed_of else request.tenant_source,
                secrets_backend=request.secrets_backend,
                placeholders=sorted(request.flyway.placeholders),
                quiesce_store=request.quiesce_store,
            ),
            **by_time(request, timedelta(minutes=2)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.fail(
            f"pinning the rollout's set and backends failed; nothing dispatched ({failure_reason(err)})"
        )
        return False
    state.pinned(pin)
    return True


async def _plan(state: RolloutState) -> None:
    """Split the fleet (or the explicit/rerun list) into the declared waves.

    Held: a ``WavePlanWorkflow`` makes and keeps the plan; this run keeps its summary and reads a
    chunk when a wave needs more ids (a plan of 100,000 ids never crosses one payload).
    """
    request = state.request
    state.enter(Phase.PLANNING)
    explicit = bool(request.tenants or request.rerun_failed_of)
    plan_input = PlanWavesInput(
        waves=request.waves,
        source=request.tenant_source,
        pinned=state.source_pin,
        restrict_to=list(state.feed) if explicit else [],
    )
    workflow.deprecate_patch("wave-plan-holder")  # retired: every plan is held
    summary = await _hold_plan(state, plan_input)
    if summary is not None:
        state.plan_held(summary, holder_id(workflow.info().workflow_id))


async def _hold_plan(state: RolloutState, plan_input: PlanWavesInput) -> PlanSummary | None:
    """Start the plan's holder and wait for its summary; None: no plan (the rollout is stopped)."""
    request, rollout = state.request, workflow.info().workflow_id
    try:
        await workflow.start_child_workflow(
            WavePlanWorkflow.run,
            HoldPlanInput(request=plan_input, rollout_id=rollout, retry_budget_s=request.retry_budget_s),
            id=holder_id(rollout),
            # It outlives this run: the next runs read from it; the rollout's end releases it.
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
    except WorkflowAlreadyStartedError:
        state.fail(f"a wave plan holder {holder_id(rollout)!r} already exists; nothing dispatched")
        return None
    state.holding_plan(holder_id(rollout))
    read = await _read_plan(state, -1)
    if read is None or read.summary is None:
        return None
    return read.summary


async def read_wave_chunk(state: RolloutState, index: int) -> bool:
    """Put the current wave's chunk ``index`` in line (read from the holder); False: stopped."""
    read = await _read_plan(state, index)
    if read is None:
        return False
    if read.chunk is None or read.chunk.wave != state.waves.index:
        wave = state.waves.current.name
        state.fail(f"the wave plan's chunk {index} is not wave {wave!r}'s; dispatch stopped")
        return False
    state.chunk_read(read.chunk.tenants)
    return True


async def _read_plan(state: RolloutState, index: int) -> PlanRead | None:
    """The holder's answer for ``index`` (-1: the summary); None, the rollout failed, when there is none."""
    try:
        read: PlanRead = await workflow.execute_activity_method(
            RolloutActivities.read_wave_plan,
            ReadPlanInput(holder=holder_id(workflow.info().workflow_id), index=index),
            heartbeat_timeout=timedelta(seconds=30),
            **by_time(state.request, timedelta(minutes=10)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.fail(f"wave plan unavailable; dispatch stopped ({failure_reason(err)})")
        return None
    if read.error:
        state.fail(f"wave plan failed; nothing more dispatched ({read.error})")
        return None
    return read


async def release_plan(state: RolloutState) -> None:
    """Tell the plan's holder the rollout is over (it also ends by itself once the rollout is gone)."""
    if not state.waves.holder:
        return
    try:
        await workflow.get_external_workflow_handle(state.waves.holder).signal(WavePlanWorkflow.release)
    except FailureError:
        workflow.logger.warning("the wave plan holder could not be released; it ends by itself")


async def next_tenant(state: RolloutState, gate: ServerGate | None) -> str | None:
    """The next tenant to dispatch, listing and reading pages as needed; None: none left, or stopped.

    With a server gate, ``NOT_NOW`` when every waiting tenant's server must wait.
    """
    while True:
        if not await _list_pages(state):
            return None
        if not state.needs_screen():
            if gate is not None:
                return await gate.next()
            return state.take() if state.feed else None
        await _screen(state)
        if state.stop is not None:
            return None


async def _screen(state: RolloutState) -> None:
    """Read the next pending tenants' tables in bulk: record the proven, drop the unselected."""
    chunk, request = state.screen_chunk(), state.request
    try:
        read = await workflow.execute_activity_method(
            FleetStateActivities.read_tenant_states,
            ReadStatesInput(
                tenant_ids=chunk,
                secrets_backend=request.secrets_backend,
                pinned_secrets=state.secrets_pin,
                migration_set=state.migration_set,
                where=request.where,
                applied_marker=state.applied_marker,
                applied_version=request.applied_version,
                placeholders=request.flyway.placeholders,
                tenant_source=request.tenant_source,
            ),
            heartbeat_timeout=timedelta(minutes=1),
            # Retried by time like every control-plane call: a database blip, or an older worker still
            # on the queue during a rolling deploy (it has no such activity), must not end a selection.
            **by_time(request, timedelta(minutes=5)),
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.screen_failed(chunk, failure_reason(err))
        return
    if [s.tenant_id for s in read.states] != chunk or len(read.selected) != len(chunk):
        state.screen_failed(chunk, "the read answered for other tenants")  # never guess from it
        return
    state.accept_states(chunk, read)


async def _list_pages(state: RolloutState) -> bool:
    """List pages until something is pending or the source is done; False: the listing stopped."""
    while state.needs_page():
        try:
            page = await workflow.execute_activity_method(
                TenantSourceActivities.list_tenants_page,
                ListTenantsInput(
                    source=state.request.tenant_source,
                    cursor=state.feed.cursor,
                    limit=state.request.page_size,
                    pinned=state.source_pin,
                ),
                **by_time(state.request, timedelta(minutes=2)),
            )
        except ActivityError as err:
            reraise_cancel(err)
            # Stop dispatching; in-flight children finish (failing here would cancel them).
            state.fail(f"tenant listing failed; dispatch stopped ({failure_reason(err)})")
            return False
        if not state.accept_page(page.tenant_ids, page.next_cursor):
            return False
    return True


async def quiesce_allows(state: RolloutState) -> bool:
    """Whether the deployment quiesce flag lets the next tenant start (fail-open, as go-bricks).

    The check reads the store the rollout pinned. Where this workflow's worker reads another (or
    none), the check moves to the task queue, to a worker that reads it; when none does within the
    budget, dispatch stops: a rollout never runs unguarded because one worker lacks the setting.
    """
    # Unpinned (a rollout from before pins): called without an input, as older builds called it.
    pinned = [CheckQuiesceInput(pinned=state.quiesce_pin)] if state.quiesce_pin else []
    try:
        # Local: a task-queue round trip per dispatch would bound the (sequential) dispatch rate.
        status = await workflow.execute_local_activity_method(
            QuiesceActivities.check_quiesce,
            args=pinned,
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=[_NOT_THIS_WORKER]),
        )
    except FailureError as err:  # a local activity's failure arrives unwrapped
        reraise_cancel(err)
        if isinstance(err, ApplicationError) and err.type == _NOT_THIS_WORKER:
            return await _quiesce_elsewhere(state, pinned)
        # A broken flag store must not freeze every rollout.
        state.warn("quiesce check failed; dispatch proceeded (fail-open)")
        workflow.logger.warning("quiesce check failed; proceeding (fail-open)")
        return True
    return not status.active


async def _quiesce_elsewhere(state: RolloutState, pinned: list[CheckQuiesceInput]) -> bool:
    """The check on a worker that reads the pinned store (task queue, retried by time); False: stopped."""
    try:
        status = await workflow.execute_activity_method(
            QuiesceActivities.check_quiesce, args=pinned, **by_time(state.request, timedelta(minutes=5))
        )
    except ActivityError as err:
        reraise_cancel(err)
        if failure_type(err) == _NOT_THIS_WORKER:
            state.fail(f"no worker reads the rollout's quiesce store ({state.quiesce_pin}); dispatch stopped")
            return False
        state.warn("quiesce check failed; dispatch proceeded (fail-open)")
        return True
    return not status.active


async def audit_decision(
    state: RolloutState, kind: AuditEventType, decision: WaveDecision, principal: str
) -> None:
    """Record an operator's decision on the current wave (its event id makes a retry idempotent)."""
    info, wave = workflow.info(), state.waves.current
    approved = kind is AuditEventType.WAVE_APPROVED
    event = AuditEvent(
        event_id=f"{info.workflow_id}/wave/{wave.name}/{'approved' if approved else 'rejected'}",
        type=kind,
        target=info.workflow_id[:256],
        principal=principal,
        completed_at=workflow.now(),
        outcome=AuditOutcome.SUCCESS,
        git_sha=state.request.audit.git_sha,
        pipeline_run_id=state.request.audit.pipeline_run_id,
        attributes={"rollout.wave": wave.name, "rollout.wave_index": str(state.waves.index + 1)}
        | ({"rollout.reason": decision.reason} if decision.reason else {}),
    )
    try:
        await workflow.execute_activity_method(
            AuditActivities.emit_audit, event, **by_time(state.request, timedelta(seconds=30))
        )
    except ActivityError as err:
        reraise_cancel(err)
        state.warn(f"audit of the decision on wave {wave.name!r} failed ({failure_reason(err)})")
