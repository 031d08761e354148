"""Interleavings the rollout's state allows: a decision during a bake, a stop at a gate or in a bake,
continue-as-new while a slow tenant is still running. Real workflow code, scripted activities."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from fleetway.activities.rollouts import Outcome
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import (
    MigrateAllInput,
    RolloutStatus,
    WaveDecision,
    WaveState,
)
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker
from tests.workflows.test_cancel_anywhere import _cancelled, _until

pytestmark = pytest.mark.fast

_TWO_WAVES = [
    WaveSpec(name="one", tenants=["a"], bake_s=3600),
    WaveSpec(name="two", tenants=["b"], gate=True),
]


async def test_a_reject_during_a_bake_refuses_the_next_wave_and_approve_is_refused(client: Client) -> None:
    script = Scripted(["a", "b"], block=set())
    async with scripted_worker(client, script) as task_queue:
        handle = (await FleetwayClient(client, task_queue).start(MigrateAllInput(waves=_TWO_WAVES, migration_set=SET), rollout_id=f"bake-{uuid.uuid4().hex[:8]}")).handle  # fmt: skip
        await _until(handle, lambda p: bool(p.waves) and p.waves[0].state is WaveState.BAKING)
        assert (await handle.query(MigrateAllWorkflow.progress)).phase == "baking"
        with pytest.raises(WorkflowUpdateFailedError):  # approve waits for the gate, not the bake
            await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision())
        refused = await handle.execute_update(
            MigrateAllWorkflow.reject, WaveDecision(principal="ops@example.com", wave="two", reason="p99")
        )
        result = await asyncio.wait_for(handle.result(), WAIT)

    assert refused.name == "two"
    assert result.status is RolloutStatus.HALTED and result.halted_wave == "two"
    assert [(w.state, w.decided_by) for w in result.waves] == [
        (WaveState.DONE, ""), (WaveState.REJECTED, "ops@example.com"),
    ]  # fmt: skip
    assert "run_flyway:b" not in script.calls
    assert script.calls.count("emit_audit:rollout.wave_rejected") == 1
    assert any("rejected by ops@example.com: p99" in w for w in result.warnings)


@pytest.mark.parametrize("where", [WaveState.BAKING, WaveState.AWAITING_APPROVAL])
async def test_a_stop_at_a_gate_or_in_a_bake_ends_the_rollout_there(client: Client, where: WaveState) -> None:
    script = Scripted(["a", "b"], block=set())
    waves = [WaveSpec(name="one", tenants=["a"], bake_s=0 if where is WaveState.AWAITING_APPROVAL else 3600),
             WaveSpec(name="two", tenants=["b"], gate=True)]  # fmt: skip
    async with scripted_worker(client, script) as task_queue:
        handle = (await FleetwayClient(client, task_queue).start(MigrateAllInput(waves=waves, migration_set=SET), rollout_id=f"stop-{uuid.uuid4().hex[:8]}")).handle  # fmt: skip
        index = 0 if where is WaveState.BAKING else 1
        await _until(handle, lambda p: len(p.waves) == 2 and p.waves[index].state is where)
        if where is WaveState.BAKING:
            await handle.signal(MigrateAllWorkflow.quiesce)
            result = await asyncio.wait_for(handle.result(), WAIT)
            assert result.status is RolloutStatus.QUIESCED
            assert [w.state for w in result.waves] == [WaveState.DONE, WaveState.PENDING]
        else:
            await _cancelled(handle)
    assert "run_flyway:b" not in script.calls
    assert not any(c.startswith("emit_audit:wave_") for c in script.calls)


async def test_continue_as_new_waits_for_a_slow_tenant_and_runs_each_tenant_once(client: Client) -> None:
    script = Scripted(["a", "b", "c"], block=set(), slow={"run_flyway:a": 1.5})
    async with scripted_worker(client, script) as task_queue:
        result = await asyncio.wait_for(
            FleetwayClient(client, task_queue).run(MigrateAllInput(tenants=["a", "b", "c"], parallelism=2, continue_as_new_after=1, migration_set=SET), rollout_id=f"can-{uuid.uuid4().hex[:8]}"),
            WAIT,
        )  # fmt: skip

    # One dispatch per run; the fourth run finds the list empty and ends the rollout.
    assert (result.status, result.runs, result.total) == (RolloutStatus.SUCCEEDED, 4, 3)
    assert result.counts == {Outcome.SUCCEEDED: 3}
    flyway = [c for c in script.calls if "run_flyway" in c]
    # The first run drained its slow tenant before handing over: nothing of the next run overlapped it.
    assert flyway == ["run_flyway:a", "done:run_flyway:a", "run_flyway:b", "run_flyway:c"]
