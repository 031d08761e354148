"""The rollout's rules on their own: the pure state module, no server, no database."""

from __future__ import annotations

import pytest

from fleetway.activities.audit.events import AuditEventType
from fleetway.activities.flyway.output import Action
from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.activities.tenants.walk import MAX_PAGES
from fleetway.activities.tenants.waves import PlannedWave, WavePlan
from fleetway.workflows.migrate_all_models import (
    MigrateAllInput,
    RolloutStatus,
    WaveDecision,
    WaveState,
)
from fleetway.workflows.rollout_state import Phase, RolloutState

pytestmark = pytest.mark.fast


def _state(**fields: object) -> RolloutState:
    return RolloutState(MigrateAllInput.model_validate({"action": "migrate", **fields}))


def _done(tenant: str, outcome: Outcome = Outcome.SUCCEEDED) -> TenantOutcome:
    return TenantOutcome(tenant_id=tenant, outcome=outcome)


def _ring(*specs: dict[str, object], tenants: list[list[str]]) -> RolloutState:
    state = _state(tenants=[t for wave in tenants for t in wave], waves=list(specs))
    state.waves.plan(
        WavePlan(
            waves=[PlannedWave(name=str(s["name"]), tenants=t) for s, t in zip(specs, tenants, strict=True)],
            listed=sum(map(len, tenants)),
        )
    )
    return state


def _run(state: RolloutState, *tenants: str) -> None:
    for tenant in tenants:
        state.dispatch(tenant)


def test_fail_fast_stops_at_the_first_failure_and_in_flight_tenants_drain() -> None:
    state = _state(parallelism=3)
    _run(state, "a", "b", "c")
    state.record(_done("a", Outcome.FAILED))
    assert state.stop is RolloutStatus.FAILED
    assert state.in_flight == {"b", "c"}  # not cancelled: they finish their run
    state.record(_done("b"))
    assert state.stop is RolloutStatus.FAILED  # the first reason to stop wins
    assert state.ledger.counts == {Outcome.FAILED: 1, Outcome.SUCCEEDED: 1}


def test_continue_on_error_records_failures_without_stopping() -> None:
    state = _state(continue_on_error=True)
    _run(state, "a", "b")
    state.record(_done("a", Outcome.FAILED))
    state.record(_done("b"))
    assert state.stop is None
    state.phase = Phase.DONE
    assert state.status() is RolloutStatus.FAILED  # a failed tenant fails the rollout at the end


@pytest.mark.parametrize(
    ("outcomes", "halted"),
    [
        ([Outcome.FAILED], False),  # within the canary: not judged yet
        ([Outcome.FAILED, Outcome.SUCCEEDED], True),  # 1/2 > 0.4 once the canary finished
        ([Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED], False),  # 1/3 <= 0.4
    ],
)
def test_the_failure_ratio_halts_only_after_the_canary(outcomes: list[Outcome], halted: bool) -> None:
    state = _state(max_failure_ratio=0.4, canary_count=2)
    for i, outcome in enumerate(outcomes):
        state.dispatch(f"t{i}")
        state.record(_done(f"t{i}", outcome))
    assert (state.stop is RolloutStatus.HALTED) is halted


def test_the_canary_gate_holds_dispatch_until_the_canaries_finish() -> None:
    state = _state(canary_count=2, parallelism=10)
    _run(state, "a", "b")
    assert not state.can_dispatch()
    state.record(_done("a"))
    assert not state.can_dispatch()
    state.record(_done("b"))
    assert state.can_dispatch()


def test_pause_and_the_window_hold_dispatch() -> None:
    state = _state(parallelism=1)
    assert state.can_dispatch()
    state.paused = True
    assert not state.can_dispatch()
    state.paused = False
    state.dispatch("a")
    assert not state.can_dispatch()
    assert state.set_parallelism(2) == 1
    assert state.can_dispatch()


def test_a_wave_sets_the_window_until_an_operator_overrides_it() -> None:
    state = _ring({"name": "canary", "tenants": ["a"], "parallelism": 1}, {"name": "rest", "rest": True},
                  tenants=[["a"], ["b", "c"]])  # fmt: skip
    state.parallelism = 8
    assert state.window() == 1
    assert state.set_parallelism(4) == 1
    assert state.window() == 4


def test_a_source_that_repeats_a_cursor_or_pages_forever_fails_the_rollout() -> None:
    state = _state()
    assert state.accept_page(["a"], "c1")
    assert not state.accept_page(["b"], "c1")
    assert state.stop is RolloutStatus.FAILED
    assert "cycle" in state.warnings[-1]
    state = _state(carry={"pages": MAX_PAGES - 1})  # a later run of a long listing
    assert not state.accept_page(["a"], "next")
    assert f"exceeded {MAX_PAGES} pages" in state.warnings[-1]


def test_a_duplicate_child_id_in_a_first_run_means_the_rollout_id_was_used_before() -> None:
    state = _state(tenants=["a"])
    outcome = state.duplicate("a", "r1")
    assert outcome.outcome is Outcome.SKIPPED and "rollout id reused" in outcome.message
    assert state.stop is RolloutStatus.FAILED


def test_a_tenant_listed_twice_is_skipped_without_failing_the_rollout() -> None:
    state = _state(tenants=["a", "b"])
    _run(state, "a", "a")
    outcome = state.duplicate("a", "r1")
    assert outcome.message == "already run in this rollout (duplicate id)"
    assert state.stop is None


def test_dispatch_says_when_to_continue_as_new() -> None:
    state = _state(continue_as_new_after=2)
    assert not state.dispatch("a")
    assert state.dispatch("b")


def test_a_wave_threshold_halts_at_that_wave_and_replaces_fail_fast() -> None:
    state = _ring({"name": "one", "tenants": ["a", "b", "c"], "max_failures": 1}, {"name": "two", "rest": True},
                  tenants=[["a", "b", "c"], ["d"]])  # fmt: skip
    state.open_wave()
    _run(state, "a", "b", "c")
    assert not state.record(_done("a", Outcome.FAILED))  # one failure tolerated: no fail-fast either
    assert state.stop is None
    assert state.record(_done("b", Outcome.FAILED))  # the second crosses: the wave memo changes
    assert state.stop is RolloutStatus.HALTED
    assert (state.waves.current.state, state.waves.halted) == (WaveState.HALTED, "one")
    assert state.waves.current.counts == {Outcome.FAILED: 2}


def test_the_rollout_ratio_halting_a_ring_rollout_marks_its_wave_at_once() -> None:
    state = _ring({"name": "one", "rest": True}, tenants=[["a", "b"]])
    state.request = state.request.model_copy(update={"max_failure_ratio": 0.1})
    state.open_wave()
    _run(state, "a")
    state.record(_done("a", Outcome.FAILED))
    assert state.stop is RolloutStatus.HALTED
    assert (state.waves.current.state, state.waves.halted) == (WaveState.HALTED, "one")


def test_decisions_are_refused_when_nothing_waits_or_another_is_being_acted_on() -> None:
    plain = _state()
    with pytest.raises(ValueError, match="has no wave waiting"):
        plain.check_decision(None, bake_too=False)
    state = _ring({"name": "one", "rest": True, "gate": True}, tenants=[["a"]])
    with pytest.raises(ValueError, match="is pending"):
        state.check_decision(None, bake_too=False)
    state.waves.await_approval()
    with pytest.raises(ValueError, match="'two' is not the one waiting"):
        state.check_decision(WaveDecision(wave="two"), bake_too=False)
    state.check_decision(WaveDecision(wave="one"), bake_too=False)
    state.waves.decide(AuditEventType.WAVE_APPROVED, None)
    with pytest.raises(ValueError, match="already recorded"):
        state.check_decision(None, bake_too=False)
    state.waves.take_decision(0)
    with pytest.raises(ValueError, match="already recorded"):  # its audit still in flight
        state.check_decision(None, bake_too=False)
    state.waves.decided()
    state.stop_with(RolloutStatus.QUIESCED)
    with pytest.raises(ValueError, match="has no wave waiting"):
        state.check_decision(None, bake_too=False)


def test_a_reject_during_a_bake_refuses_the_next_wave() -> None:
    state = _ring({"name": "one", "tenants": ["a"], "bake_s": 60}, {"name": "two", "rest": True},
                  tenants=[["a"], ["b"]])  # fmt: skip
    state.open_wave()
    state.waves.close()
    state.waves.start_bake("2026-12-03T00:01:00+00:00")
    with pytest.raises(ValueError, match="is baking"):
        state.check_decision(None, bake_too=False)  # approve is refused during a bake
    state.check_decision(None, bake_too=True)
    assert state.waves.decide(AuditEventType.WAVE_REJECTED, WaveDecision(principal=" ")).name == "two"
    state.waves.end_bake()
    (kind, _), principal = state.waves.take_decision(state.waves.index + 1)
    assert (kind, principal) == (AuditEventType.WAVE_REJECTED, "<unspecified>")
    assert [w.state for w in state.waves.waves] == [WaveState.DONE, WaveState.REJECTED]
    assert state.waves.halted == "two"


def test_the_carry_hands_everything_to_the_next_run() -> None:
    state = _ring(
        {"name": "one", "tenants": ["a"]}, {"name": "two", "rest": True}, tenants=[["a"], ["b", "c"]]
    )
    state.open_wave()
    _run(state, "a")
    state.record(_done("a"))
    state.set_parallelism(3)
    state.warn("careful")
    carried = RolloutState(state.request.model_copy(update={"carry": state.carry()}))
    assert carried.phase is Phase.DISPATCHING and carried.runs == 2
    assert (carried.dispatched, carried.ledger.completed, carried.window()) == (1, 1, 3)
    assert [w.state for w in carried.waves.waves] == [WaveState.RUNNING, WaveState.PENDING]
    assert list(carried.waves.unopened) == [["b", "c"]]
    assert carried.warnings == ["careful"]
    assert carried.progress().model_dump() == state.progress().model_dump() | {
        "run": 2,
        "phase": "dispatching",
    }


def test_the_final_status_and_memo() -> None:
    state = _state(action=Action.VALIDATE.value, tenants=["a"])
    state.dispatch("a")
    state.record(_done("a"))
    assert state.status() is RolloutStatus.RUNNING
    state.phase = Phase.DONE
    assert state.status() is RolloutStatus.SUCCEEDED
    memo = state.final_memo()
    assert memo["status"] == "succeeded" and memo["counts"] == {"succeeded": 1}
    assert set(memo["drift"]) == {
        "tampered",
        "lagging",
        "ahead",
        "failed_migrations",
        "unchecked",
        "outdated_repeatables",
    }
    assert state.result("r1").status is RolloutStatus.SUCCEEDED
