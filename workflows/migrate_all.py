"""MigrateAllWorkflow: the shell of a rollout — handlers, the main loop, continue-as-new.

Every rule (thresholds, the canary gate, the window, wave moves, what a duplicate means) lives in
``rollout_state.py`` and ``wave_controller.py``; this class runs the activities, children and
timers those rules call for, in an order the committed histories pin. Deterministic only.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

from temporalio import workflow

from fleetway.workflows.attributes import ACTION_ATTRIBUTE, OUTCOME_ATTRIBUTE, SET_ATTRIBUTE

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import AuditEventType
    from fleetway.activities.flyway.output import MARKED_ACTIONS
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.flyway.schema_history import history_marker
    from fleetway.activities.rollouts import Outcome
    from fleetway.workflows.migrate_all_models import (
        Completions,
        MigrateAllInput,
        MigrateAllResult,
        Progress,
        RerunList,
        RolloutStatus,
        TenantDecision,
        WaveDecision,
        WaveProgress,
    )
    from fleetway.workflows.rollout_calls import (
        audit_decision,
        next_tenant,
        quiesce_allows,
        read_wave_chunk,
        release_plan,
        start_rollout,
    )
    from fleetway.workflows.rollout_state import Phase, RolloutState
    from fleetway.workflows.server_gate import NOT_NOW, ServerGate
    from fleetway.workflows.tenant_actions import audit_tenant_action, principal_of, send_deadline
    from fleetway.workflows.tenant_dispatch import run_tenant
    from fleetway.workflows.ui_text import rollout_now

__all__ = ["ACTION_ATTRIBUTE", "OUTCOME_ATTRIBUTE", "MigrateAllWorkflow"]


@workflow.defn(name="MigrateAllWorkflow")
class MigrateAllWorkflow:
    """One rollout of one action across the fleet.

    Steer it with the signals ``quiesce``/``pause``/``resume``, the updates ``set_parallelism``,
    ``approve`` and ``reject``, and the queries ``progress`` and ``completions``.
    """

    @workflow.init
    def __init__(self, request: MigrateAllInput) -> None:
        self._state = RolloutState(request)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._gate: ServerGate | None = None

    # ---- operator handlers -------------------------------------------------------------------

    @workflow.signal(description="Stop dispatching; in-flight tenants finish; the result is 'quiesced'.")
    def quiesce(self) -> None:
        """Stop this rollout's dispatching as the global quiesce flag would."""
        self._state.stop_with(RolloutStatus.QUIESCED)
        self._show()

    @workflow.signal(description="Hold dispatching until 'resume'; in-flight tenants finish.")
    def pause(self) -> None:
        """Hold new dispatches."""
        self._state.set_paused(True)
        self._show()

    @workflow.signal(description="Lift a 'pause' hold.")
    def resume(self) -> None:
        """Resume dispatching."""
        self._state.set_paused(False)
        self._show()

    @workflow.update(
        description="Change how many tenants run at once (1..256); returns the old value. In a ring "
        "rollout it overrides every wave's own parallelism from now on."
    )
    def set_parallelism(self, parallelism: int) -> int:
        """Set the window size; takes effect at the next dispatch."""
        return self._state.set_parallelism(parallelism)

    @set_parallelism.validator
    def _validate_parallelism(self, parallelism: int) -> None:
        if not 1 <= parallelism <= 256:
            raise ValueError("parallelism must be between 1 and 256")

    @workflow.update(
        description="Open the wave that waits at its approval gate. Input (all optional): "
        '{"principal": "you@example.com", "wave": "<the waiting wave>", "reason": "..."}. '
        "Recorded in the audit trail."
    )
    def approve(self, decision: WaveDecision | None = None) -> WaveProgress:
        """Record an approval; the rollout opens the waiting wave."""
        return self._state.waves.decide(AuditEventType.WAVE_APPROVED, decision)

    @approve.validator
    def _validate_approve(self, decision: WaveDecision | None = None) -> None:
        self._state.check_decision(decision, bake_too=False)

    @workflow.update(
        description="Refuse the wave that waits at its approval gate (or the next one, during a bake): "
        'the rollout ends halted. Input (all optional): {"principal": "...", "wave": "...", '
        '"reason": "..."}. Recorded in the audit trail.'
    )
    def reject(self, decision: WaveDecision | None = None) -> WaveProgress:
        """Record a rejection; the rollout halts at that wave."""
        return self._state.waves.decide(AuditEventType.WAVE_REJECTED, decision)

    @reject.validator
    def _validate_reject(self, decision: WaveDecision | None = None) -> None:
        self._state.check_decision(decision, bake_too=True)

    @workflow.query(description="Counts by outcome, in-flight tenants, failed tenants with their class.")
    def progress(self) -> Progress:
        """A live snapshot (works on closed rollouts too)."""
        return self._state.progress()

    @workflow.update(
        name="skip_tenant",
        description="Skip one tenant for the rest of the rollout (a running one is cancelled); audited. "
        'Input: {"tenant": "acme", "principal": "you@example.com", "reason": "..."}',
    )
    async def skip_tenant(self, decision: TenantDecision) -> str:
        """Skip one tenant; the rest of the rollout runs on."""
        said = self._state.skip(decision, principal_of(decision))
        if (task := self._tasks.get(decision.tenant)) is not None:
            task.cancel()
        await audit_tenant_action(self._state, AuditEventType.TENANT_SKIPPED, decision)
        self._show()
        return said

    @skip_tenant.validator
    def _check_skip(self, decision: TenantDecision) -> None:
        self._state.check_tenant_action("skip", decision)

    @workflow.update(
        name="retry_tenant",
        description="Run one failed tenant again now, first in line; audited. "
        'Input: {"tenant": "acme", "principal": "you@example.com"}',
    )
    async def retry_tenant(self, decision: TenantDecision) -> str:
        """Retry one failed tenant; its failure is taken back and its new outcome counts."""
        said = self._state.retry(decision, principal_of(decision))
        await audit_tenant_action(self._state, AuditEventType.TENANT_RETRIED, decision)
        self._show()
        return said

    @retry_tenant.validator
    def _check_retry(self, decision: TenantDecision) -> None:
        self._state.check_tenant_action("retry", decision)

    @workflow.update(
        name="set_tenant_deadline",
        description="Give one running tenant's Flyway call a new deadline (seconds from now); audited. "
        'Input: {"tenant": "acme", "deadline_s": 300, "principal": "you@example.com"}',
    )
    async def set_tenant_deadline(self, decision: TenantDecision) -> str:
        """Bound (or extend, up to its own timeout) one running tenant's call."""
        self._state.deadline_set(decision, principal_of(decision))
        await send_deadline(self._state, decision)
        await audit_tenant_action(self._state, AuditEventType.TENANT_DEADLINE, decision)
        self._show()
        return f"{decision.tenant}'s call gives up in {decision.deadline_s}s unless it ends first"

    @set_tenant_deadline.validator
    def _check_deadline(self, decision: TenantDecision) -> None:
        self._state.check_tenant_action("deadline", decision)

    @workflow.query(
        name="rerun_tenants",
        description="The failed and cancelled tenants (what --rerun-failed runs); cancelled rollouts too.",
    )
    def rerun_tenants(self) -> RerunList:
        """The rerun list; a cancelled or terminated rollout has no result, but answers this."""
        return self._state.rerun_list()

    @workflow.query(
        description="Tenants finished after sequence number 'after' (a page), for live streaming."
    )
    def completions(self, after: int) -> Completions:
        """The live feed ``fleetway migrate -o ndjson`` streams (see :class:`Completions`)."""
        return self._state.completions(after)

    # ---- the main loop -------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: MigrateAllInput) -> MigrateAllResult:
        """Roll out ``request.action``; return counts and outcomes (cancellation re-raises)."""
        state, info = self._state, workflow.info()
        marked = request.action in MARKED_ACTIONS
        # Retired patches (docs/operators-guide.md, "Changing workflow code"): every run screens and
        # dispatches by server; the markers stay, so runs recorded with them replay, one release more.
        workflow.deprecate_patch("screen-before-dispatch")
        workflow.deprecate_patch("dispatch-by-server")
        state.begin_run(
            marker=history_marker(info.workflow_id, info.first_execution_run_id) if marked else ""
        )
        if state.servers is not None:
            self._gate = ServerGate(state, state.servers)
            self._gate.resume()
        continue_as_new = False
        try:
            if request.carry is None:
                workflow.upsert_search_attributes([ACTION_ATTRIBUTE.value_set(request.action.value)])
                await start_rollout(state)
                if state.migration_set:
                    # The pinned set, to find every rollout of one release (once per rollout).
                    workflow.deprecate_patch("set-search-attribute")
                    workflow.upsert_search_attributes([SET_ATTRIBUTE.value_set(state.migration_set)])
                self._memo_wave()  # the planned waves (nothing when no plan was made)
            while True:
                state.enter(Phase.DISPATCHING)
                self._show()
                continue_as_new = await self._dispatch()
                state.enter(Phase.DRAINING)
                self._show()
                # An operator's retry while the last tenants run puts work back in line.
                if continue_as_new:
                    await workflow.wait_condition(lambda: not self._tasks)
                    break
                await workflow.wait_condition(lambda: not self._tasks or self._retried())
                if not self._retried():
                    break
            if self._gate is not None:
                await self._gate.close()
        except asyncio.CancelledError:
            state.cancelled()
            for task in self._tasks.values():
                task.cancel()
            if self._gate is not None:
                await self._gate.close(cancel=True)
            # Wait for every child to confirm: leaving early would let the close policy terminate
            # siblings whose Flyway is still running.
            await workflow.wait_condition(lambda: not self._tasks)
            await release_plan(state)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        if continue_as_new and state.stop is None:
            # The explicit list lives on in ``carry.pending``: carrying it twice doubles the payload.
            workflow.continue_as_new(
                request.model_copy(
                    update={"carry": state.carry(), "tenants": [], "migration_set": state.migration_set}
                ),
                # Under Worker Versioning a run is pinned to its build; here, children drained and the
                # state carried, is the safe point to move to the deployment's current build.
                initial_versioning_behavior=(
                    workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE
                    if workflow.info().get_current_deployment_version() is not None
                    else None  # an unversioned worker may not name a behavior
                ),
            )
        await release_plan(state)
        state.enter(Phase.DONE)
        self._show()
        workflow.upsert_search_attributes([OUTCOME_ATTRIBUTE.value_set(state.status().value)])
        workflow.upsert_memo(state.final_memo())
        return state.result(info.workflow_id)

    def _retried(self) -> bool:
        """A tenant is back in line after the dispatching ended (only an operator's retry does that)."""
        return bool(self._state.feed) and self._state.stop is None

    async def _dispatch(self) -> bool:
        """Dispatch until the fleet is done or something stops us; True when it is time to CAN."""
        state = self._state
        while state.stop is None:
            if state.waves and not await self._advance_wave():
                return False
            await workflow.wait_condition(lambda: state.stop is not None or state.can_dispatch())
            if state.stop is not None:
                return False
            if workflow.info().is_continue_as_new_suggested():
                # A run that mostly reads (tenants proven current dispatch nothing) grows its
                # history by the reads' answers: it continues as new on the server's suggestion too.
                workflow.deprecate_patch("can-between-reads")
                return True
            tenant = await next_tenant(state, self._gate)
            if tenant == NOT_NOW:
                continue  # its servers are busy or held: the window's wait covers them
            if tenant is not None and (skipped := state.skipped_outcome(tenant)) is not None:
                state.finished(tenant)  # an operator skipped it: reported, never dispatched
                state.record_unsent(skipped)
                self._show()
                continue
            if tenant is None:
                if state.waves:
                    continue  # the wave is dispatched: _advance_wave closes it
                return False
            if not await quiesce_allows(state):
                state.put_back(tenant)
                state.stop_with(RolloutStatus.QUIESCED)
                return False
            if state.stop is not None:  # a signal arrived while we checked
                state.put_back(tenant)
                return False
            # The options are the current wave's, taken now: the wave may advance while it runs.
            self._tasks[tenant] = asyncio.create_task(self._run_child(state.flyway_request(tenant)))
            time_to_continue = state.dispatch(tenant)
            self._show()
            if time_to_continue or workflow.info().is_continue_as_new_suggested():
                return True
        return False

    async def _run_child(self, run: FlywayRequest) -> None:
        state, tenant = self._state, run.tenant_id
        try:
            outcome = await run_tenant(
                state.request,
                run,
                server=state.server_key(tenant),
                wave=state.waves.current.name if state.waves else "",
                suffix=state.child_suffix(tenant),
            )
        finally:  # whatever happened, the tenant no longer holds a slot of the window
            self._tasks.pop(tenant, None)
            server = state.finished(tenant)
        if outcome is None:
            outcome = state.duplicate(tenant, workflow.info().workflow_id)
        elif outcome.outcome is Outcome.CANCELED and (skipped := state.skipped_outcome(tenant)) is not None:
            outcome = skipped  # an operator skipped it while it ran
        if server:
            outcome = outcome.model_copy(update={"server": server})
            if self._gate is not None:
                self._gate.failed_on(outcome)
        if state.record(outcome):
            self._memo_wave()
        self._show()

    # ---- ring rollouts: gates, bakes, decisions -----------------------------------------------

    def _memo_wave(self) -> None:
        if self._state.waves:
            workflow.upsert_memo(self._state.waves.memo())
        self._show()

    def _show(self) -> None:
        """The Temporal UI's current details: where the rollout stands (in memory; no history event)."""
        workflow.set_current_details(rollout_now(self._state))

    async def _advance_wave(self) -> bool:
        """Make the current wave dispatchable: close finished waves, bake, pass gates; False: stop."""
        state, waves = self._state, self._state.waves
        while True:
            if waves.needs_opening() and not await self._open_wave():
                return False
            if state.has_pending():
                return True
            if (chunk := waves.unread_chunk()) is not None:
                if not await read_wave_chunk(state, chunk):
                    return False
                continue
            # Everything of this wave is dispatched: wait for it to finish, then close it.
            await workflow.wait_condition(lambda: state.stop is not None or not self._tasks)
            if state.stop is not None:
                return False
            bake_s = waves.current.bake_s
            if waves.close():
                self._memo_wave()
                return False
            if bake_s and not await self._bake(bake_s):
                return False
            waves.advance()

    async def _open_wave(self) -> bool:
        """Pass the wave's gate (if any), then load its tenants; False: rejected or stopped."""
        state, waves = self._state, self._state.waves
        if waves.gated():
            waves.await_approval()
            self._memo_wave()
            state.enter(Phase.AT_GATE)
            await workflow.wait_condition(lambda: state.stop is not None or waves.decision is not None)
            if state.stop is not None or not await self._act_on_decision(waves.index):
                return False
        state.open_wave()
        self._memo_wave()
        return True

    async def _bake(self, seconds: int) -> bool:
        """A durable timer after a wave; a ``reject`` or a stop ends the rollout."""
        state, waves = self._state, self._state.waves
        waves.start_bake((workflow.now() + timedelta(seconds=seconds)).isoformat())
        self._memo_wave()
        state.enter(Phase.BAKING)
        with suppress(TimeoutError):  # the bake ran its course
            await workflow.wait_condition(
                lambda: state.stop is not None or waves.decision is not None,
                timeout=timedelta(seconds=seconds),
            )
        waves.end_bake()
        state.enter(Phase.DISPATCHING)
        if state.stop is not None:
            return False
        # A decision during a bake is a reject (approve is refused then): it refuses the next wave.
        return waves.decision is None or await self._act_on_decision(waves.index + 1)

    async def _act_on_decision(self, index: int) -> bool:
        """Act on the decision on wave ``index`` (state first, then its audit); True: approved."""
        state, waves = self._state, self._state.waves
        (kind, decision), principal = waves.take_decision(index)
        name = waves.current.name
        if kind is not AuditEventType.WAVE_APPROVED:
            why = f": {decision.reason}" if decision.reason else ""
            state.halt(f"wave {name!r} rejected by {principal}{why}")
            self._memo_wave()
        try:
            await audit_decision(state, kind, decision, principal)
        finally:
            waves.decided()
        return kind is AuditEventType.WAVE_APPROVED
