"""The rollout's record of per-tenant outcomes, bounded in bytes.

Why bytes: a rollout's result and the state it carries across continue-as-new are each one Temporal
payload, refused above 2 MiB (fleetway keeps every payload under 1 MiB). The record matters most
when everything fails (a broken script under ``continue_on_error`` across 10,000 tenants), and
failures are the biggest outcomes, so a count cap is not a bound: tenant ids run to 128 characters
and messages to 300. Every budget here is measured
on the encoded JSON, so no input can push a payload past the limit:

- failures (failed, cancelled, skipped) are kept in detail up to ``FAILED_DETAIL_BUDGET``;
- past that, a failed or cancelled tenant keeps just its id (``failed_overflow``, up to
  ``FAILED_IDS_BUDGET``) so ``rerun_failed_of`` stays exact; past that it is only counted
  (``failed_lost``) and a rerun of that rollout is refused rather than silently partial;
- successes (and tenants proven current) are kept up to ``SUCCESS_BUDGET``, then counted.

Counts by outcome and by drift kind always cover every tenant. Pure and deterministic (workflow
code): sizes come from pydantic's JSON encoder, never from the clock or the host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.workflows.drift import DriftKind, drift_kinds
from fleetway.workflows.migrate_all_models import RolloutCarry

__all__ = [
    "FAILED_DETAIL_BUDGET",
    "FAILED_IDS_BUDGET",
    "RERUN_OUTCOMES",
    "SUCCESS_BUDGET",
    "OutcomeLedger",
]

# 288 KiB in all: with the line of pending tenants, the named ids of the request and the rest of
# the carry, a continue-as-new input stays under 1 MiB (tests/workflows/test_payload_bounds.py).
FAILED_DETAIL_BUDGET: Final = 80 * 1024
FAILED_IDS_BUDGET: Final = 160 * 1024
SUCCESS_BUDGET: Final = 48 * 1024
# What ``rerun_failed_of`` re-runs: tenants that failed or never finished.
RERUN_OUTCOMES: Final = frozenset({Outcome.FAILED, Outcome.CANCELED})
# Kept under the success budget: the tenant is where the set says (run now, or proven current).
_DONE: Final = frozenset({Outcome.SUCCEEDED, Outcome.CURRENT})


def _size(outcome: TenantOutcome) -> int:
    return len(outcome.model_dump_json()) + 1  # the separating comma


class OutcomeLedger:
    """Counts every outcome; keeps as many as the byte budgets allow (see the module doc)."""

    def __init__(
        self,
        *,
        counts: dict[Outcome, int] | None = None,
        drift: dict[str, int] | None = None,
        drifted: int = 0,
        kept: Iterable[TenantOutcome] = (),
        failed_overflow: Iterable[str] = (),
        failed_lost: int = 0,
        dropped: int = 0,
    ) -> None:
        """Rebuild from carried state (``kept`` may mix successes and failures, as older runs did)."""
        self.counts: Counter[Outcome] = Counter(counts or {})
        self.drift: Counter[DriftKind] = Counter({DriftKind(k): v for k, v in (drift or {}).items()})
        self.drifted = drifted
        self.outcomes: list[TenantOutcome] = []
        self.failed_overflow: list[str] = []
        self.failed_lost = failed_lost
        self.dropped = dropped
        self._failed_bytes = 0
        self._success_bytes = 0
        self._ids_bytes = 0
        for outcome in kept:
            self._keep(outcome)
        for tenant in failed_overflow:
            self._keep_id(tenant)

    @classmethod
    def from_carry(cls, carry: RolloutCarry) -> OutcomeLedger:
        """The ledger a previous run of the rollout handed over through continue-as-new."""
        return cls(
            counts=carry.counts,
            drift=carry.drift,
            drifted=carry.drifted,
            kept=carry.outcomes,
            failed_overflow=carry.failed_overflow,
            failed_lost=carry.failed_lost,
            dropped=carry.dropped_outcomes,
        )

    def record(self, outcome: TenantOutcome, *, track_drift: bool) -> None:
        """Count one finished tenant and keep it if its budget allows."""
        self.counts[outcome.outcome] += 1
        if track_drift and (kinds := drift_kinds(outcome)):
            self.drift.update(kinds)
            self.drifted += 1
        self._keep(outcome)

    def retract(self, tenant: str) -> bool:
        """Take back ``tenant``'s failure (an operator retries it); False when it is not named here.

        Its count goes, and its detail or its id; a failure only counted (``failed_lost``) cannot
        be taken back by name.
        """
        for index, kept in enumerate(self.outcomes):
            if kept.tenant_id == tenant and kept.outcome in RERUN_OUTCOMES:
                del self.outcomes[index]
                self._failed_bytes -= _size(kept)
                self.counts[kept.outcome] -= 1
                return True
        if tenant in self.failed_overflow:
            self.failed_overflow.remove(tenant)
            self._ids_bytes -= len(tenant) + 3
            # An id kept without detail was failed or cancelled: take the count from whichever has one.
            self.counts[Outcome.FAILED if self.counts[Outcome.FAILED] else Outcome.CANCELED] -= 1
            return True
        return False

    @property
    def completed(self) -> int:
        """Tenants finished in any way."""
        return sum(self.counts.values())

    @property
    def failed(self) -> list[TenantOutcome]:
        """The kept non-successes, in completion order."""
        return [o for o in self.outcomes if o.outcome not in _DONE]

    @property
    def truncated(self) -> bool:
        """True when some outcome is only counted (or only named), not kept in detail."""
        return bool(self.dropped or self.failed_overflow or self.failed_lost)

    def _keep(self, outcome: TenantOutcome) -> None:
        size = _size(outcome)
        if outcome.outcome in _DONE:
            if self._success_bytes + size <= SUCCESS_BUDGET:
                self._success_bytes += size
                self.outcomes.append(outcome)
            else:
                self.dropped += 1
        elif self._failed_bytes + size <= FAILED_DETAIL_BUDGET:
            self._failed_bytes += size
            self.outcomes.append(outcome)
        elif outcome.outcome in RERUN_OUTCOMES:
            self._keep_id(outcome.tenant_id)
        else:
            self.dropped += 1

    def _keep_id(self, tenant: str) -> None:
        size = len(tenant) + 3  # quotes and comma
        if self._ids_bytes + size <= FAILED_IDS_BUDGET:
            self._ids_bytes += size
            self.failed_overflow.append(tenant)
        else:
            self.failed_lost += 1
