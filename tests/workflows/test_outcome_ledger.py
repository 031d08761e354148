"""The rollout's outcome record stays under Temporal's payload limit whatever the fleet does."""

from __future__ import annotations

from typing import Any

from fleetway.activities.fleet.state import MAX_SCREENED
from fleetway.activities.flyway.output import Action, ErrorClass
from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.activities.servers.models import HoldKind, ServerHold
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.config.client import DATA_CONVERTER
from fleetway.workflows.drift import DriftKind, summarize
from fleetway.workflows.migrate_all_models import (
    MAX_NAMED_BYTES,
    MigrateAllInput,
    MigrateAllResult,
    RolloutCarry,
    RolloutStatus,
)
from fleetway.workflows.outcome_ledger import OutcomeLedger
from fleetway.workflows.server_book import MAX_QUEUED_BYTES

# The server refuses a payload above 2 MiB; fleetway keeps every payload under 1 MiB.
PAYLOAD_LIMIT = 1024 * 1024


def _payload_bytes(value: Any) -> int:
    """What Temporal stores: the payload as the workers' data converter encodes it."""
    return int(DATA_CONVERTER.payload_converter.to_payloads([value])[0].ByteSize())


def _worst_failure(i: int) -> TenantOutcome:
    """The largest failure a child can return: 128-char id, 300-char message, 50 tampered versions."""
    return TenantOutcome(
        tenant_id=f"{i:06d}".ljust(128, "x"),
        outcome=Outcome.FAILED,
        version_before="2026.11.25.120000.1",
        version_after="2026.11.25.120000.2",
        applied=3,
        tampered=[f"2026.11.25.{v:06d}.1" for v in range(50)],
        error_class=ErrorClass.CHECKSUM_MISMATCH.value,
        message="m" * 300,
        duration_ms=123456,
    )


def _success(i: int, *, pending: int = 0) -> TenantOutcome:
    return TenantOutcome(
        tenant_id=f"tenant-{i:05d}",
        outcome=Outcome.SUCCEEDED,
        version_before="4",
        version_after="5",
        applied=1,
        pending=[str(v) for v in range(pending)],
        duration_ms=812,
    )


def _result(ledger: OutcomeLedger, action: Action = Action.MIGRATE) -> MigrateAllResult:
    """Built exactly as ``MigrateAllWorkflow._finish`` builds it."""
    return MigrateAllResult(
        rollout_id="r" * 200,
        action=action,
        status=RolloutStatus.FAILED,
        total=ledger.completed,
        counts=dict(ledger.counts),
        failed=ledger.failed,
        outcomes=ledger.outcomes,
        truncated=ledger.truncated,
        warnings=["w" * 300] * 20,
        failed_overflow=ledger.failed_overflow,
        failed_lost=ledger.failed_lost,
        drift={k.value: v for k, v in ledger.drift.items()},
        drifted=ledger.drifted,
    )


def _carry(ledger: OutcomeLedger) -> RolloutCarry:
    """The largest carry: the longest line of max-length ids (a page, and the server queues at
    their byte bound), the carried cursor digests, 20 held servers, every warning."""
    holds = [
        ServerHold(server=f"{'h' * 250}:{5432 + i}", kind=HoldKind.PARKED, since="2026-12-06T00:00:00+00:00",
                   since_s=1.0, why="w" * 300)
        for i in range(20)
    ]  # fmt: skip
    return RolloutCarry(
        pending=["p" * 128] * (1000 + (MAX_QUEUED_BYTES // 131) + MAX_SCREENED),
        cursor="c" * 4096,
        cursor_digests=[f"{i:016x}" for i in range(1000)],
        holds=holds,
        counts=dict(ledger.counts),
        outcomes=ledger.outcomes,
        dropped_outcomes=ledger.dropped,
        failed_overflow=ledger.failed_overflow,
        failed_lost=ledger.failed_lost,
        drift={k.value: v for k, v in ledger.drift.items()},
        drifted=ledger.drifted,
        warnings=["w" * 300] * 20,
    )


def test_ten_thousand_worst_case_failures_stay_under_the_payload_limit_and_are_all_accounted_for() -> None:
    ledger = OutcomeLedger()
    failures = [_worst_failure(i) for i in range(10_000)]
    for outcome in failures:
        ledger.record(outcome, track_drift=True)

    result = _result(ledger, Action.VALIDATE)
    assert _payload_bytes(result) < PAYLOAD_LIMIT
    # The request names as many ids as it may (in its waves: they travel in every carry).
    named = [f"{i:06d}".ljust(128, "n") for i in range(MAX_NAMED_BYTES // 131)]
    waves = [WaveSpec(name=f"w{i}", tenants=named[i::20]) for i in range(20)]
    request = MigrateAllInput(action=Action.VALIDATE, waves=waves, carry=_carry(ledger))
    assert _payload_bytes(request) < PAYLOAD_LIMIT

    # Every failure is counted, and each is kept in detail, named, or counted as lost: none vanishes.
    assert result.counts == {Outcome.FAILED: 10_000}
    assert result.drift == {"tampered": 10_000} and result.drifted == 10_000
    detailed = [o.tenant_id for o in result.failed]
    assert detailed == [o.tenant_id for o in failures[: len(detailed)]]
    assert result.failed_overflow == [
        o.tenant_id for o in failures[len(detailed) : len(detailed) + len(result.failed_overflow)]
    ]
    assert len(detailed) + len(result.failed_overflow) + result.failed_lost == 10_000
    assert detailed and result.failed_overflow and result.failed_lost  # all three tiers were needed
    assert result.truncated
    summary = summarize(result)
    assert summary.counts[DriftKind.TAMPERED] == 10_000 and summary.clean == 0 and summary.truncated


def test_realistic_failures_are_all_named_so_a_rerun_is_exact() -> None:
    """10,000 failures with ordinary ids and messages: none is lost."""
    ledger = OutcomeLedger()
    for i in range(10_000):
        ledger.record(
            TenantOutcome(
                tenant_id=f"tenant-{i:05d}",
                outcome=Outcome.FAILED if i % 3 else Outcome.CANCELED,
                error_class=ErrorClass.INTERNAL_ERROR.value,
                message="internal_error: migration V6__add_index.sql failed: ERROR: relation exists",
            ),
            track_drift=False,
        )
    result = _result(ledger)
    assert _payload_bytes(result) < PAYLOAD_LIMIT
    assert result.failed_lost == 0
    named = [o.tenant_id for o in result.failed] + result.failed_overflow
    assert sorted(named) == [f"tenant-{i:05d}" for i in range(10_000)]


def test_successes_fill_their_own_budget_and_never_crowd_out_failures() -> None:
    ledger = OutcomeLedger()
    for i in range(10_000):
        ledger.record(_success(i, pending=50), track_drift=True)
    ledger.record(_worst_failure(0), track_drift=True)

    result = _result(ledger, Action.INFO)
    assert _payload_bytes(result) < PAYLOAD_LIMIT
    assert result.counts == {Outcome.SUCCEEDED: 10_000, Outcome.FAILED: 1}
    kept = [o for o in result.outcomes if o.outcome is Outcome.SUCCEEDED]
    assert 0 < len(kept) < 10_000
    assert kept == [_success(i, pending=50) for i in range(len(kept))]  # the first ones, intact
    assert ledger.dropped == 10_000 - len(kept)
    assert [o.tenant_id for o in result.failed] == [_worst_failure(0).tenant_id]
    summary = summarize(result)
    assert summary.counts[DriftKind.LAGGING] == 10_000  # counts cover every tenant, not just the listed ones
    assert summary.clean == 0


def test_a_carried_ledger_rebuilds_the_same_record_and_accepts_older_carries() -> None:
    ledger = OutcomeLedger()
    for i in range(5):
        ledger.record(_success(i), track_drift=False)
        ledger.record(_worst_failure(i), track_drift=False)
    carry = _carry(ledger)

    rebuilt = OutcomeLedger.from_carry(carry)
    assert (rebuilt.counts, rebuilt.outcomes, rebuilt.failed) == (
        ledger.counts,
        ledger.outcomes,
        ledger.failed,
    )
    rebuilt.record(_success(99), track_drift=False)
    assert rebuilt.completed == 11

    # A carry written before the ledger existed has no ledger fields; it still decodes.
    old = RolloutCarry.model_validate(
        {"counts": {"succeeded": 1}, "outcomes": [_success(1).model_dump(mode="json")]}
    )
    assert (old.failed_overflow, old.failed_lost, old.drifted) == ([], 0, 0)
