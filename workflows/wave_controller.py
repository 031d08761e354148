"""The waves of a ring rollout: the one place that moves the current wave and changes a wave's state.

Pure (no Temporal calls, no I/O): the workflow shell waits for gates, bakes and drains, and asks
this controller what happens next. A wave goes PENDING → (AWAITING_APPROVAL) → RUNNING → DONE,
with BAKING between DONE and the next wave; HALTED or REJECTED end the rollout.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import UNSPECIFIED_PRINCIPAL, AuditEventType
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.activities.tenants.wave_book import PlanSummary
    from fleetway.activities.tenants.waves import WavePlan, WaveSpec
    from fleetway.workflows.migrate_all_models import RolloutCarry, WaveDecision, WaveProgress, WaveState

__all__ = ["Decision", "WaveController"]

Decision = tuple[AuditEventType, WaveDecision]


class WaveController:
    """The waves, the current one, the ids of waves not yet opened, a decision not yet acted on."""

    def __init__(self, specs: list[WaveSpec], carry: RolloutCarry) -> None:
        self.specs = specs
        self.waves: list[WaveProgress] = list(carry.waves)
        self.index = carry.wave_index
        self.unopened: deque[list[str]] = deque(carry.wave_pending)
        self.unplanned = carry.unplanned
        # With a holder, the ids stay in it: each wave's chunk range, and the next one to read.
        self.holder = carry.plan_holder
        self.chunk_ranges: list[tuple[int, int]] = list(carry.wave_chunks)
        self.next_chunk = carry.next_chunk
        self.decision: Decision | None = None
        self.deciding = False  # a decision is being acted on (its audit in flight)
        self.halted = ""

    def __bool__(self) -> bool:
        """True for a ring rollout (one with planned waves)."""
        return bool(self.waves)

    @property
    def current(self) -> WaveProgress:
        """The wave the rollout is at."""
        return self.waves[self.index]

    def plan(self, plan: WavePlan) -> None:
        """Take the planner's split: every wave PENDING, its ids held until it opens."""
        self.unopened = deque(p.tenants for p in plan.waves)
        self.waves = [
            WaveProgress(
                name=s.name, selection=s.selection(), planned=len(p.tenants), gate=s.gate, bake_s=s.bake_s
            )
            for s, p in zip(self.specs, plan.waves, strict=True)
        ]
        self.unplanned = plan.unplanned

    def plan_held(self, summary: PlanSummary, holder: str) -> None:
        """Take the plan's summary; the ids stay in ``holder``, read a chunk at a time."""
        self.holder = holder
        self.unopened = deque()
        self.chunk_ranges = [(w.first_chunk, w.chunks) for w in summary.waves]
        self.waves = [
            WaveProgress(
                name=s.name, selection=s.selection(), planned=w.planned, gate=s.gate, bake_s=s.bake_s
            )
            for s, w in zip(self.specs, summary.waves, strict=True)
        ]
        self.unplanned = summary.unplanned

    def unread_chunk(self) -> int | None:
        """The current (open) wave's next chunk to read from the holder; None: all read, or no holder."""
        if not self.holder or self.current.state is not WaveState.RUNNING:
            return None
        first, count = self.chunk_ranges[self.index]
        return self.next_chunk if self.next_chunk < first + count else None

    def ids_left(self) -> bool:
        """Some wave's ids are not in the line yet (an unopened wave, or an unread chunk)."""
        if not self.holder:
            return bool(self.unopened)
        unopened = any(w.state in (WaveState.PENDING, WaveState.AWAITING_APPROVAL) for w in self.waves)
        return unopened or self.unread_chunk() is not None

    def chunk_read(self) -> None:
        """The current wave's next chunk is in the line."""
        self.next_chunk += 1

    def _set(self, index: int | None = None, **changes: object) -> None:
        at = self.index if index is None else index
        self.waves[at] = self.waves[at].model_copy(update=changes)

    def parallelism(self) -> int:
        """The current wave's own parallelism (0: none declared)."""
        return self.specs[self.index].parallelism or 0

    def memo(self) -> dict[str, Any]:
        """The current wave as the memo shows it (the server's view, with no worker up)."""
        wave = self.current
        return {
            "wave": {
                "name": wave.name,
                "index": self.index + 1,
                "of": len(self.waves),
                "state": wave.state.value,
                "bake_until": wave.bake_until,
            }
        }

    # ---- the wave's life ------------------------------------------------------------------------

    def needs_opening(self) -> bool:
        """The current wave is still PENDING (its gate, if any, not passed)."""
        return self.current.state is WaveState.PENDING

    def gated(self) -> bool:
        """The current wave waits for an approval before it opens (a gate on a non-empty wave)."""
        wave = self.current
        return wave.gate and wave.planned > 0

    def await_approval(self) -> None:
        """The current wave stands at its gate."""
        self._set(state=WaveState.AWAITING_APPROVAL)

    def open(self) -> list[str]:
        """Open the current wave: its ids for dispatch (none yet when a holder has them), RUNNING."""
        self._set(state=WaveState.RUNNING)
        if self.holder:
            self.next_chunk = self.chunk_ranges[self.index][0]
            return []
        return self.unopened.popleft()

    def dispatched(self) -> None:
        """One more tenant of the current wave started."""
        self._set(dispatched=self.current.dispatched + 1)

    def close(self) -> bool:
        """The current wave finished: DONE; True when it was the last."""
        self._set(state=WaveState.DONE)
        return self.index + 1 >= len(self.waves)

    def start_bake(self, until_iso: str) -> None:
        """The finished wave bakes until ``until_iso``."""
        self._set(state=WaveState.BAKING, bake_until=until_iso)

    def end_bake(self) -> None:
        """The bake is over (ran its course, or ended by a decision or a stop)."""
        self._set(state=WaveState.DONE, bake_until="")

    def advance(self) -> None:
        """Move to the next wave (after the current one closed and baked)."""
        self.index += 1

    # ---- outcomes and thresholds ----------------------------------------------------------------

    def count(self, outcome: TenantOutcome) -> TenantOutcome:
        """Count a finished tenant in the current wave (a wave drains before the next opens)."""
        wave = self.current
        self._set(counts=wave.counts | {outcome.outcome: wave.counts.get(outcome.outcome, 0) + 1})
        return outcome.model_copy(update={"wave": wave.name})

    def threshold_crossed(self) -> bool | None:
        """Whether the current wave's failures cross its own threshold (None: it has none)."""
        spec, wave = self.specs[self.index], self.current
        failed = wave.counts.get(Outcome.FAILED, 0)
        if spec.max_failures is not None:
            return failed > spec.max_failures
        if spec.max_failure_ratio is not None:
            # Against the planned size: halts as soon as the wave's final ratio must exceed it.
            return failed > spec.max_failure_ratio * wave.planned
        return None

    def halt(self) -> str:
        """The current wave halts the rollout; returns its name."""
        self._set(state=WaveState.HALTED)
        self.halted = self.current.name
        return self.halted

    # ---- operators' decisions -------------------------------------------------------------------

    def waiting_index(self) -> int:
        """The wave a decision applies to: the one at its gate, or (during a bake) the next."""
        return self.index + 1 if self.current.state is WaveState.BAKING else self.index

    def check_decision(self, decision: WaveDecision | None, *, bake_too: bool) -> None:
        """Refuse a decision with nothing, or something else, to decide (before anything is recorded).

        Raises:
            ValueError: ``approval_not_pending: ...``; the update is rejected, nothing recorded.
        """
        current = self.current
        states = (
            {WaveState.AWAITING_APPROVAL, WaveState.BAKING} if bake_too else {WaveState.AWAITING_APPROVAL}
        )
        if current.state not in states:
            raise ValueError(
                f"approval_not_pending: no wave is waiting for approval (wave {current.name!r} is "
                f"{current.state.value.replace('_', ' ')})"
            )
        if self.decision is not None or self.deciding:
            raise ValueError("approval_not_pending: a decision is already recorded and being acted on")
        meant = self.waves[self.waiting_index()].name
        if decision is not None and decision.wave and decision.wave != meant:
            raise ValueError(
                f"approval_not_pending: wave {decision.wave!r} is not the one waiting ({meant!r} is)"
            )

    def decide(self, kind: AuditEventType, decision: WaveDecision | None) -> WaveProgress:
        """Record an operator's decision; the shell acts on it where it waits."""
        self.decision = (kind, decision or WaveDecision())
        return self.waves[self.waiting_index()]

    def take_decision(self, index: int) -> tuple[Decision, str]:
        """Act on the recorded decision for wave ``index`` (which becomes current); (it, principal).

        A second decision is refused until :meth:`decided` (``deciding``), so none is left behind
        to open a later gate by itself while this one's audit is in flight.
        """
        assert self.decision is not None  # noqa: S101 - the shell only calls this with one recorded
        taken, self.decision, self.deciding = self.decision, None, True
        self.index = index
        principal = taken[1].principal.strip() or UNSPECIFIED_PRINCIPAL
        self._set(decided_by=principal)
        if taken[0] is not AuditEventType.WAVE_APPROVED:
            self._set(state=WaveState.REJECTED)
            self.halted = self.current.name
        return taken, principal

    def decided(self) -> None:
        """The decision's audit is done: a new decision may be recorded."""
        self.deciding = False
