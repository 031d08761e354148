"""The bulk read before dispatch, fast: real workflow code, scripted activities.

A tenant proven current is recorded without a child or a Flyway run; a selection keeps only what it
selects; a read that fails costs nothing but speed (or stops a selection); a cancel during the read
ends the rollout with nothing dispatched; options that change what Flyway would do turn it off.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError

from fleetway.activities.fleet.state import ReadStatesInput, TenantState, TenantStates
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.rollouts import Outcome, OutcomeSource
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast

_CURRENT = TenantState(tenant_id="b", version="5", current=True, intact=True)


async def _run(client: Client, script: Scripted, **fields: Any) -> MigrateAllResult:
    request = MigrateAllInput(migration_set=SET, **fields)
    async with scripted_worker(client, script) as task_queue:
        return await asyncio.wait_for(
            FleetwayClient(client, task_queue).run(request, rollout_id=f"screen-{uuid.uuid4().hex[:8]}"),
            WAIT,
        )


def _ran(script: Scripted) -> list[str]:
    return sorted(r.tenant_id for r in script.flyway_runs)


async def test_a_tenant_proven_current_is_recorded_without_a_flyway_run(client: Client) -> None:
    script = Scripted(["a", "b", "c"], block=set())
    script.states["b"] = _CURRENT
    script.states["c"] = TenantState(tenant_id="c", unreadable=True)  # unread: Flyway decides
    result = await _run(client, script)

    assert result.status is RolloutStatus.SUCCEEDED
    assert _ran(script) == ["a", "c"] and result.counts == {Outcome.SUCCEEDED: 2, Outcome.CURRENT: 1}
    (b,) = [o for o in result.outcomes if o.tenant_id == "b"]
    assert (b.outcome, b.source, b.version_after) == (Outcome.CURRENT, OutcomeSource.HISTORY, "5")
    assert b.read_at and b.read_at in b.message and b.migration_set == SET
    assert result.failed == []  # proven current is kept with the successes, never listed as a failure
    assert len(script.screens) == 2  # one read per page (the scripted source pages 1 + 2)


async def test_validate_takes_intact_and_reports_what_lags(client: Client) -> None:
    script = Scripted(["a", "b"], block=set())
    script.states["a"] = TenantState(tenant_id="a", version="3", intact=True, pending=["4"], pending_count=1)
    script.states["b"] = TenantState(tenant_id="b", version="3", tampered=["2"])  # not intact: Flyway judges
    result = await _run(client, script, action=Action.VALIDATE)

    assert _ran(script) == ["b"]
    (a,) = [o for o in result.outcomes if o.tenant_id == "a"]
    assert a.outcome is Outcome.CURRENT and a.pending == ["4"] and "intact, 1 pending" in a.message
    assert result.drift == {"lagging": 1}  # the read's pending versions count as lagging


async def test_where_runs_only_what_the_tables_select(client: Client) -> None:
    script = Scripted(["a", "b", "c", "d"], block=set())
    script.states |= {
        "a": TenantState(tenant_id="a", version="2", pending=["3"], pending_count=1),
        "b": TenantState(tenant_id="b", version="3", current=True, intact=True),
        "c": TenantState(tenant_id="c", version="1", failed=["2"]),
        "d": TenantState(tenant_id="d", unreadable=True),
    }
    result = await _run(client, script, where="behind,failed", tenants=["a", "b", "c", "d"])

    assert _ran(script) == ["a", "c"]
    assert (result.excluded, result.unreadable, result.where) == (2, 1, "behind,failed")
    assert result.total == 2 and script.screens[0].where == "behind,failed"


@pytest.mark.parametrize(
    "fields",
    [
        {"skip_current": False},
        {"flyway": FlywayOptions(target="4")},
        {"waves": [WaveSpec(name="w", rest=True, target="4")]},
        {"action": Action.INFO},
    ],
    ids=["turned-off", "a-target", "a-wave-target", "info"],
)
async def test_no_fast_path_where_flyway_must_decide(client: Client, fields: dict[str, Any]) -> None:
    script = Scripted(["b"], block=set())
    script.states["b"] = _CURRENT
    result = await _run(client, script, tenants=["b"], **fields)

    assert _ran(script) == ["b"] and Outcome.CURRENT not in result.counts
    assert not script.screens


class _BrokenRead(Scripted):
    """A read that fails its first ``failures`` attempts (every attempt by default), then answers."""

    def __init__(self, tenants: list[str], failures: int = 10**6) -> None:
        super().__init__(tenants, block=set())
        self.failures = failures
        self.attempts = 0

    @activity.defn(name="read_tenant_states")
    async def read_tenant_states(self, request: ReadStatesInput) -> TenantStates:
        self.attempts += 1
        if self.attempts <= self.failures:
            self.screens.append(request)
            raise RuntimeError("server gone")
        return await super().read_tenant_states(request)


async def test_a_failed_read_only_costs_speed_but_stops_a_selection(client: Client) -> None:
    # A 2 s budget: the read is retried by time, and this one never recovers.
    script = _BrokenRead(["a", "b"])
    result = await _run(client, script, tenants=["a", "b"], retry_budget_s=2)
    assert _ran(script) == ["a", "b"] and result.status is RolloutStatus.SUCCEEDED
    assert any("schema histories unread" in w for w in result.warnings)
    assert script.attempts > 1  # retried, not given up on at the first failure

    selecting = _BrokenRead(["a", "b"])
    result = await _run(client, selecting, tenants=["a", "b"], where="behind", retry_budget_s=2)
    assert _ran(selecting) == [] and result.status is RolloutStatus.FAILED
    assert any("could not be read to select" in w for w in result.warnings)


async def test_a_read_that_fails_a_few_times_still_screens(client: Client) -> None:
    """A database blip during the read costs a retry, not the fast path or a selection."""
    script = _BrokenRead(["a", "b"], failures=3)
    script.states["b"] = _CURRENT
    result = await _run(client, script, tenants=["a", "b"], where="behind")
    assert script.attempts == 4 and _ran(script) == ["a"]
    assert result.status is RolloutStatus.SUCCEEDED and not any("unread" in w for w in result.warnings)


async def test_a_cancel_during_the_read_ends_the_rollout_with_nothing_dispatched(client: Client) -> None:
    script = Scripted(["a", "b"], block={"read_tenant_states"})
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                MigrateAllInput(migration_set=SET, tenants=["a", "b"]),
                rollout_id=f"screen-cancel-{uuid.uuid4().hex[:8]}",
            )
        ).handle
        await asyncio.wait_for(script.started["read_tenant_states"].wait(), WAIT)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), WAIT)
    assert script.cancelled == ["read_tenant_states"] and _ran(script) == []


async def test_current_tenants_do_not_open_the_canary_gate(client: Client) -> None:
    """The canary waits for dispatched tenants; tenants proven current never ran and do not count."""
    script = Scripted(["a", "b", "c", "d"], block=set(), slow={"run_flyway:a": 1.0})
    script.states |= {t: TenantState(tenant_id=t, current=True, intact=True) for t in ("b", "c")}
    result = await _run(client, script, tenants=["a", "b", "c", "d"], canary_count=1)
    # d starts only after a (the canary) finished, though b and c finished before either.
    assert script.calls.index("done:run_flyway:a") < script.calls.index("run_flyway:d")
    assert result.counts == {Outcome.SUCCEEDED: 2, Outcome.CURRENT: 2}


async def test_a_tenant_listed_twice_is_proven_once_then_a_duplicate(client: Client) -> None:
    script = Scripted(["b", "b"], block=set())  # the scripted source pages ["b"], then ["b"]
    script.states["b"] = _CURRENT
    result = await _run(client, script)
    assert result.counts == {Outcome.CURRENT: 1, Outcome.SKIPPED: 1} and _ran(script) == []


async def test_placeholders_keep_the_fast_path_and_reach_the_read(client: Client) -> None:
    """A placeholder changes only repeatables' checksums: the read computes them with its value."""
    script = Scripted(["b"], block=set())
    script.states["b"] = _CURRENT
    result = await _run(client, script, tenants=["b"], flyway=FlywayOptions(placeholders={"region": "eu"}))
    assert result.counts == {Outcome.CURRENT: 1} and script.screens[0].placeholders == {"region": "eu"}


class _WrongAnswer(Scripted):
    @activity.defn(name="read_tenant_states")
    async def read_tenant_states(self, request: ReadStatesInput) -> TenantStates:
        self.screens.append(request)
        other = TenantState(tenant_id="zz", current=True, intact=True)
        return TenantStates(read_at="", states=[other] * len(request.tenant_ids), selected=[True])


async def test_a_read_that_answers_for_other_tenants_is_not_believed(client: Client) -> None:
    script = _WrongAnswer(["a", "b"], block=set())
    result = await _run(client, script, tenants=["a", "b"])
    assert _ran(script) == ["a", "b"] and Outcome.CURRENT not in result.counts
    assert any("answered for other tenants" in w for w in result.warnings)


@pytest.mark.parametrize("action", [Action.MIGRATE, Action.VALIDATE])
async def test_a_set_with_every_run_callbacks_runs_flyway_for_current_tenants_unless_told(
    client: Client, action: Action
) -> None:
    """Flyway runs afterMigrate.sql on every migrate: a tenant proven current gets it unless the rollout skips it."""
    behind = TenantState(tenant_id="a", version="1", tampered=["1"])  # neither current nor intact
    script = Scripted(["a", "b"], block=set())
    script.states |= {"a": behind, "b": _CURRENT}
    script.callbacks = ["afterMigrate.sql"]
    runs_callbacks = await _run(client, script, action=action)

    assert _ran(script) == ["a", "b"] and Outcome.CURRENT not in runs_callbacks.counts
    assert any(
        "afterMigrate.sql" in w and "--skip-callbacks-when-current" in w for w in runs_callbacks.warnings
    )

    skipping = Scripted(["a", "b"], block=set())
    skipping.states |= {"a": behind, "b": _CURRENT}
    skipping.callbacks = ["afterMigrate.sql"]
    skipped = await _run(client, skipping, action=action, skip_callbacks_when_current=True)
    assert _ran(skipping) == ["a"] and skipped.counts[Outcome.CURRENT] == 1
