"""MigrateAllWorkflow: a durable, steerable rollout of one Flyway verb across a fleet of tenants.

Lists tenants page by page, checks the quiesce flag before every dispatch, and runs one
``TenantMigrationWorkflow`` child per tenant in a sliding window. A ring rollout (``waves``) plans
the fleet into waves once, at the start (one activity; ids only in history), then runs the waves
in order: each with its own window and failure threshold, a durable bake timer after it and an
optional approval gate before it (the ``approve``/``reject`` updates). Child ids are
``<rollout_id>/<tenant_id>`` with duplicate ids rejected, so no tenant runs twice in a rollout,
across worker crashes and continue-as-new. Deterministic orchestration only: no I/O, clocks or
randomness here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from contextlib import suppress
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from activities.flyway.output import Action, ErrorClass
    from activities.flyway.schema_history import history_marker
    from activities.quiesce import QuiesceActivities
    from activities.rollouts import Outcome, RolloutActivities, TenantOutcome
    from activities.tenants.static import ListTenantsInput, TenantSourceActivities
    from activities.tenants.walk import MAX_PAGES, cursor_digest
    from activities.tenants.waves import PlanWavesInput, WavePlan, WavePlanActivities, WaveSpec
    from activities.worker_profile import PinRolloutInput, WorkerProfileActivities
    from workflows.activity_failures import failure_reason, reraise_cancel
    from workflows.drift import DriftKind
    from workflows.migrate_all_models import (
        COMPLETIONS_PER_QUERY,
        RECENT_COMPLETIONS_KEPT,
        Completions,
        MigrateAllInput,
        MigrateAllResult,
        Progress,
        RolloutCarry,
        RolloutStatus,
        WaveDecision,
        WaveProgress,
        WaveState,
    )
    from workflows.outcome_ledger import OutcomeLedger
    from workflows.schema_truth import reconciled
    from workflows.tenant_migration import TenantMigrationInput, TenantMigrationWorkflow

__all__ = ["ACTION_ATTRIBUTE", "OUTCOME_ATTRIBUTE", "MigrateAllWorkflow"]

ACTION_ATTRIBUTE = SearchAttributeKey.for_keyword("FleetwayAction")
OUTCOME_ATTRIBUTE = SearchAttributeKey.for_keyword("FleetwayOutcome")
_SHORT = timedelta(seconds=30)
_MAX_WARNINGS = 20


def _by_time(request: MigrateAllInput, start_to_close: timedelta) -> dict[str, Any]:
    """Retries of a call to another service (tenant source, set store, Temporal): by time, not count.

    A control-plane blip of a minute must not fail a rollout that ran for hours: unlimited attempts
    with backoff up to 30 s, for the rollout's retry budget (5 minutes when it is 0). A non-retryable
    error (an unknown source, an invalid id) still fails at once.
    """
    budget = timedelta(seconds=request.retry_budget_s or 300)
    return {
        "start_to_close_timeout": min(start_to_close, budget),
        "schedule_to_close_timeout": budget,
        "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
    }


@workflow.defn(name="MigrateAllWorkflow")
class MigrateAllWorkflow:
    """One rollout of one action across the fleet.

    Steer it with the signals ``quiesce``/``pause``/``resume``, the update ``set_parallelism``
    and the query ``progress``, from the CLI or the Temporal UI.
    """

    @workflow.init
    def __init__(self, request: MigrateAllInput) -> None:
        carry = request.carry or RolloutCarry()
        self._request = request
        self._pending: deque[str] = deque(carry.pending)
        self._cursor = carry.cursor
        self._exhausted = carry.source_exhausted
        self._pages = carry.pages
        self._cursor_digests = set(carry.cursor_digests)
        self._dispatched = carry.dispatched
        self._ledger = OutcomeLedger.from_carry(carry)
        self._recent: deque[TenantOutcome] = deque(maxlen=RECENT_COMPLETIONS_KEPT)
        self._warnings = list(carry.warnings)
        self._parallelism = carry.parallelism or request.parallelism
        self._paused = carry.paused if request.carry else request.start_paused
        self._runs = carry.runs
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # This run's dispatches, to tell a tenant listed twice from a rollout id used before.
        self._dispatched_here: set[str] = set()
        self._listed_twice: set[str] = set()
        self._stop: RolloutStatus | None = None
        self._marker = ""  # the history marker, set in run() (migrate, new histories)
        self._set = request.migration_set  # pinned in _start when the input names none
        self._source_pin = carry.pinned_tenant_source  # set in _start
        self._secrets_pin = carry.pinned_secrets
        # Ring rollouts: each wave's state, the current one, the ids of the waves not yet opened
        # (the current wave's remaining ids are in _pending), an operator's decision not yet acted on.
        self._waves: list[WaveProgress] = list(carry.waves)
        self._wave_index = carry.wave_index
        self._wave_pending: deque[list[str]] = deque(carry.wave_pending)
        self._parallelism_set = carry.parallelism_set
        self._unplanned = carry.unplanned
        self._decision: tuple[AuditEventType, WaveDecision] | None = None
        self._deciding = False  # a decision is being acted on (its audit in flight)
        self._halted_wave = ""

    # ---- operator handlers -------------------------------------------------------------------

    @workflow.signal(description="Stop dispatching; in-flight tenants finish; the result is 'quiesced'.")
    def quiesce(self) -> None:
        """Stop this rollout's dispatching as the global quiesce flag would."""
        if self._stop is None:
            self._stop = RolloutStatus.QUIESCED

    @workflow.signal(description="Hold dispatching until 'resume'; in-flight tenants finish.")
    def pause(self) -> None:
        """Hold new dispatches."""
        self._paused = True

    @workflow.signal(description="Lift a 'pause' hold.")
    def resume(self) -> None:
        """Resume dispatching."""
        self._paused = False

    @workflow.update(
        description="Change how many tenants run at once (1..256); returns the old value. In a ring "
        "rollout it overrides every wave's own parallelism from now on."
    )
    def set_parallelism(self, parallelism: int) -> int:
        """Set the window size; takes effect at the next dispatch."""
        previous = self._window()
        self._parallelism, self._parallelism_set = parallelism, True
        return previous

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
        """Record an approval; the rollout opens the waiting wave (see ``_open_wave``)."""
        self._decision = (AuditEventType.WAVE_APPROVED, decision or WaveDecision())
        return self._waves[self._waiting_index()]

    @approve.validator
    def _validate_approve(self, decision: WaveDecision | None = None) -> None:
        self._check_decision(decision, bake_too=False)

    @workflow.update(
        description="Refuse the wave that waits at its approval gate (or the next one, during a bake): "
        'the rollout ends halted. Input (all optional): {"principal": "...", "wave": "...", '
        '"reason": "..."}. Recorded in the audit trail.'
    )
    def reject(self, decision: WaveDecision | None = None) -> WaveProgress:
        """Record a rejection; the rollout halts at that wave."""
        self._decision = (AuditEventType.WAVE_REJECTED, decision or WaveDecision())
        return self._waves[self._waiting_index()]

    @reject.validator
    def _validate_reject(self, decision: WaveDecision | None = None) -> None:
        self._check_decision(decision, bake_too=True)

    def _waiting_index(self) -> int:
        """The wave a decision applies to: the one at its gate, or (during a bake) the next."""
        current = self._waves[self._wave_index]
        return self._wave_index + 1 if current.state is WaveState.BAKING else self._wave_index

    def _check_decision(self, decision: WaveDecision | None, *, bake_too: bool) -> None:
        """Refuse (before anything is recorded) a decision with nothing, or something else, to decide."""
        if not self._waves or self._stop is not None:
            raise ValueError("approval_not_pending: this rollout has no wave waiting for a decision")
        current = self._waves[self._wave_index]
        states = (
            {WaveState.AWAITING_APPROVAL, WaveState.BAKING} if bake_too else {WaveState.AWAITING_APPROVAL}
        )
        if current.state not in states:
            raise ValueError(
                f"approval_not_pending: no wave is waiting for approval (wave {current.name!r} is "
                f"{current.state.value.replace('_', ' ')})"
            )
        if self._decision is not None or self._deciding:
            raise ValueError("approval_not_pending: a decision is already recorded and being acted on")
        meant = self._waves[self._waiting_index()].name
        if decision is not None and decision.wave and decision.wave != meant:
            raise ValueError(
                f"approval_not_pending: wave {decision.wave!r} is not the one waiting ({meant!r} is)"
            )

    @workflow.query(description="Counts by outcome, in-flight tenants, failed tenants with their class.")
    def progress(self) -> Progress:
        """A live snapshot (works on closed rollouts too)."""
        return Progress(
            status=self._stop or (RolloutStatus.PAUSED if self._paused else RolloutStatus.RUNNING),
            dispatched=self._dispatched,
            counts=dict(self._ledger.counts),
            in_flight=sorted(self._in_flight),
            failed=self._ledger.failed[-100:],
            parallelism=self._window(),
            paused=self._paused,
            source_exhausted=self._exhausted and not self._pending and not self._wave_pending,
            run=self._runs,
            history_marker=self._marker,
            migration_set=self._set,
            pinned_tenant_source=self._source_pin,
            pinned_secrets=self._secrets_pin,
            waves=self._waves,
            wave=self._waves[self._wave_index].name if self._waves else "",
        )

    @workflow.query(
        description="Tenants finished after sequence number 'after' (a page), for live streaming."
    )
    def completions(self, after: int) -> Completions:
        """The live feed ``fleetway migrate -o ndjson`` streams (see :class:`Completions`)."""
        last = self._ledger.completed
        oldest = last - len(self._recent) + 1  # sequence number of self._recent[0]
        start = max(after + 1, oldest)
        items = list(itertools.islice(self._recent, start - oldest, start - oldest + COMPLETIONS_PER_QUERY))
        return Completions(items=items, first_seq=start, last_seq=last, missed=max(0, oldest - (after + 1)))

    # ---- the rollout ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: MigrateAllInput) -> MigrateAllResult:
        """Roll out ``request.action``; return counts and outcomes (cancellation re-raises)."""
        info = workflow.info()
        if request.action is Action.MIGRATE:
            self._marker = history_marker(info.workflow_id, info.first_execution_run_id)
        continue_as_new = False
        try:
            if request.carry is None:
                await self._start(request)
            continue_as_new = await self._dispatch()
            await workflow.wait_condition(lambda: not self._in_flight)
        except asyncio.CancelledError:
            self._stop = RolloutStatus.CANCELED
            self._cancel_in_flight()
            # Wait for every child to confirm: exiting early would let the close policy
            # terminate siblings whose Flyway is still running.
            await workflow.wait_condition(lambda: not self._in_flight)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        if continue_as_new and self._stop is None:
            # The explicit tenant list lives on in ``carry.pending``; carrying it twice would double
            # the payload (10,000 ids) for nothing.
            workflow.continue_as_new(
                request.model_copy(update={"carry": self._carry(), "tenants": [], "migration_set": self._set})
            )
        return self._finish()

    async def _start(self, request: MigrateAllInput) -> None:
        workflow.upsert_search_attributes([ACTION_ATTRIBUTE.value_set(request.action.value)])
        if not await self._pin(request):
            return
        workflow.upsert_memo({"migration_set": self._set})
        if not request.audit.principal.strip():
            # Never invent a principal: the audit trail says <unspecified>, and the result says why.
            self._warn(f"no principal in the audit context; audit events say {UNSPECIFIED_PRINCIPAL}")
        if request.tenants:
            self._pending.extend(request.tenants)
            self._exhausted = True
        elif request.rerun_failed_of:
            self._exhausted = True
            try:
                failed = await workflow.execute_activity_method(
                    RolloutActivities.failed_tenants_of,
                    request.rerun_failed_of,
                    **_by_time(request, _SHORT),
                )
            except ActivityError as err:
                reraise_cancel(err)
                # Like a listing failure: nothing dispatched, the reason in the result.
                self._warn(f"rerun list unavailable; nothing dispatched ({failure_reason(err)})")
                self._stop = RolloutStatus.FAILED
                return
            self._pending.extend(failed)
        if request.waves and self._stop is None:
            await self._plan(request)

    async def _plan(self, request: MigrateAllInput) -> None:
        """Split the fleet (or the explicit/rerun list) into the declared waves: one activity."""
        explicit = bool(request.tenants or request.rerun_failed_of)
        try:
            plan: WavePlan = await workflow.execute_activity_method(
                WavePlanActivities.plan_waves,
                PlanWavesInput(
                    waves=request.waves,
                    source=request.tenant_source,
                    pinned=self._source_pin,
                    restrict_to=list(self._pending) if explicit else [],
                ),
                heartbeat_timeout=timedelta(minutes=2),
                **_by_time(request, timedelta(minutes=10)),
            )
        except ActivityError as err:
            reraise_cancel(err)
            # Like a listing failure: nothing dispatched, the reason in the result.
            self._warn(f"wave plan failed; nothing dispatched ({failure_reason(err)})")
            self._stop = RolloutStatus.FAILED
            return
        self._pending.clear()
        self._exhausted = True
        self._wave_pending = deque(p.tenants for p in plan.waves)
        self._waves = [
            WaveProgress(
                name=s.name, selection=s.selection(), planned=len(p.tenants), gate=s.gate, bake_s=s.bake_s
            )
            for s, p in zip(request.waves, plan.waves, strict=True)
        ]
        self._unplanned = plan.unplanned
        if plan.unplanned:
            shown = ", ".join(plan.unplanned_sample[:5]) + (" …" if plan.unplanned > 5 else "")
            self._warn(f"{plan.unplanned} listed tenants are in no wave and were not run ({shown})")
        self._memo_wave()

    # ---- ring rollouts -------------------------------------------------------------------------

    def _spec(self) -> WaveSpec:
        return self._request.waves[self._wave_index]

    def _set_wave(self, index: int | None = None, **changes: object) -> None:
        at = self._wave_index if index is None else index
        self._waves[at] = self._waves[at].model_copy(update=changes)

    def _window(self) -> int:
        """The dispatch window: the current wave's own parallelism unless an operator set one."""
        if self._waves and not self._parallelism_set:
            return self._spec().parallelism or self._parallelism
        return self._parallelism

    def _memo_wave(self) -> None:
        """The current wave in the memo: the server's view (and the UI) shows it with no worker up."""
        if not self._waves:
            return
        wave = self._waves[self._wave_index]
        workflow.upsert_memo(
            {
                "wave": {
                    "name": wave.name,
                    "index": self._wave_index + 1,
                    "of": len(self._waves),
                    "state": wave.state.value,
                    "bake_until": wave.bake_until,
                }
            }
        )

    async def _advance_wave(self) -> bool:
        """Make the current wave dispatchable: close finished waves, bake, pass gates; False: stop."""
        while True:
            wave = self._waves[self._wave_index]
            if wave.state is WaveState.PENDING and not await self._open_wave():
                return False
            if self._pending:
                return True
            # Everything of this wave is dispatched: wait for it to finish, then close it.
            await workflow.wait_condition(lambda: self._stop is not None or not self._in_flight)
            if self._stop is not None:
                return False
            self._set_wave(state=WaveState.DONE)
            if self._wave_index + 1 >= len(self._waves):
                self._memo_wave()
                return False
            if wave.bake_s and not await self._bake(wave.bake_s):
                return False
            self._wave_index += 1

    async def _open_wave(self) -> bool:
        """Pass the wave's gate (if any), then load its tenants; False: rejected or stopped."""
        wave = self._waves[self._wave_index]
        if wave.gate and wave.planned:
            self._set_wave(state=WaveState.AWAITING_APPROVAL)
            self._memo_wave()
            await workflow.wait_condition(lambda: self._stop is not None or self._decision is not None)
            if self._stop is not None or self._decision is None:
                return False
            if not await self._act_on_decision(self._wave_index, *self._decision):
                return False
        self._pending.extend(self._wave_pending.popleft())
        self._set_wave(state=WaveState.RUNNING)
        self._memo_wave()
        return True

    async def _bake(self, seconds: int) -> bool:
        """Wait ``seconds`` (a durable timer) after a wave; a ``reject`` or a stop ends the rollout."""
        until = workflow.now() + timedelta(seconds=seconds)
        self._set_wave(state=WaveState.BAKING, bake_until=until.isoformat())
        self._memo_wave()
        with suppress(TimeoutError):  # the bake ran its course
            await workflow.wait_condition(
                lambda: self._stop is not None or self._decision is not None,
                timeout=timedelta(seconds=seconds),
            )
        self._set_wave(state=WaveState.DONE, bake_until="")
        if self._stop is not None:
            return False
        if self._decision is None:
            return True
        # A decision during a bake is a reject (approve is refused then): it refuses the next wave.
        return await self._act_on_decision(self._wave_index + 1, *self._decision)

    async def _act_on_decision(self, index: int, kind: AuditEventType, decision: WaveDecision) -> bool:
        """Act on the operator's decision on wave ``index``, then audit it; True: approved (open it).

        The state changes before the audit's activity is awaited, so a second decision arriving
        meanwhile is refused (``_deciding``), never left behind to open a later gate by itself.
        """
        self._decision, self._deciding = None, True
        self._wave_index = index
        name = self._waves[index].name
        principal = decision.principal.strip() or UNSPECIFIED_PRINCIPAL
        approved = kind is AuditEventType.WAVE_APPROVED
        self._set_wave(decided_by=principal)
        if not approved:
            self._set_wave(state=WaveState.REJECTED)
            self._halt(
                f"wave {name!r} rejected by {principal}" + (f": {decision.reason}" if decision.reason else "")
            )
        info = workflow.info()
        event = AuditEvent(
            event_id=f"{info.workflow_id}/wave/{name}/{'approved' if approved else 'rejected'}",
            type=kind,
            target=info.workflow_id[:256],
            principal=principal,
            completed_at=workflow.now(),
            outcome=AuditOutcome.SUCCESS,
            git_sha=self._request.audit.git_sha,
            pipeline_run_id=self._request.audit.pipeline_run_id,
            attributes={"rollout.wave": name, "rollout.wave_index": str(index + 1)}
            | ({"rollout.reason": decision.reason} if decision.reason else {}),
        )
        try:
            await workflow.execute_activity_method(
                AuditActivities.emit_audit,
                event,
                **_by_time(self._request, _SHORT),
            )
        except ActivityError as err:
            reraise_cancel(err)
            self._warn(f"audit of the decision on wave {name!r} failed ({failure_reason(err)})")
        finally:
            self._deciding = False
        return approved

    def _halt(self, why: str) -> None:
        """End the rollout ``halted`` at the current wave; in-flight tenants finish."""
        self._halted_wave = self._waves[self._wave_index].name
        self._stop = RolloutStatus.HALTED
        self._warn(f"{why}; rollout halted, later waves not started")
        self._memo_wave()

    def _wave_threshold_crossed(self) -> bool | None:
        """Whether the current wave's failures cross its own threshold (None: it has none)."""
        spec, wave = self._spec(), self._waves[self._wave_index]
        failed = wave.counts.get(Outcome.FAILED, 0)
        if spec.max_failures is not None:
            return failed > spec.max_failures
        if spec.max_failure_ratio is not None:
            # Against the wave's planned size: halts as soon as the wave's final ratio must exceed it.
            return failed > spec.max_failure_ratio * wave.planned
        return None

    async def _pin(self, request: MigrateAllInput) -> bool:
        """Pin the set (the worker's, when the input names none) and the backends; False: stopped."""
        try:
            pin = await workflow.execute_activity_method(
                WorkerProfileActivities.pin_rollout,
                PinRolloutInput(
                    migration_set=self._set,
                    # An explicit list (or a rerun) never reads the source: nothing to pin there.
                    tenant_source="" if request.tenants or request.rerun_failed_of else request.tenant_source,
                    secrets_backend=request.secrets_backend,
                ),
                **_by_time(request, timedelta(minutes=2)),
            )
        except ActivityError as err:
            reraise_cancel(err)
            # Like a listing failure: nothing dispatched, the reason in the result.
            self._warn(
                f"pinning the rollout's set and backends failed; nothing dispatched ({failure_reason(err)})"
            )
            self._stop = RolloutStatus.FAILED
            return False
        self._set = pin.migration_set
        self._source_pin, self._secrets_pin = pin.tenant_source, pin.secrets_backend
        return True

    async def _dispatch(self) -> bool:
        """Dispatch until the fleet is done or something stops us; True when it is time to CAN."""
        this_run = 0
        while self._stop is None:
            if self._waves and not await self._advance_wave():
                return False
            await workflow.wait_condition(lambda: self._stop is not None or self._can_dispatch())
            if self._stop is not None:
                return False
            tenant = await self._next_tenant()
            if tenant is None:
                if self._waves:
                    continue  # the wave is dispatched: _advance_wave closes it
                return False
            if not await self._quiesce_allows():
                self._pending.appendleft(tenant)
                self._stop = RolloutStatus.QUIESCED
                return False
            if self._stop is not None:  # a signal arrived while we checked
                self._pending.appendleft(tenant)
                return False
            if tenant in self._dispatched_here:
                self._listed_twice.add(tenant)
            self._dispatched_here.add(tenant)
            self._in_flight[tenant] = asyncio.create_task(self._run_child(tenant))
            self._dispatched += 1
            if self._waves:
                self._set_wave(dispatched=self._waves[self._wave_index].dispatched + 1)
            this_run += 1
            if (
                this_run >= self._request.continue_as_new_after
                or workflow.info().is_continue_as_new_suggested()
            ):
                return True
        return False

    def _can_dispatch(self) -> bool:
        if self._paused or len(self._in_flight) >= self._window():
            return False
        canary = self._request.canary_count
        # The canary gate: after the first canary_count dispatches, wait for them all to finish.
        return not (canary and self._dispatched >= canary and self._completed() < canary)

    def _completed(self) -> int:
        return self._ledger.completed

    async def _next_tenant(self) -> str | None:
        while not self._pending and not self._exhausted:
            try:
                page = await workflow.execute_activity_method(
                    TenantSourceActivities.list_tenants_page,
                    ListTenantsInput(
                        source=self._request.tenant_source,
                        cursor=self._cursor,
                        limit=self._request.page_size,
                        pinned=self._source_pin,
                    ),
                    **_by_time(self._request, timedelta(minutes=2)),
                )
            except ActivityError as err:
                reraise_cancel(err)
                # Stop dispatching but let in-flight children finish: failing the workflow here
                # would hand them to the parent close policy mid-migration.
                self._warn(f"tenant listing failed; dispatch stopped ({failure_reason(err)})")
                self._stop = RolloutStatus.FAILED
                return None
            self._pages += 1
            self._pending.extend(page.tenant_ids)
            self._cursor = page.next_cursor
            self._exhausted = page.next_cursor is None
            if page.next_cursor is not None and not self._accept_cursor(page.next_cursor):
                return None
        return self._pending.popleft() if self._pending else None

    def _accept_cursor(self, cursor: str) -> bool:
        """Cycle and page-cap detection across pages (the same rules as ``list_all_tenants``)."""
        digest = cursor_digest(cursor)
        if digest in self._cursor_digests or self._pages >= MAX_PAGES:
            problem = (
                "repeated a cursor (cycle detected)"
                if digest in self._cursor_digests
                else (f"exceeded {MAX_PAGES} pages")
            )
            # A source that breaks its paging contract is not trusted with the rest: stop like a
            # listing failure (in-flight children drain) instead of running a partial list.
            self._warn(f"tenant source {problem}; dispatch stopped")
            self._stop = RolloutStatus.FAILED
            return False
        self._cursor_digests.add(digest)
        return True

    async def _quiesce_allows(self) -> bool:
        try:
            # A local activity: no task-queue round trip per dispatch (dispatch is sequential, so
            # that round trip would bound the dispatch rate).
            status = await workflow.execute_local_activity_method(
                QuiesceActivities.check_quiesce,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except FailureError as err:
            reraise_cancel(err)
            # Fail open (go-bricks): a broken flag store must not freeze every rollout. A local
            # activity's failure arrives unwrapped (ApplicationError/TimeoutError, not
            # ActivityError), so catch every Temporal failure but cancellation.
            self._warn("quiesce check failed; dispatch proceeded (fail-open)")
            workflow.logger.warning("quiesce check failed; proceeding (fail-open)")
            return True
        return not status.active

    async def _run_child(self, tenant: str) -> None:
        try:
            outcome = await self._child_outcome(tenant)
        finally:
            self._in_flight.pop(tenant, None)
        self._record(outcome)

    async def _child_outcome(self, tenant: str) -> TenantOutcome:
        """The child's outcome, or for a child that ended without one, what its table shows.

        The read happens before the tenant leaves ``_in_flight``: a cancelled rollout waits for it.
        """
        outcome = await self._execute_child(tenant)
        if outcome.source is not None or not self._marker or outcome.outcome is Outcome.SKIPPED:
            return outcome
        try:
            return await reconciled(
                outcome,
                secrets_backend=self._request.secrets_backend,
                marker=self._marker,
                pinned_secrets=self._secrets_pin,
            )
        except asyncio.CancelledError:  # cancelled again while reading: keep what we know
            return outcome

    async def _execute_child(self, tenant: str) -> TenantOutcome:
        request = self._request
        rollout_id = workflow.info().workflow_id
        try:
            return await workflow.execute_child_workflow(
                TenantMigrationWorkflow.run,
                TenantMigrationInput(
                    action=request.action,
                    tenant_id=tenant,
                    secrets_backend=request.secrets_backend,
                    audit=request.audit,
                    flyway_timeout_s=request.flyway_timeout_s,
                    heartbeat_timeout_s=request.heartbeat_timeout_s,
                    drift_check=request.drift_check,
                    installed_by=self._marker,
                    retry_budget_s=request.retry_budget_s,
                    migration_set=self._set,
                    pinned_secrets=self._secrets_pin,
                ),
                id=f"{rollout_id}/{tenant}",
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except WorkflowAlreadyStartedError:
            if request.carry is None and tenant not in self._listed_twice:
                return self._reused_rollout_id(tenant)
            return TenantOutcome(
                tenant_id=tenant,
                outcome=Outcome.SKIPPED,
                message="already run in this rollout (duplicate id)",
            )
        except asyncio.CancelledError:
            return TenantOutcome(tenant_id=tenant, outcome=Outcome.CANCELED, message="cancelled")
        except ChildWorkflowError as err:
            canceled = isinstance(err.cause, CancelledError)
            return TenantOutcome(
                tenant_id=tenant,
                outcome=Outcome.CANCELED if canceled else Outcome.FAILED,
                error_class="" if canceled else ErrorClass.INTERNAL_ERROR.value,
                message="cancelled" if canceled else f"child workflow failed: {type(err.cause).__name__}",
            )

    def _reused_rollout_id(self, tenant: str) -> TenantOutcome:
        """A first run whose tenant's child id exists: an earlier rollout had this id. Stop, say so.

        Reporting its tenants "already run" and the rollout "succeeded" would answer for that
        earlier rollout without running anything (a client that started with the default id
        reuse policy; the ``fleetway`` CLI refuses such an id before it starts).
        """
        if self._stop is None:
            self._stop = RolloutStatus.FAILED
            self._warn(
                f"rollout id {workflow.info().workflow_id!r} was used by an earlier rollout: its tenants "
                "ran under it and are not run again; start this rollout with a new id "
                "(id reuse policy: reject duplicate)"
            )
        return TenantOutcome(
            tenant_id=tenant,
            outcome=Outcome.SKIPPED,
            message="run by an earlier rollout with this id (rollout id reused); not run again",
        )

    def _record(self, outcome: TenantOutcome) -> None:
        if self._waves:
            # A wave's tenants all finish before the next wave opens: the current wave is theirs.
            wave = self._waves[self._wave_index]
            outcome = outcome.model_copy(update={"wave": wave.name})
            self._set_wave(counts=wave.counts | {outcome.outcome: wave.counts.get(outcome.outcome, 0) + 1})
        self._ledger.record(outcome, track_drift=self._request.action is not Action.MIGRATE)
        self._recent.append(outcome)
        if self._stop is not None:
            return
        if self._waves and (crossed := self._wave_threshold_crossed()) is not None:
            if crossed:
                wave = self._waves[self._wave_index]
                self._set_wave(state=WaveState.HALTED)
                self._halt(
                    f"wave {wave.name!r} crossed its failure threshold "
                    f"({wave.counts.get(Outcome.FAILED, 0)} of {wave.planned} failed)"
                )
            return  # the wave's own threshold replaces the rollout's rules for its tenants
        failed = self._ledger.counts[Outcome.FAILED]
        ratio = self._request.max_failure_ratio
        if ratio is not None:
            completed = self._completed()
            if completed >= max(self._request.canary_count, 1) and failed / completed > ratio:
                self._stop = RolloutStatus.HALTED
        elif failed and not self._request.continue_on_error:
            # Fail-fast stops dispatching and drains: healthy tenants mid-script finish their run.
            # Only an operator's cancel kills in-flight work.
            self._stop = RolloutStatus.FAILED

    def _cancel_in_flight(self) -> None:
        for task in self._in_flight.values():
            task.cancel()

    def _warn(self, message: str) -> None:
        if message not in self._warnings and len(self._warnings) < _MAX_WARNINGS:
            self._warnings.append(message)

    def _carry(self) -> RolloutCarry:
        return RolloutCarry(
            pending=list(self._pending),
            cursor=self._cursor,
            source_exhausted=self._exhausted,
            pages=self._pages,
            cursor_digests=sorted(self._cursor_digests),
            dispatched=self._dispatched,
            counts=dict(self._ledger.counts),
            outcomes=self._ledger.outcomes,
            dropped_outcomes=self._ledger.dropped,
            failed_overflow=self._ledger.failed_overflow,
            failed_lost=self._ledger.failed_lost,
            drift={k.value: v for k, v in self._ledger.drift.items()},
            drifted=self._ledger.drifted,
            warnings=self._warnings,
            parallelism=self._parallelism,
            paused=self._paused,
            runs=self._runs + 1,
            pinned_tenant_source=self._source_pin,
            pinned_secrets=self._secrets_pin,
            waves=self._waves,
            wave_index=self._wave_index,
            wave_pending=list(self._wave_pending),
            parallelism_set=self._parallelism_set,
            unplanned=self._unplanned,
        )

    def _finish(self) -> MigrateAllResult:
        if self._stop is not None:
            status = self._stop
        elif self._ledger.counts[Outcome.FAILED]:
            status = RolloutStatus.FAILED
        else:
            status = RolloutStatus.SUCCEEDED
        workflow.upsert_search_attributes([OUTCOME_ATTRIBUTE.value_set(status.value)])
        memo: dict[str, object] = {
            "counts": {k.value: v for k, v in self._ledger.counts.items()},
            "status": status.value,
        }
        if self._set:
            memo["migration_set"] = self._set
        if self._request.action is not Action.MIGRATE:
            memo["drift"] = {k.value: self._ledger.drift.get(k, 0) for k in DriftKind}
        if self._waves:
            if status is RolloutStatus.HALTED and not self._halted_wave:  # the rollout-wide ratio
                self._halted_wave = self._waves[self._wave_index].name
                self._set_wave(state=WaveState.HALTED)
            memo["waves"] = [
                {"name": w.name, "state": w.state.value, "counts": {k.value: v for k, v in w.counts.items()}}
                for w in self._waves
            ]
        workflow.upsert_memo(memo)
        return MigrateAllResult(
            rollout_id=workflow.info().workflow_id,
            action=self._request.action,
            status=status,
            total=self._completed(),
            counts=dict(self._ledger.counts),
            failed=self._ledger.failed,
            outcomes=self._ledger.outcomes,
            truncated=self._ledger.truncated,
            warnings=self._warnings,
            runs=self._runs,
            failed_overflow=self._ledger.failed_overflow,
            failed_lost=self._ledger.failed_lost,
            drift={k.value: v for k, v in self._ledger.drift.items()},
            drifted=self._ledger.drifted,
            retry_budget_s=self._request.retry_budget_s,
            history_marker=self._marker,
            migration_set=self._set,
            pinned_tenant_source=self._source_pin,
            pinned_secrets=self._secrets_pin,
            waves=self._waves,
            halted_wave=self._halted_wave,
            unplanned=self._unplanned,
        )
