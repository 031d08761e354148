"""A rollout's state and every rule that changes it: pure, so each rule is tested on its own.

No Temporal calls, no I/O, no clock: the workflow shell (``migrate_all.py``) runs activities,
children and timers, and reports what happened here. The phase says where the rollout stands;
``stop`` is set once and never cleared (the first reason to stop wins); the ledger counts every
finished tenant; the wave controller is the only thing that moves the current wave.
"""

from __future__ import annotations

import itertools
from collections import deque
from enum import StrEnum
from typing import Any, Final

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.fleet.state import MAX_SCREENED, TenantState, TenantStates
    from fleetway.activities.flyway.output import READ_ONLY_ACTIONS, Action
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.rollouts import Outcome, OutcomeSource, TenantOutcome
    from fleetway.activities.tenants.wave_book import PlanSummary
    from fleetway.activities.worker_profile import RolloutPin
    from fleetway.workflows.drift import DriftKind
    from fleetway.workflows.migrate_all_models import (
        COMPLETIONS_PER_QUERY,
        RECENT_COMPLETIONS_KEPT,
        Completions,
        MigrateAllInput,
        MigrateAllResult,
        Progress,
        RerunList,
        RolloutCarry,
        RolloutStatus,
        TenantDecision,
        WaveDecision,
    )
    from fleetway.workflows.outcome_ledger import OutcomeLedger
    from fleetway.workflows.server_book import ServerBook
    from fleetway.workflows.tenant_feed import TenantFeed
    from fleetway.workflows.wave_controller import WaveController

__all__ = ["Phase", "RolloutState"]

_MAX_WARNINGS: Final = 20
_MAX_ACTIONS: Final = 50  # operator actions on single tenants per rollout (carried, ≤ 300 chars each)
_TWICE: Final = "already run in this rollout (duplicate id)"


class Phase(StrEnum):
    """Where a rollout stands (shown by ``progress``; not carried: a new run derives it)."""

    PINNING = "pinning"
    PLANNING = "planning"
    DISPATCHING = "dispatching"
    DRAINING = "draining"
    AT_GATE = "at_gate"
    BAKING = "baking"
    DONE = "done"


class RolloutState:
    """Everything a rollout knows; built from its input and what the previous run carried."""

    def __init__(self, request: MigrateAllInput) -> None:
        carry = request.carry or RolloutCarry()
        self.request = request
        self.phase = Phase.PINNING if request.carry is None else Phase.DISPATCHING
        self.feed = TenantFeed(carry)  # the listed tenants not yet dispatched, and the source's cursor
        self.dispatched = carry.dispatched
        self.ledger = OutcomeLedger.from_carry(carry)
        self.recent: deque[TenantOutcome] = deque(maxlen=RECENT_COMPLETIONS_KEPT)
        self.warnings = list(carry.warnings)
        self.parallelism = carry.parallelism or request.parallelism
        self.parallelism_set = carry.parallelism_set
        self.paused = carry.paused if request.carry else request.start_paused
        self.runs = carry.runs
        self.in_flight: set[str] = set()
        self.stop: RolloutStatus | None = None
        self.marker = ""
        self.migration_set = request.migration_set
        self.source_pin = carry.pinned_tenant_source
        self.secrets_pin = carry.pinned_secrets
        self.quiesce_pin = carry.pinned_quiesce
        self.waves = WaveController(request.waves, carry)
        self.excluded = carry.excluded
        self.unreadable = carry.unreadable
        self.applied_marker = carry.applied_marker
        # Per-server dispatch (None: one global window, as runs recorded before it had).
        self.servers = (
            ServerBook(request.servers, carry.holds, park_limit_s=request.retry_budget_s or 900)
            if request.servers
            else None
        )
        self.read_servers: dict[str, str] = {}  # kept tenants' server keys, from the screening read
        # This run's dispatches, to tell a tenant listed twice from a rollout id used before.
        self._dispatched_here: set[str] = set()
        self._listed_twice: set[str] = set()
        self._proven: set[str] = set()  # recorded current in this run (a second listing is a duplicate)
        self._this_run = 0
        # One tenant handled alone, by an operator (carried; bounded like every carried list).
        self.operator_actions = list(carry.operator_actions)
        self.skipping: set[str] = set(carry.skipping)
        self.retries: dict[str, int] = dict(carry.retries)

    # ---- the run's life: named transitions the shell hands results to -------------------------

    def begin_run(self, *, marker: str) -> None:
        """The shell runs this state: the history marker of the rollout's rows."""
        self.marker = marker

    def enter(self, phase: Phase) -> None:
        """The shell reached ``phase`` (shown by ``progress``)."""
        self.phase = phase

    def cancelled(self) -> None:
        """A cancel arrived: stop, and drain what is in flight."""
        self.stop, self.phase = RolloutStatus.CANCELED, Phase.DRAINING

    def set_paused(self, paused: bool) -> None:
        """An operator's ``pause`` (True) or ``resume`` (False)."""
        self.paused = paused

    def pinned(self, pin: RolloutPin) -> None:
        """What the pinning worker answered: the set, and the backends every later call must match."""
        self.migration_set = pin.migration_set
        self.source_pin, self.secrets_pin = pin.tenant_source, pin.secrets_backend
        self.quiesce_pin = pin.quiesce_store

    def listed(self, tenants: list[str]) -> None:
        """The rollout's whole list is known (explicit, or a rerun's): no source is paged."""
        self.feed.add(tenants, whole=True)

    def selecting_by(self, marker: str) -> None:
        """Only tenants whose table shows a row with this rollout marker are selected (``applied_in``)."""
        self.applied_marker = marker

    def holding_plan(self, holder: str) -> None:
        """A holder keeps the plan from now on: the rollout's end (even a cancel) releases it."""
        self.waves.holder = holder

    def plan_held(self, summary: PlanSummary, holder: str) -> None:
        """The plan's summary; its ids stay in ``holder`` and come a chunk at a time."""
        self.feed.replace_with_plan()
        self.waves.plan_held(summary, holder)
        self._unplanned(summary.unplanned, summary.unplanned_sample)

    def chunk_read(self, tenants: list[str]) -> None:
        """The current wave's next chunk of ids, from the holder, joins the line."""
        self.waves.chunk_read()
        self.feed.add(tenants)

    def open_wave(self) -> None:
        """The current wave opens: its ids (or, with a holder, none yet) join the line."""
        self.feed.add(self.waves.open())
        self.phase = Phase.DISPATCHING

    def _unplanned(self, count: int, sample: list[str]) -> None:
        if count:
            shown = ", ".join(sample[:5]) + (" …" if count > 5 else "")
            self.warn(f"{count} listed tenants are in no wave and were not run ({shown})")

    # ---- one tenant, handled alone (an operator's update) ---------------------------------------

    def check_tenant_action(self, verb: str, decision: TenantDecision) -> None:
        """Refuse an action that cannot be done (before anything is recorded).

        Raises:
            ValueError: ``tenant_action_refused: ...``; the update is rejected, nothing recorded.
        """
        tenant = decision.tenant
        if self.phase is Phase.DONE:
            raise ValueError(f"tenant_action_refused: the rollout has finished; {verb} nothing")
        if self.stop is not None and (verb == "retry" or tenant not in self.in_flight):
            raise ValueError(
                f"tenant_action_refused: the rollout is stopping ({self.status().value}); "
                "only a running tenant may still be skipped or given a deadline"
            )
        if len(self.operator_actions) >= _MAX_ACTIONS:
            raise ValueError(
                f"tenant_action_refused: {_MAX_ACTIONS} tenant actions already taken in this rollout"
            )
        if verb == "skip" and (tenant in self.skipping or len(self.skipping) >= _MAX_ACTIONS):
            raise ValueError(f"tenant_action_refused: {tenant!r} is already skipped (or too many are)")
        if verb == "retry" and (
            tenant in self.in_flight
            or (
                not any(o.tenant_id == tenant for o in self.ledger.failed)
                and tenant not in self.ledger.failed_overflow
            )
        ):
            raise ValueError(
                f"tenant_action_refused: {tenant!r} has not failed in this rollout "
                "(or its failure is only counted, not kept by name)"
            )
        if verb == "deadline" and tenant not in self.in_flight:
            raise ValueError(
                f"tenant_action_refused: {tenant!r} is not running; a deadline applies to a running call"
            )
        if verb == "deadline" and not decision.deadline_s:
            raise ValueError(
                "tenant_action_refused: give deadline_s, the seconds from now the call may still take"
            )

    def skip(self, decision: TenantDecision, principal: str) -> str:
        """Skip the tenant for the rest of the rollout; returns what happens to it now."""
        self.skipping.add(decision.tenant)
        self._acted(f"{decision.tenant} skipped by {principal}", decision.reason)
        if decision.tenant in self.in_flight:
            return "running: its run is cancelled, then it is reported skipped"
        return "it will not run; it is reported skipped when its turn comes"

    def skipped_outcome(self, tenant: str) -> TenantOutcome | None:
        """The outcome of a tenant an operator skipped (None: it was not)."""
        if tenant not in self.skipping:
            return None
        said = next((a for a in reversed(self.operator_actions) if a.startswith(f"{tenant} skipped by ")), "")
        return TenantOutcome(tenant_id=tenant, outcome=Outcome.SKIPPED, message=(said or "skipped")[:300])

    def retry(self, decision: TenantDecision, principal: str) -> str:
        """Run a failed tenant again, first in line, under a new child id; its failure is taken back."""
        tenant = decision.tenant
        self.ledger.retract(tenant)
        self.retries[tenant] = self.retries.get(tenant, 0) + 1
        self._dispatched_here.discard(tenant)
        self.feed.put_back(tenant, read=True)  # known to need a run: no table read first
        self._acted(f"{tenant} retried by {principal} (retry {self.retries[tenant]})", decision.reason)
        return f"retry {self.retries[tenant]} of {tenant} is first in line"

    def deadline_set(self, decision: TenantDecision, principal: str) -> None:
        """Record a new deadline given to a running tenant's call."""
        self._acted(f"{decision.tenant} given {decision.deadline_s}s more by {principal}", decision.reason)

    def child_suffix(self, tenant: str) -> str:
        """The child id's suffix of an operator's retry ("" for the first run)."""
        retry = self.retries.get(tenant, 0)
        return f"#retry{retry}" if retry else ""

    def _acted(self, line: str, reason: str) -> None:
        self.operator_actions.append((line + (f": {reason}" if reason else ""))[:300])

    # ---- stopping -------------------------------------------------------------------------------

    def warn(self, message: str) -> None:
        """Add a warning to the result (deduplicated, at most 20)."""
        if message not in self.warnings and len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)

    def stop_with(self, status: RolloutStatus, warning: str = "") -> None:
        """Stop dispatching with ``status`` (the first stop wins); in-flight tenants drain."""
        if warning:
            self.warn(warning)
        if self.stop is None:
            self.stop = status

    def fail(self, warning: str) -> None:
        """Stop as failed, saying why (a listing, plan or pin that could not be done)."""
        self.stop_with(RolloutStatus.FAILED, warning)

    def halt(self, why: str) -> None:
        """End the rollout ``halted`` at the current wave; in-flight tenants finish."""
        self.stop = RolloutStatus.HALTED
        self.warn(f"{why}; rollout halted, later waves not started")

    # ---- operators ------------------------------------------------------------------------------

    def window(self) -> int:
        """The dispatch window: the current wave's own parallelism unless an operator set one."""
        if self.waves and not self.parallelism_set:
            return self.waves.parallelism() or self.parallelism
        return self.parallelism

    def set_parallelism(self, parallelism: int) -> int:
        """An operator's window, from now on (over every wave's own); returns the old one."""
        previous = self.window()
        self.parallelism, self.parallelism_set = parallelism, True
        return previous

    def check_decision(self, decision: WaveDecision | None, *, bake_too: bool) -> None:
        """Refuse a decision when nothing waits for one (see :meth:`WaveController.check_decision`)."""
        if not self.waves or self.stop is not None:
            raise ValueError("approval_not_pending: this rollout has no wave waiting for a decision")
        self.waves.check_decision(decision, bake_too=bake_too)

    # ---- dispatching ----------------------------------------------------------------------------

    def can_dispatch(self) -> bool:
        """Room in the window, not paused, the canary gate (if any) passed, and a server free."""
        if self.paused or len(self.in_flight) >= self.window():
            return False
        canary = self.request.canary_count
        # The canary gate: after the first canary_count dispatches, wait for them all to finish.
        if canary and self.dispatched >= canary and self.ran() < canary:
            return False
        book = self.servers
        # With every queued tenant's server busy or held, wait unless more can be listed or keyed.
        return book is None or not book.queued() or book.pickable() or self._more_to_queue()

    def _more_to_queue(self) -> bool:
        return (
            self.servers is not None
            and self.servers.room() > 0
            and (bool(self.feed) or not self.feed.exhausted)
        )

    def has_pending(self) -> bool:
        """Tenants listed and not yet dispatched (in the line or a server's queue)."""
        return bool(self.feed) or (self.servers is not None and self.servers.queued() > 0)

    def ran(self) -> int:
        """Finished tenants that were dispatched (a tenant proven current never ran)."""
        return self.ledger.completed - self.ledger.counts[Outcome.CURRENT]

    def needs_page(self) -> bool:
        """Nothing left to dispatch from what was listed, and the source has more."""
        if not self.feed.needs_page():
            return False
        # Per server: list ahead (up to a bound) so every server with work has its turn.
        return self.servers is None or self.servers.room() > 0

    def accept_page(self, tenant_ids: list[str], next_cursor: str | None) -> bool:
        """Take a page of the tenant source; False (and failed) when the source broke its paging."""
        if problem := self.feed.accept_page(tenant_ids, next_cursor):
            # A source that breaks its paging contract is not trusted with the rest of its list.
            self.fail(f"tenant source {problem}; dispatch stopped")
            return False
        return True

    # ---- screening: the tables read before dispatch (issue 25) --------------------------------

    def fast_path(self) -> bool:
        """Whether a tenant proven current (migrate) or intact (validate) skips its Flyway run."""
        request, options = self.request, self.request.flyway
        # Placeholders only change repeatables' checksums, which the read computes with them.
        changes_flyway = options.model_copy(update={"placeholders": {}})
        return (
            request.skip_current
            and request.action in {Action.MIGRATE, Action.VALIDATE}
            and changes_flyway.is_default
            and not any(w.target for w in request.waves)
        )

    def selecting(self) -> bool:
        """Whether the rollout runs only the tenants its ``where``/``applied_in`` selection takes."""
        return bool(self.request.where or self.request.applied_in)

    def needs_screen(self) -> bool:
        """The next pending tenant has not been read yet, and reading decides something."""
        return self.feed.unread_front() and (self.fast_path() or self.selecting())

    def key_chunk(self) -> list[str]:
        """The pending tenants ready for their server keys, taken out of the line (read ones only)."""
        if self.servers is None:
            return []
        if self.servers.room() < MAX_SCREENED and self.servers.pickable():
            # Refill in whole chunks: topping up one tenant per dispatch cost an activity each.
            return []
        screens = self.fast_path() or self.selecting()
        count = max(
            0,
            min(
                self.feed.read if screens else len(self.feed),
                MAX_SCREENED,
                self.servers.room(),
            ),
        )
        return self.feed.take_front(count, read=screens)

    def screen_chunk(self) -> list[str]:
        """The pending tenants to read next (at most one read's worth)."""
        return self.feed.front(MAX_SCREENED)

    def accept_states(self, chunk: list[str], read: TenantStates) -> None:
        """Record the proven tenants, drop the unselected ones; the rest stay first in line."""
        keep: list[str] = []
        migrate, fast = self.request.action is Action.MIGRATE, self.fast_path()
        callbacks = read.migrate_callbacks if migrate else read.validate_callbacks
        if fast and callbacks and not self.request.skip_callbacks_when_current:
            fast = False  # the set's every-run callbacks must reach current tenants too
            self.warn(
                f"the set's callbacks {', '.join(callbacks[:3])} run on every {self.request.action.value}: "
                "current tenants run Flyway too (--skip-callbacks-when-current skips them)"
            )
        for tenant, state, chosen in zip(chunk, read.states, read.selected, strict=True):
            if tenant in self._proven:  # listed twice, proven the first time
                self.record(TenantOutcome(tenant_id=tenant, outcome=Outcome.SKIPPED, message=_TWICE))
            elif tenant in self._dispatched_here:
                keep.append(tenant)  # listed twice: its child id reports the duplicate
            elif not chosen:
                self.excluded += 1
                self.unreadable += state.unreadable
            elif fast and (state.current if migrate else state.intact):
                self._proven.add(tenant)
                self.record(self._current(state, read.migration_set))
            else:
                keep.append(tenant)
                if state.server:
                    self.read_servers[tenant] = state.server
        self.feed.read_front(len(chunk), keep)

    def screen_failed(self, chunk: list[str], reason: str) -> None:
        """The read failed: a selection cannot be made (stop); the fast path just runs Flyway."""
        if self.selecting():
            self.fail(f"the tables could not be read to select tenants; dispatch stopped ({reason})")
        else:
            self.warn(f"schema histories unread, tenants run Flyway as before ({reason})")
            self.feed.mark_read(len(chunk))

    def _current(self, state: TenantState, digest: str) -> TenantOutcome:
        validate = self.request.action is Action.VALIDATE
        said = f"intact, {state.pending_count} pending" if validate and state.pending_count else "current"
        return TenantOutcome(
            tenant_id=state.tenant_id,
            outcome=Outcome.CURRENT,
            version_before=state.version,
            version_after=state.version,
            pending=state.pending if validate else [],
            source=OutcomeSource.HISTORY,
            migration_set=digest,
            read_at=state.read_at,
            server=state.server,
            message=f"{said} (flyway_schema_history read at {state.read_at})",
        )

    def take(self) -> str:
        """The next pending tenant (the caller dispatches it or puts it back)."""
        return self.feed.take()

    def put_back(self, tenant: str) -> None:
        """Return a taken tenant to the front of the line (it stays read)."""
        if self.servers is not None and self.servers.server_of(tenant) is not None:
            self.servers.put_back(tenant)
            return
        self.feed.put_back(tenant, read=True)

    def dispatch(self, tenant: str) -> bool:
        """``tenant`` starts; True when this run has dispatched enough to continue as new."""
        if tenant in self._dispatched_here:
            self._listed_twice.add(tenant)
        self._dispatched_here.add(tenant)
        self.in_flight.add(tenant)
        if self.servers is not None and self.servers.server_of(tenant) is not None:
            self.servers.started(tenant)
        self.dispatched += 1
        if self.waves:
            self.waves.dispatched()
        self._this_run += 1
        return self._this_run >= self.request.continue_as_new_after

    def servers_read_for(self, tenants: list[str]) -> dict[str, str]:
        """The server keys the screening read gave these tenants, handed over once (then forgotten)."""
        return {t: self.read_servers.pop(t) for t in tenants if t in self.read_servers}

    def server_key(self, tenant: str) -> str:
        """The tenant's database server as the rollout knows it ("" when it does not)."""
        known = self.servers.server_of(tenant) if self.servers is not None else None
        return known or self.read_servers.get(tenant, "")

    def finished(self, tenant: str) -> str:
        """``tenant`` no longer holds a slot of the window or of its server; returns its server."""
        self.in_flight.discard(tenant)
        return self.servers.finished(tenant) if self.servers is not None else ""

    def record_unsent(self, outcome: TenantOutcome) -> None:
        """Count a tenant that ends without a dispatch (its server parked too long).

        Not a failure of a run: fail-fast and the failure ratio see only dispatched tenants.
        """
        if self.waves:
            outcome = self.waves.count(outcome)
        self.ledger.record(outcome, track_drift=False)
        self.recent.append(outcome)

    def duplicate(self, tenant: str, rollout_id: str) -> TenantOutcome:
        """The outcome of a tenant whose child id already exists in this rollout's namespace.

        In a first run, unless the source listed the tenant twice, an earlier rollout had this id:
        reporting its tenants "already run" would answer for that rollout, so this one fails.
        """
        if self.request.carry is None and tenant not in self._listed_twice:
            self.fail(
                f"rollout id {rollout_id!r} was used by an earlier rollout: its tenants ran under it "
                "and are not run again; start this rollout with a new id (id reuse policy: reject duplicate)"
            )
            message = "run by an earlier rollout with this id (rollout id reused); not run again"
        else:
            message = _TWICE
        return TenantOutcome(tenant_id=tenant, outcome=Outcome.SKIPPED, message=message)

    def record(self, outcome: TenantOutcome) -> bool:
        """Count a finished tenant and apply the thresholds; True when a wave halted (memo changed)."""
        self.in_flight.discard(outcome.tenant_id)
        if self.waves:
            outcome = self.waves.count(outcome)
        self.ledger.record(outcome, track_drift=self.request.action in READ_ONLY_ACTIONS)
        self.recent.append(outcome)
        if outcome.audit_refused and self.stop is None:
            # A sink that refuses for good (a missing grant) would audit nothing for every tenant.
            self.fail(f"the audit sink refuses events ({outcome.audit_refused}); dispatch stopped")
        if self.stop is not None:
            return False
        if self.waves and (crossed := self.waves.threshold_crossed()) is not None:
            if crossed:
                wave = self.waves.current
                self.waves.halt()
                self.halt(
                    f"wave {wave.name!r} crossed its failure threshold "
                    f"({wave.counts.get(Outcome.FAILED, 0)} of {wave.planned} failed)"
                )
            return crossed  # the wave's own threshold replaces the rollout's rules for its tenants
        failed = self.ledger.counts[Outcome.FAILED]
        ratio = self.request.max_failure_ratio
        if ratio is not None:
            completed = self.ran()
            if completed >= max(self.request.canary_count, 1) and failed / completed > ratio:
                self.stop = RolloutStatus.HALTED
                if self.waves:
                    self.waves.halt()
        elif failed and not self.request.continue_on_error:
            # Fail-fast stops dispatching and drains: healthy tenants mid-script finish their run.
            self.stop = RolloutStatus.FAILED
        return False

    # ---- what the rollout shows and hands on ----------------------------------------------------

    def status(self) -> RolloutStatus:
        """How the rollout ended (or stands, while it runs)."""
        if self.phase is not Phase.DONE:
            return self.stop or (RolloutStatus.PAUSED if self.paused else RolloutStatus.RUNNING)
        if self.stop is not None:
            return self.stop
        return RolloutStatus.FAILED if self.ledger.counts[Outcome.FAILED] else RolloutStatus.SUCCEEDED

    def progress(self) -> Progress:
        """The ``progress`` query's snapshot."""
        return Progress(
            servers=self.servers.view() if self.servers is not None else [],
            status=self.stop or (RolloutStatus.PAUSED if self.paused else RolloutStatus.RUNNING),
            dispatched=self.dispatched,
            counts=dict(self.ledger.counts),
            in_flight=sorted(self.in_flight),
            failed=self.ledger.failed[-100:],
            parallelism=self.window(),
            paused=self.paused,
            source_exhausted=self.feed.exhausted and not self.has_pending() and not self.waves.ids_left(),
            run=self.runs,
            history_marker=self.marker,
            migration_set=self.migration_set,
            pinned_tenant_source=self.source_pin,
            pinned_secrets=self.secrets_pin,
            pinned_quiesce=self.quiesce_pin,
            waves=self.waves.waves,
            wave=self.waves.current.name if self.waves else "",
            phase=self.phase.value,
            excluded=self.excluded,
        )

    def rerun_list(self) -> RerunList:
        """The failed and cancelled tenants this rollout kept (by id past the detail budget)."""
        rerun = {Outcome.FAILED, Outcome.CANCELED}
        named = [o.tenant_id for o in self.ledger.failed if o.outcome in rerun]
        return RerunList(tenants=named + list(self.ledger.failed_overflow), lost=self.ledger.failed_lost)

    def completions(self, after: int) -> Completions:
        """The tenants finished after sequence number ``after`` that this run still holds."""
        last = self.ledger.completed
        oldest = last - len(self.recent) + 1  # sequence number of self.recent[0]
        start = max(after + 1, oldest)
        items = list(itertools.islice(self.recent, start - oldest, start - oldest + COMPLETIONS_PER_QUERY))
        return Completions(items=items, first_seq=start, last_seq=last, missed=max(0, oldest - (after + 1)))

    def carry(self) -> RolloutCarry:
        """What the next run needs (in-flight tenants drained first; the explicit list in ``pending``)."""
        ledger, book = self.ledger, self.servers
        queued = book.drain() if book is not None else []  # keyed again by the next run
        screens = self.fast_path() or self.selecting()
        return RolloutCarry(
            **self.feed.carried(queued, queued_read=screens),
            dispatched=self.dispatched,
            counts=dict(ledger.counts),
            outcomes=ledger.outcomes,
            dropped_outcomes=ledger.dropped,
            failed_overflow=ledger.failed_overflow,
            failed_lost=ledger.failed_lost,
            drift={k.value: v for k, v in ledger.drift.items()},
            drifted=ledger.drifted,
            warnings=self.warnings,
            parallelism=self.parallelism,
            paused=self.paused,
            runs=self.runs + 1,
            pinned_tenant_source=self.source_pin,
            pinned_secrets=self.secrets_pin,
            pinned_quiesce=self.quiesce_pin,
            waves=self.waves.waves,
            wave_index=self.waves.index,
            wave_pending=list(self.waves.unopened),
            plan_holder=self.waves.holder,
            wave_chunks=self.waves.chunk_ranges,
            next_chunk=self.waves.next_chunk,
            parallelism_set=self.parallelism_set,
            unplanned=self.waves.unplanned,
            excluded=self.excluded,
            unreadable=self.unreadable,
            applied_marker=self.applied_marker,
            holds=list(book.holds.values()) if book is not None else [],
            operator_actions=self.operator_actions,
            skipping=sorted(self.skipping),
            retries=self.retries,
        )

    def final_memo(self) -> dict[str, Any]:
        """The memo a finished rollout leaves (read by ``fleetway status`` with no worker up)."""
        status = self.status()
        memo: dict[str, Any] = {
            "counts": {k.value: v for k, v in self.ledger.counts.items()},
            "status": status.value,
        }
        if self.migration_set:
            memo["migration_set"] = self.migration_set
        if described := self.request.flyway.describe():
            memo["flyway"] = described
        if self.request.action in READ_ONLY_ACTIONS:
            memo["drift"] = {k.value: self.ledger.drift.get(k, 0) for k in DriftKind}
        if self.waves:
            memo["waves"] = [
                {"name": w.name, "state": w.state.value, "counts": {k.value: v for k, v in w.counts.items()}}
                for w in self.waves.waves
            ]
        return memo

    def result(self, rollout_id: str) -> MigrateAllResult:
        """The rollout's result (after the phase is DONE)."""
        ledger = self.ledger
        return MigrateAllResult(
            rollout_id=rollout_id,
            action=self.request.action,
            status=self.status(),
            total=ledger.completed,
            counts=dict(ledger.counts),
            failed=ledger.failed,
            outcomes=ledger.outcomes,
            truncated=ledger.truncated,
            warnings=self.warnings,
            operator_actions=self.operator_actions,
            runs=self.runs,
            failed_overflow=ledger.failed_overflow,
            failed_lost=ledger.failed_lost,
            drift={k.value: v for k, v in ledger.drift.items()},
            drifted=ledger.drifted,
            retry_budget_s=self.request.retry_budget_s,
            history_marker=self.marker,
            migration_set=self.migration_set,
            pinned_tenant_source=self.source_pin,
            pinned_secrets=self.secrets_pin,
            pinned_quiesce=self.quiesce_pin,
            waves=self.waves.waves,
            halted_wave=self.waves.halted,
            unplanned=self.waves.unplanned,
            flyway=self.request.flyway,
            excluded=self.excluded,
            unreadable=self.unreadable,
            where=self.request.where,
            applied_in=self.request.applied_in,
            servers=self.servers.view() if self.servers is not None else [],
        )

    def flyway_request(self, tenant: str) -> FlywayRequest:
        """The Flyway run of the tenant dispatched now, built once and carried unchanged to the engine.

        Its options are the rollout's with the current wave's own target, taken at dispatch: the
        wave may advance while the tenant runs.
        """
        request, options = self.request, self.request.flyway
        if self.waves and (target := self.waves.specs[self.waves.index].target):
            options = options.model_copy(update={"target": target})
        return FlywayRequest(
            action=request.action,
            tenant_id=tenant,
            secrets_backend=request.secrets_backend,
            tenant_source=request.tenant_source,
            installed_by=self.marker,
            migration_set=self.migration_set,
            pinned_secrets=self.secrets_pin,
            timeout_s=request.flyway_timeout_s,
            retry_budget_s=request.retry_budget_s,
            with_info=request.action is Action.VALIDATE and request.drift_check,
            flyway=options,
        )
